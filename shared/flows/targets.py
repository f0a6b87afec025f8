"""Is what a job names in its pool? Asked by `POST /api/jobs` (`shared.flows.jobs.submit`) before a
job is recorded, so that a scale, drain, patch or repair job naming an instance or node outside
its pool is refused with 422 instead of running to a failure or "nothing to repair" (invariant
8). Fresh reads, through the caller's clients (the intake's give up within seconds).
"""

from __future__ import annotations

from typing import Any

from shared.adapters.scaleset import AzureCallError
from shared.config import Pool
from shared.jobs import DrainParams, Job, PatchParams, RepairParams, ScaleParams

MAX_LISTED = 20  # instance ids named in a refusal


class TargetsUnknown(Exception):
    """Azure or the cluster did not answer: whether the targets are in the pool is not known."""


def named(job: Job) -> tuple[list[str], list[str]]:
    """The instance ids and node names a job's params name (none for kinds that name none)."""
    params = job.typed_params()
    if isinstance(params, RepairParams):
        return [params.instance] if params.instance else [], [params.node] if params.node else []
    if isinstance(params, ScaleParams):
        return list(params.instances), list(params.nodes)
    if isinstance(params, DrainParams):
        return [], [params.node]
    if isinstance(params, PatchParams):
        return [], list(params.nodes)
    return [], []


def outside_pool(services: Any, job: Job) -> str | None:
    """Why the job names an instance or node that is not in its pool (None: it names none, or
    all are in it). An instance must be one of the pool's scale-set instances; a node a node of
    the pool's node group or scale set, or the computer name of one of those instances (a VM
    whose node never registered). `TargetsUnknown` when they cannot be read."""
    wanted_instances, wanted_nodes = named(job)
    if not wanted_instances and not wanted_nodes:
        return None
    pool = services.config.pool(job.pool)
    try:
        instances = services.scale_sets.read(pool.vmss_id).instances
    except AzureCallError as error:
        raise TargetsUnknown(
            f"pool {pool.name}: Azure did not answer the read of its scale set {pool.vmss_id}: "
            f"{error}"
        ) from error
    problems = []
    ids = sorted((i.instance_id for i in instances), key=int)
    for instance in wanted_instances:
        if instance not in ids:
            problems.append(
                f"instance {instance} is not in pool {pool.name} (scale set {pool.vmss_id} has "
                f"{', '.join(ids[:MAX_LISTED]) or 'none'}{' ...' if len(ids) > MAX_LISTED else ''})"
            )
    computer_names = {i.computer_name for i in instances}
    for name in wanted_nodes:
        if name in computer_names:
            continue
        why = _not_in_pool(services, name, pool)
        if why:
            problems.append(f"node {name} is not in pool {pool.name}: {why}")
        if len(problems) >= MAX_LISTED:
            break
    return "; ".join(problems) or None


def _not_in_pool(services: Any, name: str, pool: Pool) -> str | None:
    try:
        node = services.kube_for(pool).node(name)
    except Exception as error:  # any failure: the cluster did not answer
        raise TargetsUnknown(
            f"pool {pool.name}: cluster {pool.cluster} did not answer for node {name}: {error}"
        ) from error
    if node is None:
        return "the cluster has no node of that name"
    view = node.view()
    if view.node_group == pool.node_group or view.vmss_id == pool.vmss_id.lower():
        return None
    return (
        f"its node group is {view.node_group!r} and its scale set {view.vmss_id}; the pool's are "
        f"{pool.node_group!r} and {pool.vmss_id}"
    )
