"""Image pipeline: how long the donor is out of service, and how much function time one whole
pipeline costs, with Kamino's measured latencies in the simulator (snapshot 6 s, definition
30 s, image version 11 min and 1 h 45 m; stop 3 min, which Poolkeeper's path never waits for:
the donor powers itself off from inside), against Kamino's own run (3 min 44 s donor out of
service; a job pod alive for the whole ~1 h 50 m).

Each pipeline: a 6-node pool, a Deployment with a PodDisruptionBudget, the donor chosen, drained,
cleaned, snapshotted, started, given back; the version replicated; a canary added, checked and
removed. Function time is the wall time spent inside the runner for the image job and the scale
jobs it starts (what Azure Functions would bill as execution time). Run
`python -m bench.image_pipeline`; writes bench/results/image_pipeline.md.
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

from local.azurite import Azurite
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services, handle
from tests.jobs_support import job, settings_for
from tests.simulator import RG, SUBSCRIPTION, running_simulator, scale_set, scenario

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "image_pipeline.md"
NODES = 6
VMSS = "aks-bench-80808080-vmss"
KAMINO_OUT_S = 3 * 60 + 44
KAMINO_POD_S = 110 * 60
LATENCIES = {"snapshot": 6, "gallery": 30, "image_definition": 30, "power_off": 183}


@dataclass
class Run:
    version_minutes: int
    speed: int
    out_of_service_s: float  # cordon to uncordon, the donor Ready again
    until_start_s: float  # cordon to the start request: what Kamino's 3 min 44 s counts
    pipeline_s: float  # simulated, plan to the end
    function_s: float  # wall time inside the runner, image job and its scale jobs
    invocations: int
    canary: str


def _pool() -> dict[str, Any]:
    return {
        "name": f"bench-{int(time.time())}",
        "vmss_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}",
        "node_group": "bench",
        "min_nodes": 3,
        "max_nodes": NODES + 2,
        "image": {"min_ready_minutes": 5, "replicas": 3},
    }


def _pipeline(sim: Any, azurite: Any, version_minutes: int, speed: int) -> Run:
    sim.load(
        scenario(
            scale_set(VMSS, NODES, zones=["1", "2", "3"]),
            speed=speed,
            latencies=LATENCIES | {"image_version": version_minutes * 60},
            os={"name": "Ubuntu 24.04.1 LTS", "kernel": "6.8.0-1015-azure"},
            workloads={
                "daemonsets": [{"name": "kube-proxy"}],
                "deployments": [
                    {
                        "name": "web",
                        "replicas": NODES,
                        "node_selector": {"elastisys.io/node-group": "bench"},
                        "termination_grace_seconds": 5,  # as in Kamino's measured run
                        "pdb": {"min_available": NODES - 1},
                    }
                ],
            },
        )
    )
    sim.advance(3600)  # the nodes have been Ready for an hour
    settings = settings_for(sim, azurite.connection_string, [_pool()])
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    pool = services.config.pools[0].name
    queues = {k: settings[f"POOLKEEPER_{k.upper()}_QUEUE"] for k in ("reconcile", "image", "scale")}
    function_s, invocations = 0.0, 0

    def deliver(job_id: str) -> Any:
        nonlocal function_s, invocations
        while True:
            for queue in queues.values():
                client = services.queues._queue(queue)
                for message in client.receive_messages(max_messages=8, visibility_timeout=60):
                    started = time.perf_counter()
                    handle(services, queue, message.content)
                    function_s += time.perf_counter() - started
                    invocations += 1
                    client.delete_message(message)
            record = services.tables.job(job_id)
            if record is not None and record.status in ("done", "failed"):
                return record
            time.sleep(0.02)

    reconcile = job("reconcile", pool, {})
    services.queues.send(queues["reconcile"], json.dumps(reconcile))
    deliver(reconcile["id"])
    function_s, invocations = 0.0, 0
    image = job("image", pool, {})
    started_at = services.clock.now()
    services.queues.send(queues["image"], json.dumps(image))
    record = deliver(image["id"])
    assert record.status == "done", (record.error, record.outcome)
    donor = record.state["donor"]
    taken = datetime.fromisoformat(donor["taken_at"])
    return Run(
        version_minutes,
        speed,
        donor["out_of_service"],
        (datetime.fromisoformat(donor["start_sent_at"]) - taken).total_seconds(),
        (services.clock.now() - started_at).total_seconds(),
        function_s,
        invocations,
        record.outcome["canary"]["verdict"],
    )


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as state,
        running_simulator(Path(state)) as sim,
        Azurite() as azurite,
    ):
        # 1 s of wall time (the shortest queue delay) is `speed` simulated seconds: 5 for the
        # donor's minutes, faster for the long replication, where only function time counts.
        runs = [_pipeline(sim, azurite, 11, 5), _pipeline(sim, azurite, 105, 30)]
    best = runs[0]
    rows = [
        f"| {r.version_minutes} min | {r.speed}x | {r.out_of_service_s:.0f} s | "
        f"{r.until_start_s:.0f} s | {r.pipeline_s / 60:.0f} min | {r.function_s:.1f} s "
        f"({r.invocations} invocations) |"
        for r in runs
    ]
    half = KAMINO_OUT_S / 2
    lines = [
        "# Image pipeline: the donor's time out of service and the function time of a run",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python "
        f"{platform.python_version()}, against the simulator. A {NODES}-node pool (a Deployment "
        f"of {NODES} pods, 5 s grace, PodDisruptionBudget minAvailable {NODES - 1}). Latencies "
        "from Kamino's measured runs: snapshot 6 s, gallery and definition 30 s, image version "
        "11 min and 1 h 45 m, Azure stop 183 s (never waited for here: the clean-up powers the "
        "OS off from inside and the instance view says stopped seconds later); the simulator's "
        "own for the rest: run command 20 s, start 45 s, boot to Ready 60-120 s.",
        "",
        "| image version | clock | donor out of service (cordon to uncordon, Ready) | "
        "cordon to start request | pipeline (simulated) | function time (sum of invocations) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        f"| Kamino (measured) | | {KAMINO_OUT_S} s (cordon to uncordon after `vmss start "
        "--no-wait`) | | ~110 min | a job pod alive for the whole run (~6,600 s) |",
        "",
        f"Targets: donor out of service at most half of Kamino's ({half:.0f} s): "
        f"{'met' if best.out_of_service_s <= half else 'NOT met'} counting to the donor's own "
        f"Ready ({best.out_of_service_s:.0f} s); counted as Kamino counts (it uncordons as soon "
        f"as the start is requested, before the node is Ready) {best.until_start_s:.0f} s "
        f"({'met' if best.until_start_s <= half else 'NOT met'}). The second row's donor times "
        f"are coarse: at {runs[1].speed}x one second of wall time, the shortest queue delay, is "
        f"{runs[1].speed} s; it is there for the function time of a long replication. "
        f"Function time under 60 s per pipeline: "
        f"{'met' if all(r.function_s < 60 for r in runs) else 'NOT met'} "
        f"({', '.join(f'{r.function_s:.1f} s' for r in runs)}); no function waits on "
        "replication, which costs one short status check every 5 minutes.",
        f"Canary: {best.canary}.",
        "Reproduce with `python -m bench.image_pipeline`.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
