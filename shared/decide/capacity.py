"""Capacity decisions: P1/P2 alerts, headroom, the scale-up policy and the downscale review.

Pure: the capacity flows call it with usage windows and daily summaries that adapters read.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from shared.decide.wording import listing as _listing
from shared.decide.wording import plural as _n
from shared.decide.wording import span

FLOOR = 3  # the downscale review never recommends fewer nodes than this
CONSOLIDATE_AT = 6  # nodes in a group from which the seed advises fewer, larger nodes
ADVICE_CONSOLIDATE = "consider consolidating to fewer, larger nodes"
ADVICE_HOLD = "hold for a human"
ANTI_OSCILLATION = timedelta(days=14)
MIN_DAYS = 90
LOOKBACK_DAYS = 180


class Resource(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"


class Severity(StrEnum):
    P1 = "P1"  # page: a node or group over its 1-hour thresholds
    P2 = "P2"  # business day: a group over its 24-hour thresholds


class Scope(StrEnum):
    NODE = "node"
    GROUP = "group"


class State(StrEnum):
    FIRING = "firing"
    OK = "ok"  # evaluated on complete data and under the thresholds
    UNKNOWN = "unknown"  # not firing on the data there is, and too little data to clear it


class Domain(StrEnum):
    NODE = "node"
    ZONE = "zone"


@dataclass(frozen=True)
class NodeUsage:
    """One node's utilisation in percent (0-100), averaged over a window; None is no data."""

    node: str
    zone: str | None
    cpu: float | None  # NaN is read as None: no data
    memory: float | None  # memory in use, e.g. 100 - Available Memory Percentage
    samples: int  # samples behind the averages; 0 is no data whatever the values say
    expected_samples: int  # samples a full window has; fewer is partial data
    cpu_capacity: float = 1.0  # the node's size (vCPUs); weights headroom for both resources

    def __post_init__(self) -> None:
        for resource in Resource:
            value = getattr(self, resource.value)
            if value is not None and math.isnan(value):
                object.__setattr__(self, resource.value, None)
            elif value is not None and not 0 <= value <= 100:
                raise ValueError(
                    f"node {self.node!r}: {resource} must be a percentage from 0 to 100 or None; "
                    f"got {value!r}"
                )
        if self.samples < 0 or self.expected_samples < 1:
            raise ValueError(
                f"node {self.node!r}: samples must be at least 0 and expected_samples at least 1; "
                f"got {self.samples} and {self.expected_samples}"
            )
        if not (math.isfinite(self.cpu_capacity) and self.cpu_capacity > 0):
            raise ValueError(
                f"node {self.node!r}: cpu_capacity must be above 0; got {self.cpu_capacity!r}"
            )

    @property
    def partial(self) -> bool:
        """Some samples, but fewer than a full window has."""
        return 0 < self.samples < self.expected_samples

    def value(self, resource: Resource) -> float | None:
        """The average for `resource`, or None when there is no data for it."""
        return None if self.samples == 0 else getattr(self, resource.value)


@dataclass(frozen=True)
class UsageWindow:
    """Every node's usage averaged over `window`, ending at `ends_at`."""

    window: timedelta
    ends_at: datetime
    nodes: tuple[NodeUsage, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if self.window <= timedelta(0):
            raise ValueError(f"a usage window must be longer than 0; got {self.window}")
        names = [usage.node for usage in self.nodes]
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"a usage window lists each node once; twice: {_listing(twice)}")


