"""Patch decisions, pure: the window, reading a node's check, the plan, blockers, headroom."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.config.patch import Window
from shared.decide.capacity import NodeUsage, Thresholds
from shared.decide.patching import (
    CheckUnreadable,
    NodeCheck,
    PatchCandidate,
    blockers,
    in_window,
    parse_check,
    patch_headroom,
    plan_patch,
    why_not_take,
    window_end,
)

MONDAY_10 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("window", "now", "inside"),
    [
        (Window(), MONDAY_10, True),
        (Window(days=("tue",)), MONDAY_10, False),
        (Window(start="09:00", end="11:00"), MONDAY_10, True),
        (Window(start="10:01", end="11:00"), MONDAY_10, False),
        # 22:00-04:00 Sunday night: Monday 03:00 is inside (it started on Sunday), 05:00 is not.
        (Window(days=("sun",), start="22:00", end="04:00"), MONDAY_10.replace(hour=3), True),
        (Window(days=("sun",), start="22:00", end="04:00"), MONDAY_10.replace(hour=5), False),
        # 11:00 in Stockholm is 10:00 UTC in November.
        (Window(start="11:00", end="11:30", time_zone="Europe/Stockholm"), MONDAY_10, True),
    ],
)
def test_the_window(window: Window, now: datetime, inside: bool) -> None:
    assert in_window(window, now) is inside


def test_an_overnight_window_closes_the_next_morning() -> None:
    window = Window(days=("mon",), start="22:00", end="04:00")
    closes = window_end(window, MONDAY_10.replace(hour=23))
    assert closes is not None and closes.isoformat() == "2026-11-03T04:00:59+00:00"
    assert window_end(window, MONDAY_10) is None


CHECK = """== upgrades
Inst openssl [3.0.13-1] (3.0.13-2 Ubuntu:24.04/noble-updates [amd64])
Inst linux-image-6.8.0-999-azure (6.8.0-999.1 Ubuntu:24.04/noble-updates [amd64])
Inst linux-image-6.8.0-1017-azure (6.8.0-1017.1 Ubuntu:24.04/noble-updates [amd64])
Inst linux-image-azure [6.8.0.1015.1] (6.8.0.1017.1 Ubuntu:24.04/noble-updates [amd64])
2 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.
== kernel
6.8.0-1015-azure
== boot
8ad2e9e8-16f3-5ff1-a23e-4a56a003b72b
== reboot
not-required
== done
"""


def test_a_check_is_read_by_its_sections() -> None:
    check = parse_check(CHECK)
    assert check == NodeCheck(
        kernel="6.8.0-1015-azure",
        boot_id="8ad2e9e8-16f3-5ff1-a23e-4a56a003b72b",
        reboot_required=False,
        pending=4,
        new_kernel="6.8.0-1017-azure",  # by version, not by text; the metapackage is no kernel
    )


def test_a_check_cut_to_its_last_4_kb_still_says_updates_are_pending() -> None:
    cut = CHECK.split("\n", 3)[3]  # the header and the first lines are gone
    check = parse_check(cut)
    assert check.pending >= 1 and check.new_kernel is None  # no kernel is then expected
    assert check.kernel == "6.8.0-1015-azure"


def test_a_check_cut_short_is_not_read_as_up_to_date() -> None:
    with pytest.raises(CheckUnreadable, match="done"):
        parse_check(CHECK.replace("== done\n", ""))


def _node(name: str, **changes: object) -> PatchCandidate:
    fields: dict[str, object] = {
        "name": name,
        "instance_id": name[-1],
        "zone": None,
        "ready": True,
        "unschedulable": False,
        "claimed_by": None,
        "last_patched": None,
        "check": NodeCheck("k1", "b", False, 2, "k2"),
    }
    return PatchCandidate(**(fields | changes))  # type: ignore[arg-type]


def test_the_plan_takes_the_most_overdue_first_one_zone_at_a_time_and_says_why_not() -> None:
    old, new = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    nodes = [
        _node("n1", zone="1", last_patched=new),
        _node("n2", zone="2", last_patched=old),
        _node("n3", zone="1"),  # never patched: the most overdue
        _node("n4", zone="2", last_patched=new),
        _node("n5", claimed_by="scale-7"),
        _node("n6", unschedulable=True),
        _node("n7", ready=False),
        _node("n8", check=None, check_error="no answer"),
        _node("n9", check=NodeCheck("k1", "b", False, 0, None)),
        _node("na", check=NodeCheck("k1", "b", True, 0, None)),  # reboot pending
    ]
    plan = plan_patch(nodes, mode="updates")
    assert plan.order == ("n3", "n1", "na", "n2", "n4")  # zone 1 (n3 never patched), none, 2
    assert plan.left_out == {
        "n5": "claimed by job scale-7",
        "n6": "cordoned by someone else: left as it is",
        "n7": "not Ready: repair, not patching, is what it needs",
        "n8": "its check failed: no answer",
        "n9": "up to date: no updates pending, no reboot pending",
    }


def test_reboot_only_takes_the_nodes_that_ask_for_a_reboot_or_that_kured_marked() -> None:
    nodes = [
        _node("n1"),
        _node("n2", check=NodeCheck("k1", "b", True, 0, None)),
        _node("n3", kured_reboot_needed=True),
    ]
    plan = plan_patch(nodes, mode="reboot_only", only=["n1", "n2", "n3", "ghost"])
    assert plan.order == ("n2", "n3")
    assert plan.left_out == {"ghost": "not a node of this pool", "n1": "no reboot pending"}


def _usage(node: str, cpu: float | None, samples: int = 60) -> NodeUsage:
    return NodeUsage(node, None, cpu, 40.0 if cpu is not None else None, samples, 60)


def test_headroom_counts_the_nodes_already_out() -> None:
    usages = [_usage(str(n), 60.0) for n in range(4)]  # 240 % of load over 4 nodes
    assert patch_headroom(usages, [], "0", Thresholds()) is None  # 80 % on 3 nodes
    said = patch_headroom(usages, ["1"], "0", Thresholds())  # 120 % on 2 nodes
    assert said is not None and "cpu 120.0% > 95%" in said


def test_headroom_uses_a_partial_window_and_refuses_without_any_data() -> None:
    partial = [_usage("0", 30.0, samples=20), _usage("1", 30.0)]
    assert patch_headroom([*partial, _usage("2", 30.0)], [], "0", Thresholds()) is None
    missing = patch_headroom([*partial, _usage("2", None, samples=0)], [], "0", Thresholds())
    assert missing is not None and "headroom is not assumed" in missing


def test_blockers_wait_for_a_p1_a_blocking_pod_or_kureds_lock_on_this_pool() -> None:
    assert blockers(group_p1=False, blocking_pods=[], kured_lock_holders=[], pool_nodes=[]) == []
    assert (
        blockers(
            group_p1=False,
            blocking_pods=[],
            kured_lock_holders=["other-pool-node"],
            pool_nodes=["a"],
        )
        == []
    )
    held = blockers(
        group_p1=True,
        blocking_pods=["db/primary-0"],
        kured_lock_holders=["a", "?"],
        pool_nodes=["a"],
    )
    assert held == [
        "a P1 alert is active on the node group",
        "pods matching a blocking selector: db/primary-0",
        "kured holds its reboot lock for a, ?",
    ]


@pytest.mark.parametrize(
    ("unschedulable", "ready", "why"),
    [
        (False, True, None),
        (True, True, "cordoned by someone else: left as it is"),
        (False, False, "not Ready: repair, not patching, is what it needs"),
    ],
)
def test_a_node_is_asked_again_right_before_it_is_taken(
    unschedulable: bool, ready: bool, why: str | None
) -> None:
    assert why_not_take(unschedulable=unschedulable, ready=ready) == why
