"""Isolation: one cluster's API hangs; do the other clusters' reconcile jobs still finish on time?

A fleet of 10 clusters x 2 pools x 20 instances, each cluster with its own TLS API server and
token. One reconcile tick as a host runs it: the timer's survey on one thread, and the reconcile
queue served by 16 workers at once (host.json's batchSize) from the moment the survey enqueues.
Measured: for the healthy clusters' pools, the wall seconds from the tick's start until their
reconcile job is done. Phases alternate — all clusters healthy, then cluster capz-00 hung (every
request held, never answered) — three times each, every pool due a full read each time. The hung
cluster's calls time out after 5 s (`request_timeout_seconds`); its breaker is left as the
phase leaves it, as in a running host. Run `python -m bench.isolation`; writes
bench/results/isolation.md.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.fleet import Fleet
from local.azurite import Azurite
from shared.flows.jobs import Services, handle
from shared.flows.reconcile import survey

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "isolation.md"
CLUSTERS, POOLS_PER_CLUSTER, SIZE, WORKERS, REPEATS = 10, 2, 20, 16, 3
HUNG = "capz-00"
TIMEOUT_SECONDS = 5
TARGET = 1.2


FLEET = Fleet(
    CLUSTERS,
    POOLS_PER_CLUSTER,
    SIZE,
    group=lambda n: f"rg-capz-{n:02d}",
    max_nodes=100,
    request_timeout_seconds=TIMEOUT_SECONDS,
)


def _tick(services: Services) -> dict[str, float]:
    """One tick: the survey on its own thread, the queue served by WORKERS as messages come;
    each pool's seconds from the tick's start until its reconcile job was handled to done."""
    queue = services.settings["POOLKEEPER_RECONCILE_QUEUE"]
    client = services.queues._queue(queue)
    began = time.monotonic()
    surveyed = threading.Event()
    enqueued: list[str] = []

    def timer() -> None:
        enqueued.extend(survey(services))
        surveyed.set()

    done: dict[str, float] = {}
    lock = threading.Lock()

    def work(message: Any) -> None:
        job = json.loads(message.content)
        handle(services, queue, message.content)
        client.delete_message(message)
        record = services.tables.job(job["id"])
        if record is not None and record.status == "done":
            with lock:
                done[job["pool"]] = time.monotonic() - began

    healthy = {p.name for p in services.config.pools if p.cluster != HUNG}
    threading.Thread(target=timer, daemon=True).start()
    workers = ThreadPoolExecutor(max_workers=WORKERS)
    while not healthy <= set(done):
        if time.monotonic() - began > 180:
            raise RuntimeError(f"reconcile jobs not done in 180 s: {sorted(healthy - set(done))}")
        batch = list(next(client.receive_messages(messages_per_page=16).by_page(), []))
        if not batch:
            time.sleep(0.05)
            continue
        for message in batch:
            workers.submit(work, message)
    workers.shutdown(wait=False)  # the hung cluster's jobs end on their own
    surveyed.wait()
    return {pool: seconds for pool, seconds in done.items() if pool in healthy}


def main() -> None:
    runs: dict[str, list[dict[str, float]]] = {"healthy": [], "hung": []}
    with (
        tempfile.TemporaryDirectory() as state,
        FLEET.started(Path(state)) as sim,
        Azurite() as azurite,
    ):
        services = FLEET.services(sim, azurite.connection_string)
        _tick(services)  # warm-up: connections, tables, queues
        for _ in range(REPEATS):
            for phase in ("healthy", "hung"):
                sim.advance(61 * 60)  # every pool due its hourly full read
                if phase == "hung":
                    sim.hang(HUNG)
                try:
                    runs[phase].append(_tick(services))
                finally:
                    if phase == "hung":
                        sim.release(HUNG)
                time.sleep(2 * TIMEOUT_SECONDS)  # the hung cluster's jobs end before the next

    def last(phase: str) -> list[float]:
        return [max(run.values()) for run in runs[phase]]

    def median(phase: str) -> list[float]:
        return [statistics.median(run.values()) for run in runs[phase]]

    ratio = statistics.median(last("hung")) / statistics.median(last("healthy"))
    rows = [
        f"| {phase} | "
        + ", ".join(f"{v:.2f}" for v in last(phase))
        + " | "
        + ", ".join(f"{v:.2f}" for v in median(phase))
        + " |"
        for phase in ("healthy", "hung")
    ]
    lines = [
        "# Isolation: one cluster hangs, the others' reconcile jobs",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python "
        f"{platform.python_version()}, against the simulator. {CLUSTERS} clusters x "
        f"{POOLS_PER_CLUSTER} pools x {SIZE} instances, each cluster its own TLS API server "
        f"and token; one reconcile tick as a host runs it (the survey on its own thread, the "
        f"queue served by {WORKERS} workers); every pool due a full read. Hung: cluster {HUNG} "
        f"holds every request unanswered; its calls time out after {TIMEOUT_SECONDS} s. "
        f"Phases alternate, {REPEATS} of each, in one process: {HUNG}'s breaker opens in the "
        "first hung phase and stays as it is (held back, or one trial call a minute), so later "
        "phases, healthy ones too, see what a running host would.",
        "",
        "Seconds from the tick's start until the healthy clusters' reconcile jobs were done:",
        "",
        "| phase | last job done, per run | median job, per run |",
        "|---|---|---|",
        *rows,
        "",
        f"Last job done, median over runs, hung / healthy: {ratio:.2f} (target at most "
        f"{TARGET}: {'met' if ratio <= TARGET else 'NOT met'}).",
        "Reproduce with `python -m bench.isolation`.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
