"""The canary half of an image job: point the model at the new version (If-Match, the image it
replaces kept for a rollback), add one instance by a scale job, judge its node, then keep the
version (include it in latest, remove the canary) or roll back (previous image, strays and canary
removed). Also the version's line in the pool's image lineage, which every half writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.scaleset import AzureCallError, OperationStatus, TemporaryAzureError
from shared.decide.imaging import (
    IMAGE_FIELDS,
    CanaryNode,
    judge_canary,
    restore_guard,
    same_image,
)
from shared.flows.image import donor as image_donor
from shared.flows.image.ops import (
    ChildEnded,
    ChildLate,
    Seen,
    child,
    images,
    operation,
    reset,
    send_once,
)
from shared.flows.jobs import StepContext
from shared.flows.retries import temporary_wait
from shared.flows.scale.job import READY_TIMEOUT
from shared.flows.truth import read_truth
from shared.jobs import JobKind, Next, Outcome, Wait

# From the model's change to the canary's removal: repair leaves the pool to the image job.
CANARY_STEPS = frozenset(
    {"point", "canary_add", "canary_check", "include", "rollback", "strays", "canary_remove"}
)
MODEL_TRIES = 10
MODEL_RETRY = timedelta(seconds=30)
# A model write whose answer was lost has landed within this, or never will (ARM applies it
# while answering; the If-Match fences a late one).
MODEL_SETTLE = timedelta(minutes=10)
# The canary's scale-up job waits for its node itself (READY_TIMEOUT after its write); beyond that
# and this, it is stuck (its plan or write never got through).
SCALE_GRACE = timedelta(minutes=40)
REMOVAL = timedelta(hours=3)  # a scale job that drains and deletes: drain, delete, settle


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
    got = _set_image(ctx, state, "point", {"id": target}, step="point")
    if got is not None:
        return got
    return Next("canary_add" if ctx.pool.image.canary else "cleanup", state)


def _set_image(
    ctx: StepContext, state: dict[str, Any], key: str, image: Mapping[str, str], *, step: str
) -> Outcome | None:
    """PATCH the model's image reference to `image` (the other reference fields cleared), with
    the ETag of a fresh read; None once the model has it. Pointing keeps what the model had as
    `previous` (the rollback target, from the read the PATCH is conditional on); restoring
    obeys `restore_guard`: only a model that still names this job's version is written, and one
    someone else changed since is left alone. The intent is recorded before the send
    (`state[key]["intent"]`); a 412 or a busy scale set re-reads and tries again a while later."""
    mine = state.setdefault(key, {})
    if key not in state.setdefault("ops", {}) and "intent" not in mine:
        try:
            model = images(ctx).model(ctx.pool.vmss_id)
        except TemporaryAzureError as error:
            return temporary_wait(step, state, error, ctx)
        if key == "restore":
            verdict, why = restore_guard(
                model.image, ours=state["names"]["version_id"], previous=image
            )
        else:
            verdict, why = ("done", "") if same_image(model.image, image) else ("write", "")
        if verdict != "write":
            if verdict == "left":
                ctx.notes.append(why)
                mine["left"] = why
            state["ops"][key] = {"ended": "Succeeded", "judged": why or "the model has it"}
            return None
        if key == "point":
            state["previous"] = dict(model.image)
        mine["etag"] = model.etag
    reference = {f: image.get(f) for f in IMAGE_FIELDS}
    got = send_once(
        ctx,
        state,
        key,
        "point_model",
        lambda: {"vmss_id": ctx.pool.vmss_id, "etag": mine["etag"], "image_reference": reference},
        step=step,
        expect={"image": dict(image), "if_match": mine.get("etag")},
        observe=lambda: _model_seen(ctx, image, mine.get("etag")),
        settle=MODEL_SETTLE,
    )
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        tries = mine.get("tries", 0) + 1
        if tries < MODEL_TRIES:  # 412, or another operation on the scale set: read again later
            reset(state, key)
            mine.pop("etag", None)
            mine["tries"] = tries
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


def _model_seen(ctx: StepContext, image: Mapping[str, str], etag: str | None) -> Seen:
    """A model write's effect: the model has the image (once its update is applied); or, with
    neither the image nor the ETag the write is conditional on, it can never land."""
    model = images(ctx).model(ctx.pool.vmss_id)
    if same_image(model.image, image):
        return "under way" if model.provisioning.lower() == "updating" else "done"
    return "absent" if model.etag == etag else "void"


def restore_on_abort(ctx: StepContext, state: dict[str, Any]) -> str | None:
    """The abort's model write, under exactly the rollback's guards: only when this job pointed
    the model at a version that is not proven; the model re-read right before the write, written
    only while it still names that version, with If-Match of that read's ETag; left alone, and
    said so, otherwise. Sent once: a rerun of the abort finds the previous image there."""
    names, previous = state.get("names"), state.get("previous")
    canary = state.get("canary") or {}
    pointing = "point" in state.get("ops", {}) or "intent" in (state.get("point") or {})
    if not names or previous is None or not pointing:
        return None
    if canary.get("proven") or not ctx.pool.image.canary:
        return None  # a kept version: the model is right to name it
    by_hand = f"point the model back by hand to {previous} if it names {names['version_id']}"
    try:
        model = images(ctx).model(ctx.pool.vmss_id)
        verdict, why = restore_guard(model.image, ours=names["version_id"], previous=previous)
        if verdict == "write":
            ctx.before_write()
            images(ctx).begin(
                "point_model",
                vmss_id=ctx.pool.vmss_id,
                etag=model.etag,
                image_reference={f: previous.get(f) for f in IMAGE_FIELDS},
            )
            return f"restoring the previous image {previous} (the model still named this job's)"
    except AzureCallError as error:
        return f"NOT restored ({error.code}: {error.message}): {by_hand}"
    if "point" not in state.get("ops", {}):  # a point whose answer was lost may still land
        sent = state["point"]["intent"]["at"]
        why += (
            f"; this job's model write sent at {sent} got no answer and may still land: {by_hand}"
        )
    return why


def canary_add(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """One instance added by a scale job, which waits for its node itself (READY_TIMEOUT); a
    scale job that has not ended by a while after that fails the canary."""
    state.setdefault("canary_since", ctx.now.isoformat())
    ready = timedelta(minutes=ctx.pool.image.canary_ready_minutes)
    within = max(ready, READY_TIMEOUT) + SCALE_GRACE
    got = child(
        ctx, state, "canary-add", JobKind.SCALE, {"delta": 1}, step="canary_add", within=within
    )
    if isinstance(got, ChildLate):
        why = got.why("the canary's scale-up")
        state["canary"] = {
            "verdict": f"{why}: {within} after it was asked, its deadline",
            "late": got.job_id,
        }
        return Next("rollback", state)
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
    nodes = ctx.kube.nodes()
    mine = next((n for n in nodes if n.scale_set_instance == wanted), None)
    others = {n.name: (n.boot_id, n.machine_id) for n in nodes if n is not mine}
    deadline = datetime.fromisoformat(canary["since"]) + timedelta(
        minutes=ctx.pool.image.canary_ready_minutes
    )
    seen = canary.get("ready_since")
    verdict = judge_canary(
        CanaryNode(
            mine.name, mine.ready, mine.boot_id, mine.machine_id, mine.kernel, mine.ready_since
        )
        if mine
        else None,
        donor_kernel=state["donor"]["kernel"],
        others=others,
        deadline=deadline,
        now=ctx.now,
        soak=timedelta(minutes=ctx.pool.image.canary_soak_minutes),
        ready_seen=datetime.fromisoformat(seen) if seen else None,
    )
    if verdict.ready_since and not seen:
        canary["ready_since"] = verdict.ready_since.isoformat()  # the soak starts
    if verdict.state == "waiting":
        return Wait("canary_check", image_donor.POLL, state, reason=verdict.reason)
    canary |= {"node": mine.name if mine else None, "verdict": verdict.reason}
    canary["proven"] = verdict.state == "proven"
    if canary["proven"]:
        canary["proven_at"] = ctx.now.isoformat()
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


def late_canary(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """A canary scale-up that missed its deadline may still add an instance (it was queued, or
    its write was slow): after the rollback, wait for it to end, within REMOVAL of its
    enqueueing, and take what it added as the canary to remove, if that is still there (the
    strays step may have taken it). Not a canary step: the model is restored, repair may act."""
    canary = state["canary"]
    got = child(
        ctx, state, "canary-add", JobKind.SCALE, {"delta": 1}, step="late_canary", within=REMOVAL
    )
    if isinstance(got, ChildLate):
        canary["late_add"] = f"not removed: {got.why('the canary scale-up')}"
        return Next("cleanup", state)
    if not isinstance(got, ChildEnded):
        return got
    added = (got.record.outcome or {}).get("added") or []
    if not added:
        canary["late_add"] = "ended without adding an instance"
        return Next("cleanup", state)
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("late_canary", state, error, ctx)
    seen = truth.record["instances"].get(added[0])
    if seen is None:
        canary["late_add"] = f"added {added[0]} late; already gone"
        return Next("cleanup", state)
    canary["late_add"] = f"added {added[0]} late"
    canary |= {"instance": added[0], "node": seen.get("node")}
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
    got = child(
        ctx, state, "canary-remove", JobKind.SCALE, params, step="canary_remove", within=REMOVAL
    )
    if isinstance(got, ChildLate):
        canary["removed"] = f"not removed: {got.why('the scale job')}"
        return Next("cleanup", state)
    if not isinstance(got, ChildEnded):
        return got
    canary["removed"] = "drained and deleted" if got.done else f"not removed: {got.record.error}"
    return Next("cleanup", state)


def rollback(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The canary failed: the previous image back first (no new node boots the bad version),
    then the canary drained and deleted; the version stays excluded from latest."""
    got = _set_image(ctx, state, "restore", state["previous"], step="rollback")
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
        got = child(ctx, state, key, JobKind.SCALE, params, step="strays", within=REMOVAL)
        if isinstance(got, ChildLate):
            strays[key] = f"not removed: {got.why('the scale job')}"
            continue
        if not isinstance(got, ChildEnded):
            return got
        strays[key] = "removed" if got.done else f"not removed: {got.record.error}"
    late = state["canary"].get("late") and not state["canary"].get("instance")
    return Next("late_canary" if late else "canary_remove", state)
