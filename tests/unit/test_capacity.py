"""Capacity decisions: P1/P2 thresholds, group averages, headroom, scale-up, downscale review."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.decide.capacity import (
    ADVICE_CONSOLIDATE,
    ADVICE_HOLD,
    Action,
    ActionKind,
    DailySummary,
    Domain,
    Evaluation,
    Headroom,
    NodeUsage,
    PoolState,
    ReviewRefusal,
    Scope,
    Severity,
    State,
    Thresholds,
    UsageWindow,
    Verdict,
    decide_actions,
    evaluate,
    headroom,
    review_downscale,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
COOLDOWN = timedelta(minutes=30)
P1 = Thresholds()


def usage(
    name: str,
    cpu: float | None = 40.0,
    memory: float | None = 40.0,
    *,
    zone: str | None = None,
    samples: int = 60,
    expected: int = 60,
    size: float = 1.0,
) -> NodeUsage:
    return NodeUsage(name, zone, cpu, memory, samples, expected, size)


def hour(*nodes: NodeUsage) -> UsageWindow:
    return UsageWindow(HOUR, T0, nodes)


def day(*pairs: tuple[float | None, float | None]) -> UsageWindow:
    """A 24-hour window of full nodes n0, n1, ... with (cpu, memory) each."""
    nodes = tuple(
        NodeUsage(f"n{i}", None, cpu, memory, 1440, 1440) for i, (cpu, memory) in enumerate(pairs)
    )
    return UsageWindow(DAY, T0, nodes)


def quiet_day(count: int) -> UsageWindow:
    return day(*[(40.0, 40.0)] * count)


def evaluation(
    *nodes: NodeUsage, daily: UsageWindow | None = None, zone_resilient: bool = False
) -> Evaluation:
    return evaluate(
        "pool-a",
        hour(*nodes),
        daily if daily is not None else quiet_day(len(nodes)),
        P1,
        zone_resilient=zone_resilient,
    )


# --- thresholds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        (95.0, 40.0, State.OK),  # strictly above fires: exactly 95 does not
        (95.01, 40.0, State.FIRING),
        (94.99, 40.0, State.OK),
        (100.0, 40.0, State.FIRING),
        (40.0, 85.0, State.OK),
        (40.0, 85.01, State.FIRING),
        (40.0, 84.99, State.OK),
        (95.0, 85.0, State.OK),
        (95.01, 85.01, State.FIRING),
        (0.0, 0.0, State.OK),
    ],
)
def test_node_p1_thresholds(cpu: float, memory: float, expected: State) -> None:
    result = evaluation(usage("a", cpu, memory))
    (node,) = result.nodes
    assert (node.severity, node.scope, node.subject) == (Severity.P1, Scope.NODE, "a")
    assert node.state is expected
    assert (node.cpu, node.memory) == (cpu, memory)
    assert (node.cpu_threshold, node.memory_threshold) == (95.0, 85.0)
    assert node.window == HOUR and node.ends_at == T0
    assert node.key == "P1/node/a"


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        (75.0, 40.0, State.OK),
        (75.01, 40.0, State.FIRING),
        (40.0, 75.0, State.OK),
        (40.0, 75.01, State.FIRING),
        (75.0, 75.0, State.OK),
    ],
)
def test_group_p2_thresholds(cpu: float, memory: float, expected: State) -> None:
    result = evaluation(usage("n0"), usage("n1"), daily=day((cpu, memory), (cpu, memory)))
    p2 = result.group_p2
    assert (p2.severity, p2.scope, p2.key) == (Severity.P2, Scope.GROUP, "P2/group/pool-a")
    assert p2.state is expected
    assert (p2.cpu, p2.memory) == (cpu, memory)
    assert (p2.cpu_threshold, p2.memory_threshold, p2.window) == (75.0, 75.0, DAY)


def test_firing_reason_quotes_values_and_thresholds() -> None:
    (node,) = evaluation(usage("a", 97.0, 40.0)).nodes
    assert node.reason == "firing: CPU 97 % > 95 %, memory 40 % <= 85 % over 1h"
    p2 = evaluation(usage("n0"), daily=day((75.01, 40.0))).group_p2
    assert "CPU 75.01 % > 75 %" in p2.reason and "over 24h" in p2.reason


def test_thresholds_are_configurable_per_pool() -> None:
    strict = Thresholds(p1_cpu=80, p1_memory=70, p2_cpu=60, p2_memory=50)
    result = evaluate(
        "pool-a",
        hour(usage("n0", 80.01, 70.0)),
        day((60.0, 50.01)),
        strict,
        zone_resilient=False,
    )
    assert result.nodes[0].state is State.FIRING
    assert result.group_p2.state is State.FIRING
    assert result.group_p2.memory_threshold == 50


@pytest.mark.parametrize(
    "values",
    [{"p1_cpu": 0}, {"p1_memory": 100.01}, {"p2_cpu": -5}, {"p2_memory": math.nan}],
)
def test_thresholds_must_be_percentages(values: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="above 0 and at most 100"):
        Thresholds(**values)


def test_threshold_of_100_is_allowed_and_never_fires() -> None:
    never = Thresholds(p1_cpu=100, p1_memory=100)
    result = evaluate("g", hour(usage("a", 100.0, 100.0)), None, never, zone_resilient=False)
    assert result.nodes[0].state is State.OK


def test_window_of_the_wrong_length_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="hour window must be 1h"):
        evaluate("g", UsageWindow(DAY, T0, ()), None, P1, zone_resilient=False)
    with pytest.raises(ValueError, match="day window must be 24h"):
        evaluate("g", None, UsageWindow(HOUR, T0, ()), P1, zone_resilient=False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cpu": 100.5}, "from 0 to 100"),
        ({"memory": -1.0}, "from 0 to 100"),
        ({"samples": -1}, "samples must be"),
        ({"expected_samples": 0}, "samples must be"),
        ({"cpu_capacity": 0.0}, "cpu_capacity"),
    ],
)
def test_node_usage_rejects_bad_input(values: dict[str, float], message: str) -> None:
    fields = {
        "node": "a",
        "zone": None,
        "cpu": 1.0,
        "memory": 1.0,
        "samples": 1,
        "expected_samples": 1,
    }
    with pytest.raises(ValueError, match=message):
        NodeUsage(**(fields | values))  # type: ignore[arg-type]


def test_nan_is_no_data() -> None:
    assert usage("a", math.nan, 40.0).cpu is None


def test_a_window_lists_each_node_once() -> None:
    with pytest.raises(ValueError, match="twice: a"):
        hour(usage("a"), usage("a"))


# --- group averages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "expected_average", "expected"),
    [
        ([100.0, 90.0, 92.0], 94.0, State.OK),  # one node over P1, the group is not
        ([96.0, 96.0, 93.0], 95.0, State.OK),
        ([96.0, 96.0, 93.06], 95.02, State.FIRING),
        ([97.0, 97.0, 97.0, 97.0], 97.0, State.FIRING),
    ],
)
def test_group_p1_is_the_average_of_node_ratios(
    cpus: list[float], expected_average: float, expected: State
) -> None:
    result = evaluation(*[usage(f"n{i}", cpu) for i, cpu in enumerate(cpus)])
    assert result.group_p1.cpu == pytest.approx(expected_average)
    assert result.group_p1.state is expected
    assert result.group_p1.key == "P1/group/pool-a"


def test_group_average_is_unweighted_by_node_size() -> None:
    # As Elastisys does: the average of node ratios, whatever the node sizes.
    result = evaluation(usage("big", 90.0, size=4.0), usage("small", 10.0, size=1.0))
    assert result.group_p1.cpu == 50.0


def test_group_memory_p1() -> None:
    result = evaluation(usage("n0", 40.0, 85.0), usage("n1", 40.0, 85.02))
    assert result.group_p1.memory == pytest.approx(85.01)
    assert result.group_p1.state is State.FIRING


# --- missing and partial data ----------------------------------------------------------------


def test_node_without_data_is_unknown_never_ok() -> None:
    result = evaluation(usage("a", None, None, samples=0), usage("b"))
    node = result.nodes[0]
    assert node.state is State.UNKNOWN
    assert node.missing == ("a",)
    assert "no CPU data for a" in node.reason and "no memory data for a" in node.reason
    assert result.group_p1.state is State.UNKNOWN
    assert result.group_p1.missing == ("a",)


def test_samples_zero_is_no_data_whatever_the_values() -> None:
    result = evaluation(usage("a", 20.0, 20.0, samples=0))
    assert result.nodes[0].state is State.UNKNOWN
    assert result.nodes[0].cpu is None


def test_one_resource_missing_is_unknown_unless_the_other_fires() -> None:
    quiet = evaluation(usage("a", None, 40.0)).nodes[0]
    assert quiet.state is State.UNKNOWN
    assert quiet.missing == ("a",)
    hot = evaluation(usage("a", None, 90.0)).nodes[0]
    assert hot.state is State.FIRING  # memory alone is enough to know it fires


def test_partial_data_reads_as_firing_when_over_but_never_as_ok() -> None:
    low = evaluation(usage("a", 10.0, 10.0, samples=30))
    assert low.nodes[0].state is State.UNKNOWN
    assert low.nodes[0].partial == ("a",)
    assert "partial data for a (30 of 60 samples)" in low.nodes[0].reason
    assert low.group_p1.state is State.UNKNOWN
    high = evaluation(usage("a", 99.0, 10.0, samples=30))
    assert high.nodes[0].state is State.FIRING
    assert high.nodes[0].partial == ("a",)


def test_group_fires_on_the_nodes_with_data_and_names_the_rest() -> None:
    result = evaluation(usage("n0", 97.0), usage("n1", 97.0), usage("n2", None, None))
    assert result.group_p1.state is State.FIRING
    assert result.group_p1.cpu == 97.0
    assert result.group_p1.missing == ("n2",)
    assert "no CPU data for n2" in result.group_p1.reason


def test_group_under_threshold_with_a_node_missing_is_unknown() -> None:
    result = evaluation(usage("n0", 20.0), usage("n1", 20.0), usage("n2", None, None))
    assert result.group_p1.state is State.UNKNOWN
    assert "cannot clear without full data" in result.group_p1.reason


def test_no_window_is_unknown_for_every_group_alert() -> None:
    result = evaluate("pool-a", None, None, P1, zone_resilient=False)
    assert result.nodes == ()
    assert result.group_p1.state is State.UNKNOWN and result.group_p2.state is State.UNKNOWN
    assert result.group_p1.ends_at is None
    assert "no 1h usage window" in result.group_p1.reason
    assert "no 24h usage window" in result.group_p2.reason
    assert not result.n_minus_one.ok and not result.rolling_restart.ok


def test_empty_window_is_unknown() -> None:
    result = evaluate("pool-a", hour(), UsageWindow(DAY, T0, ()), P1, zone_resilient=False)
    assert result.group_p1.state is State.UNKNOWN
    assert result.group_p2.state is State.UNKNOWN


def test_partial_24h_window_leaves_p2_unknown() -> None:
    partial = UsageWindow(
        DAY,
        T0,
        (NodeUsage("n0", None, 30.0, 30.0, 1440, 1440), NodeUsage("n1", None, 30, 30, 180, 1440)),
    )
    result = evaluate("pool-a", hour(usage("n0"), usage("n1")), partial, zone_resilient=False)
    assert result.group_p2.state is State.UNKNOWN
    assert result.group_p2.partial == ("n1",)


def test_nodes_a_window_leaves_out_count_as_no_data() -> None:
    window = hour(usage("a"), usage("gone"))
    result = evaluate(
        "pool-a", window, quiet_day(0), P1, zone_resilient=False, nodes=["a", "b", "n0"]
    )
    assert [(n.subject, n.state) for n in result.nodes] == [
        ("a", State.OK),
        ("b", State.UNKNOWN),
        ("n0", State.UNKNOWN),
    ]
    assert result.group_p1.missing == ("b", "n0")
    assert result.group_p2.missing == ("a", "b", "n0")  # the day window listed no node


# --- headroom --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "memories", "cpu_after", "memory_after", "ok"),
    [
        ([60.0] * 4, [40.0] * 4, 80.0, 160 / 3, True),
        ([71.25] * 4, [40.0] * 4, 95.0, 160 / 3, True),  # exactly at P1 stays
        ([72.0] * 4, [40.0] * 4, 96.0, 160 / 3, False),
        ([40.0] * 4, [63.75] * 4, 160 / 3, 85.0, True),
        ([40.0] * 4, [64.0] * 4, 160 / 3, 256 / 3, False),
        ([90.0, 90.0, 0.0], [10.0, 10.0, 10.0], 90.0, 15.0, True),  # load moves, not vanishes
    ],
)
def test_n_minus_one_headroom(
    cpus: list[float],
    memories: list[float],
    cpu_after: float,
    memory_after: float,
    ok: bool,
) -> None:
    nodes = [usage(f"n{i}", c, m) for i, (c, m) in enumerate(zip(cpus, memories, strict=True))]
    result = evaluation(*nodes)
    for check in (result.n_minus_one, result.rolling_restart):
        assert check.ok is ok
        assert check.cpu_after == pytest.approx(cpu_after)
        assert check.memory_after == pytest.approx(memory_after)
        assert check.removed == "n0"  # equal sizes: the first by name
        assert check.domain is Domain.NODE
        assert (check.cpu_threshold, check.memory_threshold) == (95.0, 85.0)


def test_headroom_removes_the_largest_node() -> None:
    # 2*50 + 80 + 80 = 260 units of load; losing the size-2 node leaves 2: 130 %.
    nodes = [usage("a", 80.0, size=1.0), usage("big", 50.0, size=2.0), usage("c", 80.0)]
    check = headroom(nodes, P1, by_zone=False)
    assert check.removed == "big"
    assert check.cpu_after == 130.0
    assert not check.ok
    assert check.reason.startswith("over P1 with node big out (largest of 3 nodes): CPU 130 %")


def test_zone_headroom_removes_the_largest_zone() -> None:
    nodes = [
        usage("a", 60.0, 40.0, zone="1"),
        usage("b", 60.0, 40.0, zone="2"),
        usage("c", 60.0, 40.0, zone="3"),
        usage("d", 60.0, 40.0, zone="1"),
    ]
    result = evaluation(*nodes, zone_resilient=True)
    zone = result.n_minus_one
    assert (zone.domain, zone.removed, zone.ok) == (Domain.ZONE, "1", False)
    assert zone.cpu_after == 120.0  # 240 / (4 - 2)
    assert zone.memory_after == 80.0
    node = result.rolling_restart  # one node at a time for a restart, even in a zoned pool
    assert (node.domain, node.removed, node.ok) == (Domain.NODE, "a", True)
    assert node.cpu_after == 80.0


def test_zone_headroom_balanced_pool_passes() -> None:
    nodes = [usage(f"n{i}", 50.0, 50.0, zone=str(i % 3 + 1)) for i in range(6)]
    check = headroom(nodes, P1, by_zone=True)
    assert (check.ok, check.cpu_after, check.memory_after) == (True, 75.0, 75.0)


@pytest.mark.parametrize(
    ("nodes", "by_zone", "reason"),
    [
        ([], False, "no data"),
        ([usage("a"), usage("b", None, 40.0)], False, "no data: b"),
        ([usage("a"), usage("b", samples=59)], False, "no data: b"),
        ([usage("a", 1.0, 1.0)], False, "all capacity is in node a"),
        ([usage("a", zone="1"), usage("b", zone="1")], True, "all capacity is in zone 1"),
        ([usage("a", zone="1"), usage("b")], True, "b in no zone"),
    ],
)
def test_headroom_unknown_is_not_ok(nodes: list[NodeUsage], by_zone: bool, reason: str) -> None:
    check = headroom(nodes, P1, by_zone=by_zone)
    assert check == Headroom(
        False,
        None,
        None,
        "",
        check.reason,
        Domain.ZONE if by_zone else Domain.NODE,
        95.0,
        85.0,
    )
    assert reason in check.reason


def test_scale_down_blocked_when_metrics_unavailable() -> None:
    result = evaluation(usage("a", 5.0, 5.0), usage("b", 5.0, 5.0), usage("c", None, None))
    assert not result.n_minus_one.ok
    assert result.n_minus_one.reason.startswith("no data: c")


# --- policy ----------------------------------------------------------------------------------


def hot_group(count: int, cpu: float = 97.0) -> Evaluation:
    return evaluation(*[usage(f"n{i}", cpu) for i in range(count)])


def kinds(actions: list[Action]) -> list[ActionKind]:
    return [action.kind for action in actions]


def test_group_p1_scales_up_one_node() -> None:
    actions = decide_actions(hot_group(3), PoolState(3, 10), T0, cooldown=COOLDOWN)
    assert kinds(actions) == [ActionKind.SCALE_UP_ONE, ActionKind.NOTIFY_P1]
    assert actions[0].alerts == ("P1/group/pool-a",)
    assert "(3 -> 4)" in actions[0].reason
    assert "CPU 97 % > 95 %" in actions[1].reason


def test_quiet_group_gives_no_actions() -> None:
    assert decide_actions(hot_group(3, 40.0), PoolState(3, 10), T0, cooldown=COOLDOWN) == []


@pytest.mark.parametrize(
    ("since", "scales"),
    [
        (None, True),
        (COOLDOWN, True),  # exactly one cooldown later: allowed
        (COOLDOWN - timedelta(seconds=1), False),
        (timedelta(0), False),
        (-timedelta(minutes=5), False),  # a scale-up "in the future" (clock skew) counts as recent
    ],
)
def test_cooldown_gives_one_scale_up_per_episode(since: timedelta | None, scales: bool) -> None:
    last = None if since is None else T0 - since
    actions = decide_actions(hot_group(3), PoolState(3, 10, last), T0, cooldown=COOLDOWN)
    assert (ActionKind.SCALE_UP_ONE in kinds(actions)) is scales
    assert ActionKind.NOTIFY_P1 in kinds(actions)
    if not scales:
        assert "within the 30m cooldown" in actions[-1].reason


def test_scale_up_bounded_by_max_nodes() -> None:
    actions = decide_actions(hot_group(4), PoolState(4, 4), T0, cooldown=COOLDOWN)
    assert kinds(actions) == [ActionKind.NOTIFY_P1]
    assert "at max_nodes 4" in actions[0].reason


def test_single_node_p1_is_a_rebalancing_problem() -> None:
    result = evaluation(usage("n0", 99.0), usage("n1", 40.0), usage("n2", 40.0))
    assert result.group_p1.state is State.OK
    actions = decide_actions(result, PoolState(3, 10), T0, cooldown=COOLDOWN)
    assert kinds(actions) == [ActionKind.NOTIFY_REBALANCE]
    assert actions[0].alerts == ("P1/node/n0",)
    assert "a scale-up would not help" in actions[0].reason


def test_node_p1_with_group_p1_is_the_group_scale_up() -> None:
    result = evaluation(usage("n0", 99.0), usage("n1", 96.0), usage("n2", 96.0))
    actions = decide_actions(result, PoolState(3, 10), T0, cooldown=COOLDOWN)
    assert kinds(actions) == [ActionKind.SCALE_UP_ONE, ActionKind.NOTIFY_P1]


def test_node_p1_with_group_unknown_is_rebalance_with_a_caveat() -> None:
    result = evaluation(usage("n0", 99.0), usage("n1", 40.0), usage("n2", None, None))
    assert result.group_p1.state is State.UNKNOWN
    actions = decide_actions(result, PoolState(3, 10), T0, cooldown=COOLDOWN)
    assert kinds(actions) == [ActionKind.NOTIFY_REBALANCE, ActionKind.NOTIFY_NO_DATA]
    assert "may also be a capacity problem" in actions[0].reason
    assert "P1 node n2" in actions[1].reason


@pytest.mark.parametrize(("auto", "scales"), [(False, False), (True, True)])
def test_p2_is_a_notification_with_optional_scale_up(auto: bool, scales: bool) -> None:
    result = evaluation(usage("n0"), usage("n1"), usage("n2"), daily=day(*[(80.0, 40.0)] * 3))
    actions = decide_actions(
        result, PoolState(3, 10), T0, cooldown=COOLDOWN, auto_scale_up_on_p2=auto
    )
    expected = [ActionKind.NOTIFY_P2]
    assert kinds(actions) == ([ActionKind.SCALE_UP_ONE, *expected] if scales else expected)
    assert actions[-1].alerts == ("P2/group/pool-a",)


def test_p1_and_p2_together_scale_up_once() -> None:
    result = evaluation(*[usage(f"n{i}", 97.0) for i in range(3)], daily=day(*[(80.0, 40.0)] * 3))
    actions = decide_actions(
        result, PoolState(3, 10), T0, cooldown=COOLDOWN, auto_scale_up_on_p2=True
    )
    assert kinds(actions) == [ActionKind.SCALE_UP_ONE, ActionKind.NOTIFY_P1, ActionKind.NOTIFY_P2]
    assert actions[0].alerts == ("P1/group/pool-a", "P2/group/pool-a")


@pytest.mark.parametrize(
    ("count", "advised"),
    [(4, False), (5, True), (6, True), (9, True)],  # 5 -> 6 reaches 6
)
def test_consolidation_advice_when_the_group_reaches_six(count: int, advised: bool) -> None:
    actions = decide_actions(hot_group(count), PoolState(count, 20), T0, cooldown=COOLDOWN)
    notify = actions[-1]
    assert notify.kind is ActionKind.NOTIFY_P1
    assert any(a.startswith(ADVICE_CONSOLIDATE) for a in notify.advice) is advised


def test_consolidation_advice_without_a_scale_up() -> None:
    result = evaluation(*[usage(f"n{i}") for i in range(6)], daily=day(*[(80.0, 40.0)] * 6))
    (notify,) = decide_actions(result, PoolState(6, 20), T0, cooldown=COOLDOWN)
    assert notify.kind is ActionKind.NOTIFY_P2
    assert notify.advice == (f"{ADVICE_CONSOLIDATE}: the group has 6 nodes",)


@pytest.mark.parametrize(("count", "held"), [(1, True), (2, False), (3, False)])
def test_hold_for_a_human_when_one_node_would_double_the_group(count: int, held: bool) -> None:
    actions = decide_actions(hot_group(count), PoolState(count, 10), T0, cooldown=COOLDOWN)
    assert (ActionKind.SCALE_UP_ONE not in kinds(actions)) is held
    notify = actions[-1]
    assert any(a.startswith(ADVICE_HOLD) for a in notify.advice) is held
    if held:
        assert "would double the group (1 -> 2)" in notify.reason


def test_unknown_alerts_are_reported_as_no_data() -> None:
    result = evaluate("pool-a", None, None, P1, zone_resilient=False)
    (action,) = decide_actions(result, PoolState(3, 10), T0, cooldown=COOLDOWN)
    assert action.kind is ActionKind.NOTIFY_NO_DATA
    assert action.alerts == ("P1/group/pool-a", "P2/group/pool-a")


# --- downscale review ------------------------------------------------------------------------

NOW = datetime(2024, 7, 1, 6, 0, tzinfo=UTC)
YESTERDAY = date(2024, 6, 30)


def history(
    days: int = 180,
    nodes: int = 8,
    *,
    cpu: float = 30.0,
    memory: float = 35.0,
    peak: float = 36.0,
    weekly_peak: float | None = None,
    nodes_recently: tuple[int, int] | None = None,  # (last days, node count)
) -> list[DailySummary]:
    """A synthetic history ending yesterday; each day's peak hour above its average."""
    summaries = []
    for back in range(days, 0, -1):
        day_ = YESTERDAY - timedelta(days=back - 1)
        count = nodes
        scale = 1.0
        if nodes_recently is not None and back <= nodes_recently[0]:
            count = nodes_recently[1]
            scale = nodes / count  # the same load on fewer nodes
        cpu_peak = weekly_peak if weekly_peak is not None and day_.weekday() == 0 else peak
        summaries.append(
            DailySummary(
                day=day_,
                node_count=count,
                cpu_avg=cpu * scale,
                cpu_peak=min(100.0, cpu_peak * scale),
                memory_avg=memory * scale,
                memory_peak=min(100.0, (memory + 5) * scale),
                largest_node_share=1 / count,
            )
        )
    return summaries


