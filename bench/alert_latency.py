"""Alert to action: wall time from `POST /api/alerts` to the capacity write reaching the
simulator, over 50 alerts on the local stack (Azurite, the Azure simulator, the local Functions
host running function_app.py with host.json's queue polling).

Each alert is the shipped P1 group CPU rule's Azure Monitor payload (tests/alert_payloads.py);
the clock is moved past the pool's cooldown before each one, and each scale job finishes before
the next alert, so every alert is one scale-up. The write's time is the simulator's own record
of the `VirtualMachineScaleSets_Update` call. Target: p95 under 2 s.
Run `python -m bench.alert_latency`; writes bench/results/alert_latency.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from local.azurite import ROOT, Azurite
from local.procs import free_port, stop_group, wait_until
from local.stack import APP_DEFAULTS
from tests.alert_payloads import azure_alert, azure_rules
from tests.jobs_support import job, settings_for
from tests.simulator import RG, SUBSCRIPTION, running_simulator, scale_set, scenario

RESULT = ROOT / "bench" / "results" / "alert_latency.md"
ALERTS = 50
# Seconds between a job's end and the next alert: past the poller's backoff (0.1 s doubling up
# to maxPollingInterval), then a random part, so that alerts meet the polls at any phase, as real
# alerts (minutes apart) do; seeded, so a rerun sends them at the same moments.
IDLE = 6.0
PHASE = 2.0
TARGET_P95 = 2.0
# Alerts go round the pools, so no pool grows past 3 + 2 * ALERTS / POOLS instances: a pool's
# status record outgrows its table property at about 40 (see the results' note).
POOLS = 5


def _vmss(n: int) -> str:
    return f"aks-web{n}-5555555{n}-vmss"


def _vmss_id(n: int) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{_vmss(n)}"
    )


KEY = "bench-function-key"
TIMERS = ("reconcile_timer", "evaluate_capacity", "downscale_review", "patch_timer")
WRITE = "VirtualMachineScaleSets_Update"


def _host(
    settings: dict[str, str], state: Path, max_polling: str | None
) -> tuple[subprocess.Popen[bytes], str]:
    """The local host on function_app.py; with `max_polling`, host.json's queue polling bound
    replaced (to see how much of the latency it is)."""
    root = ROOT
    if max_polling:
        root = state / "root"
        root.mkdir()
        shutil.copy(ROOT / "function_app.py", root / "function_app.py")
        host_json = json.loads((ROOT / "host.json").read_text())
        host_json["extensions"]["queues"]["maxPollingInterval"] = max_polling
        (root / "host.json").write_text(json.dumps(host_json))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLKEEPER_", "Azure"))}
    env |= settings | {"PYTHONPATH": str(ROOT), "POOLKEEPER_LOCAL_FUNCTION_KEYS": KEY}
    env |= {f"AzureWebJobs.{name}.Disabled": "true" for name in TIMERS}  # only alerts act
    port = free_port()
    with open(state / "host.log", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.host", "--root", str(root), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/api/health", timeout=1).status_code in (200, 503)
        except requests.RequestException:
            return False

    wait_until(up, timeout=60, what=f"local host (log {state / 'host.log'})", process=process)
    return process, url


def _finished(url: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(f"{url}/api/jobs/{job_id}", headers={"x-functions-key": KEY})
        if answer.status_code == 200 and answer.json()["status"] in ("done", "failed"):
            return answer.json()
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")


def _write_time(sim: Any, after: float, timeout: float = 30) -> float:
    """The wall time the simulator recorded the first capacity write at, after `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        writes = [
            c["wall_time"]
            for c in sim.calls()["calls"]
            if c["operation"] == WRITE and c["wall_time"] >= after
        ]
        if writes:
            return min(writes)
        time.sleep(0.02)
    raise TimeoutError("no capacity write reached the simulator")


def _measure(sim: Any, url: str, idle: float) -> list[float]:
    """Latencies of `ALERTS` alerts, each sent `idle` seconds after the previous job ended."""
    rule = next(r for r in azure_rules() if r["name"] == "p1-group-cpu")
    phase = random.Random(13)
    latencies = []
    for n in range(ALERTS):
        time.sleep(idle + phase.uniform(0, PHASE) if idle else 0)
        sim.advance(120)  # past the pool's 1-minute cooldown
        requests.delete(f"{sim.admin}/calls", timeout=10)
        body = azure_alert(rule, _vmss_id(n % POOLS), rule_name=f"poolkeeper-p1-group-cpu-{n}")
        started = time.time()
        answer = requests.post(
            f"{url}/api/alerts", json=body, headers={"x-functions-key": KEY}, timeout=10
        )
        assert answer.status_code == 202, answer.text
        (job_id,) = answer.json()["jobs"]
        latencies.append(_write_time(sim, started) - started)
        record = _finished(url, job_id)
        if record["status"] != "done":  # the write was measured; say what went wrong after it
            print(f"alert {n}: job {job_id} {record['status']}: {record.get('error')}")
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run(max_polling: str | None) -> dict[str, list[float]]:
    """Both series on one stack: alerts after the queue has been idle, and back to back."""
    pools = [
        {
            "name": f"web{n}",
            "vmss_id": _vmss_id(n),
            "node_group": f"web{n}",
            "min_nodes": 2,
            "max_nodes": 100,
            "capacity": {"cooldown_minutes": 1},
        }
        for n in range(POOLS)
    ]
    with (
        tempfile.TemporaryDirectory() as state,
        Azurite() as azurite,
        running_simulator(Path(state)) as sim,
    ):
        sim.load(scenario(*(scale_set(_vmss(n), 3, zones=[]) for n in range(POOLS)), speed=600))
        settings = APP_DEFAULTS | settings_for(sim, azurite.connection_string, pools)
        host, url = _host(settings, Path(state), max_polling)
        try:
            for pool in pools:  # the live counts a scale-up policy needs
                reconcile = requests.post(
                    f"{url}/api/jobs",
                    json=job("reconcile", pool["name"]),
                    headers={"x-functions-key": KEY},
                )
                _finished(url, reconcile.json()["id"])
            return {"idle": _measure(sim, url, IDLE), "back to back": _measure(sim, url, 0)}
        finally:
            stop_group(host)


def _row(series: str, polling: str, values: list[float]) -> str:
    p50, p95 = statistics.median(values), _percentile(values, 0.95)
    verdict = "met" if p95 < TARGET_P95 else "NOT met"
    return (
        f"| {series} | {polling} | {len(values)} | {p50:.2f} s | {p95:.2f} s | "
        f"{max(values):.2f} s | {min(values):.2f} s | {verdict} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_latency", description=__doc__)
    parser.add_argument(
        "--compare-polling",
        default="00:00:01",
        help="also run with this maxPollingInterval (default 00:00:01; '' to skip)",
    )
    args = parser.parse_args()
    shipped = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    runs = {shipped["maxPollingInterval"]: _run(None)}
    if args.compare_polling:
        runs[args.compare_polling] = _run(args.compare_polling)
    rows = [
        _row(series, polling, values)
        for polling, series_values in runs.items()
        for series, values in series_values.items()
    ]
    lines = [
        "# Alert to action: POST /api/alerts to the capacity write",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"({os.cpu_count()} cores), Python {platform.python_version()}: {ALERTS} alerts per "
        "series, one at a time, each the shipped P1 group CPU rule's Azure Monitor payload, "
        "through the local host (function_app.py and host.json's queue polling) on Azurite and "
        "the Azure simulator; from just before the POST to the simulator's record of the "
        f"`{WRITE}` call (one machine's wall clock). *Idle*: each alert {IDLE:.0f} to "
        f"{IDLE + PHASE:.0f} s (random, seeded) after the previous job ended, so the queue poller "
        "has backed off fully and the alert meets its polls at any phase, as a real alert does; "
        "*back to back*: the next alert as soon as the previous job is done. The machine was "
        f"shared with other test runs (load average {os.getloadavg()[0]:.1f} at the end).",
        "",
        "| series | maxPollingInterval | alerts | p50 | p95 | max | min | p95 < 2 s |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        "Where the time goes: the webhook answers once the scale job is on the queue (its "
        "own work is tens of milliseconds); the queue trigger finds the job at its next poll, and "
        "an idle queue is polled only every `maxPollingInterval` (the host backs off from 0.1 s "
        "to it, as the Functions runtime does); the job then takes the pool lease, re-reads the "
        "scale set and writes the capacity with `If-Match` (about 0.1 s here, the back-to-back "
        "minimum). So an alert waits for the next poll, up to `maxPollingInterval` after it "
        "arrives, then for that work.",
        *(
            f"With maxPollingInterval {polling} the idle p95 is "
            f"{_percentile(series['idle'], 0.95):.2f} s."
            for polling, series in runs.items()
        ),
        "A shorter interval costs an idle queue one poll a second instead of one every two "
        "(about 43,000 more storage transactions a day per queue). The webhook and the job are "
        "well inside the target; whether the p95 is under 2 s on an idle queue is decided by "
        "host.json's `maxPollingInterval`.",
        "",
        f"The alerts go round {POOLS} pools of 3 instances each, so that no pool passes "
        f"{3 + 2 * ALERTS // POOLS} instances: found while building this benchmark, a pool's "
        "status record (one JSON string property of `poolkeeperpools`) outgrows Table storage's "
        "64 KiB property at about 40 instances, and the scale job that grew the pool then fails "
        "in `await_ready` with `PropertyValueTooLarge` (after its write). Fixed since (04e8e87: "
        "the record is split over properties; a 1,000-instance record is tested).",
        "",
        "Reproduce with `python -m bench.alert_latency` (about 15 minutes: four series).",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())
    for polling, series_values in runs.items():
        for series, values in series_values.items():
            print(f"{polling} {series}:", " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
