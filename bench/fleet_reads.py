"""ARM reads for a fleet from one deployment: 50 clusters x 4 pools x 100 instances, one
simulated hour of steady state, against the cluster-autoscaler pattern (one autoscaler per
cluster: its resource group's scale-set list every 60 s, each scale set's instance list every
5 minutes). Each cluster has its own resource group and its own Kubernetes API (a ServiceAccount
token from the simulated Key Vault, its own CA). Run `python -m bench.fleet_reads`; writes
bench/results/fleet_reads.md.

The simulator serves one subscription, so the fleet's 5 subscriptions are modelled as 5 groups
of 10 resource groups in it: Poolkeeper lists per (subscription, resource group), so the count
of reads is the same either way.
"""

from __future__ import annotations

import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.arm_calls import INSTANCE_LIST, _counters, _delta, _met
from bench.fleet import Fleet
from local.azurite import Azurite
from shared.flows.reconcile import survey
from tests.jobs_support import Pump

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "fleet_reads.md"
CLUSTERS, POOLS_PER_CLUSTER, SIZE, SUBSCRIPTIONS, TICK_MINUTES = 50, 4, 100, 5, 5


FLEET = Fleet(
    CLUSTERS,
    POOLS_PER_CLUSTER,
    SIZE,
    group=lambda n: f"rg-sub{n % SUBSCRIPTIONS}-capz-{n:02d}",
    min_nodes=3,
)


def _poolkeeper_hour(sim: Any, pump: Pump) -> tuple[dict[str, int], dict[str, int], float]:
    """A warm-up tick (every pool's first full read), then 12 ticks = one hour."""
    before = _counters(sim)
    for job_id in survey(pump.services):
        pump.run("reconcile", job_id)
    first = _delta(_counters(sim), before)
    before, began = _counters(sim), time.monotonic()
    for _ in range(60 // TICK_MINUTES):
        sim.advance(TICK_MINUTES * 60)
        for job_id in survey(pump.services):
            pump.run("reconcile", job_id)
    return first, _delta(_counters(sim), before), time.monotonic() - began


def _autoscaler_hour(sim: Any) -> dict[str, int]:
    compute = sim.compute()
    before = _counters(sim)
    for minute in range(60):
        for n in range(CLUSTERS):
            list(compute.virtual_machine_scale_sets.list(FLEET.group(n)))
            if minute % 5 == 0:
                for name in FLEET.scale_sets(n):
                    list(compute.virtual_machine_scale_set_vms.list(FLEET.group(n), name))
    return _delta(_counters(sim), before)


def main() -> None:
    pools = POOLS_PER_CLUSTER * CLUSTERS
    with (
        tempfile.TemporaryDirectory() as state,
        FLEET.started(Path(state)) as sim,
        Azurite() as azurite,
    ):
        services = FLEET.services(sim, azurite.connection_string)
        first, ours, wall = _poolkeeper_hour(sim, Pump(services))
        theirs = _autoscaler_hour(sim)
    ours_total, theirs_total = sum(ours.values()), sum(theirs.values())
    ours_lists, theirs_lists = ours.get(INSTANCE_LIST, 0), theirs.get(INSTANCE_LIST, 0)
    per_pool = {
        k: v / pools for k, v in sorted(ours.items()) if k != "VirtualMachineScaleSets_List"
    }
    lines = [
        "# ARM reads for a fleet: 50 clusters from one deployment",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python "
        f"{platform.python_version()}, against the simulator (pages of 100 VMs). Fleet: "
        f"{CLUSTERS} clusters x {POOLS_PER_CLUSTER} pools x {SIZE} instances "
        f"({pools * SIZE} instances), each cluster in its own resource group, "
        f"{SUBSCRIPTIONS} subscriptions (modelled as resource groups of the simulator's one "
        "subscription: reads are per subscription and resource group either way). One simulated "
        f"hour with nothing changing; reconcile timer every {TICK_MINUTES} minutes, full read "
        "hourly. Every cluster's nodes are read by each survey over its own TLS connection and "
        "token (Kubernetes reads are not ARM reads and are not counted here).",
        "",
        f"Warm-up (every pool's first full read): {sum(first.values())} ARM calls. The hour's "
        f"{60 // TICK_MINUTES} timer ticks with their reconcile jobs took {wall:.0f} s of wall "
        "time in one process.",
        "",
        "| per hour, whole fleet | all reads | instance-list reads | by operation |",
        "|---|---:|---:|---|",
        f"| Poolkeeper | {ours_total} | {ours_lists} | "
        f"{', '.join(f'{k} {v}' for k, v in sorted(ours.items()))} |",
        f"| cluster-autoscaler pattern (one per cluster) | {theirs_total} | {theirs_lists} | "
        f"{', '.join(f'{k} {v}' for k, v in sorted(theirs.items()))} |",
        f"| ratio | {ours_total / theirs_total:.2f} | {ours_lists / theirs_lists:.2f} | |",
        "",
        "Per pool and hour, Poolkeeper: "
        + ", ".join(f"{k} {v:.1f}" for k, v in per_pool.items())
        + f"; plus {ours.get('VirtualMachineScaleSets_List', 0) / CLUSTERS:.0f} scale-set lists "
        "per resource group (one per tick). The cluster-autoscaler pattern: "
        f"{theirs_lists / pools:.0f} instance lists per pool and "
        f"{theirs.get('VirtualMachineScaleSets_List', 0) / CLUSTERS:.0f} scale-set lists per "
        "resource group.",
        "",
        f"Targets: at most 0.2x of the reads ({_met(ours_total * 5 <= theirs_total)}) and at "
        f"most 0.1x of the instance lists ({_met(ours_lists * 10 <= theirs_lists)}).",
        "Reproduce with `python -m bench.fleet_reads`.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