def review(summaries: list[DailySummary], nodes: int = 8, **more: object):  # type: ignore[no-untyped-def]
    return review_downscale(summaries, nodes, NOW, **({"last_scale_up_at": None} | more))  # type: ignore[arg-type]


def test_review_removes_one_node_from_a_pool_at_30_percent() -> None:
    result = review(history())
    assert (result.verdict, result.remove, result.days) == (Verdict.REMOVE, 1, 180)
    assert result.projection is not None
    assert result.projection.nodes == 7
    assert result.projection.cpu_peak == pytest.approx(36 * 8 / 7)
    assert result.projection.cpu_after_failure == pytest.approx(36 * 8 / 6)
    assert result.projection.memory_after_failure == pytest.approx(40 * 8 / 6)
    assert result.reason.startswith("remove 1 node (8 -> 7)")
    assert "average CPU 30 %" in result.reason


def test_review_keeps_a_pool_with_a_weekly_peak_at_80_percent() -> None:
    summaries = history(weekly_peak=80.0)
    assert sum(1 for s in summaries if s.cpu_peak == 80.0) == 25  # the Mondays of 180 days
    result = review(summaries)
    assert (result.verdict, result.remove) == (Verdict.KEEP, 0)
    assert result.projection is not None
    assert result.projection.cpu_peak == pytest.approx(80 * 8 / 7)  # 91.4 > 75
    assert not result.projection.ok


