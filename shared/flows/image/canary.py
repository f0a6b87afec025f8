"""The canary half of an image job: point the model at the new version (If-Match, the image it
replaces kept for a rollback), add one instance by a scale job, judge its node, then keep the
version (include it in latest, remove the canary) or roll back (previous image, strays and canary
removed). Also the version's line in the pool's image lineage, which every half writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.scaleset import OperationStatus, TemporaryAzureError
from shared.decide.imaging import CanaryNode, judge_canary
from shared.flows.image import donor as image_donor
from shared.flows.image.ops import ChildEnded, child, forget, images, operation
from shared.flows.jobs import StepContext
from shared.flows.retries import temporary_wait
from shared.flows.truth import read_truth
from shared.jobs import JobKind, Next, Outcome, Wait

# From the model's change to the canary's removal: repair leaves the pool to the image job.
CANARY_STEPS = frozenset(
    {"point", "canary_add", "canary_check", "include", "rollback", "strays", "canary_remove"}
)
MODEL_TRIES = 10
MODEL_RETRY = timedelta(seconds=30)
IMAGE_FIELDS = (
    "id",
    "publisher",
    "offer",
    "sku",
    "version",
    "sharedGalleryImageId",
    "communityGalleryImageId",
)


def at(names: Mapping[str, str]) -> dict[str, str]:
    return {"gallery_id": names["gallery_id"], "image": names["image"], "version": names["version"]}


def record(ctx: StepContext, state: dict[str, Any], *, status: str, **extra: Any) -> None:
    """The version's line in the pool's image lineage (shown by the pool status and page)."""
    names, donor, canary = state["names"], state["donor"], state.get("canary") or {}
    record = {
        "version": names["version"],
        "id": names["version_id"],
        "created_at": state.get("version_since") or ctx.now.isoformat(),
        "source_node": donor["name"],
        "kernel": donor["kernel"],
        "status": status,
        "job": ctx.job.id,
    } | extra
    if canary.get("verdict"):
        record["canary"] = {
            "result": "passed" if canary.get("proven") else "failed",
            "node": canary.get("node"),
            "reason": canary["verdict"],
        }
    ctx.services.tables.put_image_version(ctx.pool.name, names["version"], record)


def point(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The model at the new version (PATCH with If-Match); with a canary, then add one."""
    target = state["names"]["version_id"]
    got = _set_image(ctx, state, "point", {"id": target}, step="point", expect=None)
    if got is not None:
        return got
    return Next("canary_add" if ctx.pool.image.canary else "cleanup", state)


def _set_image(
    ctx: StepContext,
    state: dict[str, Any],
    key: str,
    image: Mapping[str, str],
    *,
    step: str,
    expect: str | None,
) -> Outcome | None:
    """PATCH the model's image reference to `image` (the other reference fields cleared), with
    the ETag of a fresh read; None once the model has it. Pointing keeps what the model had as
    `previous` (the rollback target, from the read the PATCH is conditional on); restoring
    (`expect`: our version) leaves a model someone else changed since alone. A 412 or a busy
    scale set re-reads and tries again a while later."""
    ops = state.setdefault("ops", {})
    if key not in ops:
        try:
            model = images(ctx).model(ctx.pool.vmss_id)
        except TemporaryAzureError as error:
            return temporary_wait(step, state, error, ctx)
        if _same_image(model.image, image):
            ops[key] = {"ended": "Succeeded"}
            return None
        if expect is not None and (model.image_id or "").lower() != expect.lower():
            ctx.notes.append(f"the model was changed by someone else ({dict(model.image)}): left")
            ops[key] = {"ended": "Succeeded"}
            return None
        if key == "point":
            state["previous"] = dict(model.image)
        state[f"{key}_etag"] = model.etag
    reference = {f: image.get(f) for f in IMAGE_FIELDS}
    args = {"vmss_id": ctx.pool.vmss_id, "etag": state[f"{key}_etag"], "image_reference": reference}
    got = operation(ctx, state, key, "point_model", args, step=step)
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        tries = state.get(f"{key}_tries", 0) + 1
        if tries < MODEL_TRIES:  # 412, or another operation on the scale set: read again later
            forget(state, key)
            state[f"{key}_tries"] = tries
            return Wait(step, MODEL_RETRY, state, reason=f"model write refused: {got.code}")
        what = (
            f"the previous image was NOT restored (point the model back by hand to {dict(image)}; "
            "the canary is still there)"
            if key == "restore"
            else "the model was not changed"
        )
        state["failed"] = f"{what}: {got.code}: {got.message}"
        return Next("cleanup", state)
    return None


