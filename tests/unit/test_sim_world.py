"""Pure parts of the simulator's world: names, scale-in victims, throttle windows, faults."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from local.sim.clock import SimClock
from local.sim.scenario import Fault, Throttle, parse_scenario
from local.sim.world import (
    ArmError,
    Instance,
    World,
    base36,
    fault_applies,
    scale_in_victims,
)

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
SUB = "6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64"


class StoppedClock(SimClock):
    """A simulator clock that moves only when told to."""

    def __init__(self, speed: float = 600) -> None:
        super().__init__(T0, speed)
        self.at = T0

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at


def world(*scale_sets: dict[str, object], **extra: object) -> tuple[World, StoppedClock]:
    data = {"subscription": SUB, "clock": {"start": T0.isoformat()}, "scale_sets": list(scale_sets)}
    clock = StoppedClock()
    return World(parse_scenario(data | extra, source="test"), clock), clock


def vmss(name: str, capacity: int, **extra: object) -> dict[str, object]:
    return {"resource_group": "rg", "name": name, "capacity": capacity, "node_group": "g"} | extra


def instance(instance_id: int, zone: str | None) -> Instance:
    return Instance(instance_id, zone, f"vmss{base36(instance_id)}", "", "", {}, 1, T0)


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "suffix"),
    [
        (0, "000000"),
        (9, "000009"),
        (10, "00000a"),
        (35, "00000z"),
        (36, "000010"),
        (46655, "000zzz"),
    ],
)
def test_base36_suffixes(number: int, suffix: str) -> None:
    assert base36(number) == suffix


def test_computer_names_are_the_prefix_and_the_base36_instance_id() -> None:
    made, _ = world(
        vmss("aks-workers-11111111-vmss", 11), vmss("pool", 1, computer_name_prefix="pk")
    )
    workers, pool = made.scale_sets.values()
    assert workers.instances[10].computer_name == "aks-workers-11111111-vmss00000a"
    assert pool.instances[0].computer_name == "pk000000"


# -- scale-in --------------------------------------------------------------------------------------


def test_scale_in_takes_the_highest_ids_when_zones_are_balanced() -> None:
    active = [instance(i, "123"[i % 3]) for i in range(6)]
    assert [v.instance_id for v in scale_in_victims(active, 3)] == [5, 4, 3]


def test_scale_in_balances_zones_before_taking_the_highest_id() -> None:
    # zone 1: 0 3 6, zone 2: 7, zone 3: 2 5 8 -- the highest id (8) goes, then 6, never 7
    active = [
        instance(i, z)
        for i, z in [(0, "1"), (3, "1"), (6, "1"), (7, "2"), (2, "3"), (5, "3"), (8, "3")]
    ]
    assert [v.instance_id for v in scale_in_victims(active, 2)] == [8, 6]
    assert [v.instance_id for v in scale_in_victims(active, 5)] == [8, 6, 5, 3, 7]


def test_scale_in_without_zones_takes_the_highest_ids_and_stops_at_empty() -> None:
    active = [instance(i, None) for i in (4, 11, 2)]
    assert [v.instance_id for v in scale_in_victims(active, 2)] == [11, 4]
    assert [v.instance_id for v in scale_in_victims(active, 9)] == [11, 4, 2]


def test_a_lower_capacity_marks_the_victims_deleting_and_records_the_scale_in() -> None:
    made, clock = world(vmss("pool", 4, zones=["1", "2"]))
    pool = next(iter(made.scale_sets.values()))
    op = made.update_scale_set(
        pool,
        capacity=2,
        image=None,
        tags=None,
        fault=None,
        operation="VirtualMachineScaleSets_Update",
    )
    assert [(i, s.provisioning) for i, s in pool.instances.items()] == [
        (0, "Succeeded"), (1, "Succeeded"), (2, "Deleting"), (3, "Deleting"),
    ]  # fmt: skip
    assert made.history[-1]["event"] == "scale_in"
    assert made.history[-1]["computer_names"] == ["pool-vmss000003", "pool-vmss000002"]
    assert op.status == "InProgress"
    clock.advance(60)
    made.settle()
    assert (sorted(pool.instances), op.status, pool.capacity) == ([0, 1], "Succeeded", 2)

    failing = Fault(operation="VirtualMachineScaleSets_Update", kind="lro_failed")
    op = made.update_scale_set(
        pool, capacity=1, image=None, tags=None, fault=failing, operation=failing.operation
    )
    clock.advance(60)
    made.settle()
    assert op.status == "Failed" and op.error and op.error[0] == "InternalExecutionError"
    assert [(i, s.provisioning) for i, s in pool.instances.items()] == [
        (0, "Succeeded"),
        (1, "Succeeded"),
    ]
    assert pool.capacity == 2  # a failed write leaves nothing behind


# -- throttling ------------------------------------------------------------------------------------


def test_throttle_budgets_are_sliding_windows_and_name_every_group() -> None:
    made, clock = world(vmss("pool", 1))
    get = "VirtualMachineScaleSets_Get"
    made.throttles = [
        Throttle(family="HighCostGetVMScaleSet3Min", operations=[get], limit=2, window_seconds=180),
        Throttle(
            family="HighCostGetVMScaleSet30Min", operations=[get], limit=5, window_seconds=1800
        ),
    ]
    header = "x-ms-ratelimit-remaining-resource"
    assert made.check_throttle(get)[header] == (
        "Microsoft.Compute/HighCostGetVMScaleSet3Min;1,Microsoft.Compute/HighCostGetVMScaleSet30Min;4"
    )
    clock.advance(60)
    made.check_throttle(get)
    clock.advance(60)
    with pytest.raises(ArmError) as throttled:
        made.check_throttle(get)
    error = throttled.value
    assert (error.status, error.code) == (429, "OperationNotAllowed")
    assert error.headers[header].startswith("Microsoft.Compute/HighCostGetVMScaleSet3Min;0,")
    assert error.headers["Retry-After"] == "1"  # 60 simulated seconds at 600x, rounded up
    detail = json.loads(error.details[0]["message"])
    assert (detail["operationGroup"], detail["allowedRequestCount"]) == (
        "HighCostGetVMScaleSet3Min",
        2,
    )
    assert made.check_throttle("VirtualMachineScaleSetVMs_List") == {}  # not in any group

    clock.advance(60)  # the first call has left the 3-minute window; the rejected one never counted
    assert made.check_throttle(get)[header].endswith(
        "3Min;0,Microsoft.Compute/HighCostGetVMScaleSet30Min;2"
    )
    clock.advance(180)
    made.check_throttle(get)  # the fourth call in 30 minutes
    clock.advance(180)
    made.check_throttle(get)  # the fifth
    with pytest.raises(ArmError) as long_window:
        made.check_throttle(get)
    assert [d["target"] for d in long_window.value.details] == ["HighCostGetVMScaleSet30Min"]
    assert long_window.value.headers["Retry-After"] == "3"  # free at 30 min: 1260 s at 600x


# -- faults ----------------------------------------------------------------------------------------


def test_fault_matching_by_operation_scale_set_and_window() -> None:
    fault = Fault(
        operation="VirtualMachineScaleSets_DeleteInstances",
        scale_set="Pool-A",
        start=T0 + timedelta(minutes=10),
        end=T0 + timedelta(minutes=20),
    )
    inside = T0 + timedelta(minutes=15)
    assert fault_applies(fault, "virtualmachinescalesets_deleteinstances", "pool-a", inside)
    assert not fault_applies(fault, "VirtualMachineScaleSets_Get", "pool-a", inside)
    assert not fault_applies(fault, "VirtualMachineScaleSets_DeleteInstances", "pool-b", inside)
    assert not fault_applies(fault, "VirtualMachineScaleSets_DeleteInstances", None, inside)
    assert not fault_applies(fault, "VirtualMachineScaleSets_DeleteInstances", "pool-a", T0)
    assert not fault_applies(fault, "VirtualMachineScaleSets_DeleteInstances", "pool-a", fault.end)
    anywhere = Fault(operation="VirtualMachineScaleSets_Get")
    assert fault_applies(anywhere, "VirtualMachineScaleSets_Get", None, T0)


def test_take_fault_consumes_counts_and_falls_through_to_the_next_fault() -> None:
    made, clock = world(vmss("pool", 1))
    delete = "VirtualMachineScaleSets_DeleteInstances"
    made.add_fault(Fault(operation=delete, scale_set="pool", error="First", count=2))
    made.add_fault(Fault(operation=delete, error="Always", end=T0 + timedelta(minutes=5)))
    taken = [made.take_fault(delete, "pool") for _ in range(3)]
    assert [f.error if f else None for f in taken] == ["First", "First", "Always"]
    assert made.take_fault(delete, "other").error == "Always"
    clock.advance(300)
    assert made.take_fault(delete, "pool") is None
    assert [a.remaining for a in made.faults] == [0, None]
