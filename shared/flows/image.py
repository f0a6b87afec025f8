"""Image jobs (`image-jobs`): a prototype image from a freshly patched node, proven on a canary.

plan (donor, names; refusals) → gallery (gallery and definition exist) → the donor's part
(`shared.flows.image_donor`: take, drain, clean, power off, snapshot, start, back) → version
(from the snapshot, excluded from latest; ZRS falls back to LRS) → replication (asked every few
minutes; no function waits) → point (the model at the new version, If-Match; the previous image
kept) → canary_add (a scale job adds one instance) → canary_check (Ready, its own boot id and
machine-id, the donor's kernel) → include (the version joins latest) and canary_remove, or
rollback (the previous image back, the canary drained and deleted, the version left excluded) →
cleanup (snapshot deleted, old versions pruned) → rollout (a patch job moves existing nodes to the
new model, when the pool asks for it) → finish.

Every step is short and idempotent: Azure operations run through continuation tokens
(`image_ops.operation`), scale-ups and scale-ins are child jobs with all their guards
(`image_ops.child`), and each name is fixed at plan time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.images import Version
from shared.adapters.notify import Notifier
from shared.adapters.scaleset import AzureCallError, OperationStatus, TemporaryAzureError
from shared.decide.claims import parse_claim
from shared.decide.counting import InstanceState
from shared.decide.imaging import (
    CanaryNode,
    DonorCandidate,
    choose_donor,
    judge_canary,
    model_change_refusal,
    parse_image_ref,
    version_key,
    version_name,
    versions_to_prune,
)
from shared.flows import image_donor
from shared.flows.image_ops import ChildEnded, child, forget, images, operation
from shared.flows.jobs import Flow, StepContext, enqueue_once, register
from shared.flows.retries import temporary_wait
from shared.flows.truth import read_truth
from shared.jobs import Done, Fail, ImageParams, JobKind, Next, Outcome, Wait

log = logging.getLogger("poolkeeper.image")

# From the model's change to the canary's removal: repair leaves the pool to the image job.
CANARY_STEPS = frozenset(
    {"point", "canary_add", "canary_check", "include", "rollback", "strays", "canary_remove"}
)
PATCH_WAIT = timedelta(minutes=5)
PATCH_WAIT_LIMIT = timedelta(
    hours=12
)  # a window's patch rollout ends by then (2 h blocked at most)
MODEL_TRIES = 10
MODEL_RETRY = timedelta(seconds=30)
REPLICATION_POLL = timedelta(minutes=5)
REPLICATION_DEADLINE = timedelta(hours=6)
IMAGE_FIELDS = (
    "id",
    "publisher",
    "offer",
    "sku",
    "version",
    "sharedGalleryImageId",
    "communityGalleryImageId",
)
STEPS = (
    "take the donor (claim, cordon, scale-down-disabled)",
    "drain it",
    "clean its identity and power it off from inside",
    "snapshot its OS disk",
    "start it, wait Ready, give it back",
    "create the image version (excluded from latest) and wait for replication",
    "canary: point the model at the version, add one instance, check its node",
    "keep (include in latest) or roll back (previous image, canary removed)",
    "delete the snapshot, prune old versions",
)


def _params(ctx: StepContext) -> ImageParams:
    params = ctx.job.typed_params()
    assert isinstance(params, ImageParams)
    return params


def gallery_id(ctx: StepContext) -> str:
    """The pool's gallery: configured, or `poolkeeper` in the scale set's resource group."""
    pool = ctx.pool
    return pool.image.gallery or (
        f"/subscriptions/{pool.subscription_id}/resourceGroups/{pool.resource_group}"
        "/providers/Microsoft.Compute/galleries/poolkeeper"
    )


def _plan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Fresh reads; refuse what must not be re-imaged; choose the donor; fix every name."""
    settings = ctx.pool.image
    others = [
        j for j in ctx.services.tables.unfinished_jobs(ctx.pool.name, "image") if j != ctx.job.id
    ]
    if others:
        # One image job per pool: two would point the model at each other's unproven versions,
        # and a roll-out in progress would move nodes to the newer one.
        return Fail(
            f"refused: image job {others[0]} is still running on this pool", {"refusal": "busy"}
        )
    patching = ctx.services.tables.unfinished_jobs(ctx.pool.name, "patch")
    if patching:
        # The patch job is about to take nodes, maybe the donor we would choose; and its
        # freshly patched nodes are the best donors once it has ended.
        since = datetime.fromisoformat(state.setdefault("patch_wait_since", ctx.now.isoformat()))
        if ctx.now - since > PATCH_WAIT_LIMIT:  # a patch job stuck in the ledger must not hold it
            return Fail(
                f"patch job {patching[0]} has not ended in {PATCH_WAIT_LIMIT}: not captured"
            )
        reason = f"waiting for patch job {patching[0]} to end"
        return Wait("plan", PATCH_WAIT, state, reason=reason)
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
        model = images(ctx).model(ctx.pool.vmss_id)
    except TemporaryAzureError as error:
        return temporary_wait("plan", state, error, ctx)
    refusal = model_change_refusal(
        model.tags, model.upgrade_mode, allow_upgrade_policy=settings.allow_upgrade_policy
    )
    if refusal:
        return Fail(f"refused: {refusal}", {"refusal": refusal})
    if truth.nodes is None:
        return Fail("cannot choose a donor: the cluster's nodes could not be read (fail safe)")
    gallery = gallery_id(ctx)
    definition = f"{gallery}/images/{ctx.pool.name}"
    try:
        versions = images(ctx).versions(definition)
    except TemporaryAzureError as error:
        return temporary_wait("plan", state, error, ctx)
    built_at = _built_at(model.image_id, definition, versions)
    candidates = _candidates(ctx, truth.record)
    chosen = choose_donor(
        candidates.values(),
        now=ctx.now,
        image_built_at=built_at,
        min_ready=timedelta(minutes=settings.min_ready_minutes),
        min_candidates=settings.min_candidates,
        max_image_age=(
            timedelta(days=settings.max_image_age_days) if settings.max_image_age_days else None
        ),
    )
    plan: dict[str, Any] = {
        "donor": chosen.donor,
        "candidates": list(chosen.candidates),
        "excluded": dict(chosen.excluded),
        "relaxed": chosen.relaxed,
        "current_image": dict(model.image),
        "current_built_at": built_at.isoformat() if built_at else None,
    }
    if chosen.donor is None:
        outcome = plan | {"published": None, "reason": chosen.why_none}
        return Done(outcome | ({"dry_run": True} if _params(ctx).dry_run else {}))
    donor = candidates[chosen.donor]
    assert donor.instance_id is not None
    name = version_name(ctx.now, [v.name for v in versions])
    ref = ctx.pool.vmss_id.split("/")
    names = {
        "gallery_id": gallery,
        "image": ctx.pool.name,
        "definition_id": definition,
        "version": name,
        "version_id": f"{definition}/versions/{name}",
        "snapshot_id": (
            f"/subscriptions/{ref[2]}/resourceGroups/{ref[4]}/providers/Microsoft.Compute/"
            f"snapshots/poolkeeper-{ctx.pool.name}-{name.replace('.', '-')}"
        ),
    }
    plan |= {"version": name, "steps": list(STEPS)}
    if _params(ctx).dry_run:
        return Done({"dry_run": True} | plan | {"names": names})
    try:
        disk = images(ctx).donor_disk(ctx.pool.vmss_id, donor.instance_id)
    except TemporaryAzureError as error:
        return temporary_wait("plan", state, error, ctx)
    kernel = next((n.kernel for n in truth.nodes if n.name == donor.name), "")
    return Next(
        "gallery",
        {
            "plan": plan,
            "names": names,
            "previous": dict(model.image),
            "donor": {
                "name": donor.name,
                "instance": donor.instance_id,
                "kernel": kernel,
                "disk_id": disk.os_disk_id,
                "hyper_v": disk.hyper_v_generation,
                "location": disk.location,
            },
        },
    )


