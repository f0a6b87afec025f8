"""Image jobs (`image-jobs`): a prototype image from a freshly patched node, proven on a canary.

plan (`shared.flows.image.plan`: donor, names; refusals) → gallery (gallery and definition
exist) → the donor's part (`shared.flows.image.donor`: take, drain, clean, power off, snapshot,
start, back) → version (from the snapshot, excluded from latest; ZRS falls back to LRS) →
replication (asked every few minutes; no function waits) → the canary half
(`shared.flows.image.canary`: point, canary_add, canary_check with its soak, include and
canary_remove, or rollback, strays, late_canary and canary_remove) → cleanup
(`shared.flows.image.cleanup`: the snapshot, a failed job's version, earlier runs' leftovers)
→ rollout (a patch job moves existing nodes to the
new model, when the pool asks for it) → finish. The abort (`_abort`) undoes what it can under the
same guards.

Every step is short and idempotent: Azure operations run through continuation tokens
(`ops.operation`), one-shot actions record their intent first (`ops.send_once`), scale-ups and
scale-ins are child jobs with all their guards (`ops.child`), and each name is fixed at plan
time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import FINAL
from shared.adapters.notify import Notifier
from shared.adapters.scaleset import OperationStatus, TemporaryAzureError
from shared.flows.image import canary as image_canary
from shared.flows.image import cleanup as image_cleanup
from shared.flows.image import donor as image_donor
from shared.flows.image import plan as image_plan
from shared.flows.image.ops import ChildEnded, child, forget, images, operation, tags
from shared.flows.jobs import Flow, StepContext, enqueue_once, register
from shared.flows.retries import temporary_wait
from shared.jobs import Done, Fail, JobKind, Next, Outcome, Wait

log = logging.getLogger("poolkeeper.image")

REPLICATION_POLL = timedelta(minutes=5)
REPLICATION_DEADLINE = timedelta(hours=6)


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
    late = _late_canary_left(ctx, state)
    if late:
        undone["canary"] = late
    return undone | image_cleanup.on_abort(ctx, state)


def _late_canary_left(ctx: StepContext, state: dict[str, Any]) -> str | None:
    """What a canary scale-up the job gave up as late may have left: it may still add an
    instance, or it ended having added one this job never took as its canary."""
    canary = state.get("canary") or {}
    adding = (state.get("children") or {}).get("canary-add")
    if not adding or not canary.get("late") or canary.get("instance"):
        return None
    try:
        record = ctx.services.tables.job(adding)
    except Exception as error:  # noqa: BLE001 - best effort: the abort goes on, and says so
        return f"the canary scale-up {adding} could not be read ({error}): check what it added"
    if record is None or record.status not in FINAL:
        return (
            f"the canary scale-up {adding} has not ended and may still add an instance: once it "
            "ends, remove what it added with a scale job naming it"
        )
    added = (record.outcome or {}).get("added") or []
    if added and not canary.get("late_add", "").endswith("already gone"):
        return (
            f"the canary scale-up {adding} added {', '.join(added)} late: remove it with a scale "
            "job naming it, unless the strays step did"
        )
    return None


register(
    JobKind.IMAGE,
    Flow(
        first_step="plan",
        steps={
            "plan": image_plan.plan,
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
            "late_canary": image_canary.late_canary,
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
