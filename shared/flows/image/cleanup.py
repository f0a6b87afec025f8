"""What an image job leaves behind, removed on every way out: its snapshot and, when the job
failed, its version (unless the model resolves to it or an instance runs it) — by the cleanup
step, or by the abort — and what earlier runs of the pool left: snapshots, found by their
`poolkeeper-pool` tag, and failed or rolled-back versions; never one in use. What cannot go is
said in the job's outcome, with why. Called by `shared.flows.image.pipeline`.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.scaleset import AzureCallError, OperationStatus, TemporaryAzureError
from shared.decide.imaging import parse_image_ref, versions_in_use, versions_to_prune
from shared.flows.image.canary import at
from shared.flows.image.ops import JOB_TAG, POOL_TAG, images, operation
from shared.flows.jobs import StepContext
from shared.flows.retries import temporary_wait
from shared.jobs import Outcome

GONE = ("ResourceNotFound", "NotFound")
LATER = "the next image run of the pool deletes it"


def kept(state: dict[str, Any]) -> bool:
    """Is the job's version a good one (proven by its canary, or let into latest)?"""
    included = (state.get("ops") or {}).get("include") or {}
    return bool((state.get("canary") or {}).get("proven")) or included.get("ended") == "Succeeded"


def in_use(ctx: StepContext, definition_id: str) -> dict[str, str]:
    """Why each version of the definition must stay, from fresh reads: the scale set's model
    and every instance, and the definition's versions."""
    scale = ctx.services.scale_sets.read(ctx.pool.vmss_id)
    versions = images(ctx).versions(definition_id)
    return versions_in_use(
        [(v.name, v.provisioning, v.exclude_from_latest) for v in versions],
        model=parse_image_ref(scale.model_image.get("id")),
        definition_id=definition_id,
        running={i.instance_id: i.image for i in scale.instances if i.image},
    )


def snapshot(ctx: StepContext, state: dict[str, Any], *, step: str) -> OperationStatus | Outcome:
    """The job's snapshot deleted (waited for); a refusal is noted for the next run."""
    snapshot_id = state["names"]["snapshot_id"]
    args = {"snapshot_id": snapshot_id}
    got = operation(ctx, state, "delete_snapshot", "delete_snapshot", args, step=step)
    if isinstance(got, OperationStatus) and got.state == "Failed" and got.code not in GONE:
        _left(state)["snapshot"] = f"not deleted ({got.code}: {got.message}): {LATER}"
    return got


def own_version(ctx: StepContext, state: dict[str, Any], *, step: str) -> Outcome | None:
    """A failed job's version deleted (waited for), re-checked right before: not when it is a
    kept one, nor while the model resolves to it or an instance runs it (kept, and said why)."""
    names = state["names"]
    if "delete_version" not in state.get("ops", {}):
        if kept(state):
            return None
        try:
            found = images(ctx).version(names["version_id"])
            why = in_use(ctx, names["definition_id"]).get(names["version"]) if found else None
        except TemporaryAzureError as error:
            return temporary_wait(step, state, error, ctx)
        except AzureCallError as error:
            _left(state)["version"] = f"not deleted ({error.code}: {error.message}): {LATER}"
            return None
        if found is None:
            return None
        if why:
            _left(state)["version"] = f"kept: {why}; {LATER} once nothing uses it"
            return None
    got = operation(ctx, state, "delete_version", "delete_version", at(names), step=step)
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed" and got.code not in GONE:
        _left(state)["version"] = f"not deleted ({got.code}: {got.message}): {LATER}"
    else:
        _left(state)["version"] = "deleted"
    return None


