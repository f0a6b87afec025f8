"""A pool's truth: a full, fresh read of the scale set and its nodes, recorded in the pool table.

Every flow calls `read_truth` before a decision and after every delete (invariants 3 and 4);
what it records is what `GET /api/pools/{name}` shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.history import CountHistory
from shared.config import Pool
from shared.decide.claims import parse_claim, stalled_claim
from shared.decide.counting import (
    InstanceState,
    NodeView,
    Observation,
    ScaleSetState,
    count,
    match_nodes,
    observe,
)

log = logging.getLogger("poolkeeper.truth")

NODE_GRACE = timedelta(minutes=10)  # a live instance may take this long to register its node
STUCK_AFTER = timedelta(minutes=20)  # Creating or Deleting longer than this is drift


@dataclass(frozen=True)
class Truth:
    state: ScaleSetState
    nodes: list[NodeView] | None  # None when the cluster could not be read
    record: dict[str, Any]


def _nodes(services: Any, pool: Pool) -> tuple[list[NodeView] | None, str | None]:
    try:
        return [node.view() for node in services.kube_for(pool).nodes()], None
    except Exception as error:  # noqa: BLE001 - reported in the record; counting goes on
        return None, f"cluster {pool.cluster} not readable: {error}"


def _claim_summary(raw: str) -> dict[str, Any]:
    claim = parse_claim(raw)
    return {"job": claim.job, "kind": claim.kind, "since": claim.at} if claim else {}


def read_truth(
    services: Any, pool: Pool, now: datetime, *, job_id: str | None = None, lease: Any = None
) -> Truth:
    """Re-read the pool in full (scale set, every instance, the nodes) and record it."""
    state = services.scale_sets.read(pool.vmss_id)
    nodes, cluster_error = _nodes(services, pool)
    previous_record = services.tables.pool_status(pool.name) or {}
    previous = {
        instance_id: Observation(InstanceState(o["state"]), datetime.fromisoformat(o["since"]))
        for instance_id, o in (previous_record.get("observations") or {}).items()
    }
    observations, drifts = observe(
        state,
        nodes or [],
        previous,
        now,
        grace=NODE_GRACE,
        stuck_after=STUCK_AFTER,
        node_group=pool.node_group,
    )
    if nodes is None:  # without the cluster, node drift is unknown, not "no nodes"
        drifts = [
            d
            for d in drifts
            if d.kind.value not in ("instance_without_node", "node_without_instance")
        ]
    matching = match_nodes(state, nodes or [], pool.node_group)
    views = {node.name: node for node in nodes or []}
    counts = count(state)
    record = {
        "pool": pool.name,
        "vmss_id": pool.vmss_id,
        "capacity": state.capacity,
        "etag": state.etag,
        "counts": counts.as_dict(),
        "model_image": state.model_image,
        "instances": {
            i.instance_id: {
                "computer_name": i.computer_name,
                "state": o.state.value,
                "node": matching.pairs.get(i.instance_id),
                "kernel": view.kernel if view else None,
                "last_patched": view.last_patched if view else None,
                "ready": view.ready if view else None,
                "cordoned": view.unschedulable if view else None,
                "latest_model": i.latest_model,
                "image": i.image,
                "zone": i.zone,
                "failure": i.failure,
            }
            for i in state.instances
            for o in [observations[i.instance_id]]
            for view in [views.get(matching.pairs.get(i.instance_id, ""))]
        },
        "observations": {
            k: {"state": v.state.value, "since": v.since.isoformat()}
            for k, v in observations.items()
        },
        "drift": [
            {
                "kind": d.kind.value,
                "detail": d.detail,
                "instances": list(d.instance_ids),
                "nodes": list(d.node_names),
            }
            for d in drifts
        ],
        "claims": {
            node.name: _claim_summary(node.claim)
            for node in nodes or []
            if node.claim and node.name in matching.pairs.values()
        },
        "cluster_error": cluster_error,
        "read_at": now.isoformat(),
        "by_job": job_id,
    }
    if lease is not None:
        lease.check()  # a step that lost the pool must not overwrite a newer holder's record
    services.tables.put_pool_status(pool.name, record)
    CountHistory(services.tables).note(pool.name, record, now)
    if drifts:
        log.warning("Pool %s drift: %s", pool.name, "; ".join(d.detail for d in drifts))
    return Truth(state, nodes, record)


def public_status(record: dict[str, Any]) -> dict[str, Any]:
    """What the operator endpoints show of a recorded truth."""
    return {key: value for key, value in record.items() if key != "observations"}


def stalled_claims(services: Any, record: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The claims on the pool's nodes (as its last read saw them) whose job is alive but has
    not acted on a deadline it recorded: node, job, kind, step, since, deadline."""
    found = []
    for node, held in sorted((record.get("claims") or {}).items()):
        job_id = held.get("job")
        job = services.tables.job(job_id) if job_id and job_id != "?" else None
        stalled = job and stalled_claim(node, job.status, job.step, job.state, now)
        if stalled:
            found.append({"job": job.id, "kind": job.kind} | stalled)
    return found
