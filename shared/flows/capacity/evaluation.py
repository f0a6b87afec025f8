"""The `evaluate_capacity` timer: usage of every pool over 1 h (and 24 h at the top of the hour),
P1/P2 evaluation, alert transitions recorded and notified, and the policy's scale-ups enqueued.

Pools are taken from their recorded truth (the reconcile's full read): the instances to expect
data for and their zones. A pool never reconciled is skipped, and said so.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import AlertLog, DailySummaries
from shared.adapters.notify import Notifier
from shared.adapters.usage import PoolRef, PoolUsage, UsageUnavailable, usage_source_from_settings
from shared.config import Pool
from shared.decide.capacity import (
    ActionKind,
    NodeUsage,
    PoolState,
    State,
    Thresholds,
    UsageWindow,
    decide_actions,
    evaluate,
)
from shared.flows.capacity.alerts import cooldown, scale_up_one

log = logging.getLogger("poolkeeper.capacity")

HOUR, DAY = timedelta(hours=1), timedelta(hours=24)
DAY_WINDOW_MINUTES = 5  # the 24 h window is evaluated in the first minutes of each hour


def _window(
    usage: PoolUsage | None, truth: dict[str, Any], length: timedelta, now: datetime
) -> UsageWindow | None:
    if usage is None:
        return None
    by_node = {v.get("node"): k for k, v in truth["instances"].items() if v.get("node")}
    nodes = []
    for key, node in usage.nodes.items():
        instance = key if usage.keyed_by == "instance_id" else by_node.get(key)
        if instance is None or instance not in truth["instances"]:
            continue
        nodes.append(
            NodeUsage(
                node=instance,
                zone=truth["instances"][instance].get("zone"),
                cpu=node.cpu_percent,
                memory=node.memory_percent,
                samples=node.samples,
                expected_samples=node.expected_samples,
            )
        )
    return UsageWindow(window=length, ends_at=now, nodes=tuple(nodes))


def _thresholds(pool: Pool) -> Thresholds:
    settings = pool.capacity
    return Thresholds(
        p1_cpu=settings.p1_cpu,
        p1_memory=settings.p1_memory,
        p2_cpu=settings.p2_cpu,
        p2_memory=settings.p2_memory,
    )


def _usage(
    source: Any, refs: list[PoolRef], length: timedelta, now: datetime
) -> tuple[dict[str, PoolUsage], str | None]:
    # Whole minutes: metric bins are minutes, and a window cut mid-minute is partial at both ends.
    end = now.replace(second=0, microsecond=0)
    try:
        return source.node_usage(refs, end - length, end), None
    except UsageUnavailable as error:
        return {}, f"usage for the last {length} unavailable: {error}"


def pool_thresholds(pool: Pool) -> Thresholds:
    """The pool's P1/P2 thresholds (its `capacity` section)."""
    return _thresholds(pool)


def hourly_usage(
    services: Any, pool: Pool, truth: dict[str, Any], now: datetime
) -> tuple[UsageWindow | None, str | None]:
    """The pool's last hour of usage per instance (None and why, when there is none)."""
    if not truth.get("instances"):
        return None, "no recorded truth yet (reconcile)"
    members = [
        k
        for k, v in truth["instances"].items()
        if v.get("state") in ("live", "updating", "creating", "stopped")
    ]
    ref = PoolRef(pool.name, pool.vmss_id, pool.node_group, len(members))
    found, error = _usage(usage_source_from_settings(services.settings), [ref], HOUR, now)
    return _window(found.get(pool.name), truth, HOUR, now) if found else None, error


