"""Patch rollout: simulated time to patch a 20-node pool, at max_unavailable 1 and 3, against
kured's default pacing on the same pool, and the function time spent per node.

The pool runs a PodDisruptionBudget-protected Deployment; the simulator's latencies are
realistic (run command 20 s, restart 60 s, reboot 60-120 s per instance, pods 30 s grace); the
soak is the default 5 minutes. kured's pacing comes from its rules: each node's daemon wakes
every `--period` (1 h) after a start delay of period/2 + U(0,1)*period, and with the default
concurrency one node reboots per period at best (the issue's model: one node per hour).
Run `python -m bench.patch_rollout`; writes bench/results/patch_rollout.md.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from local.azurite import Azurite
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services, handle
from tests.jobs_support import job, settings_for
from tests.simulator import RG, SUBSCRIPTION, running_simulator, scale_set, scenario

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "patch_rollout.md"
NODES, SPEED = 20, 30  # 1 s of wall time, the shortest queue delay, is 30 s simulated
VMSS = "aks-bench-70707070-vmss"
KURED_PERIOD_H = 1.0
MIN_AVAILABLE = NODES - 2


@dataclass
class Run:
    max_unavailable: int
    simulated_s: float
    function_s: float
    patched: int
    pdb_breaches: int
    restarts: int


def _pool() -> dict[str, Any]:
    return {
        "name": f"bench-{int(time.time())}",
        "vmss_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}",
        "node_group": "bench",
        "min_nodes": 3,
        "max_nodes": NODES + 2,
        "patch": {"soak_minutes": 5},
    }


def _rollout(sim: Any, azurite: Any, max_unavailable: int) -> Run:
    sim.load(
        scenario(
            scale_set(VMSS, NODES, zones=[]),
            speed=SPEED,
            os={"name": "Ubuntu 24.04.1 LTS", "kernel": "6.8.0-1015-azure"},
            os_updates=[
                {"date": "2026-11-01T06:00:00Z", "kernel": "6.8.0-1017-azure", "packages": 12}
            ],
            workloads={
                "daemonsets": [{"name": "kube-proxy"}],
                "deployments": [
                    {
                        "name": "web",
                        "replicas": NODES,
                        "node_selector": {"elastisys.io/node-group": "bench"},
                        "termination_grace_seconds": 30,
                        "pdb": {"min_available": MIN_AVAILABLE},
                    }
                ],
            },
        )
    )
    sim.advance(2 * 3600)  # an hour of usage for the headroom check
    settings = settings_for(sim, azurite.connection_string, [_pool()]) | {
        "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"]
    }
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    pool = services.config.pools[0].name
    queues = {k: settings[f"POOLKEEPER_{k.upper()}_QUEUE"] for k in ("reconcile", "patch")}
    function_s = 0.0
    breaches = 0

    def deliver(kind: str, job_id: str) -> Any:
        nonlocal function_s, breaches
        client = services.queues._queue(queues[kind])
        while True:
            for message in client.receive_messages(max_messages=8, visibility_timeout=60):
                started = time.perf_counter()
                handle(services, queues[kind], message.content)
                function_s += time.perf_counter() - started
                client.delete_message(message)
            budget = requests.get(f"{sim.admin}/kube/pdbs", timeout=10).json()["pdbs"][0]
            breaches += budget["current_healthy"] < budget["desired_healthy"]
            record = services.tables.job(job_id)
            if record is not None and record.status in ("done", "failed"):
                return record
            time.sleep(0.05)

    for kind, params in (("reconcile", {}), ("patch", {"max_unavailable": max_unavailable})):
        message = job(kind, pool, params)
        services.queues.send(queues[kind], json.dumps(message))
        if kind == "patch":
            function_s = 0.0
            started_at = services.clock.now()
        record = deliver(kind, message["id"])
    simulated = (services.clock.now() - started_at).total_seconds()
    restarts = sum(
        c["operation"] == "VirtualMachineScaleSetVMs_Restart" for c in sim.calls()["calls"]
    )
    assert record.status == "done", (record.error, record.outcome)
    return Run(
        max_unavailable,
        simulated,
        function_s,
        len(record.outcome["patched"]),
        breaches,
        restarts,
    )


def _kured_hours(nodes: int) -> tuple[float, float]:
    """(expected, worst) hours for kured: a start delay of period/2 + U*period (mean one
    period), then one node per period."""
    return KURED_PERIOD_H * (1.0 + nodes), KURED_PERIOD_H * (1.5 + nodes)


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as state,
        running_simulator(Path(state)) as sim,
        Azurite() as azurite,
    ):
        runs = [_rollout(sim, azurite, n) for n in (1, 3)]
    kured, kured_worst = _kured_hours(NODES)
    rows = [
        f"| Poolkeeper, max_unavailable {r.max_unavailable} | {r.simulated_s / 3600:.2f} h | "
        f"{kured / (r.simulated_s / 3600):.1f}x | {r.patched}/{NODES} | {r.restarts} | "
        f"{r.function_s:.1f} s ({r.function_s / max(r.patched, 1):.2f} s/node) | "
        f"{r.pdb_breaches} |"
        for r in runs
    ]
    first = runs[0]
    speedup = kured / (first.simulated_s / 3600)
    lines = [
        "# Patch rollout: Poolkeeper against kured's pacing",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python "
        f"{platform.python_version()}, against the simulator at {SPEED}x. A {NODES}-node pool "
        f"running a Deployment of {NODES} pods (30 s grace) under a PodDisruptionBudget "
        f"(minAvailable {MIN_AVAILABLE}); every node has 12 updates and a new kernel pending. "
        "Latencies: run command 20 s, restart 60 s, reboot 60-120 s per instance; soak 5 min.",
        "",
        "| rollout | simulated time | vs kured (expected) | patched | restarts | "
        "function time (sum of invocations) | PDB below minAvailable (samples) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| kured defaults (`--period 1h`, concurrency 1) | {kured:.1f} h expected, "
        f"{kured_worst:.1f} h worst | 1x | | | a DaemonSet pod per node, all the time | |",
        "",
        f"Target: at least 4x faster than kured at max_unavailable 1 "
        f"({'met' if speedup >= 4 else 'NOT met'}: {speedup:.1f}x), with no PDB or headroom "
        f"breach ({'met' if all(r.pdb_breaches == 0 for r in runs) else 'NOT met'}; headroom "
        "and min_nodes are checked by the product before each node goes down, and the "
        "integration tests assert them at every claim).",
        "Reproduce with `python -m bench.patch_rollout`.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
