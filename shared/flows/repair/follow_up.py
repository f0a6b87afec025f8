"""Reconcile's follow-up on drift: the repair plan on a full read (shared by reconcile and the
repair job, `shared.decide.repair` decides), the brake notice, and the repair job it enqueues."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from shared.adapters.notify import Notifier
from shared.adapters.repair_log import RepairLog
from shared.config import Pool
from shared.decide.claims import parse_claim
from shared.decide.counting import InstanceState
from shared.decide.repair import (
    NO_REPAIR_ANNOTATION,
    QUARANTINE_ANNOTATION,
    Member,
    RepairPlan,
    attempt_id,
    in_flight,
    plan_repair,
)
from shared.flows.image.canary import CANARY_STEPS
from shared.flows.jobs import StepContext, enqueue
from shared.flows.truth import Truth
from shared.jobs import JobKind

log = logging.getLogger("poolkeeper.repair")


def _member(name: str, instance_id: str | None, state: Any, since: datetime, node: Any) -> Member:
    found = parse_claim(node.claim) if node is not None else None
    annotations = node.annotations if node is not None else {}
    return Member(
        name=name,
        instance_id=instance_id,
        state=state,
        since=since,
        has_node=node is not None,
        ready=bool(node and node.ready),
        ready_since=node.ready_since if node is not None else None,
        claim_job=found.job if found else None,
        claim_kind=found.kind if found else None,
        no_repair=annotations.get(NO_REPAIR_ANNOTATION, "").lower() == "true",
        quarantined=QUARANTINE_ANNOTATION in annotations,
    )


def members(truth: Truth, nodes: list[Any], now: datetime) -> list[Member]:
    """The pool's instances with their nodes, and its nodes without an instance, as the repair
    decisions see them (from a full read and a fresh node list)."""
    by_name = {node.name: node for node in nodes}
    observations = truth.record["observations"]
    found = [
        _member(
            seen["node"] or seen["computer_name"],
            instance_id,
            InstanceState(seen["state"]),
            datetime.fromisoformat(observations[instance_id]["since"]),
            by_name.get(seen["node"]) if seen["node"] else None,
        )
        for instance_id, seen in truth.record["instances"].items()
    ]
    for drift in truth.record["drift"]:
        if drift["kind"] != "node_without_instance":
            continue
        for name in drift["nodes"]:
            node = by_name.get(name)
            if node is not None:  # NotReady since it lost its VM; a Ready one is not counted
                since = node.ready_since if not node.ready and node.ready_since else now
                found.append(_member(name, None, None, since, node))
    return found


def plan_for(
    services: Any, pool: Pool, truth: Truth, now: datetime, *, target: str | None = None
) -> RepairPlan:
    """The repair plan on this full read, with a fresh node list and the pool's repair log."""
    nodes = services.kube_for(pool).nodes()
    return plan_repair(
        pool.name,
        members(truth, nodes, now),
        pool.repair,
        RepairLog(services.tables).entries(pool.name),
        now,
        cluster_nodes=len(nodes),
        cluster_not_ready=sum(1 for node in nodes if not node.ready),
        target=target,
    )


def notify(
    services: Any, pool: str, kind: str, severity: str, now: datetime, message: str, **values: Any
) -> None:
    try:
        Notifier(services.queues, services.settings).send(
            pool=pool, kind=kind, severity=severity, at=now, values=values, message=message
        )
    except Exception as error:  # noqa: BLE001 - the ledger and the log carry it anyway
        log.error("Pool %s: notifying %s failed: %s (%s)", pool, kind, error, message)


def brake_notice(services: Any, pool: str, brake: str | None, now: datetime) -> None:
    """Tell once when the brake comes on (and note when it is off again)."""
    repair_log = RepairLog(services.tables)
    noted = repair_log.brake(pool)
    if brake is None:
        if noted:
            repair_log.set_brake(pool, None)
        return
    if noted:
        return
    repair_log.set_brake(pool, {"since": now.isoformat(), "reason": brake})
    log.warning("Pool %s: repair brake: %s", pool, brake)
    notify(services, pool, "repair_brake", "P1", now, f"no repair in pool {pool}: {brake}")


def canary_in_progress(services: Any, pool: str) -> str | None:
    """An image job proving a version: its canary may be NotReady on purpose, and its outcome
    (keep, or roll back and remove the canary and the strays) is the image job's to decide."""
    for job_id in services.tables.unfinished_jobs(pool, "image"):
        record = services.tables.job(job_id)
        if record is not None and record.step in CANARY_STEPS:
            return f"image job {job_id} is proving a new image on a canary ({record.step})"
    return None


def follow_up(ctx: StepContext, truth: Truth, *, dry_run: bool) -> dict[str, Any]:
    """Reconcile's follow-up on drift: the repair job it enqueued (one in flight a pool, one id
    per episode of a problem, so a second reconcile adds nothing), or why none."""
    services, pool, now = ctx.services, ctx.pool, ctx.now
    if not pool.repair.enabled or truth.nodes is None:
        return {}
    plan = plan_for(services, pool, truth, now)
    if not dry_run:
        brake_notice(services, pool.name, plan.brake, now)
    if plan.action is None:
        return {"repair": plan.describe()} if plan.findings else {}
    described = plan.describe()
    if dry_run:
        return {"repair": described | {"dry_run": True}}
    repair_log = RepairLog(services.tables)
    entries = repair_log.entries(pool.name)
    job_id = attempt_id(plan.action.job_id, entries)
    statuses = {
        str(e["job"]): (record.status if (record := services.tables.job(str(e["job"]))) else None)
        for e in entries
        if e.get("status") in ("queued", "running")
    }
    busy = in_flight(entries, statuses, now) or canary_in_progress(services, pool.name)
    if busy is not None:
        return {"repair": described | {"waits_for": busy}}
    earlier = services.tables.job(job_id)
    if earlier is not None:  # this episode was tried once (not refused): not tried again
        return {"repair": described | {"already": f"{job_id} {earlier.status}"}}
    member = plan.action.finding.member
    params = {"instance": member.instance_id} if member.instance_id else {}
    if member.has_node:
        params["node"] = member.name
    enqueue(
        services,
        JobKind.REPAIR,
        pool.name,
        params,
        job_id=job_id,
        requested_by=f"reconcile:{ctx.job.id}",
        now=now,
    )
    finding = plan.action.finding
    repair_log.put(
        pool.name,
        {
            "job": job_id,
            "at": now.isoformat(),
            "status": "queued",
            "problem": finding.problem.value,
            "node": member.name,
            "instance": member.instance_id,
            "detail": finding.detail,
            "acted": False,
        },
        now,
    )
    return {"repair": described | {"enqueued": job_id}}