def evaluate_capacity(services: Any) -> list[dict[str, Any]]:
    """Evaluate every pool once; returns what was done per pool (for the log and tests)."""
    now = services.clock.now()
    source = usage_source_from_settings(services.settings)
    truths = {p.name: services.tables.pool_status(p.name) for p in services.config.pools}
    pools = [p for p in services.config.pools if (truths[p.name] or {}).get("instances")]
    members = {
        p.name: sorted(
            k
            for k, v in truths[p.name]["instances"].items()
            if v.get("state") in ("live", "updating", "creating", "stopped")
        )
        for p in pools
    }
    refs = [PoolRef(p.name, p.vmss_id, p.node_group, len(members[p.name])) for p in pools]
    hourly, hour_error = _usage(source, refs, HOUR, now)
    daily, day_error = (
        _usage(source, refs, DAY, now) if now.minute < DAY_WINDOW_MINUTES else ({}, None)
    )
    alert_log = AlertLog(services.tables)
    notifier = Notifier(services.queues, services.settings)
    results: list[dict[str, Any]] = []
    for pool in services.config.pools:
        if pool not in pools:
            results.append({"pool": pool.name, "skipped": "no recorded truth yet (reconcile)"})
            continue
        truth = truths[pool.name]
        evaluation = evaluate(
            pool.node_group,
            _window(hourly.get(pool.name), truth, HOUR, now),
            _window(daily.get(pool.name), truth, DAY, now) if daily else None,
            _thresholds(pool),
            zone_resilient=len({v.get("zone") for v in truth["instances"].values()}) > 1,
            nodes=members[pool.name],
        )
        changed = []
        for alert in evaluation.alerts:
            if alert.window == DAY and not daily:
                continue  # not evaluated this time: keep its recorded state
            values = {
                "cpu": alert.cpu,
                "memory": alert.memory,
                "reason": alert.reason,
                "cpu_threshold": alert.cpu_threshold,
                "memory_threshold": alert.memory_threshold,
                "missing": list(alert.missing),
                "partial": list(alert.partial),
            }
            previous = alert_log.record(pool.name, alert.key, alert.state.value, values, now)
            if (previous or {}).get("state", State.OK.value) != alert.state.value:
                changed.append(alert)
                notifier.send(
                    pool=pool.name,
                    kind=f"alert_{alert.state.value}",
                    severity=alert.severity.value,
                    at=now,
                    values=values,
                    message=f"{alert.key} {alert.reason}",  # the reason starts with the state
                )
        live = (truth.get("counts") or {}).get("live", 0)
        group = evaluation.group_p1
        if (group.cpu is not None or group.memory is not None) and not (
            group.missing or group.partial
        ):  # only complete windows go into the trend the downscale review reads
            zones = [v.get("zone") for v in truth["instances"].values()]
            largest = max(zones.count(z) for z in set(zones)) if len(set(zones)) > 1 else 1
            DailySummaries(services.tables).add_hour(
                pool.name,
                now.date().isoformat(),
                hour=now.hour,
                node_count=live,
                cpu=group.cpu,
                memory=group.memory,
                largest_node_share=min(1.0, largest / max(live, 1)),
            )
        state = PoolState(
            node_count=live,
            max_nodes=pool.max_nodes,
            last_scale_up_at=alert_log.last_scale_up(pool.name),
        )
        jobs = []
        for action in decide_actions(
            evaluation,
            state,
            now,
            cooldown=cooldown(pool),
            auto_scale_up_on_p2=pool.capacity.auto_scale_up_on_p2,
        ):
            if action.kind is ActionKind.SCALE_UP_ONE:
                job_id = scale_up_one(
                    services,
                    pool,
                    reason=action.reason,
                    now=now,
                    values={"advice": list(action.advice)},
                )
                if job_id:
                    jobs.append(job_id)
            elif changed:  # notify on transitions only, not every five minutes
                notifier.send(
                    pool=pool.name,
                    kind=action.kind.value,
                    severity="P1"
                    if "p1" in action.kind.value or "rebalance" in action.kind.value
                    else "P2",
                    at=now,
                    message=action.reason,
                    advice=list(action.advice),
                )
        results.append(
            {
                "pool": pool.name,
                "jobs": jobs,
                "alerts": {a.key: a.state.value for a in evaluation.alerts},
                "errors": [e for e in (hour_error, day_error) if e],
            }
        )
        log.info("Capacity of %s: %s", pool.name, results[-1])
    return results