def _same_image(current: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(
        (current.get(f) or "").lower() == (wanted.get(f) or "").lower() for f in IMAGE_FIELDS
    )


def canary_add(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    got = child(ctx, state, "canary-add", JobKind.SCALE, {"delta": 1}, step="canary_add")
    if not isinstance(got, ChildEnded):
        return got
    added = (got.record.outcome or {}).get("added") or []
    if not added:
        state["canary"] = {"verdict": f"no canary added: {got.record.error or 'no instance'}"}
        return Next("rollback", state)
    state["canary"] = {
        "instance": added[0],
        "since": state.get("canary_since") or got.record.created_at,
        "scale_job": got.record.id,
    }
    return Next("canary_check", state)


def canary_check(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    canary = state["canary"]
    wanted = (ctx.pool.vmss_id.lower(), canary["instance"])
    nodes = ctx.services.kube.nodes()
    mine = next((n for n in nodes if n.scale_set_instance == wanted), None)
    others = {n.name: (n.boot_id, n.machine_id) for n in nodes if n is not mine}
    deadline = datetime.fromisoformat(canary["since"]) + timedelta(
        minutes=ctx.pool.image.canary_ready_minutes
    )
    verdict = judge_canary(
        CanaryNode(mine.name, mine.ready, mine.boot_id, mine.machine_id, mine.kernel)
        if mine
        else None,
        donor_kernel=state["donor"]["kernel"],
        others=others,
        deadline=deadline,
        now=ctx.now,
    )
    if verdict.state == "waiting":
        return Wait("canary_check", image_donor.POLL, state, reason=verdict.reason)
    canary |= {"node": mine.name if mine else None, "verdict": verdict.reason}
    canary["proven"] = verdict.state == "proven"
    record(ctx, state, status="proven" if canary["proven"] else "canary failed")
    return Next("include" if canary["proven"] else "rollback", state)


def include(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The proven version joins "latest" (a definition reference would pick it up too)."""
    args = at(state["names"]) | {"exclude": False, "snapshot_id": state["names"]["snapshot_id"]}
    got = operation(ctx, state, "include", "include_version", args, step="include")
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        ctx.notes.append(f"version not included in latest: {got.code}: {got.message}")
    record(ctx, state, status="in use")
    if not ctx.pool.image.canary:
        return Next("point", state)
    if ctx.pool.image.keep_canary:
        return Next("cleanup", state)
    return Next("canary_remove", state)


def canary_remove(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The canary goes the way every node goes: a scale job that drains and deletes it."""
    canary = state["canary"]
    if not canary.get("instance"):
        return Next("cleanup", state)  # none was added
    # A canary that never registered a node has nothing to drain: named by its instance.
    params = (
        {"nodes": [canary["node"]]} if canary.get("node") else {"instances": [canary["instance"]]}
    )
    got = child(ctx, state, "canary-remove", JobKind.SCALE, params, step="canary_remove")
    if not isinstance(got, ChildEnded):
        return got
    canary["removed"] = "drained and deleted" if got.done else f"not removed: {got.record.error}"
    return Next("cleanup", state)


def rollback(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The canary failed: the previous image back first (no new node boots the bad version),
    then the canary drained and deleted; the version stays excluded from latest."""
    got = _set_image(
        ctx,
        state,
        "restore",
        state["previous"],
        step="rollback",
        expect=state["names"]["version_id"],
    )
    if got is not None:
        return got
    state["failed"] = f"canary failed: {state['canary']['verdict']}"
    state["rolled_back"] = True
    record(ctx, state, status="rolled back", reason=state["failed"])
    return Next("strays", state)


def strays(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Instances other scale-ups (the autoscaler's, a P1's) added while the model pointed at the
    failed version booted it too: each is removed by a scale job (drained if it has a node);
    the autoscaler adds back what it needs, on the restored image."""
    if "strays" not in state:
        try:
            truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
        except TemporaryAzureError as error:
            return temporary_wait("strays", state, error, ctx)
        canary = (state.get("canary") or {}).get("instance")
        booted = {
            i: seen["node"]
            for i, seen in truth.record["instances"].items()
            if seen.get("image") == state["names"]["version"] and i != canary
        }
        state["strays"] = {
            "nodes": sorted(n for n in booted.values() if n),
            "instances": sorted(i for i, n in booted.items() if not n),
        }
    strays = state["strays"]
    for key, params in (
        ("strays-nodes", {"nodes": strays["nodes"]}),
        ("strays-instances", {"instances": strays["instances"]}),
    ):
        if not next(iter(params.values())):
            continue
        got = child(ctx, state, key, JobKind.SCALE, params, step="strays")
        if not isinstance(got, ChildEnded):
            return got
        strays[key] = "removed" if got.done else f"not removed: {got.record.error}"
    return Next("canary_remove", state)