def test_review_uses_the_highest_peak_not_a_percentile() -> None:
    # One day a month (6 of 180) at 80 %: a 95th percentile would drop them; the review does not.
    summaries = [
        s if s.day.day != 15 else DailySummary(s.day, 8, 30.0, 80.0, 35.0, 40.0, 1 / 8)
        for s in history()
    ]
    assert review(summaries).verdict is Verdict.KEEP


def test_review_peak_is_checked_against_p2_at_the_smaller_size() -> None:
    # 8 nodes with a peak at 65.6 %: at 7 nodes 74.97 % (<= 75); at 65.7 % it is 75.09 %.
    assert review(history(peak=65.6)).verdict is Verdict.REMOVE
    assert review(history(peak=65.7)).verdict is Verdict.KEEP


@pytest.mark.parametrize("nodes", [3, 2])
def test_review_never_goes_below_three_nodes(nodes: int) -> None:
    result = review(history(nodes=nodes, cpu=5.0, memory=5.0, peak=6.0), nodes, max_step=5)
    assert (result.verdict, result.remove) == (Verdict.KEEP, 0)
    assert "never goes below 3" in result.reason


def test_review_advises_six_half_size_nodes_at_three() -> None:
    result = review(history(nodes=3, cpu=10.0, memory=10.0, peak=12.0), 3)
    assert result.verdict is Verdict.KEEP
    (advice,) = result.advice
    assert advice.startswith("consider 6 half-size nodes instead of 3: 5 of them would pass")


