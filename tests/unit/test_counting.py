"""Count truth: instance states, node matching, drift, and the scale-up and scale-in plans."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from shared.decide.counting import (
    Counts,
    Drift,
    DriftKind,
    InstanceState,
    Matching,
    NodeView,
    Observation,
    Refusal,
    RefusalReason,
    ScaleInPlan,
    ScaleSetState,
    ScaleUpPlan,
    Victim,
    VmInstance,
    classify,
    count,
    match_nodes,
    observe,
    plan_scale_in,
    plan_scale_up,
)

SUB = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg-pool"
VMSS = f"{SUB}/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool-a-vmss"
OTHER = f"{SUB}/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool-b-vmss"
GROUP = "pool-a"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)
STUCK = timedelta(minutes=30)


def vm(
    instance_id: str, provisioning: str = "Succeeded", power: str | None = "running", **more: object
) -> VmInstance:
    values = {
        "instance_id": instance_id,
        "computer_name": f"aks-pool-a-vmss{int(instance_id):06d}",
        "provisioning": provisioning,
        "power": power,
    } | more
    return VmInstance(**values)  # type: ignore[arg-type]


def scale_set(
    *instances: VmInstance, capacity: int | None = None, etag: str = '"etag-7"'
) -> ScaleSetState:
    return ScaleSetState(
        vmss_id=VMSS,
        etag=etag,
        capacity=len(instances) if capacity is None else capacity,
        model_image={"id": f"{SUB}/providers/Microsoft.Compute/galleries/g/images/pool/versions/1"},
        instances=instances,
        read_at=T0,
    )


def node(instance_id: str | None, *, vmss: str | None = VMSS, **more: object) -> NodeView:
    values = {
        "name": f"aks-pool-a-vmss{int(instance_id or 999999):06d}",
        "vmss_id": vmss.lower() if vmss else None,
        "instance_id": instance_id,
        "node_group": GROUP,
        "ready": True,
    } | more
    return NodeView(**values)  # type: ignore[arg-type]


def live_pool(live: int, *, capacity: int | None = None) -> tuple[ScaleSetState, list[NodeView]]:
    instances = [vm(str(i)) for i in range(live)]
    return scale_set(*instances, capacity=capacity), [node(str(i)) for i in range(live)]


# --- classify and count ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provisioning", "power", "expected"),
    [
        ("Succeeded", "running", InstanceState.LIVE),
        ("succeeded", "PowerState/running", InstanceState.LIVE),
        ("Creating", None, InstanceState.CREATING),
        ("Creating", "starting", InstanceState.CREATING),
        ("Succeeded", "starting", InstanceState.CREATING),
        ("Updating", "running", InstanceState.UPDATING),
        ("Updating", "stopped", InstanceState.UPDATING),
        ("Updating", None, InstanceState.UPDATING),
        ("Succeeded", "stopping", InstanceState.STOPPED),
        ("Succeeded", "stopped", InstanceState.STOPPED),
        ("Succeeded", "deallocating", InstanceState.STOPPED),
        ("Succeeded", "deallocated", InstanceState.STOPPED),
        ("Deleting", "running", InstanceState.DELETING),
        ("Deleting", None, InstanceState.DELETING),
        ("Failed", "running", InstanceState.FAILED),
        ("Failed", None, InstanceState.FAILED),
        # No instance view (or a state this code does not know): exists, never counted live.
        ("Succeeded", None, InstanceState.UPDATING),
        ("Succeeded", "unknown", InstanceState.UPDATING),
        ("Canceled", "running", InstanceState.UPDATING),
    ],
)
def test_classify(provisioning: str, power: str | None, expected: InstanceState) -> None:
    assert classify(vm("0", provisioning, power)) is expected


def test_count_by_state_total_and_active() -> None:
    state = scale_set(
        vm("0"),
        vm("1"),
        vm("2", "Creating", None),
        vm("3", "Updating", "running"),
        vm("4", "Succeeded", "deallocated"),
        vm("5", "Deleting", "running"),
        vm("6", "Deleting", None),
        vm("7", "Failed", None, failure="AllocationFailed"),
    )
    counts = count(state)
    assert counts == Counts(live=2, creating=1, updating=1, stopped=1, deleting=2, failed=1)
    assert (counts.total, counts.active) == (8, 6)
    assert counts.of(InstanceState.DELETING) == 2
    assert counts.as_dict() == {
        "live": 2,
        "creating": 1,
        "updating": 1,
        "stopped": 1,
        "deleting": 2,
        "failed": 1,
        "total": 8,
        "active": 6,
    }


def test_count_of_an_empty_scale_set() -> None:
    assert count(scale_set(capacity=3)) == Counts()
    assert Counts().active == 0


def test_scale_set_ids_compare_ignoring_case() -> None:
    assert scale_set().vmss_id == VMSS.lower()
    assert node("0", vmss=VMSS.upper()).vmss_id == VMSS.lower()


# --- matching -------------------------------------------------------------------------------


def test_match_nodes_by_provider_id_and_by_node_group_label() -> None:
    state = scale_set(vm("2"), vm("10"), vm("9"), vm("3", "Creating", None))
    nodes = [
        node("2"),
        node("10", node_group=None),  # ours by providerID even without the label
        node("42"),  # points at our scale set, but instance 42 is gone
        node("5", vmss=OTHER),  # another scale set, but labelled with our node group
        node(None, vmss=None, name="bare-metal-1"),  # no providerID, our label
        node("1", vmss=OTHER, node_group="pool-b"),  # another pool: not ours
        node(None, vmss=None, name="laptop", node_group=None),  # nothing to do with us
    ]
    assert match_nodes(state, nodes, GROUP) == Matching(
        pairs={"2": "aks-pool-a-vmss000002", "10": "aks-pool-a-vmss000010"},
        instances_without_node=("3", "9"),  # numeric order
        nodes_without_instance=(
            "aks-pool-a-vmss000005",
            "aks-pool-a-vmss000042",
            "bare-metal-1",
        ),
    )


def test_match_nodes_pairs_each_instance_once() -> None:
    state = scale_set(vm("0"))
    nodes = [node("0", name="b-stale"), node("0", name="a-current")]
    matching = match_nodes(state, nodes, GROUP)
    assert matching.pairs == {"0": "a-current"}
    assert matching.nodes_without_instance == ("b-stale",)


# --- drift ----------------------------------------------------------------------------------


def test_a_healthy_pool_has_no_drift() -> None:
    state, nodes = live_pool(3)
    previous = {str(i): Observation(InstanceState.LIVE, T0) for i in range(3)}
    now = T0 + timedelta(hours=5)
    observations, drifts = observe(state, nodes, previous, now, grace=GRACE, stuck_after=STUCK)
    assert drifts == []
    assert observations == previous


def test_observations_keep_since_while_the_state_holds_and_forget_gone_instances() -> None:
    state = scale_set(vm("0"), vm("1", "Creating", None), vm("2", "Creating", None))
    previous = {
        "0": Observation(InstanceState.CREATING, T0),  # became live since
        "1": Observation(InstanceState.CREATING, T0),  # still creating
        "7": Observation(InstanceState.DELETING, T0),  # gone
    }
    now = T0 + timedelta(minutes=5)
    observations, _ = observe(state, [node("0")], previous, now, grace=GRACE, stuck_after=STUCK)
    assert observations == {
        "0": Observation(InstanceState.LIVE, now),
        "1": Observation(InstanceState.CREATING, T0),
        "2": Observation(InstanceState.CREATING, now),  # first seen
    }


def test_capacity_mismatch_counts_active_instances() -> None:
    state, nodes = live_pool(86, capacity=53)
    _, drifts = observe(state, nodes, {}, T0, grace=GRACE, stuck_after=STUCK)
    assert drifts == [Drift(DriftKind.CAPACITY_MISMATCH, "capacity 53 but 86 active instances")]


def test_deleting_instances_are_not_active() -> None:
    state = scale_set(vm("0"), vm("1"), vm("2", "Deleting", "running"), capacity=2)
    _, drifts = observe(state, [node("0"), node("1")], {}, T0, grace=GRACE, stuck_after=STUCK)
    assert drifts == []


def test_failed_instances_with_their_error_codes() -> None:
    state = scale_set(
        vm("0"),
        vm("4", "Failed", None, failure="AllocationFailed"),
        vm("12", "Failed", "running"),
    )
    nodes = [node("0"), node("12")]
    _, drifts = observe(state, nodes, {}, T0, grace=GRACE, stuck_after=STUCK)
    assert drifts == [
        Drift(
            DriftKind.FAILED_INSTANCE,
            "2 failed instances: 4 (AllocationFailed), 12 (no error code)",
            instance_ids=("4", "12"),
        )
    ]


@pytest.mark.parametrize(
    ("provisioning", "power", "kind", "word"),
    [
        ("Creating", None, DriftKind.STUCK_CREATING, "creating"),
        ("Succeeded", "starting", DriftKind.STUCK_CREATING, "creating"),
        ("Deleting", "running", DriftKind.STUCK_DELETING, "deleting"),
    ],
)
@pytest.mark.parametrize(
    ("now", "stuck"),
    [
        (datetime(2024, 5, 1, 12, 29, 59, tzinfo=UTC), False),
        (datetime(2024, 5, 1, 12, 30, 0, tzinfo=UTC), False),  # exactly stuck_after: not yet
        (datetime(2024, 5, 1, 12, 30, 1, tzinfo=UTC), True),
        (datetime(2024, 5, 1, 14, 5, 0, tzinfo=UTC), True),
    ],
)
def test_stuck_after_longer_than_stuck_after(
    provisioning: str, power: str | None, kind: DriftKind, word: str, now: datetime, stuck: bool
) -> None:
    deleting = provisioning == "Deleting"
    state = scale_set(vm("0"), vm("3", provisioning, power), capacity=1 if deleting else 2)
    previous = {"3": Observation(classify(vm("3", provisioning, power)), T0)}
    _, drifts = observe(
        state, [node("0"), node("3")], previous, now, grace=GRACE, stuck_after=STUCK
    )
    if not stuck:
        assert drifts == []
        return
    age = "2h 5m" if now.hour == 14 else "30m 1s"
    assert drifts == [
        Drift(kind, f"1 instance {word} for more than 30m: 3 ({age})", instance_ids=("3",))
    ]


def test_an_instance_first_seen_stuck_counts_from_now() -> None:
    state = scale_set(vm("0", "Creating", None))
    observations, drifts = observe(
        state, [], {}, T0 + timedelta(days=1), grace=GRACE, stuck_after=STUCK
    )
    assert drifts == []
    assert observations["0"].since == T0 + timedelta(days=1)


@pytest.mark.parametrize(
    ("now", "reported"),
    [
        (datetime(2024, 5, 1, 12, 10, 0, tzinfo=UTC), False),  # exactly the grace: not yet
        (datetime(2024, 5, 1, 12, 10, 1, tzinfo=UTC), True),
    ],
)
def test_live_instance_without_node_after_grace(now: datetime, reported: bool) -> None:
    state = scale_set(vm("0"), vm("1"), vm("2", "Creating", None))
    previous = {
        "0": Observation(InstanceState.LIVE, T0),
        "1": Observation(InstanceState.LIVE, T0),
        "2": Observation(InstanceState.CREATING, now),  # no node either, but not live
    }
    _, drifts = observe(state, [node("0")], previous, now, grace=GRACE, stuck_after=STUCK)
    expected = Drift(
        DriftKind.INSTANCE_WITHOUT_NODE,
        "1 live instance with no node after more than 10m: 1 aks-pool-a-vmss000001 (live 10m 1s)",
        instance_ids=("1",),
    )
    assert drifts == ([expected] if reported else [])


def test_nodes_without_instance() -> None:
    state, nodes = live_pool(2)
    strays = [node("7"), node("3", vmss=OTHER)]
    _, drifts = observe(
        state, nodes + strays, {}, T0, grace=GRACE, stuck_after=STUCK, node_group=GROUP
    )
    assert drifts == [
        Drift(
            DriftKind.NODE_WITHOUT_INSTANCE,
            f"2 nodes of this pool with no instance in scale set {VMSS.lower()}: "
            "aks-pool-a-vmss000003, aks-pool-a-vmss000007",
            node_names=("aks-pool-a-vmss000003", "aks-pool-a-vmss000007"),
        )
    ]
    # Without the node group only providerID says which nodes are the pool's.
    _, drifts = observe(state, nodes + strays, {}, T0, grace=GRACE, stuck_after=STUCK)
    assert [d.node_names for d in drifts] == [("aks-pool-a-vmss000007",)]


def test_long_listings_are_cut_short() -> None:
    state = scale_set(
        *[vm(str(i), "Failed", None, failure="OSProvisioningTimedOut") for i in range(12)]
    )
    _, drifts = observe(state, [], {}, T0, grace=GRACE, stuck_after=STUCK)
    assert drifts[0].detail.endswith("9 (OSProvisioningTimedOut) and 2 more")
    assert len(drifts[0].instance_ids) == 12


# --- scale up -------------------------------------------------------------------------------


def test_seed_scale_up_counts_from_the_instances_not_the_stale_capacity() -> None:
    state, _ = live_pool(86, capacity=48)
    assert plan_scale_up(state, 100, delta=4) == ScaleUpPlan(
        current_capacity=48,
        new_capacity=90,
        etag='"etag-7"',
        bounded=False,
        active=86,
        requested=90,
    )


@pytest.mark.parametrize(
    ("delta", "target", "new", "bounded"),
    [
        (1, None, 87, False),
        (14, None, 100, False),
        (15, None, 100, True),
        (500, None, 100, True),
        (None, 87, 87, False),
        (None, 100, 100, False),
        (None, 101, 100, True),
    ],
)
def test_scale_up_bounded_by_max(
    delta: int | None, target: int | None, new: int, bounded: bool
) -> None:
    state, _ = live_pool(86, capacity=48)
    plan = plan_scale_up(state, 100, delta=delta, target=target)
    assert isinstance(plan, ScaleUpPlan)
    assert (plan.current_capacity, plan.new_capacity, plan.bounded) == (48, new, bounded)
    assert plan.etag == state.etag


def test_scale_up_counts_creating_and_failed_instances_but_not_deleting_ones() -> None:
    state = scale_set(
        vm("0"),
        vm("1", "Creating", None),
        vm("2", "Failed", None),
        vm("3", "Deleting", "running"),
        capacity=3,
    )
    plan = plan_scale_up(state, 10, delta=2)
    assert isinstance(plan, ScaleUpPlan)
    assert (plan.active, plan.new_capacity) == (3, 5)


@pytest.mark.parametrize(
    ("capacity", "live", "pool_max", "delta", "target", "reason", "message"),
    [
        (48, 86, 100, 0, None, RefusalReason.DELTA_NOT_POSITIVE, "got 0"),
        (48, 86, 100, -5, None, RefusalReason.DELTA_NOT_POSITIVE, "got -5"),
        (48, 86, 100, None, 48, RefusalReason.NOT_ABOVE_CURRENT, "target 48 is not above"),
        # Above the stale capacity, but writing it would let Azure delete 26 instances.
        (
            48,
            86,
            100,
            None,
            60,
            RefusalReason.NOT_ABOVE_CURRENT,
            "target 60 is not above the current size (capacity 48, 86 active instances)",
        ),
        (48, 86, 100, None, 86, RefusalReason.NOT_ABOVE_CURRENT, "target 86"),
        (10, 10, 10, 1, None, RefusalReason.AT_MAX, "already at max_nodes 10"),
        (12, 10, 10, 1, None, RefusalReason.AT_MAX, "(capacity 12, 10 active instances)"),
        (5, 10, 10, None, 11, RefusalReason.AT_MAX, "already at max_nodes 10"),
        (5, 5, 10, 1, 7, RefusalReason.INVALID_REQUEST, "exactly one of delta or target"),
        (5, 5, 10, None, None, RefusalReason.INVALID_REQUEST, "exactly one of delta or target"),
    ],
)
def test_scale_up_refusals(
    capacity: int,
    live: int,
    pool_max: int,
    delta: int | None,
    target: int | None,
    reason: RefusalReason,
    message: str,
) -> None:
    state, _ = live_pool(live, capacity=capacity)
    refusal = plan_scale_up(state, pool_max, delta=delta, target=target)
    assert isinstance(refusal, Refusal)
    assert refusal.reason is reason
    assert message in refusal.message


# --- scale in -------------------------------------------------------------------------------


def test_seed_scale_in_counts_live_instances_not_the_stale_capacity() -> None:
    state, nodes = live_pool(86, capacity=48)
    plan = plan_scale_in(state, nodes, 10, GROUP, count=5)
    assert isinstance(plan, ScaleInPlan)
    assert (plan.live_before, plan.live_after, plan.etag) == (86, 81, '"etag-7"')
    assert plan.instance_ids == ("85", "84", "83", "82", "81")  # no load data: highest ids


def test_a_scale_in_plan_carries_no_capacity() -> None:
    assert not [f.name for f in fields(ScaleInPlan) if "capacity" in f.name]


def test_scale_in_picks_the_least_loaded() -> None:
    state, nodes = live_pool(5)
    load = {n.name: value for n, value in zip(nodes, [0.5, 0.1, 0.9, 0.3, 0.7], strict=True)}
    plan = plan_scale_in(state, nodes, 0, GROUP, count=2, load=load)
    assert isinstance(plan, ScaleInPlan)
    assert plan.victims == (
        Victim("1", "aks-pool-a-vmss000001", 0.1),
        Victim("3", "aks-pool-a-vmss000003", 0.3),
    )


def test_scale_in_never_reads_missing_load_as_idle() -> None:
    state, nodes = live_pool(4)
    load = {"aks-pool-a-vmss000000": 0.95, "aks-pool-a-vmss000001": math.nan}
    plan = plan_scale_in(state, nodes, 0, GROUP, count=2, load=load)
    assert isinstance(plan, ScaleInPlan)
    # 0 has data, however busy; then the nodes without data (NaN is none), highest id first.
    assert plan.victims == (
        Victim("0", "aks-pool-a-vmss000000", 0.95),
        Victim("3", "aks-pool-a-vmss000003", None),
    )


def test_scale_in_ties_go_to_the_highest_instance_id() -> None:
    state, nodes = live_pool(11)
    load = {n.name: 0.2 for n in nodes}
    plan = plan_scale_in(state, nodes, 0, GROUP, count=3, load=load)
    assert isinstance(plan, ScaleInPlan)
    assert plan.instance_ids == ("10", "9", "8")  # numeric, not "9" > "10"


def test_scale_in_skips_scale_down_disabled_prototype_and_unusable_instances() -> None:
    state = scale_set(
        vm("0"),
        vm("1"),
        vm("2"),
        vm("3"),
        vm("4", "Creating", None),
        vm("5"),  # live, but without a node: nothing to drain
        vm("6", "Deleting", "running"),
    )
    nodes = [
        node("0"),
        node("1", scale_down_disabled=True),
        node("2", prototype=True),
        node("3"),
        node("4"),
        node("6"),
    ]
    load = {n.name: 0.0 for n in nodes[1:]}  # the protected ones look the most idle
    plan = plan_scale_in(state, nodes, 0, GROUP, count=2, load=load)
    assert isinstance(plan, ScaleInPlan)
    assert plan.instance_ids == ("3", "0")
    assert (plan.live_before, plan.live_after) == (5, 3)
    refusal = plan_scale_in(state, nodes, 0, GROUP, count=3, load=load)
    assert refusal == Refusal(
        RefusalReason.TOO_FEW_CANDIDATES,
        "asked to remove 3 but only 2 of 4 live nodes may be removed "
        "(1 scale-down-disabled, 1 prototype)",
    )


def test_scale_in_named_nodes_in_the_order_given() -> None:
    state, nodes = live_pool(6)
    names = ["aks-pool-a-vmss000002", "aks-pool-a-vmss000005", "aks-pool-a-vmss000002"]
    plan = plan_scale_in(state, nodes, 0, GROUP, names=names, load={names[0]: 0.4})
    assert isinstance(plan, ScaleInPlan)
    assert plan.victims == (
        Victim("2", "aks-pool-a-vmss000002", 0.4),
        Victim("5", "aks-pool-a-vmss000005", None),
    )
    assert (plan.live_before, plan.live_after) == (6, 4)


@pytest.mark.parametrize(
    ("name", "reason", "message"),
    [
        (
            "aks-pool-a-vmss000099",
            RefusalReason.UNKNOWN_NODE,
            "no node named 'aks-pool-a-vmss000099'",
        ),
        ("aks-pool-a-vmss000001", RefusalReason.SCALE_DOWN_DISABLED, "scale-down-disabled"),
        ("aks-pool-a-vmss000002", RefusalReason.PROTOTYPE, "is the prototype donor"),
        ("aks-pool-a-vmss000003", RefusalReason.NOT_LIVE, "(instance 3) is creating, not live"),
        ("aks-pool-a-vmss000004", RefusalReason.NOT_LIVE, "(instance 4) is deleting, not live"),
        ("aks-pool-a-vmss000007", RefusalReason.NOT_IN_POOL, "not an instance of this scale set"),
        ("aks-pool-a-vmss000008", RefusalReason.NOT_IN_POOL, "not an instance of this scale set"),
    ],
)
def test_scale_in_refuses_a_named_node_it_may_not_remove(
    name: str, reason: RefusalReason, message: str
) -> None:
    state = scale_set(
        vm("0"), vm("1"), vm("2"), vm("3", "Creating", None), vm("4", "Deleting", "running")
    )
    nodes = [
        node("0"),
        node("1", scale_down_disabled=True),
        node("2", prototype=True),
        node("3"),
        node("4"),
        node("7"),  # its instance is not in the scale set
        node("8", vmss=OTHER, node_group="pool-b"),  # another pool's node
    ]
    refusal = plan_scale_in(state, nodes, 0, GROUP, names=["aks-pool-a-vmss000000", name])
    assert isinstance(refusal, Refusal)
    assert refusal.reason is reason
    assert message in refusal.message
    assert name in refusal.message


def test_scale_in_names_every_problem_at_once() -> None:
    state, nodes = live_pool(3)
    refusal = plan_scale_in(
        state, nodes, 0, GROUP, names=["ghost-a", "aks-pool-a-vmss000001", "ghost-b"]
    )
    assert refusal == Refusal(
        RefusalReason.UNKNOWN_NODE, "no node named 'ghost-a'; no node named 'ghost-b'"
    )


@pytest.mark.parametrize(
    ("batch", "live_after"),
    [(1, 11), (2, 10)],  # 10 is exactly min_nodes: allowed
)
def test_min_size_guard_allows_down_to_min(batch: int, live_after: int) -> None:
    state, nodes = live_pool(12)
    plan = plan_scale_in(state, nodes, 10, GROUP, count=batch)
    assert isinstance(plan, ScaleInPlan)
    assert (plan.live_before, plan.live_after) == (12, live_after)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (3, "removing 3 of 12 live instances would leave 9, below min_nodes 10"),
        (12, "removing 12 of 12 live instances would leave 0, below min_nodes 10"),
    ],
)
def test_min_size_guard_refuses_below_min(batch: int, message: str) -> None:
    state, nodes = live_pool(12)
    assert plan_scale_in(state, nodes, 10, GROUP, count=batch) == Refusal(
        RefusalReason.BELOW_MIN, message
    )
    names = [n.name for n in nodes[:batch]]
    assert plan_scale_in(state, nodes, 10, GROUP, names=names) == Refusal(
        RefusalReason.BELOW_MIN, message
    )


def test_min_size_guard_counts_live_instances_not_capacity_or_other_states() -> None:
    state = scale_set(
        *[vm(str(i)) for i in range(10)],
        *[vm(str(i), "Creating", None) for i in range(10, 15)],
        *[vm(str(i), "Failed", None) for i in range(15, 20)],
        capacity=20,
    )
    nodes = [node(str(i)) for i in range(20)]
    plan = plan_scale_in(state, nodes, 9, GROUP, count=1)
    assert isinstance(plan, ScaleInPlan)
    assert (plan.live_before, plan.live_after) == (10, 9)
    refusal = plan_scale_in(state, nodes, 9, GROUP, count=2)
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.BELOW_MIN


@pytest.mark.parametrize(
    ("count_", "names", "message"),
    [
        (None, (), "exactly one"),
        (1, ("aks-pool-a-vmss000000",), "exactly one"),
        (0, (), "count must be above 0; got 0"),
        (-2, (), "count must be above 0; got -2"),
    ],
)
def test_scale_in_invalid_requests(
    count_: int | None, names: tuple[str, ...], message: str
) -> None:
    state, nodes = live_pool(3)
    refusal = plan_scale_in(state, nodes, 0, GROUP, count=count_, names=names)
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.INVALID_REQUEST
    assert message in refusal.message


# --- properties -----------------------------------------------------------------------------

# Live instances weigh more, so that plans (not only refusals) come out often.
KINDS = [("Succeeded", "running")] * 6 + [
    ("Succeeded", "starting"),
    ("Succeeded", "deallocated"),
    ("Succeeded", None),
    ("Creating", None),
    ("Updating", "running"),
    ("Deleting", "running"),
    ("Failed", None),
]
LOADS = st.one_of(st.none(), st.just(math.nan), st.floats(0, 1))


@st.composite
def pools(draw: st.DrawFn) -> tuple[ScaleSetState, list[NodeView], dict[str, float]]:
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=40))
    instances = [vm(str(i), provisioning, power) for i, (provisioning, power) in enumerate(kinds)]
    state = scale_set(*instances, capacity=draw(st.integers(0, 60)))
    nodes: list[NodeView] = []
    load: dict[str, float] = {}
    for instance in instances:
        if draw(st.integers(0, 5)) == 0:
            continue  # an instance without a node
        view = node(
            instance.instance_id,
            scale_down_disabled=draw(st.integers(0, 4)) == 0,
            prototype=draw(st.integers(0, 8)) == 0,
        )
        nodes.append(view)
        value = draw(LOADS)
        if value is not None:
            load[view.name] = value
    strays = draw(st.integers(0, 2))
    nodes += [node(str(100 + i)) for i in range(strays)]  # nodes whose instance is gone
    return state, nodes, load


@given(
    pool=pools(),
    pool_max=st.integers(1, 60),
    delta=st.one_of(st.none(), st.integers(-5, 30)),
    target=st.one_of(st.none(), st.integers(-5, 80)),
)
def test_scale_up_only_ever_raises_capacity_and_stays_within_max(
    pool: tuple[ScaleSetState, list[NodeView], dict[str, float]],
    pool_max: int,
    delta: int | None,
    target: int | None,
) -> None:
    state, _, _ = pool
    plan = plan_scale_up(state, pool_max, delta=delta, target=target)
    if isinstance(plan, ScaleUpPlan):
        assert state.capacity < plan.new_capacity <= pool_max
        assert count(state).active < plan.new_capacity
        assert plan.current_capacity == state.capacity
        assert plan.etag == state.etag
    else:
        assert isinstance(plan, Refusal)


@settings(max_examples=300)
@given(pool=pools(), data=st.data())
def test_scale_in_never_goes_below_min_nor_takes_a_protected_node(
    pool: tuple[ScaleSetState, list[NodeView], dict[str, float]], data: st.DataObject
) -> None:
    state, nodes, load = pool
    live = count(state).live
    pool_min = data.draw(st.integers(0, live + 2), label="pool_min")  # near live, or above it
    if data.draw(st.booleans(), label="named"):
        choices = [n.name for n in nodes] + ["ghost"]
        names = data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3), label="names")
        plan = plan_scale_in(state, nodes, pool_min, GROUP, names=names, load=load)
    else:
        wanted = data.draw(st.integers(-1, 6), label="count")
        plan = plan_scale_in(state, nodes, pool_min, GROUP, count=wanted, load=load)
    event("refused" if isinstance(plan, Refusal) else "planned")
    if isinstance(plan, Refusal):
        return
    by_name = {n.name: n for n in nodes}
    assert plan.live_before == live
    assert plan.live_after == live - len(plan.victims) >= pool_min
    assert len(set(plan.instance_ids)) == len(plan.victims)
    for victim in plan.victims:
        view = by_name[victim.node_name]
        assert not view.scale_down_disabled
        assert not view.prototype
        assert view.instance_id == victim.instance_id
        instance = next(i for i in state.instances if i.instance_id == victim.instance_id)
        assert classify(instance) is InstanceState.LIVE
