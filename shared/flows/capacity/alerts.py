"""`POST /api/alerts`: Azure Monitor and Alertmanager alerts in, capacity actions out.

A firing group P1 asks for one more node through the same policy as the capacity timer (the
pool's cooldown, `max_nodes`, hold for a human when a step would double the group); a node P1
is a rebalancing notification; a P2 is a notification; a resolved alert is recorded. An alert
from a rule that is not one of the pool's P1/P2 rules is recorded and notified, never acted on.
Replayed deliveries change nothing: of identical deliveries, even concurrent ones, exactly one is
acted on. A firing that arrives after its own episode's resolved is late and never re-opens it.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.deliveries import Deliveries, Notices
from shared.adapters.ledger import AlertLog
from shared.adapters.notify import Notifier
from shared.alerts import AlertError, AlertEvent, Scope, Severity, check_signature, parse_alerts
from shared.config import Pool
from shared.config.mode import Mode
from shared.decide.capacity import consolidation_advice, scale_up_hold
from shared.decide.notices import DIGEST_INTERVAL, held_text, notice_due
from shared.flows.jobs import enqueue, observed_id
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
    # Observe mode's dry runs keep their own cooldown: the real one (and the downscale review's
    # anti-oscillation window) sees only scale-ups that happened.
    row = observed_id(pool.name) if services.mode is Mode.OBSERVE else pool.name
    held = scale_up_hold(
        live, pool.max_nodes, alert_log.last_scale_up(row), now, cooldown=cooldown(pool)
    )
    if held is None and not alert_log.claim_scale_up(row, now, now - cooldown(pool)):
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
        message=f"{reason}: scaling up by one node (job {job.id})"
        + (" — observe mode: a dry run, nothing changes" if job.params.get("dry_run") else ""),
        advice=consolidation_advice((live or 0) + 1),
    )
    return job.id


MAX_LISTED = 20  # nodes named in one notification or record; the count says how many in all
SHORT = 200  # characters of a sender's alert name or node shown in a notification


def _short(text: str) -> str:
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def _summary(events: list[AlertEvent]) -> dict[str, Any]:
    """What a record or notification says about alerts of one name: how many, on which nodes."""
    nodes = sorted({_short(e.node) for e in events if e.node})
    return {
        "alert": _short(events[0].name),
        "source": events[0].source,
        "node": nodes[0] if len(nodes) == 1 else None,
        "count": len(events),
        "nodes": nodes[:MAX_LISTED],
    }


def _nodes_text(summary: dict[str, Any]) -> str:
    nodes = summary["nodes"]
    if not nodes:
        return "?"
    more = summary["count"] - len(nodes) if summary["count"] > len(nodes) else 0
    return ", ".join(nodes) + (f" and {more} more" if more else "")


def _kind(event: AlertEvent, pool: Pool) -> str | None:
    """What a firing alert asks for: "scale_up", "rebalance", "p2" or "unrecognised" (None when
    resolved)."""
    if not event.firing:
        return None
    if event.rule is None:
        return "unrecognised"
    scale_on_p2 = event.severity is Severity.P2 and pool.capacity.auto_scale_up_on_p2
    if event.scope is Scope.GROUP and (event.severity is Severity.P1 or scale_on_p2):
        return "scale_up"
    return "rebalance" if event.severity is Severity.P1 else "p2"


def _by_alert(events: list[AlertEvent]) -> dict[tuple[str, str], list[AlertEvent]]:
    """Events by the (pool, alert) record they set."""
    by_alert: dict[tuple[str, str], list[AlertEvent]] = {}
    for event in events:
        by_alert.setdefault((event.pool, f"{event.source}:{event.name}"), []).append(event)
    return by_alert


def _record(services: Any, events: list[AlertEvent], now: datetime) -> None:
    """Record the episodes that ended, then the alerts' states. A resolved that a concurrent
    delivery records for a firing's episode must win however the writes interleave: it notes its
    episode before its state, and a firing looks again after writing its own."""
    deliveries = Deliveries(services.tables)
    ended = {e.episode: e.at for e in events if not e.firing}
    if ended:
        deliveries.note_resolved(ended, now)
    alerts = AlertLog(services.tables)
    alerts.record_all(
        [
            (pool, alert, "fired" if same[-1].firing else "resolved", _summary(same))
            for (pool, alert), same in _by_alert(events).items()
        ],
        now,
    )
    firing = [e for e in events if e.firing]
    closed = deliveries.resolved({e.episode for e in firing}) if firing else {}
    if closed:  # a resolved of a firing's episode came in meanwhile
        late = [e for e in firing if e.episode in closed and _late(e, closed[e.episode])]
        alerts.record_all(
            [
                (pool, alert, "resolved", _summary(same))
                for (pool, alert), same in _by_alert(late).items()
            ],
            now,
        )


def _late(event: AlertEvent, resolved_at: datetime | None) -> bool:
    """Is this firing no later than its episode's recorded end (unknown times: assume so)?"""
    return event.at is None or resolved_at is None or event.at <= resolved_at