def test_review_no_half_size_advice_when_the_load_needs_three_nodes() -> None:
    result = review(history(nodes=3, cpu=60.0, memory=50.0, peak=70.0), 3)
    assert (result.verdict, result.advice) == (Verdict.KEEP, ())


def test_review_removes_down_to_three_at_most() -> None:
    result = review(history(nodes=4, cpu=5.0, memory=5.0, peak=6.0), 4, max_step=5)
    assert (result.verdict, result.remove) == (Verdict.REMOVE, 1)


def test_review_respects_min_nodes_above_three() -> None:
    result = review(history(nodes=5, cpu=5.0, memory=5.0, peak=6.0), 5, min_nodes=5)
    assert (result.verdict, result.remove) == (Verdict.KEEP, 0)


def test_review_holds_for_a_human_when_halving() -> None:
    result = review(history(cpu=10.0, memory=10.0, peak=12.0), 8, max_step=8)
    assert (result.verdict, result.remove) == (Verdict.HOLD_FOR_HUMAN, 5)  # 8 -> 3
    assert result.reason.startswith(ADVICE_HOLD)


def test_review_holds_when_one_step_more_halves_the_lookbacks_size() -> None:
    # Eight nodes for months, reviewed down to five; the next step to four halves the group.
    summaries = history(cpu=20.0, memory=20.0, peak=22.0, nodes_recently=(20, 5))
    result = review(summaries, 5)
    assert (result.verdict, result.remove) == (Verdict.HOLD_FOR_HUMAN, 1)
    assert "half or less of the group's 8" in result.reason


