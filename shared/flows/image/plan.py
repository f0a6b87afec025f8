"""The first step of an image job: refuse what must not be re-imaged (another image job, a patch
job still running, AKS or a self-upgrading scale set), choose the donor from fresh reads, and fix
every name the job will use (version, snapshot). Also the pool's gallery. Called by
`shared.flows.image.pipeline`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.images import Version
from shared.adapters.scaleset import TemporaryAzureError
from shared.config import Pool
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
from shared.flows.image.ops import images
from shared.flows.jobs import StepContext
from shared.flows.retries import temporary_wait
from shared.flows.truth import read_truth
from shared.jobs import Done, Fail, ImageParams, Next, Outcome, Wait

PATCH_WAIT = timedelta(minutes=5)
# A window's patch rollout ends within it (blocked at most 2 h): one still running is stuck.
PATCH_WAIT_LIMIT = timedelta(hours=12)
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
    """The job's pool's gallery (pool_gallery)."""
    return pool_gallery(ctx.pool)


def pool_gallery(pool: Pool) -> str:
    """The pool's gallery: configured, or `poolkeeper` in the scale set's resource group."""
    return pool.image.gallery or (
        f"/subscriptions/{pool.subscription_id}/resourceGroups/{pool.resource_group}"
        "/providers/Microsoft.Compute/galleries/poolkeeper"
    )


def snapshot_group(pool: Pool) -> str:
    """The resource group of the pool's donor snapshots: configured, or the scale set's."""
    return pool.image.snapshot_resource_group or pool.resource_group


def plan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
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
            f"/subscriptions/{ref[2]}/resourceGroups/{snapshot_group(ctx.pool)}/providers/"
            f"Microsoft.Compute/snapshots/poolkeeper-{ctx.pool.name}-{name.replace('.', '-')}"
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
    for node in ctx.kube.nodes():
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
