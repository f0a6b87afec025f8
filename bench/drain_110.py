"""Drain benchmark: a node with 110 pods whose grace period is 30 s.

Evictions are all requested in one round (as kubectl's run concurrently), so the drain should take
about one grace period of simulated time, not 110 of them. Records simulated time, rounds and the
Kubernetes API calls. Run `python -m bench.drain_110`; writes bench/results/drain_110.md.
"""

from __future__ import annotations

import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from shared.clock import FileClock
from shared.decide.drain import DrainOptions
from shared.flows.claims import Claimed, Owner, claim
from shared.flows.drain import Drained, Waiting, continue_drain, start_drain
from tests.simulator import RG, running_simulator, scale_set, scenario

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "drain_110.md"
VMSS = "aks-bench-33333333-vmss"
NODE = "aks-bench-33333333-vmss000000"
GRACE = 30
SPEED = 10


def main() -> None:
    workloads = {
        "deployments": [
            {
                "name": "app",
                "replicas": 107,
                "termination_grace_seconds": GRACE,
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "node_selector": {"elastisys.io/node-group": "bench"},
            }
        ],
        "daemonsets": [{"name": "kube-proxy"}, {"name": "azure-cns"}],
        "static_pods": [{"name": "node-exporter"}],
    }
    with tempfile.TemporaryDirectory() as state, running_simulator(Path(state)) as sim:
        sim.load(
            scenario(
                scale_set(VMSS, 1, zones=[], sku="Standard_D16s_v5"),
                workloads=workloads,
                speed=SPEED,
            )
        )
        compute = sim.compute()
        compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 2}}).result()
        kube = sim.kube()
        pods = len(kube.pods_on(NODE))
        requests.get(f"{sim.admin}/kube/requests", timeout=10)
        calls_before = requests.get(f"{sim.admin}/kube/requests", timeout=10).json()["total"]
        clock = FileClock(Path(sim.info["clock_file"]))
        started_sim, started_wall = clock.now(), time.perf_counter()
        owner = Owner("bench-drain-110", "drain")
        assert isinstance(claim(kube, NODE, owner, started_sim), Claimed)
        step = start_drain(
            kube,
            NODE,
            owner=owner,
            now=started_sim,
            timeout=timedelta(minutes=30),
            options=DrainOptions(),
        )
        while isinstance(step, Waiting):
            time.sleep(clock.real_seconds(step.delay))
            step = continue_drain(kube, step.state, now=clock.now())
        assert isinstance(step, Drained), step
        simulated = (clock.now() - started_sim).total_seconds()
        wall = time.perf_counter() - started_wall
        calls = (
            requests.get(f"{sim.admin}/kube/requests", timeout=10).json()["total"] - calls_before
        )
    lines = [
        "# Drain: one node with 110 pods, 30 s grace period",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python "
        f"{platform.python_version()}, against the simulator at speed {SPEED} (the wall time of "
        "the API calls counts as simulated time too, multiplied by the speed).",
        "",
        "| pods on the node | evicted | skipped (DaemonSet, mirror) | rounds | simulated s | "
        "wall s | Kubernetes API calls |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {pods} | {len(step.evicted)} | {len(step.skipped)} | {step.state.rounds} | "
        f"{simulated:.0f} | {wall:.1f} | {calls} |",
        "",
        f"Target: about one grace period ({GRACE} s) of simulated time, not {len(step.evicted)} "
        f"of them. {'Met' if simulated < 3 * GRACE else 'NOT met'}: evictions are requested "
        "together in one round; each later round is one pod list. Reproduce with "
        "`python -m bench.drain_110`.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