def test_review_scales_each_day_by_its_node_count() -> None:
    # The same load at 8 nodes and later at 7: both project to the same peak at 6 nodes.
    summaries = history(nodes_recently=(30, 7))
    result = review(summaries, 7)
    assert result.verdict is Verdict.REMOVE
    assert result.projection is not None
    assert result.projection.cpu_peak == pytest.approx(36 * 8 / 6)


@pytest.mark.parametrize(
    ("since", "refused"),
    [
        (timedelta(days=1), True),
        (timedelta(days=14) - timedelta(seconds=1), True),
        (timedelta(days=14), False),  # exactly the window later: allowed
        (timedelta(days=60), False),
    ],
)
def test_review_refuses_right_after_a_scale_up(since: timedelta, refused: bool) -> None:
    result = review(history(), last_scale_up_at=NOW - since)
    assert (result.verdict is Verdict.REFUSED) is refused
    if refused:
        assert result.refusal is ReviewRefusal.RECENT_SCALE_UP
        assert "anti-oscillation" in result.reason


@pytest.mark.parametrize(("days", "refused"), [(89, True), (90, False), (30, True), (0, True)])
def test_review_needs_min_days_of_history(days: int, refused: bool) -> None:
    result = review(history(days))
    assert (result.refusal is ReviewRefusal.TOO_LITTLE_HISTORY) is refused
    assert result.verdict is (Verdict.REFUSED if refused else Verdict.REMOVE)