def _current(services: Any, events: list[AlertEvent]) -> tuple[list[AlertEvent], int]:
    """The events to act on, and how many firings were late: a firing of an episode whose
    resolved was recorded (or comes in the same payload) at or after it never re-opens it."""
    ended = {e.episode: e.at for e in events if not e.firing}
    asked = {e.episode for e in events if e.firing and e.episode not in ended}
    if asked:
        ended |= Deliveries(services.tables).resolved(asked)
    current, late = [], []
    for event in events:
        is_late = event.firing and event.episode in ended and _late(event, ended[event.episode])
        (late if is_late else current).append(event)
    for event in late:
        log.info(
            "Pool %s: %s alert %s fired at %s after its episode was resolved; not re-opened",
            event.pool,
            event.source,
            _short(event.name),
            event.at,
        )
    return current, len(late)


def _act(services: Any, events: list[AlertEvent], now: datetime) -> list[str]:
    """Record the alerts' states, then act once per pool (a scale-up) and notify once per
    (pool, kind), however many alerts and alert names a payload carries, and at most once per
    DIGEST_INTERVAL across payloads (the rest counted in the next). Returns the job ids."""
    groups: dict[tuple[str, str | None], list[AlertEvent]] = {}
    for event in events:
        pool = services.config.pool(event.pool)
        # A sender's rules may be many (or made up): one digest per pool and kind, not per name.
        groups.setdefault((pool.name, _kind(event, pool)), []).append(event)
    _record(services, events, now)
    notifier = Notifier(services.queues, services.settings)
    notices = Notices(services.tables)
    wants_nodes: dict[str, list[tuple[str, list[AlertEvent]]]] = {}
    for (pool_name, kind), same in groups.items():
        if kind == "scale_up":
            wants_nodes.setdefault(pool_name, []).append((same[0].name, same))
            continue
        if kind is None:
            continue  # resolved: recorded above, nothing to say
        summary = _summary(same)
        names = sorted({_short(e.name) for e in same})
        listed = ", ".join(names[:MAX_LISTED]) + (
            f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
        )
        if len(names) > 1:
            summary |= {
                "alert": f"{len(names)} alert names ({listed})",
                "alerts": names[:MAX_LISTED],
            }
        if kind == "unrecognised":
            why = _short(same[0].unrecognised)
            # Logged here, once per pool and payload: the sender chose the rules, not Poolkeeper.
            log.info(
                "Pool %s: %d alert(s) not among its rules (%s; first: %s); not acted on",
                pool_name,
                len(names),
                listed,
                why,
            )
            severity = "info"
            text = f"not the pool's P1/P2 rules ({why}); not acted on"
        elif kind == "rebalance":
            severity, text = (
                "P1",
                (
                    f"node {_nodes_text(summary)} overloaded while its group is not: a rebalancing "
                    "problem, not a reason to add nodes"
                ),
            )
        else:
            severity, text = "P2", "group load above the P2 threshold; review within a business day"
        count = f" ({len(same)} alerts)" if len(same) > 1 else ""
        # One notice per pool and kind per DIGEST_INTERVAL: the rest are counted for the next.
        last = notices.last(pool_name, kind)
        if last is not None and not notice_due(last[0], now, DIGEST_INTERVAL):
            notices.record(pool_name, kind, last[0], last[1] + len(same))
            continue
        held = held_text(last[1], last[0]) if last else ""
        notifier.send(
            pool=pool_name,
            kind=kind,
            severity=severity,
            at=now,
            values=summary,
            message=f"{summary['alert']}: {text}{count}{held}",
        )
        notices.record(pool_name, kind, now, 0)
    jobs = []
    for pool_name, wanted in wants_nodes.items():
        # One node per pool per payload: more alerts about the same group are not more load.
        first = wanted[0][1][0]
        count = sum(len(same) for _, same in wanted)
        reason = f"{first.source} alert {_short(first.name)} ({first.severity})"
        if count > 1:
            reason += f" and {count - 1} more firing for the group"
        job_id = scale_up_one(
            services,
            services.config.pool(pool_name),
            now=now,
            values=_summary([e for _, same in wanted for e in same]),
            reason=reason,
        )
        if job_id:
            jobs.append(job_id)
    return jobs


def receive(services: Any, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
    """Check, parse, deduplicate and act; the HTTP status and JSON body to answer."""
    try:
        # Wall time, not the product's clock: the sender signed with a real one.
        wall = datetime.now(UTC)
        check_signature(body, signature, services.settings.get(SECRET_SETTING), wall)
        events, unmatched = parse_alerts(body, services.config)
        if not events:
            raise AlertError(422, "no alert matches a configured pool: " + "; ".join(unmatched))
    except AlertError as error:
        return error.status, {"error": str(error)}
    now = services.clock.now()
    deliveries = Deliveries(services.tables)
    first = deliveries.claim({e.key for e in events}, now, services.clock)
    fresh: dict[str, AlertEvent] = {}
    for event in events:
        if event.key in first:
            fresh.setdefault(event.key, event)  # a payload may carry one delivery twice
    try:
        current, late = _current(services, list(fresh.values()))
        jobs = _act(services, current, now) if current else []
    except BaseException:
        # Had acting failed (a 500), the sender's resend must act again, not be a replay. If
        # storage fails here too, the claims lapse after CLAIM_SECONDS.
        with contextlib.suppress(Exception):
            deliveries.release(fresh)
        raise
    deliveries.handled(fresh, now)
    return 202, {
        "jobs": jobs,
        "alerts": len(events),
        "duplicates": len(events) - len(fresh),
        "late": late,
        "unmatched": unmatched,
        "unrecognised": sorted({_short(e.name) for e in events if e.rule is None})[:MAX_LISTED],
    }