@dataclass(frozen=True)
class Thresholds:
    """Per pool; an alert fires strictly above its threshold (95 is not P1, 95.01 is)."""

    p1_cpu: float = 95.0
    p1_memory: float = 85.0
    p2_cpu: float = 75.0
    p2_memory: float = 75.0
    p1_window: timedelta = timedelta(hours=1)
    p2_window: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        for name in ("p1_cpu", "p1_memory", "p2_cpu", "p2_memory"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 100):
                raise ValueError(f"threshold {name} must be above 0 and at most 100; got {value!r}")
        for name in ("p1_window", "p2_window"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be longer than 0; got {getattr(self, name)}")


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Alert:
    """One alert's state with the values and thresholds a notification quotes."""

    severity: Severity
    scope: Scope
    subject: str  # the node, or the group
    state: State
    cpu: float | None  # the node's average, or the group's average of node ratios, in %
    memory: float | None
    cpu_threshold: float
    memory_threshold: float
    window: timedelta
    ends_at: datetime | None  # None when there was no window at all
    reason: str
    missing: tuple[str, ...] = ()  # nodes without data for CPU or memory
    partial: tuple[str, ...] = ()  # nodes with fewer samples than a full window

    @property
    def key(self) -> str:
        """Stable identity for recording fired/resolved, e.g. "P1/node/aks-a-000001"."""
        return f"{self.severity}/{self.scope}/{self.subject}"


@dataclass(frozen=True)
class Headroom:
    """Whether the group stays at or under the P1 thresholds with its largest node or zone out.

    `cpu_after` and `memory_after` are the group's load spread over what remains, in percent of
    the remaining capacity: sum(ratio_i * capacity_i) / (sum(capacity) - capacity_removed). Above
    100 means the load no longer fits at all.
    """

    ok: bool
    cpu_after: float | None
    memory_after: float | None
    removed: str  # the node or zone taken out; "" when none could be
    reason: str
    domain: Domain
    cpu_threshold: float
    memory_threshold: float


@dataclass(frozen=True)
class Evaluation:
    group: str
    zone_resilient: bool
    nodes: tuple[Alert, ...]  # a P1 per node, by name
    group_p1: Alert
    group_p2: Alert
    n_minus_one: Headroom  # the largest node out, or the largest zone for zone-resilient pools
    rolling_restart: Headroom  # the largest node drained for a restart

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return (*self.nodes, self.group_p1, self.group_p2)

    def in_state(self, state: State) -> list[Alert]:
        return [alert for alert in self.alerts if alert.state is state]


def evaluate(
    group: str,
    hour: UsageWindow | None,
    day: UsageWindow | None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    zone_resilient: bool,
    nodes: Collection[str] | None = None,
) -> Evaluation:
    """P1 per node and per group, P2 per group, and both headroom checks. Pure.

    A window's group value is the average of its nodes' ratios over the nodes that have data.
    An alert fires on whatever data there is; it is OK only on complete data, else UNKNOWN: a
    window without data is never read as idle. Give `nodes` (the group's nodes from the cluster)
    so that a node a window leaves out counts as no data, and one no longer in the group is
    ignored. A window whose length is not the thresholds' is a caller error (ValueError).
    """
    for name, given, wanted in (
        ("hour", hour, thresholds.p1_window),
        ("day", day, thresholds.p2_window),
    ):
        if given is not None and given.window != wanted:
            raise ValueError(
                f"the {name} window must be {_span(wanted)} as the thresholds say; "
                f"got {_span(given.window)}"
            )
    hourly = _usages(hour, nodes)
    daily = _usages(day, nodes)
    p1 = (thresholds.p1_cpu, thresholds.p1_memory)
    node_alerts = tuple(
        _alert(Severity.P1, Scope.NODE, usage.node, [usage], p1, thresholds.p1_window, hour)
        for usage in sorted(hourly, key=lambda u: u.node)
    )
    return Evaluation(
        group=group,
        zone_resilient=zone_resilient,
        nodes=node_alerts,
        group_p1=_alert(Severity.P1, Scope.GROUP, group, hourly, p1, thresholds.p1_window, hour),
        group_p2=_alert(
            Severity.P2,
            Scope.GROUP,
            group,
            daily,
            (thresholds.p2_cpu, thresholds.p2_memory),
            thresholds.p2_window,
            day,
        ),
        n_minus_one=headroom(hourly, thresholds, by_zone=zone_resilient),
        rolling_restart=headroom(hourly, thresholds, by_zone=False),
    )


def _usages(window: UsageWindow | None, nodes: Collection[str] | None) -> list[NodeUsage]:
    listed = list(window.nodes) if window is not None else []
    if nodes is None:
        return listed
    wanted = set(nodes)
    seen = {usage.node for usage in listed}
    absent = [NodeUsage(node, None, None, None, 0, 1) for node in sorted(wanted - seen)]
    return [usage for usage in listed if usage.node in wanted] + absent


def _alert(
    severity: Severity,
    scope: Scope,
    subject: str,
    usages: Sequence[NodeUsage],
    limits: tuple[float, float],
    span: timedelta,
    window: UsageWindow | None,
) -> Alert:
    values: dict[Resource, float | None] = {}
    lacking: dict[Resource, list[str]] = {}
    for resource in Resource:
        known = []
        lacking[resource] = []
        for usage in usages:
            value = usage.value(resource)
            if value is None:
                lacking[resource].append(usage.node)
            else:
                known.append(value)
        values[resource] = math.fsum(known) / len(known) if known else None
    missing = tuple(sorted(set(lacking[Resource.CPU]) | set(lacking[Resource.MEMORY])))
    partial = tuple(sorted(u.node for u in usages if u.partial and u.node not in missing))
    limit = dict(zip(Resource, limits, strict=True))
    above = [r for r in Resource if (v := values[r]) is not None and v > limit[r]]
    if above:
        state = State.FIRING
    elif usages and not missing and not partial:
        state = State.OK
    else:
        state = State.UNKNOWN
    return Alert(
        severity=severity,
        scope=scope,
        subject=subject,
        state=state,
        cpu=values[Resource.CPU],
        memory=values[Resource.MEMORY],
        cpu_threshold=limits[0],
        memory_threshold=limits[1],
        window=span,
        ends_at=window.ends_at if window is not None else None,
        reason=_alert_reason(state, scope, usages, values, limit, lacking, partial, span, window),
        missing=missing,
        partial=partial,
    )


def _alert_reason(
    state: State,
    scope: Scope,
    usages: Sequence[NodeUsage],
    values: dict[Resource, float | None],
    limit: dict[Resource, float],
    lacking: dict[Resource, list[str]],
    partial: tuple[str, ...],
    span: timedelta,
    window: UsageWindow | None,
) -> str:
    if window is None:
        return f"{state}: no {_span(span)} usage window; not read as idle"
    if not usages:
        return f"{state}: the {_span(span)} window lists no nodes; not read as idle"
    readings = ", ".join(
        f"{_LABEL[r]} no data"
        if (v := values[r]) is None
        else f"{_LABEL[r]} {_pct(v)} {'>' if v > limit[r] else '<='} {_pct(limit[r])}"
        for r in Resource
    )
    text = f"{state}: {readings} over {_span(span)}"
    if scope is Scope.GROUP:
        text += f" (average of node ratios, {_n(len(usages), 'node')})"
    notes = [
        f"no {_LABEL[r]} data for {_listing(sorted(lacking[r]))}" for r in Resource if lacking[r]
    ]
    if partial:
        counts = {u.node: f"{u.samples} of {u.expected_samples}" for u in usages}
        notes.append(
            "partial data for " + _listing([f"{node} ({counts[node]} samples)" for node in partial])
        )
    if notes and state is State.UNKNOWN:
        notes.append("cannot clear without full data")
    return "; ".join([text, *notes])


def headroom(usages: Sequence[NodeUsage], thresholds: Thresholds, *, by_zone: bool) -> Headroom:
    """Would the group stay at or under P1 with its largest node (or zone) out? Pure.

    Any node without full data makes the answer "not ok" (fail safe): headroom is never assumed.
    """
    domain = Domain.ZONE if by_zone else Domain.NODE
    p1 = (thresholds.p1_cpu, thresholds.p1_memory)

    def refuse(reason: str) -> Headroom:
        return Headroom(False, None, None, "", reason, domain, *p1)

    if not usages:
        return refuse("no data: no node has usage in the window; headroom is not assumed")
    lacking = sorted(
        u.node
        for u in usages
        if u.partial or any(u.value(resource) is None for resource in Resource)
    )
    if lacking:
        return refuse(
            f"no data: {_listing(lacking)} without full CPU and memory data; "
            "headroom is not assumed"
        )
    sizes: dict[str, float] = {}
    if by_zone:
        zoneless = sorted(u.node for u in usages if u.zone is None)
        if zoneless:
            return refuse(f"{_listing(zoneless)} in no zone, in a zone-resilient pool")
        for usage in usages:
            zone = str(usage.zone)
            sizes[zone] = sizes.get(zone, 0.0) + usage.cpu_capacity
    else:
        sizes = {usage.node: usage.cpu_capacity for usage in usages}
    if len(sizes) == 1:
        (only,) = sizes
        return refuse(f"all capacity is in {domain} {only}: losing it leaves nothing")
    # The result depends only on the capacity taken out, so ties are broken by name for a
    # stable answer.
    removed = min(sizes, key=lambda name: (-sizes[name], name))
    remaining = math.fsum(sizes.values()) - sizes[removed]
    after = {
        r: math.fsum(float(u.value(r) or 0.0) * u.cpu_capacity for u in usages) / remaining
        for r in Resource
    }
    limit = dict(zip(Resource, p1, strict=True))
    ok = all(after[r] <= limit[r] for r in Resource)
    readings = ", ".join(
        f"{_LABEL[r]} {_pct(after[r])} {'<=' if after[r] <= limit[r] else '>'} {_pct(limit[r])}"
        for r in Resource
    )
    count = f"{_n(len(sizes), domain.value)}"
    verdict = "within P1" if ok else "over P1"
    return Headroom(
        ok=ok,
        cpu_after=after[Resource.CPU],
        memory_after=after[Resource.MEMORY],
        removed=removed,
        reason=f"{verdict} with {domain} {removed} out (largest of {count}): {readings}",
        domain=domain,
        cpu_threshold=p1[0],
        memory_threshold=p1[1],
    )


class ActionKind(StrEnum):
    SCALE_UP_ONE = "scale_up_one"  # enqueue a scale-up of one node of the same type
    NOTIFY_P1 = "notify_p1"  # a group P1: page, with what the policy did about it
    NOTIFY_REBALANCE = "notify_rebalance"  # node P1s without a group P1: a balance problem
    NOTIFY_P2 = "notify_p2"  # business day
    NOTIFY_NO_DATA = "notify_no_data"  # alerts that could not be evaluated, and why


@dataclass(frozen=True)
class PoolState:
    node_count: int
    max_nodes: int
    last_scale_up_at: datetime | None = None


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    alerts: tuple[str, ...] = ()  # keys of the alerts behind it
    advice: tuple[str, ...] = ()


def scale_up_hold(
    node_count: int | None,
    max_nodes: int,
    last: datetime | None,
    now: datetime,
    *,
    cooldown: timedelta,
) -> str | None:
    """Why one more node must not be added now (max_nodes, cooldown, doubling), or None. Pure;
    the one rule the capacity timer and the alert webhook share. With the size unknown only the
    cooldown applies: the scale job reads the size fresh and bounds it by max_nodes itself."""
    n = node_count
    if n is not None and n >= max_nodes:
        return f"not scaling up: at max_nodes {max_nodes} ({_n(n, 'node')})"
    if last is not None and now - last < cooldown:
        return (
            f"not scaling up: last scale-up {_span(now - last)} ago, within the "
            f"{_span(cooldown)} cooldown (next from {last + cooldown:%Y-%m-%d %H:%M})"
        )
    if n is not None and n + 1 >= 2 * n:
        return f"not scaling up: one more node would double the group ({n} -> {n + 1})"
    return None


def consolidation_advice(node_count: int) -> list[str]:
    """The seed's advice once a group reaches CONSOLIDATE_AT nodes."""
    if node_count >= CONSOLIDATE_AT:
        return [f"{ADVICE_CONSOLIDATE}: the group has {_n(node_count, 'node')}"]
    return []


def decide_actions(
    evaluation: Evaluation,
    pool: PoolState,
    now: datetime,
    *,
    cooldown: timedelta,
    auto_scale_up_on_p2: bool = False,
) -> list[Action]:
    """What the policy does about one evaluation: at most one scale-up, then notifications. Pure.

    A group P1 (or a P2 with `auto_scale_up_on_p2`) asks for one more node unless the group is at
    `max_nodes`, a scale-up happened less than `cooldown` before `now` (one episode, one
    scale-up; exactly `cooldown` later is allowed), or one node would double the group (0 or 1
    nodes): that is held for a human. Node P1s without a group P1 are a rebalancing problem.
    """
    group_p1, group_p2 = evaluation.group_p1, evaluation.group_p2
    wants = [
        alert
        for alert, wanted in ((group_p1, True), (group_p2, auto_scale_up_on_p2))
        if wanted and alert.state is State.FIRING
    ]
    n = pool.node_count
    scale: Action | None = None
    held: str | None = None  # why a wanted scale-up is not done
    advice: list[str] = []
    if wants:
        held = scale_up_hold(
            pool.node_count, pool.max_nodes, pool.last_scale_up_at, now, cooldown=cooldown
        )
        if held is not None and "double" in held:
            advice.append(f"{ADVICE_HOLD}: one more node would double the group ({n} -> {n + 1})")
        if held is None:
            scale = Action(
                ActionKind.SCALE_UP_ONE,
                f"{' and '.join(_title(a) for a in wants)} firing: one more node ({n} -> {n + 1})",
                alerts=tuple(alert.key for alert in wants),
            )
    advice += consolidation_advice(n + 1 if scale is not None else n)
    outcome = {alert.key: held or (scale.reason if scale else "") for alert in wants}

    actions: list[Action] = [scale] if scale is not None else []
    if group_p1.state is State.FIRING:
        note = outcome.get(group_p1.key) or ""
        actions.append(
            Action(
                ActionKind.NOTIFY_P1,
                "; ".join(filter(None, [f"{_title(group_p1)} {group_p1.reason}", note])),
                alerts=(group_p1.key,),
                advice=tuple(advice),
            )
        )
    hot = [alert for alert in evaluation.nodes if alert.state is State.FIRING]
    if hot and group_p1.state is not State.FIRING:
        group_note = (
            "group average under P1: spread the load (requests, affinity, spreading), "
            "a scale-up would not help"
            if group_p1.state is State.OK
            else f"group P1 unknown ({group_p1.reason}): it may also be a capacity problem"
        )
        actions.append(
            Action(
                ActionKind.NOTIFY_REBALANCE,
                f"{_n(len(hot), 'node')} over P1: "
                + _listing([f"{a.subject} ({a.reason})" for a in hot])
                + f"; {group_note}",
                alerts=tuple(alert.key for alert in hot),
            )
        )
    if group_p2.state is State.FIRING:
        note = outcome.get(group_p2.key) or (
            "" if auto_scale_up_on_p2 else "no automatic scale-up for P2 in this pool"
        )
        actions.append(
            Action(
                ActionKind.NOTIFY_P2,
                "; ".join(filter(None, [f"{_title(group_p2)} {group_p2.reason}", note])),
                alerts=(group_p2.key,),
                advice=tuple(advice),
            )
        )
    unknown = evaluation.in_state(State.UNKNOWN)
    if unknown:
        actions.append(
            Action(
                ActionKind.NOTIFY_NO_DATA,
                f"{_n(len(unknown), 'alert')} cannot be evaluated: "
                + _listing([f"{_title(a)} ({a.reason})" for a in unknown]),
                alerts=tuple(alert.key for alert in unknown),
            )
        )
    return actions


def _title(alert: Alert) -> str:
    return f"{alert.severity} {alert.scope} {alert.subject}"


@dataclass(frozen=True)
class DailySummary:
    """One day of a group, as Poolkeeper stores it: percentages, None where data was missing."""

    day: date
    node_count: int
    cpu_avg: float | None  # the day's average of the group average
    cpu_peak: float | None  # the day's highest hourly group average
    memory_avg: float | None
    memory_peak: float | None
    largest_node_share: float  # of the group's capacity in its largest node (zone if resilient)

    def __post_init__(self) -> None:
        for name in ("cpu_avg", "cpu_peak", "memory_avg", "memory_peak"):
            value = getattr(self, name)
            if value is not None and math.isnan(value):
                object.__setattr__(self, name, None)
            elif value is not None and not 0 <= value <= 100:
                raise ValueError(f"{self.day}: {name} must be from 0 to 100 or None; got {value!r}")
        if self.node_count < 0:
            raise ValueError(f"{self.day}: node_count must be at least 0; got {self.node_count}")
        if not 0 < self.largest_node_share <= 1:
            raise ValueError(
                f"{self.day}: largest_node_share must be above 0 and at most 1; "
                f"got {self.largest_node_share!r}"
            )

    @property
    def complete(self) -> bool:
        values = (self.cpu_avg, self.cpu_peak, self.memory_avg, self.memory_peak)
        return self.node_count > 0 and all(value is not None for value in values)


class Verdict(StrEnum):
    REMOVE = "remove"  # remove `remove` nodes (drain and cordon first, through scale-in)
    HOLD_FOR_HUMAN = "hold_for_human"  # the trend allows it, but it halves the group
    KEEP = "keep"  # the trend does not allow removing a node, or the group is at its floor
    REFUSED = "refused"  # no review: see `refusal`


class ReviewRefusal(StrEnum):
    RECENT_SCALE_UP = "recent_scale_up"
    TOO_LITTLE_HISTORY = "too_little_history"
    MISSING_DATA = "missing_data"


@dataclass(frozen=True)
class Projection:
    """The group's recent peak if it had `nodes` nodes of `node_size` (1 = today's size)."""

    nodes: int
    node_size: float
    cpu_peak: float  # peak hourly group average at that size, in %
    memory_peak: float
    cpu_after_failure: float  # the same with the largest node (or zone) out
    memory_after_failure: float
    ok: bool  # peaks at or under P2 and after-failure values at or under P1


@dataclass(frozen=True)
class Recommendation:
    verdict: Verdict
    node_count: int
    remove: int  # nodes the recommendation removes; 0 unless REMOVE or HOLD_FOR_HUMAN
    reason: str
    refusal: ReviewRefusal | None = None
    projection: Projection | None = None  # at node_count - remove, or what one fewer would be
    advice: tuple[str, ...] = ()
    days: int = 0  # days of history reviewed


def review_downscale(
    summaries: Iterable[DailySummary],
    node_count: int,
    now: datetime,
    *,
    last_scale_up_at: datetime | None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    anti_oscillation: timedelta = ANTI_OSCILLATION,
    min_days: int = MIN_DAYS,
    lookback_days: int = LOOKBACK_DAYS,
    max_step: int = 1,
    min_nodes: int = 0,
    zone_resilient: bool = False,
) -> Recommendation:
    """Whether the group may lose nodes, from its daily summaries up to yesterday. Pure.

    The recent peak is the highest daily peak (hourly group average) in the lookback, each day
    scaled to the candidate size as load * day's nodes / candidate nodes. Removing k nodes is
    recommended only if at that peak the group stays at or under P2 and, with its largest node
    (or zone) out as well, at or under P1. At most `max_step` nodes per review, never below
    max(3, min_nodes); held for a human when the result would be half or less of the largest size
    in the lookback. Refused within `anti_oscillation` of a scale-up, and without `min_days`
    consecutive days of complete data ending yesterday.
    """
    if node_count < 0 or max_step < 1 or min_days < 1 or lookback_days < min_days:
        raise ValueError(
            "node_count must be at least 0, max_step and min_days at least 1, lookback_days at "
            f"least min_days; got {node_count}, {max_step}, {min_days}, {lookback_days}"
        )

    def refuse(refusal: ReviewRefusal, reason: str, days: int = 0) -> Recommendation:
        return Recommendation(Verdict.REFUSED, node_count, 0, reason, refusal, days=days)

    if last_scale_up_at is not None and now - last_scale_up_at < anti_oscillation:
        return refuse(
            ReviewRefusal.RECENT_SCALE_UP,
            f"scaled up {_span(now - last_scale_up_at)} ago, within the "
            f"{_span(anti_oscillation)} anti-oscillation window: no scale-down before "
            f"{last_scale_up_at + anti_oscillation:%Y-%m-%d %H:%M}",
        )
    span, by_day = _history(summaries, now.date(), lookback_days)
    if len(span) < min_days:
        return refuse(
            ReviewRefusal.TOO_LITTLE_HISTORY,
            f"{_n(len(span), 'day')} of history up to yesterday; the review needs {min_days}",
            len(span),
        )
    lacking = [str(day) for day in span if day not in by_day or not by_day[day].complete]
    if lacking:
        return refuse(
            ReviewRefusal.MISSING_DATA,
            f"{_n(len(lacking), 'day')} of {len(span)} without a complete summary: "
            f"{_listing(lacking)}; a day without data is never read as idle",
            len(span),
        )

    history = [by_day[day] for day in span]
    days = len(history)
    # Load in units of one of today's nodes: a day at 30 % on 8 nodes is 2.4 nodes' worth.
    cpu_load = max(float(s.cpu_peak or 0.0) * s.node_count for s in history)
    memory_load = max(float(s.memory_peak or 0.0) * s.node_count for s in history)
    largest = history[-1].largest_node_share * history[-1].node_count  # in node units

    def project(nodes: int, size: float = 1.0, failing: float = largest) -> Projection:
        capacity = nodes * size
        left = capacity - failing
        cpu, memory = cpu_load / capacity, memory_load / capacity
        cpu_fail = cpu_load / left if left > 0 else math.inf
        memory_fail = memory_load / left if left > 0 else math.inf
        ok = (
            cpu <= thresholds.p2_cpu
            and memory <= thresholds.p2_memory
            and cpu_fail <= thresholds.p1_cpu
            and memory_fail <= thresholds.p1_memory
        )
        return Projection(nodes, size, cpu, memory, cpu_fail, memory_fail, ok)

    averages = (
        f"over {_n(days, 'day')}: average CPU "
        f"{_pct(math.fsum(float(s.cpu_avg or 0.0) for s in history) / days)}, memory "
        f"{_pct(math.fsum(float(s.memory_avg or 0.0) for s in history) / days)}"
    )
    floor = max(FLOOR, min_nodes)
    if node_count <= floor:
        advice: tuple[str, ...] = ()
        # Half-size nodes: the same capacity in finer steps, so one step down is half a node.
        half = project(2 * node_count - 1, 0.5, largest if zone_resilient else largest / 2)
        if node_count == floor and half.ok:
            advice = (
                f"consider {2 * node_count} half-size nodes instead of {node_count}: "
                f"{half.nodes} of them would pass at the recent peak "
                f"(CPU {_pct(half.cpu_peak)}, memory {_pct(half.memory_peak)}; "
                f"with one out {_pct(half.cpu_after_failure)}, "
                f"{_pct(half.memory_after_failure)})",
            )
        return Recommendation(
            Verdict.KEEP,
            node_count,
            0,
            f"keep {_n(node_count, 'node')}: the review never goes below {floor}; {averages}",
            advice=advice,
            days=days,
        )

    remove, best = 0, project(node_count - 1)
    for k in range(1, min(max_step, node_count - floor) + 1):
        candidate = project(node_count - k)
        if not candidate.ok:
            break
        remove, best = k, candidate
    shown = _projection_text(best, thresholds)
    if remove == 0:
        return Recommendation(
            Verdict.KEEP,
            node_count,
            0,
            f"keep {_n(node_count, 'node')}: with one fewer, {shown}; {averages}",
            projection=best,
            days=days,
        )
    reference = max(node_count, max(s.node_count for s in history))
    after = node_count - remove
    if 2 * after <= reference:
        return Recommendation(
            Verdict.HOLD_FOR_HUMAN,
            node_count,
            remove,
            f"{ADVICE_HOLD}: {node_count} -> {after} nodes would be half or less of the "
            f"group's {reference} in the lookback; {shown}; {averages}",
            projection=best,
            advice=(f"{ADVICE_HOLD}: the trend allows {node_count} -> {after} nodes",),
            days=days,
        )
    return Recommendation(
        Verdict.REMOVE,
        node_count,
        remove,
        f"remove {_n(remove, 'node')} ({node_count} -> {after}): {shown}; {averages}",
        projection=best,
        days=days,
    )


def _history(
    summaries: Iterable[DailySummary], today: date, lookback_days: int
) -> tuple[list[date], dict[date, DailySummary]]:
    """The days from the first summary in the lookback up to yesterday, and the summaries."""
    start = today - timedelta(days=lookback_days)
    by_day: dict[date, DailySummary] = {}
    for summary in summaries:
        if start <= summary.day < today:
            if summary.day in by_day:
                raise ValueError(f"two summaries for {summary.day}; a day has one")
            by_day[summary.day] = summary
    if not by_day:
        return [], by_day
    first = min(by_day)
    return [first + timedelta(days=i) for i in range((today - first).days)], by_day


def _projection_text(p: Projection, thresholds: Thresholds) -> str:
    return (
        f"at the recent peak on {_n(p.nodes, 'node')} CPU {_pct(p.cpu_peak)} (P2 "
        f"{_pct(thresholds.p2_cpu)}), memory {_pct(p.memory_peak)} (P2 "
        f"{_pct(thresholds.p2_memory)}); with the largest out CPU {_pct(p.cpu_after_failure)} "
        f"(P1 {_pct(thresholds.p1_cpu)}), memory {_pct(p.memory_after_failure)} "
        f"(P1 {_pct(thresholds.p1_memory)})"
    )


_LABEL = {Resource.CPU: "CPU", Resource.MEMORY: "memory"}


def _pct(value: float) -> str:
    if math.isinf(value):
        return "unbounded"
    return f"{value:.2f}".rstrip("0").rstrip(".") + " %"


def _span(duration: timedelta) -> str:
    return span(duration, days_from=2)  # windows read "24h", not "1d"
