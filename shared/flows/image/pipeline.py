"""Image jobs (`image-jobs`): a prototype image from a freshly patched node, proven on a canary.

plan (donor, names; refusals) → gallery (gallery and definition exist) → the donor's part
(`shared.flows.image.donor`: take, drain, clean, power off, snapshot, start, back) → version
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
from shared.adapters.scaleset import OperationStatus, TemporaryAzureError
from shared.decide.claims import parse_claim
from shared.decide.counting import InstanceState
from shared.decide.imaging import (
    DonorCandidate,
    choose_donor,
    model_change_refusal,
    parse_image_ref,
    version_key,
    version_name,
)
from shared.flows.image import canary as image_canary
from shared.flows.image import cleanup as image_cleanup
from shared.flows.image import donor as image_donor
from shared.flows.image.ops import ChildEnded, child, forget, images, operation, tags
from shared.flows.jobs import Flow, StepContext, enqueue_once, register
from shared.flows.retries import temporary_wait
from shared.flows.truth import read_truth
from shared.jobs import Done, Fail, ImageParams, JobKind, Next, Outcome, Wait

log = logging.getLogger("poolkeeper.image")

PATCH_WAIT = timedelta(minutes=5)
# A window's patch rollout ends within it (blocked at most 2 h): one still running is stuck.
PATCH_WAIT_LIMIT = timedelta(hours=12)
REPLICATION_POLL = timedelta(minutes=5)
REPLICATION_DEADLINE = timedelta(hours=6)
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
        got = operation(
            ctx, state, "delete_failed", "delete_version", image_canary.at(names), step="version"
        )
        if not isinstance(got, OperationStatus):
            return got
        forget(state, "version", "delete_failed")
        state.pop("delete_failed")
    args = image_canary.at(names) | {
        "location": state["donor"]["location"],
        "snapshot_id": names["snapshot_id"],
        "replicas": settings.replicas,
        "storage_type": storage,
        "tags": tags(ctx)
        | {"built-from": state["donor"]["name"], "kernel": state["donor"]["kernel"]},
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
        image_canary.record(ctx, state, status="failed", reason=state["failed"])
        return Next("cleanup", state)
    image_canary.record(ctx, state, status="replicating", storage=storage)
    state["version_since"] = ctx.now.isoformat()
    return Next("replication", state)


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
        image_canary.record(ctx, state, status="failed", reason=why)
        return Next("cleanup", state)
    if found.provisioning != "Succeeded" or found.replication not in (None, "Completed"):
        progress = ", ".join(f"{r} {s}" for r, s in found.regions.items()) or found.provisioning
        return Wait("replication", REPLICATION_POLL, state, reason=f"replicating: {progress}")
    image_canary.record(ctx, state, status="published")
    return Next("point" if ctx.pool.image.canary else "include", state)


def _cleanup(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Every way out of a job that made something passes here: the snapshot deleted; a failed
    job's version too, unless the model resolves to it or an instance runs it; then what
    earlier runs of the pool left, and versions beyond the history. What stays is said."""
    got = image_cleanup.snapshot(ctx, state, step="cleanup")
    if not isinstance(got, OperationStatus):
        return got
    if state.get("failed"):
        waiting = image_cleanup.own_version(ctx, state, step="cleanup")
        if waiting is not None:
            return waiting
    if "earlier" not in state:
        state["earlier"] = image_cleanup.earlier(ctx, state)
    proven = (state.get("canary") or {}).get("proven") or not ctx.pool.image.canary
    if proven and not state.get("failed") and ctx.pool.image.rollout == "rolling":
        return Next("rollout", state)
    return _finish(ctx, state)


def _rollout(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Existing nodes move to the new model: a patch job in upgrade mode (one node at a time,
    with the patch rollout's headroom, blockers and drains)."""
    # No deadline of its own: the patch job bounds its waits and halts; meanwhile the image job
    # holds nothing (no claim, no model change to undo).
    got = child(
        ctx, state, "rollout", JobKind.PATCH, {"action": "upgrade"}, step="rollout", within=None
    )
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
        "model_left": (state.get("restore") or {}).get("left"),  # changed by someone: not restored
        "strays": state.get("strays"),
        "previous_image": state.get("previous"),
        "leftovers": state.get("leftovers", {}),  # this job's: deleted, or why not
        "earlier": state.get("earlier", {}),  # earlier runs' snapshots, and pruned versions
        "rollout": state.get("rollout"),
        "storage_type": state.get("storage_type"),
    }


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up: the donor is started and given back; a model this job pointed at an unproven
    version is pointed back under the rollback's guards; the job's version (unless in use) and
    snapshot are deleted. Each is best effort, and what could not be done is said."""
    undone = image_donor.give_back(ctx, state)
    canary = state.get("canary") or {}
    if canary.get("instance") and "removed" not in canary:
        undone["canary"] = (
            f"instance {canary['instance']} ({canary.get('node') or 'no node'}) is still there: "
            "remove it with a scale job naming it"
        )
    model = image_canary.restore_on_abort(ctx, state)
    if model:
        undone["model"] = model
    return undone | image_cleanup.on_abort(ctx, state)


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
            "point": image_canary.point,
            "canary_add": image_canary.canary_add,
            "canary_check": image_canary.canary_check,
            "include": image_canary.include,
            "canary_remove": image_canary.canary_remove,
            "rollback": image_canary.rollback,
            "strays": image_canary.strays,
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
