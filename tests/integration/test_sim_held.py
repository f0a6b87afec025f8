"""The simulator's records for the chaos suite: an answer held back after its request took effect
(so a test can kill the client that sent it before it learns what it did), and which nodes were
Ready when a delete was asked for."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from tests.simulator import RG, STOPPED, Simulator, scale_set, scenario

pytestmark = pytest.mark.integration

VMSS = "aks-workers-11111111-vmss"
RESTART = "VirtualMachineScaleSetVMs_Restart"


def held(sim: Simulator) -> list[dict[str, Any]]:
    return requests.get(f"{sim.admin}/held", timeout=10).json()["held"]


def test_a_held_answer_comes_after_the_restart_took_effect_and_names_its_client(
    sim: Simulator,
) -> None:
    sim.load(scenario(scale_set(VMSS, 2), speed=STOPPED))
    sim.post("faults", {"operation": RESTART, "kind": "held", "seconds": 2, "count": 1})
    compute = sim.compute(retry_total=0, user_agent="chaos-test-client")
    answers: list[Any] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            compute.virtual_machine_scale_set_vms.begin_restart(RG, VMSS, "1")
        )
    )
    sender.start()
    deadline = time.monotonic() + 10
    while not held(sim) and time.monotonic() < deadline:
        time.sleep(0.05)
    [request] = held(sim)
    assert (request["operation"], request["instance"], request["scale_set"]) == (RESTART, "1", VMSS)
    assert "chaos-test-client" in request["client"]
    state = {i["instance_id"]: i for i in sim.scale_set_state(VMSS)["instances"]}
    assert state["1"]["os"]["guest"] != "up", "the restart took effect before its answer"
    assert not answers, "the answer is still held"
    sender.join(timeout=10)
    assert answers and held(sim) == []
    # The next restart is answered at once (count 1).
    began = time.monotonic()
    compute.virtual_machine_scale_set_vms.begin_restart(RG, VMSS, "0")
    assert time.monotonic() - began < 1.5


def test_the_delete_history_names_the_instances_whose_node_was_ready(sim: Simulator) -> None:
    sim.load(scenario(scale_set(VMSS, 3), speed=STOPPED))
    compute = sim.compute(retry_total=0)
    compute.virtual_machine_scale_set_vms.begin_restart(RG, VMSS, "1")  # down until it boots
    compute.virtual_machine_scale_sets.begin_delete_instances(RG, VMSS, {"instanceIds": ["0", "1"]})
    [entry] = [e for e in sim.state()["history"] if e["event"] == "delete_instances"]
    assert (entry["instances"], entry["ready"]) == (["0", "1"], ["0"])