def test_review_refuses_a_day_without_data() -> None:
    summaries = history()
    summaries[100] = DailySummary(summaries[100].day, 8, 30.0, None, 35.0, 40.0, 1 / 8)
    result = review(summaries)
    assert (result.verdict, result.refusal) == (Verdict.REFUSED, ReviewRefusal.MISSING_DATA)
    assert str(summaries[100].day) in result.reason


def test_review_refuses_a_missing_day() -> None:
    summaries = history()
    gone = summaries.pop(50).day
    result = review(summaries)
    assert result.refusal is ReviewRefusal.MISSING_DATA
    assert str(gone) in result.reason


def test_review_refuses_when_yesterday_is_missing() -> None:
    result = review(history()[:-1])
    assert result.refusal is ReviewRefusal.MISSING_DATA
    assert str(YESTERDAY) in result.reason


def test_review_ignores_days_outside_the_lookback_and_today() -> None:
    older = history(200, weekly_peak=None)
    today = DailySummary(NOW.date(), 8, 99.0, 99.0, 99.0, 99.0, 1 / 8)
    ancient = [DailySummary(s.day, 8, 99.0, 99.0, 99.0, 99.0, 1 / 8) for s in older[:20]]
    result = review([*ancient, *older[20:], today])
    assert (result.verdict, result.days) == (Verdict.REMOVE, 180)


