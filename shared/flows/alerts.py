"""`POST /api/alerts`: Azure Monitor and Alertmanager alerts in, capacity actions out.

A firing group P1 asks for one more node through the same policy as the capacity timer (the
pool's cooldown, `max_nodes`, hold for a human when a step would double the group); a node P1
is a rebalancing notification; a P2 is a notification; a resolved alert is recorded.
Replayed deliveries change nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import AlertLog
from shared.adapters.notify import Notifier
from shared.alerts import AlertError, AlertEvent, Scope, Severity, check_signature, parse_alerts
from shared.config import Pool
from shared.decide.capacity import consolidation_advice, scale_up_hold
from shared.flows.jobs import enqueue
from shared.jobs import JobKind

log = logging.getLogger("poolkeeper.alerts")

SECRET_SETTING = "POOLKEEPER_ALERT_SECRET"


def cooldown(pool: Pool) -> timedelta:
    """The pool's anti-flap window after a capacity scale-up (`capacity.cooldown_minutes`)."""
    return timedelta(minutes=pool.capacity.cooldown_minutes)


def scale_up_one(
    services: Any, pool: Pool, *, reason: str, now: datetime, values: dict[str, Any]
) -> str | None:
    """Enqueue a one-node scale-up unless the policy holds it (max_nodes, cooldown, doubling:
    `scale_up_hold`, the timer's rule too). Returns the job id, or None."""
    notifier = Notifier(services.queues, services.settings)
    alert_log = AlertLog(services.tables)
    recorded = services.tables.pool_status(pool.name) or {}
    live = (recorded.get("counts") or {}).get("live")  # None before the first reconcile
    held = scale_up_hold(
        live, pool.max_nodes, alert_log.last_scale_up(pool.name), now, cooldown=cooldown(pool)
    )
    if held is None and not alert_log.claim_scale_up(pool.name, now, now - cooldown(pool)):
        held = "not scaling up: another scale-up was just claimed (cooldown)"
    if held is not None:
        if "cooldown" in held:
            log.info("Pool %s: %s; %s", pool.name, reason, held)
        else:
            notifier.send(
                pool=pool.name,
                kind="scale_up_held",
                severity="P1",
                at=now,
                values=values,
                message=f"{reason}; {held}",
            )
        return None
    job = enqueue(
        services,
        JobKind.SCALE,
        pool.name,
        {"delta": 1},
        now=now,
        job_id=f"capacity-{pool.name}-{now:%Y%m%dT%H%M%S}",
        requested_by=f"capacity:{reason}",
    )
    notifier.send(
        pool=pool.name,
        kind="scale_up",
        severity="P1",
        at=now,
        values=values,
        message=f"{reason}: scaling up by one node (job {job.id})",
        advice=consolidation_advice((live or 0) + 1),
    )
    return job.id


def _act(services: Any, event: AlertEvent, now: datetime) -> str | None:
    pool = services.config.pool(event.pool)
    values = {"alert": event.name, "source": event.source, "node": event.node}
    AlertLog(services.tables).record(
        pool.name,
        f"{event.source}:{event.name}",
        "fired" if event.firing else "resolved",
        values,
        now,
    )
    if not event.firing:
        return None
    notifier = Notifier(services.queues, services.settings)
    scale_on_p2 = event.severity is Severity.P2 and pool.capacity.auto_scale_up_on_p2
    if event.scope is Scope.GROUP and (event.severity is Severity.P1 or scale_on_p2):
        return scale_up_one(
            services,
            pool,
            now=now,
            values=values,
            reason=f"{event.source} alert {event.name} ({event.severity})",
        )
    if event.severity is Severity.P1:
        notifier.send(
            pool=pool.name,
            kind="rebalance",
            severity="P1",
            at=now,
            values=values,
            message=f"node {event.node or '?'} is overloaded while its group is not: "
            "a rebalancing problem, not a reason to add nodes",
        )
    else:
        notifier.send(
            pool=pool.name,
            kind="p2",
            severity="P2",
            at=now,
            values=values,
            message=f"{event.name}: group load above the P2 threshold; review within "
            "a business day",
        )
    return None


def receive(services: Any, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
    """Check, parse, deduplicate and act; the HTTP status and JSON body to answer."""
    try:
        check_signature(body, signature, services.settings.get(SECRET_SETTING))
        events, unmatched = parse_alerts(body, services.config)
        if not events:
            raise AlertError(422, "no alert matches a configured pool: " + "; ".join(unmatched))
    except AlertError as error:
        return error.status, {"error": str(error)}
    now = services.clock.now()
    alerts = AlertLog(services.tables)
    jobs, duplicates = [], 0
    for event in events:
        if not alerts.first_delivery(event.key, now):
            duplicates += 1
            continue
        job_id = _act(services, event, now)
        if job_id:
            jobs.append(job_id)
    return 202, {
        "jobs": jobs,
        "alerts": len(events),
        "duplicates": duplicates,
        "unmatched": unmatched,
    }