def earlier(ctx: StepContext, state: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Earlier runs' leftovers, deletes begun (not waited for): the pool's other snapshots (by
    tag), and versions beyond the history, failed and rolled-back ones first."""
    names = state["names"]
    try:
        use = in_use(ctx, names["definition_id"])
    except AzureCallError as error:
        return {"error": {"reads": f"nothing deleted ({error.code}: {error.message})"}}
    return {"snapshots": _snapshots(ctx, state), "versions": _prune(ctx, state, use)}


def _snapshots(ctx: StepContext, state: dict[str, Any]) -> dict[str, str]:
    own = state["names"]["snapshot_id"]
    group = own.split("/providers/", 1)[0]
    try:
        found = images(ctx).snapshots(group)
    except AzureCallError as error:
        return {"error": f"not listed ({error.code}: {error.message})"}
    running = set(ctx.services.tables.unfinished_jobs(ctx.pool.name, "image")) - {ctx.job.id}
    done: dict[str, str] = {}
    for each in found:
        if each.tags.get(POOL_TAG) != ctx.pool.name or each.id.lower() == own.lower():
            continue
        if each.provisioning == "Deleting":
            continue
        if each.tags.get(JOB_TAG) in running:  # its job still needs it
            done[each.name] = f"kept: job {each.tags[JOB_TAG]} is still running"
            continue
        ctx.before_write()
        try:
            images(ctx).begin("delete_snapshot", snapshot_id=each.id)
            done[each.name] = "deleting"
        except AzureCallError as error:
            done[each.name] = f"not deleted: {error.code}"
    return done


def _prune(ctx: StepContext, state: dict[str, Any], use: dict[str, str]) -> dict[str, str]:
    """Versions beyond the history, failed and rolled-back (still excluded) ones first; never one
    in use, the one before the model's (the rollback target), or this job's (its own clean-up
    decides)."""
    names = state["names"]
    try:
        versions = images(ctx).versions(names["definition_id"])
    except AzureCallError as error:
        return {"error": f"{error.code}: {error.message}"}
    # The image the model had before this job (the rollback target) as if the model named it.
    before = versions_in_use(
        [(v.name, v.provisioning, v.exclude_from_latest) for v in versions],
        model=parse_image_ref(state["previous"].get("id")),
        definition_id=names["definition_id"],
        running={},
    )
    protected = set(use) | set(before) | {names["version"]}
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
            images(ctx).begin("delete_version", **(at(names) | {"version": name}))
            pruned[name] = "deleting"
        except AzureCallError as error:
            pruned[name] = f"not deleted: {error.code}"
    return pruned


def on_abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, str]:
    """An aborted job's version and snapshot: deletes begun, not waited for (an abort does not
    wait), each re-checked right before; what stays is said, with why."""
    names = state.get("names")
    reached = "snapshot" in (state.get("ops") or {}) or (state.get("donor") or {}).get("cleaned_at")
    if not names or not reached:
        return {}  # nothing made yet: the snapshot, after the power-off, is the job's first
    undone: dict[str, str] = {}
    version = _abort_version(ctx, state)
    if version:
        undone["version"] = version
    try:
        if images(ctx).snapshot_state(names["snapshot_id"]) is not None:
            ctx.before_write()
            images(ctx).begin("delete_snapshot", snapshot_id=names["snapshot_id"])
            undone["snapshot"] = f"deleting {names['snapshot_id']}"
    except AzureCallError as error:
        undone["snapshot"] = f"not deleted ({error.code}: {error.message}): {LATER}"
    return undone


def _abort_version(ctx: StepContext, state: dict[str, Any]) -> str | None:
    names = state["names"]
    if kept(state):
        return None
    pending = (state.get("point") or {}).get("intent") and "point" not in state.get("ops", {})
    try:
        if images(ctx).version(names["version_id"]) is None:
            return None
        if pending:
            return f"kept: this job's model write to it got no answer and may still land; {LATER}"
        why = in_use(ctx, names["definition_id"]).get(names["version"])
        if why:
            return f"kept: {why}; {LATER} once nothing uses it"
        ctx.before_write()
        images(ctx).begin("delete_version", **at(names))
    except AzureCallError as error:
        return f"not deleted ({error.code}: {error.message}): {LATER}"
    return f"deleting {names['version_id']}"


def _left(state: dict[str, Any]) -> dict[str, Any]:
    return state.setdefault("leftovers", {})