def test_review_zone_resilient_pool_keeps_a_zone_of_headroom() -> None:
    # Nine nodes in three zones at 50 %: losing a zone (3 nodes) at 8 nodes leaves 5: 90 %.
    summaries = [DailySummary(s.day, 9, 45.0, 50.0, 40.0, 45.0, 1 / 3) for s in history(nodes=9)]
    result = review(summaries, 9)
    assert result.projection is not None
    assert result.projection.cpu_after_failure == pytest.approx(450 / 5)
    assert (result.verdict, result.remove) == (Verdict.REMOVE, 1)
    hotter = [DailySummary(s.day, 9, 50.0, 55.0, 40.0, 45.0, 1 / 3) for s in summaries]
    assert review(hotter, 9).verdict is Verdict.KEEP  # 495 / 5 = 99 % > 95 %


def test_review_rejects_duplicate_days() -> None:
    summaries = history()
    with pytest.raises(ValueError, match="two summaries"):
        review([*summaries, summaries[-1]])


# --- properties ------------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[DailySummary]:
    days = draw(st.integers(0, 200))
    level = draw(st.floats(0, 100))
    spread = draw(st.floats(0, 50))
    counts = st.integers(1, 30)
    summaries = []
    for back in range(days, 0, -1):
        if draw(st.integers(0, 99)) == 0:
            continue  # a rare missing day
        count = draw(counts) if draw(st.booleans()) and back < 30 else 8
        peak = min(100.0, level + draw(st.floats(0, spread)))
        summaries.append(
            DailySummary(
                YESTERDAY - timedelta(days=back - 1), count, level, peak, level, peak, 1 / count
            )
        )
    return summaries


