"""ARM calls: Poolkeeper's reconcile pattern against cluster-autoscaler's refresh pattern.

A fleet of 10 pools x 100 instances in one node resource group, one simulated hour in steady
state (nothing changing), counted by the simulator. Poolkeeper: the reconcile timer every
5 minutes (one scale-set list per resource group; a full read only for pools that changed or
are due — hourly). cluster-autoscaler: scale-set list every 60 s, instance list every 5 min per
scale set. Run `python -m bench.arm_calls`; writes bench/results/arm_calls.md.
"""

from __future__ import annotations

import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.azurite import Azurite
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services
from shared.flows.reconcile import survey
from tests.jobs_support import Pump, settings_for
from tests.simulator import RG, SUBSCRIPTION, running_simulator, scale_set, scenario

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "arm_calls.md"
POOLS, SIZE, TICK_MINUTES = 10, 100, 5
INSTANCE_LIST = "VirtualMachineScaleSetVMs_List"


def _names() -> list[str]:
    return [f"aks-pool{n}-{n:08d}-vmss" for n in range(POOLS)]


def _counters(sim: Any) -> dict[str, int]:
    return dict(sim.calls()["counters"])


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def _poolkeeper_hour(sim: Any, pump: Pump) -> tuple[dict[str, int], dict[str, int]]:
    """One warm-up tick (first full reads), then 12 ticks = one hour; per-reconcile and hour."""
    before = _counters(sim)
    for job_id in survey(pump.services):
        pump.run("reconcile", job_id)
    first = _delta(_counters(sim), before)
    before = _counters(sim)
    for _ in range(60 // TICK_MINUTES):
        sim.advance(TICK_MINUTES * 60)
        for job_id in survey(pump.services):
            pump.run("reconcile", job_id)
    return first, _delta(_counters(sim), before)


def _autoscaler_hour(sim: Any) -> dict[str, int]:
    compute = sim.compute()
    before = _counters(sim)
    for minute in range(60):
        list(compute.virtual_machine_scale_sets.list(RG))
        if minute % 5 == 0:
            for name in _names():
                list(compute.virtual_machine_scale_set_vms.list(RG, name))
    return _delta(_counters(sim), before)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    pools = [
        {
            "name": f"pool{n}",
            "node_group": f"pool{n}",
            "min_nodes": 3,
            "max_nodes": 200,
            "vmss_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{name}",
        }
        for n, name in enumerate(_names())
    ]
    with (
        tempfile.TemporaryDirectory() as state,
        running_simulator(Path(state)) as sim,
        Azurite() as azurite,
    ):
        sim.load(scenario(*(scale_set(name, SIZE, zones=[]) for name in _names()), speed=1))
        settings = settings_for(sim, azurite.connection_string, pools)
        services = Services(
            settings,
            clock_from_settings(settings),
            load_config(settings),
            StorageAccount.from_settings(settings),
        )
        first, ours = _poolkeeper_hour(sim, Pump(services))
        theirs = _autoscaler_hour(sim)
    per_reconcile = sum(v for k, v in first.items() if k != "VirtualMachineScaleSets_List") / POOLS
    per_pool = ", ".join(
        f"{k} {v // POOLS}" for k, v in sorted(first.items()) if k != "VirtualMachineScaleSets_List"
    )
    ours_total, theirs_total = sum(ours.values()), sum(theirs.values())
    ours_lists, theirs_lists = ours.get(INSTANCE_LIST, 0), theirs.get(INSTANCE_LIST, 0)
    lines = [
        "# ARM calls: Poolkeeper's reconcile vs cluster-autoscaler's refresh",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python "
        f"{platform.python_version()}, against the simulator (pages of 100 VMs). Fleet: "
        f"{POOLS} pools x {SIZE} instances in one node resource group; one simulated hour with "
        "nothing changing; reconcile timer every 5 minutes, full read hourly "
        "(`POOLKEEPER_FULL_READ_MINUTES=60`).",
        "",
        f"A full reconcile of one {SIZE}-instance pool: {per_reconcile:.0f} ARM calls "
        f"({per_pool}"
        " per pool, plus one scale-set list per resource group and tick).",
        "",
        "| per hour, whole fleet | all reads | instance-list reads | by operation |",
        "|---|---:|---:|---|",
        f"| Poolkeeper | {ours_total} | {ours_lists} | "
        f"{', '.join(f'{k} {v}' for k, v in sorted(ours.items()))} |",
        f"| cluster-autoscaler pattern | {theirs_total} | {theirs_lists} | "
        f"{', '.join(f'{k} {v}' for k, v in sorted(theirs.items()))} |",
        f"| ratio | {ours_total / theirs_total:.2f} | {ours_lists / theirs_lists:.2f} | |",
        "",
        f"Targets: at most 1/5 of the reads ({_met(ours_total * 5 <= theirs_total)}) "
        f"and at most 1/10 of the instance-list reads "
        f"({_met(ours_lists * 10 <= theirs_lists)}), while every scale decision "
        "and every delete still re-reads the pool in full (those are not in steady state).",
        "Reproduce with `python -m bench.arm_calls`.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
