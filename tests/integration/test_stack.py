"""`python -m local.stack`: one JSON line of endpoints once ready; SIGTERM leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests

from local.azurite import ROOT
from shared.adapters.kube import Kube


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _sim_now(endpoints: dict[str, str]) -> datetime:
    clock = requests.get(f"{endpoints['admin']}/clock", timeout=10).json()
    return datetime.fromisoformat(clock["now"])


def test_stack_prints_endpoints_serves_health_and_stops_everything_on_sigterm(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLKEEPER_", "AzureWebJobs"))}
    stack = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.stack",
            "--scenario",
            "local/scenarios/small.json",
            "--logs",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # No bound on how long it takes (on a loaded machine, a minute): the stack's own waits
        # end a start that hangs, and then the line is empty.
        line = stack.stdout.readline()
        endpoints = json.loads(line)
        assert {
            "host",
            "arm",
            "admin",
            "ca_cert",
            "storage",
            "function_key",
            "subscription",
            "identity_endpoint",
            "identity_header",
            "kube",
            "kubeconfig",
        } <= endpoints.keys()
        before = _sim_now(endpoints)
        health = requests.get(f"{endpoints['host']}/api/health", timeout=10)
        after = _sim_now(endpoints)
        assert health.status_code == 200, health.text
        # The product is configured with the scenario's pools, and the simulator holds them.
        assert health.json()["config"] == {"ok": True, "pools": 2, "mode": "act"}
        # One clock: the product reads the simulator's (the scenario starts 2026-11-02), so its
        # time falls between the simulator's before and after the call, however long it took.
        product_now = datetime.fromisoformat(health.json()["clock"]["now"])
        assert product_now.date().isoformat() == "2026-11-02"
        assert before - timedelta(seconds=1) <= product_now <= after + timedelta(seconds=1)
        state = requests.get(f"{endpoints['admin']}/state", timeout=10).json()
        assert [s["name"] for s in state["scale_sets"]] == [
            "demo-system-vmss",
            "demo-workers-vmss",
        ]
        # The cluster's API serves the scenario's nodes to the product's Kubernetes adapter.
        kube = Kube.from_settings({"POOLKEEPER_KUBECONFIG": endpoints["kubeconfig"]})
        assert len(kube.nodes()) == sum(len(s["instances"]) for s in state["scale_sets"])
        children = _descendants(stack.pid)
        assert len(children) >= 3  # Azurite, the simulator and the local host at least
    finally:
        stack.send_signal(signal.SIGTERM)
        code = stack.wait(timeout=30)
    assert code == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]


def test_stack_that_cannot_start_says_why_and_leaves_nothing_behind(tmp_path) -> None:
    # A scenario the simulator rejects (a VM size it does not know): the stack has already
    # started Azurite and the simulator by then, and must stop them.
    data = json.loads((ROOT / "local/scenarios/small.json").read_text())
    data["scale_sets"][0]["sku"] = "Standard_Imaginary_v9"
    scenario = tmp_path / "bad.json"
    scenario.write_text(json.dumps(data))
    stack = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.stack",
            "--scenario",
            str(scenario),
            "--logs",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    while stack.poll() is None:
        seen |= _descendants(stack.pid)
        time.sleep(0.05)
    assert stack.returncode == 1
    stderr = stack.stderr.read()
    assert stderr.startswith("local stack: Azure simulator (log: ")
    assert "sim.log) exited with code 2 before it was ready" in stderr
    assert "Standard_Imaginary_v9" in (tmp_path / "logs" / "sim.log").read_text()
    assert seen  # Azurite was running
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in seen):
        time.sleep(0.1)
    assert not [pid for pid in seen if _alive(pid)]