@settings(max_examples=300, deadline=None)
@given(
    summaries=histories(),
    nodes=st.integers(0, 40),
    since=st.none() | st.timedeltas(timedelta(days=-2), timedelta(days=40)),
    max_step=st.integers(1, 40),
    min_nodes=st.integers(0, 10),
)
def test_review_never_below_three_nor_soon_after_a_scale_up(
    summaries: list[DailySummary],
    nodes: int,
    since: timedelta | None,
    max_step: int,
    min_nodes: int,
) -> None:
    last = None if since is None else NOW - since
    result = review(summaries, nodes, last_scale_up_at=last, max_step=max_step, min_nodes=min_nodes)
    if result.verdict in (Verdict.REMOVE, Verdict.HOLD_FOR_HUMAN):
        assert 1 <= result.remove <= max_step
        assert nodes - result.remove >= max(3, min_nodes)
        assert result.projection is not None and result.projection.ok
    else:
        assert result.remove == 0
    if since is not None and since < timedelta(days=14):
        assert (result.verdict, result.refusal) == (Verdict.REFUSED, ReviewRefusal.RECENT_SCALE_UP)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.floats(0, 100),
            st.none() | st.floats(0, 100),
            st.integers(0, 60),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_missing_or_partial_data_is_never_ok(
    rows: list[tuple[float | None, float | None, int]],
) -> None:
    nodes = [usage(f"n{i:02d}", cpu, mem, samples=s) for i, (cpu, mem, s) in enumerate(rows)]
    result = evaluation(*nodes)
    incomplete = any(cpu is None or mem is None or s < 60 for cpu, mem, s in rows)
    if incomplete:
        assert result.group_p1.state is not State.OK
        assert not result.n_minus_one.ok and not result.rolling_restart.ok
        assert result.n_minus_one.cpu_after is None
    for alert, (cpu, mem, s) in zip(result.nodes, rows, strict=True):
        if cpu is None or mem is None or s < 60:
            assert alert.state is not State.OK