def _built_at(image_id: str | None, definition: str, versions: list[Version]) -> datetime | None:
    """When the image the model runs was published, if it is one of this pool's versions."""
    current = parse_image_ref(image_id)
    if current is None or current.definition_id.lower() != definition.lower():
        return None
    usable = [v for v in versions if v.provisioning == "Succeeded"]
    if current.version:
        found = next((v for v in usable if v.name == current.version), None)
    else:
        latest = [v for v in usable if not v.exclude_from_latest]
        found = max(latest, key=lambda v: version_key(v.name), default=None)
    return found.published if found else None


def _candidates(ctx: StepContext, record: Mapping[str, Any]) -> dict[str, DonorCandidate]:
    """Every node of the pool as donor selection sees it."""
    instances = {seen["node"]: (i, seen) for i, seen in record["instances"].items() if seen["node"]}
    checks = ctx.services.tables.patch_status(ctx.pool.name)
    ignore = ctx.pool.image.ignore_annotation
    found: dict[str, DonorCandidate] = {}
    for node in ctx.services.kube.nodes():
        if node.name not in instances:
            continue
        instance_id, seen = instances[node.name]
        claim = parse_claim(node.claim)
        found[node.name] = DonorCandidate(
            name=node.name,
            instance_id=instance_id,
            live=seen["state"] == InstanceState.LIVE.value,
            ready=node.ready,
            ready_since=node.ready_since,
            unschedulable=node.unschedulable,
            claimed_by=claim.job if claim else None,
            reboot_pending=bool((checks.get(node.name) or {}).get("reboot_required")),
            last_patched=_time(node.view().last_patched),
            ignored=ignore in node.annotations,
        )
    return found


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _gallery(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The gallery and the pool's image definition exist (created once, by the first run)."""
    names, donor = state["names"], state["donor"]
    wanted = [
        ("gallery", "create_gallery", names["gallery_id"], {}),
        (
            "definition",
            "create_definition",
            names["definition_id"],
            {"hyper_v_generation": donor["hyper_v"], "offer": ctx.pool.resource_group},
        ),
    ]
    for key, op, resource_id, extra in wanted:
        if key not in state.get("ops", {}):
            try:
                if images(ctx).exists(key, resource_id):
                    state.setdefault("ops", {})[key] = {"ended": "Succeeded"}
                    continue
            except TemporaryAzureError as error:
                return temporary_wait("gallery", state, error, ctx)
        args = {
            "gallery_id": names["gallery_id"],
            "image": names["image"],
            "location": donor["location"],
        } | extra
        got = operation(ctx, state, key, op, args, step="gallery")
        if not isinstance(got, OperationStatus):
            return got
        if got.state == "Failed":
            return Fail(f"{key} not created: {got.code}: {got.message}", {"plan": state["plan"]})
    return Next("take_donor", state)


def _version(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The image version from the snapshot, excluded from latest until a canary proves it. A
    region without zones refuses ZRS: the failed version is deleted, then LRS is used."""
    names, settings = state["names"], ctx.pool.image
    storage = state.get("storage_type") or settings.storage_type
    if state.get("delete_failed"):
        got = operation(ctx, state, "delete_failed", "delete_version", _at(names), step="version")
        if not isinstance(got, OperationStatus):
            return got
        forget(state, "version", "delete_failed")
        state.pop("delete_failed")
    args = _at(names) | {
        "location": state["donor"]["location"],
        "snapshot_id": names["snapshot_id"],
        "replicas": settings.replicas,
        "storage_type": storage,
        "tags": {
            "poolkeeper-job": ctx.job.id,
            "built-from": state["donor"]["name"],
            "kernel": state["donor"]["kernel"],
        },
    }
    if "version" not in state.get("ops", {}):
        # A send whose token was never recorded (the worker died) made it already: adopt it,
        # and let the replication step follow its state.
        try:
            made = images(ctx).version(names["version_id"])
        except TemporaryAzureError as error:
            return temporary_wait("version", state, error, ctx)
        if made is not None and made.provisioning not in ("Failed", "Deleting"):
            state.setdefault("ops", {})["version"] = {"ended": "Succeeded"}
    got = operation(ctx, state, "version", "create_version", args, step="version")
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        if storage == "Standard_ZRS" and "zrs" in f"{got.code} {got.message}".lower():
            ctx.notes.append(f"ZRS refused ({got.code}): deleting the failed version, then LRS")
            state |= {"storage_type": "Standard_LRS", "delete_failed": True}
            return Next("version", state)
        state["failed"] = f"image version not created: {got.code}: {got.message}"
        _record(ctx, state, status="failed", reason=state["failed"])
        return Next("cleanup", state)
    _record(ctx, state, status="replicating", storage=storage)
    state["version_since"] = ctx.now.isoformat()
    return Next("replication", state)


def _at(names: Mapping[str, str]) -> dict[str, str]:
    return {"gallery_id": names["gallery_id"], "image": names["image"], "version": names["version"]}


def _replication(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Asked every few minutes: the version's own state and each region's replication."""
    try:
        found = images(ctx).version(state["names"]["version_id"])
    except TemporaryAzureError as error:
        return temporary_wait("replication", state, error, ctx)
    late = ctx.now - datetime.fromisoformat(state["version_since"]) > REPLICATION_DEADLINE
    if found is None or found.provisioning == "Failed" or found.replication == "Failed" or late:
        why = (
            "the version disappeared"
            if found is None
            else f"replication did not finish within {REPLICATION_DEADLINE}"
            if late
            else f"the version failed ({found.provisioning}, replication {found.replication})"
        )
        state["failed"] = why
        _record(ctx, state, status="failed", reason=why)
        return Next("cleanup", state)
    if found.provisioning != "Succeeded" or found.replication not in (None, "Completed"):
        progress = ", ".join(f"{r} {s}" for r, s in found.regions.items()) or found.provisioning
        return Wait("replication", REPLICATION_POLL, state, reason=f"replicating: {progress}")
    _record(ctx, state, status="published")
    return Next("point" if ctx.pool.image.canary else "include", state)


def _point(ctx: StepContext, state: dict[str, Any]) -> Outcome:
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


def _canary_add(ctx: StepContext, state: dict[str, Any]) -> Outcome:
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


def _canary_check(ctx: StepContext, state: dict[str, Any]) -> Outcome:
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
    _record(ctx, state, status="proven" if canary["proven"] else "canary failed")
    return Next("include" if canary["proven"] else "rollback", state)


def _include(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The proven version joins "latest" (a definition reference would pick it up too)."""
    args = _at(state["names"]) | {"exclude": False, "snapshot_id": state["names"]["snapshot_id"]}
    got = operation(ctx, state, "include", "include_version", args, step="include")
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        ctx.notes.append(f"version not included in latest: {got.code}: {got.message}")
    _record(ctx, state, status="in use")
    if not ctx.pool.image.canary:
        return Next("point", state)
    if ctx.pool.image.keep_canary:
        return Next("cleanup", state)
    return Next("canary_remove", state)


def _canary_remove(ctx: StepContext, state: dict[str, Any]) -> Outcome:
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


def _rollback(ctx: StepContext, state: dict[str, Any]) -> Outcome:
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
    _record(ctx, state, status="rolled back", reason=state["failed"])
    return Next("strays", state)


def _strays(ctx: StepContext, state: dict[str, Any]) -> Outcome:
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


def _cleanup(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Delete the snapshot; prune versions beyond the history, never the one in use or the one
    before it. Failures are noted and caught by the next run."""
    names = state["names"]
    got = operation(
        ctx,
        state,
        "delete_snapshot",
        "delete_snapshot",
        {"snapshot_id": names["snapshot_id"]},
        step="cleanup",
    )
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed" and got.code not in ("ResourceNotFound", "NotFound"):
        ctx.notes.append(f"snapshot not deleted: {got.code}: {got.message}")
    if "pruned" not in state:
        state["pruned"] = _prune(ctx, state)
    proven = (state.get("canary") or {}).get("proven") or not ctx.pool.image.canary
    if proven and not state.get("failed") and ctx.pool.image.rollout == "rolling":
        return Next("rollout", state)
    return _finish(ctx, state)


def _prune(ctx: StepContext, state: dict[str, Any]) -> dict[str, str]:
    names = state["names"]
    try:
        versions = images(ctx).versions(names["definition_id"])
        model = images(ctx).model(ctx.pool.vmss_id)
    except AzureCallError as error:
        return {"error": f"{error.code}: {error.message}"}
    refs = [parse_image_ref(model.image_id), parse_image_ref(state["previous"].get("id"))]
    # Never: the model's version and the one before it; with a definition reference, the
    # latest it resolves to; this job's version (its lineage line points at it); any version
    # an instance still runs (a reimage rebuilds from it).
    usable = [v for v in versions if v.provisioning == "Succeeded" and not v.exclude_from_latest]
    latest = max(usable, key=lambda v: version_key(v.name), default=None)
    protected = {ref.version for ref in refs if ref and ref.version} | {names["version"]}
    if latest and any(ref and ref.version is None for ref in refs):
        protected.add(latest.name)
    record = ctx.services.tables.pool_status(ctx.pool.name) or {}
    protected |= {i.get("image") for i in (record.get("instances") or {}).values()} - {None}
    pruned: dict[str, str] = {}
    for name in versions_to_prune(
        [v.name for v in versions],
        keep=ctx.pool.image.history,
        protected=protected,
        # Failed and rolled-back (still excluded) versions serve no node: they go first and
        # do not push good versions out of the history.
        failed=[v.name for v in versions if v.provisioning == "Failed" or v.exclude_from_latest],
    ):
        ctx.before_write()
        try:
            images(ctx).begin("delete_version", **(_at(names) | {"version": name}))
            pruned[name] = "deleting"
        except AzureCallError as error:
            pruned[name] = f"not deleted: {error.code}"
    return pruned


def _rollout(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Existing nodes move to the new model: a patch job in upgrade mode (one node at a time,
    with the patch rollout's headroom, blockers and drains)."""
    got = child(ctx, state, "rollout", JobKind.PATCH, {"action": "upgrade"}, step="rollout")
    if not isinstance(got, ChildEnded):
        return got
    state["rollout"] = {
        "job": got.record.id,
        "status": got.record.status,
        "upgraded": list(((got.record.outcome or {}).get("patched") or {}).keys()),
        "error": got.record.error,
    }
    return _finish(ctx, state)


def _finish(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    report = _report(state)
    if state.get("failed"):
        _notify(ctx, f"image job {ctx.job.id} for {ctx.pool.name} failed: {state['failed']}")
        return Fail(state["failed"], report)
    return Done(report)


def _notify(ctx: StepContext, message: str) -> None:
    """On-call hears of a failed or rolled-back image run (the nightly one runs unattended)."""
    try:
        Notifier(ctx.services.queues, ctx.services.settings).send(
            pool=ctx.pool.name,
            kind="image_failed",
            severity="P2",
            at=ctx.now,
            values={"job": ctx.job.id},
            message=message,
        )
    except Exception as error:  # noqa: BLE001 - the job's report carries it anyway
        log.error("Image %s: notifying the failure failed: %s", ctx.job.id, error)


def _report(state: dict[str, Any]) -> dict[str, Any]:
    donor = state.get("donor") or {}
    return {
        "version": (state.get("names") or {}).get("version_id"),
        "donor": {
            k: donor.get(k) for k in ("name", "kernel", "out_of_service", "note") if donor.get(k)
        },
        "excluded": (state.get("plan") or {}).get("excluded", {}),
        "canary": state.get("canary"),
        "rolled_back": bool(state.get("rolled_back")),
        "strays": state.get("strays"),
        "previous_image": state.get("previous"),
        "pruned": state.get("pruned", {}),
        "rollout": state.get("rollout"),
        "storage_type": state.get("storage_type"),
    }


def _record(ctx: StepContext, state: dict[str, Any], *, status: str, **extra: Any) -> None:
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


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up: the donor is started and given back; a model pointed at an unproven version
    is pointed back (best effort: reported if it cannot be)."""
    undone = image_donor.give_back(ctx, state)
    canary = state.get("canary") or {}
    proven = canary.get("proven") or not ctx.pool.image.canary
    pointed = "point" in state.get("ops", {}) and not proven
    if canary.get("instance") and "removed" not in canary:
        undone["canary"] = (
            f"instance {canary['instance']} ({canary.get('node') or 'no node'}) is still there: "
            "remove it with a scale job naming it"
        )
    if pointed and "restore" not in state.get("ops", {}):
        ctx.before_write()
        try:
            model = images(ctx).model(ctx.pool.vmss_id)
            reference = {f: state["previous"].get(f) for f in IMAGE_FIELDS}
            images(ctx).begin(
                "point_model",
                vmss_id=ctx.pool.vmss_id,
                etag=model.etag,
                image_reference=reference,
            )
            undone["model"] = f"restoring the previous image {state['previous']}"
        except AzureCallError as error:
            undone["model"] = f"NOT restored ({error.code}): point it back by hand"
    return undone


register(
    JobKind.IMAGE,
    Flow(
        first_step="plan",
        steps={
            "plan": _plan,
            "gallery": _gallery,
            "take_donor": image_donor.take,
            "drain_donor": image_donor.drain,
            "clean": image_donor.clean,
            "power_off": image_donor.power_off,
            "snapshot": image_donor.snapshot,
            "start_donor": image_donor.start,
            "donor_back": image_donor.back,
            "version": _version,
            "replication": _replication,
            "point": _point,
            "canary_add": _canary_add,
            "canary_check": _canary_check,
            "include": _include,
            "canary_remove": _canary_remove,
            "rollback": _rollback,
            "strays": _strays,
            "cleanup": _cleanup,
            "rollout": _rollout,
        },
        abort=_abort,
    ),
)


def enqueue_images(services: Any) -> list[str]:
    """The image timer: one image job per pool with `image.automatic`, once a day."""
    now = services.clock.now()
    enqueued = []
    for pool in services.config.pools:
        if not pool.image.automatic:
            continue
        job_id = f"image-{pool.name}-{now:%Y%m%d}"
        if enqueue_once(services, JobKind.IMAGE, pool.name, job_id, timer="image_timer"):
            enqueued.append(job_id)
    return enqueued
