"""The shipped scenarios load, and the seed scenario fails deletes the way the seed did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError

from local.azurite import ROOT
from shared.config import parse_config
from tests.simulator import Simulator

SCENARIOS = sorted((ROOT / "local" / "scenarios").glob("*.json"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenario_loads_and_its_pools_are_valid_poolkeeper_config(
    sim: Simulator, path: Path
) -> None:
    state = sim.post("scenario", {"path": str(path)})
    data = json.loads(path.read_text())
    config = parse_config(json.dumps(data["pools"]), source=path.name)
    ids = {s["id"].lower() for s in state["scale_sets"]}
    assert {pool.vmss_id.lower() for pool in config.pools} <= ids


def test_seed_scenario_deletes_fail_and_leave_all_86_instances(sim: Simulator) -> None:
    state = sim.post("scenario", {"path": str(ROOT / "local/scenarios/seed-86.json")})
    (vmss,) = state["scale_sets"]
    assert len(vmss["instances"]) == 86 and vmss["capacity"] == 86
    compute = sim.compute()
    for victim in ("0", "1"):
        poller = compute.virtual_machine_scale_sets.begin_delete_instances(
            vmss["resource_group"], vmss["name"], {"instanceIds": [victim]}
        )
        with pytest.raises(HttpResponseError) as failed:
            poller.result()
        assert failed.value.error.code == "CannotAllocateRemainingVMsInAvailabilitySet"
    after = sim.scale_set_state(vmss["name"])
    assert after["capacity"] == 86
    assert sum(i["provisioning_state"] == "Succeeded" for i in after["instances"]) == 86
