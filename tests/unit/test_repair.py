"""Repair decisions as tables: which drift gets which repair and rung, the brakes (share of the
pool or cluster unhealthy, repairs per node per day, no-repair, repair off), one in flight."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.config.repair import RepairSettings
from shared.decide.counting import InstanceState
from shared.decide.repair import (
    Member,
    Problem,
    Quarantine,
    Repair,
    attempt_id,
    in_flight,
    next_rung,
    plan_repair,
    repair_job_id,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LIVE, FAILED = InstanceState.LIVE, InstanceState.FAILED
CREATING, DELETING = InstanceState.CREATING, InstanceState.DELETING
SETTINGS = RepairSettings()


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def healthy(index: int) -> Member:
    return Member(f"vmss00000{index}", str(index), LIVE, ago(600), ready_since=ago(600))


def pool(*sick: Member, size: int = 6) -> list[Member]:
    taken = {m.instance_id for m in sick}
    return [*sick, *(healthy(i) for i in range(size) if str(i) not in taken)]


NOT_READY_11 = replace(healthy(1), ready=False, ready_since=ago(11))


@pytest.mark.parametrize(
    ("member", "problem", "rung", "force"),
    [
        (
            replace(healthy(1), state=FAILED, since=ago(1), has_node=False),
            Problem.FAILED,
            None,
            False,
        ),
        (
            replace(healthy(1), state=CREATING, since=ago(21), has_node=False),
            Problem.STUCK_CREATING,
            None,
            True,
        ),
        (replace(healthy(1), state=DELETING, since=ago(21)), Problem.STUCK_DELETING, None, True),
        (NOT_READY_11, Problem.NOT_READY, "restart", False),
        (
            replace(healthy(1), since=ago(11), has_node=False, ready=False),
            Problem.NEVER_REGISTERED,
            "restart",
            False,
        ),
        (Member("orphan", None, None, ago(61), ready=False), Problem.ORPHAN_NODE, None, False),
    ],
    ids=["failed", "stuck-creating", "stuck-deleting", "not-ready", "never-registered", "orphan"],
)
def test_each_drift_gets_its_repair(
    member: Member, problem: Problem, rung: str | None, force: bool
) -> None:
    plan = plan_repair("workers", pool(member), SETTINGS, [], NOW)
    assert isinstance(plan.action, Repair)
    assert (plan.action.finding.problem, plan.action.first_rung, plan.action.force) == (
        problem,
        rung,
        force,
    )
    assert plan.brake is None


@pytest.mark.parametrize(
    "member",
    [
        replace(healthy(1), ready=False, ready_since=ago(9)),  # NotReady, not for 10 minutes yet
        replace(healthy(1), state=CREATING, since=ago(19), has_node=False),
        replace(healthy(1), state=DELETING, since=ago(19)),
        replace(healthy(1), since=ago(9), has_node=False, ready=False),
        Member("orphan", None, None, ago(59), ready=False),
        replace(healthy(1), state=InstanceState.UPDATING, ready=False, ready_since=ago(30)),
    ],
    ids=[
        "not-ready-9min",
        "creating-19min",
        "deleting-19min",
        "no-node-9min",
        "orphan-59min",
        "updating",
    ],
)
def test_drift_within_its_deadline_is_left_alone(member: Member) -> None:
    plan = plan_repair("workers", pool(member), SETTINGS, [], NOW)
    assert plan.action is None and plan.findings == ()


def test_the_most_urgent_problem_goes_first_one_at_a_time() -> None:
    failed = replace(healthy(2), state=FAILED, since=ago(1), has_node=False)
    plan = plan_repair("workers", pool(NOT_READY_11, failed), SETTINGS, [], NOW)
    assert plan.action is not None and plan.action.finding.member is failed
    assert [f.problem for f in plan.findings] == [Problem.FAILED, Problem.NOT_READY]


def test_more_than_a_third_of_the_pool_unhealthy_is_an_outage_not_a_repair() -> None:
    sick = [replace(healthy(i), ready=False, ready_since=ago(11)) for i in range(3)]
    plan = plan_repair("workers", pool(*sick), SETTINGS, [], NOW)
    assert plan.action is None and len(plan.findings) == 3
    assert plan.brake is not None and "3 of 6 instances" in plan.brake
    assert "outage of something they share" in plan.brake
    # Two of six (a third) is still repaired.
    assert isinstance(plan_repair("workers", pool(*sick[:2]), SETTINGS, [], NOW).action, Repair)


def test_instances_still_coming_up_neither_count_as_healthy_nor_dilute_the_brake() -> None:
    sick = [replace(healthy(i), ready=False, ready_since=ago(11)) for i in (0, 1)]
    creating = [
        Member(f"vmss00000{i}", str(i), CREATING, ago(2), has_node=False, ready=False)
        for i in (3, 4, 5)
    ]
    plan = plan_repair("workers", [*sick, healthy(2), *creating], SETTINGS, [], NOW)
    assert plan.action is None and plan.brake is not None, plan
    assert "2 of 3 instances" in plan.brake and "3 instances still coming up" in plan.brake
    # Live but not registered yet (within not_ready_minutes): still coming up, not counted.
    booting = [replace(m, state=LIVE) for m in creating]
    assert plan_repair("workers", [*sick, healthy(2), *booting], SETTINGS, [], NOW).brake
    # Once their nodes registered they count: 2 of 6 is a third, and repaired.
    joined = [healthy(i) for i in (3, 4, 5)]
    plan = plan_repair("workers", [*sick, healthy(2), *joined], SETTINGS, [], NOW)
    assert plan.brake is None and isinstance(plan.action, Repair)
    # A stuck one is unhealthy, and counted as such.
    stuck = replace(creating[0], since=ago(21))
    plan = plan_repair("workers", [sick[0], healthy(2), healthy(1), stuck], SETTINGS, [], NOW)
    assert plan.brake is not None and "2 of 4 instances" in plan.brake


def test_a_node_that_just_went_not_ready_counts_for_the_brake() -> None:
    fresh = [replace(healthy(i), ready=False, ready_since=ago(1)) for i in (2, 3)]
    plan = plan_repair("workers", pool(NOT_READY_11, *fresh), SETTINGS, [], NOW)
    assert plan.brake is not None and plan.action is None


def test_a_node_rebooted_by_another_job_does_not_count_for_the_brake() -> None:
    patched = [
        replace(healthy(i), ready=False, ready_since=ago(1), claim_job="p", claim_kind="patch")
        for i in (2, 3)
    ]
    plan = plan_repair("workers", pool(NOT_READY_11, *patched), SETTINGS, [], NOW)
    assert plan.brake is None and isinstance(plan.action, Repair)


def test_a_cluster_mostly_not_ready_brakes_every_pool() -> None:
    plan = plan_repair(
        "workers", pool(NOT_READY_11), SETTINGS, [], NOW, cluster_nodes=30, cluster_not_ready=11
    )
    assert plan.brake is not None and "11 of 30 nodes of the cluster" in plan.brake


def test_a_node_repaired_too_often_today_is_quarantined() -> None:
    history = [
        {"node": NOT_READY_11.name, "at": ago(60 * h).isoformat(), "acted": True} for h in (1, 5, 9)
    ]
    plan = plan_repair("workers", pool(NOT_READY_11), SETTINGS, history, NOW)
    assert isinstance(plan.action, Quarantine)
    assert "repaired 3 times in the last day" in plan.action.reason
    # Repairs older than a day, or that did not act, do not count.
    older = [
        history[0],
        history[1],
        {"node": NOT_READY_11.name, "at": ago(25 * 60).isoformat(), "acted": True},
    ]
    assert isinstance(
        plan_repair("workers", pool(NOT_READY_11), SETTINGS, older, NOW).action, Repair
    )
    idle = [*history[:2], {"node": NOT_READY_11.name, "at": ago(1).isoformat(), "acted": False}]
    assert isinstance(
        plan_repair("workers", pool(NOT_READY_11), SETTINGS, idle, NOW).action, Repair
    )


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (replace(NOT_READY_11, no_repair=True), "poolkeeper.io/no-repair"),
        (replace(NOT_READY_11, quarantined=True), "quarantined"),
        (
            replace(NOT_READY_11, claim_job="drain-1", claim_kind="drain"),
            "held by drain job drain-1",
        ),
    ],
    ids=["no-repair", "quarantined", "held"],
)
def test_nodes_left_out_say_why(member: Member, why: str) -> None:
    plan = plan_repair("workers", pool(member), SETTINGS, [], NOW)
    assert plan.action is None and why in plan.left_out[member.name]


def test_repair_off_repairs_nothing() -> None:
    plan = plan_repair("workers", pool(NOT_READY_11), RepairSettings.model_validate("off"), [], NOW)
    assert plan.action is None and plan.left_out == {"*": "repair is off for this pool"}


def test_a_stuck_instance_is_force_deleted_once_then_left_to_a_person() -> None:
    stuck = replace(healthy(1), state=DELETING, since=ago(30))
    tried = [
        {
            "instance": "1",
            "problem": "stuck_deleting",
            "at": ago(25).isoformat(),
            "acted": True,
            "job": "r1",
        }
    ]
    plan = plan_repair("workers", pool(stuck), SETTINGS, tried, NOW)
    assert plan.action is None and "escalated" in plan.left_out[stuck.name]


def test_a_target_limits_the_plan_and_the_job_id_is_one_per_episode() -> None:
    failed = replace(healthy(2), state=FAILED, since=ago(1), has_node=False)
    plan = plan_repair("workers", pool(NOT_READY_11, failed), SETTINGS, [], NOW, target="1")
    assert plan.action is not None and plan.action.finding.member is NOT_READY_11
    again = plan_repair("workers", pool(NOT_READY_11), SETTINGS, [], NOW + timedelta(minutes=5))
    assert again.action is not None and again.action.job_id == plan.action.job_id
    flapped = replace(NOT_READY_11, ready_since=ago(-30))
    later = plan_repair("workers", pool(flapped), SETTINGS, [], NOW + timedelta(minutes=45))
    assert later.action is not None and later.action.job_id != plan.action.job_id
    assert (
        repair_job_id("workers", plan.action.finding) == "repair-workers-notready-1-20261102T114900"
    )


def test_the_ladder_restarts_then_reimages_then_replaces() -> None:
    assert [next_rung("restart"), next_rung("reimage"), next_rung("replace")] == [
        "reimage",
        "replace",
        None,
    ]


def test_one_repair_in_flight_a_pool() -> None:
    entries = [
        {"job": "a", "status": "done", "at": ago(30).isoformat()},
        {"job": "b", "status": "running", "at": ago(20).isoformat()},
        {"job": "c", "status": "queued", "at": ago(5).isoformat()},
    ]
    assert in_flight(entries, {"b": "waiting", "c": None}, NOW) == "b"
    assert in_flight(entries, {"b": "failed", "c": None}, NOW) == "c"  # queued, not started yet
    assert in_flight(entries, {"b": "failed", "c": None}, NOW + timedelta(hours=2)) is None


def test_an_episode_refused_before_it_acted_gets_another_attempt_later() -> None:
    episode = "repair-workers-notready-1-20261102T114900"
    assert attempt_id(episode, []) == episode
    refused = {"job": episode, "status": "refused", "at": ago(30).isoformat()}
    assert attempt_id(episode, [refused]) == f"{episode}.r1"
    again = {"job": f"{episode}.r1", "status": "refused", "at": ago(20).isoformat()}
    others = [{"job": "repair-by-hand-1", "status": "refused"}, {"job": episode + "x"}]
    assert attempt_id(episode, [refused, again, *others]) == f"{episode}.r2"
    # An attempt that ran (done or failed) is the episode's: attempt_id keeps its id, and
    # reconcile finds it in the ledger and does not try again.
    assert attempt_id(episode, [refused | {"status": "failed"}]) == episode
