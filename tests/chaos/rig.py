"""The chaos rig: one simulator, one Azurite that keeps its data on disk, and several local
Functions hosts running the repository's function_app.py on the same queues, as instances of
one Function app would in Azure. Started once and reused by every round; always stopped.

Kills are SIGKILLs of a host's process group; a killed host is started again on a fresh port.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobLeaseClient

from local.azurite import ROOT, Azurite
from local.procs import free_port, stop_group, wait_until
from local.stack import APP_DEFAULTS
from shared.adapters.leases import CONTAINER
from shared.flows.jobs import Services
from shared.jobs import QUEUES, queue_name
from tests.chaos.schedules import POOLS, ChaosPool
from tests.jobs_support import settings_for
from tests.simulator import Simulator, running_simulator

HOSTS = 3
FUNCTION_KEY = "chaos-function-key"
# A fetched message stays invisible this long (wall seconds) while it runs: a killed host's
# messages come back after it. Long enough that a busy host is rarely overtaken.
QUEUE_LEASE_SECONDS = 10
HOST_JSON: dict[str, Any] = {
    "version": "2.0",
    "functionTimeout": "00:05:00",
    "extensions": {
        "queues": {
            "batchSize": 4,
            "maxPollingInterval": "00:00:00.5",
            "visibilityTimeout": "00:00:01",
            "maxDequeueCount": 5,
            "messageEncoding": "none",
        }
    },
}
TIMERS = ("reconcile_timer", "evaluate_capacity", "downscale_review", "patch_timer")


@dataclass
class Host:
    slot: int
    root: Path
    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def agent(self) -> str:
        return f"chaos-host{self.slot}"


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/admin/host/ping", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Rig:
    """The running stack; `settings` are the hosts' app settings, `services` the driver's view
    of the same storage account (ledger, queues)."""

    sim: Simulator
    azurite: Azurite
    settings: dict[str, str]
    services: Services
    hosts: list[Host]
    pools: tuple[ChaosPool, ...]
    kills: int = 0
    azurite_restarts: int = 0
    host_starts: list[float] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)  # kills and starts

    @functools.cached_property
    def kube(self) -> Any:
        """The product's Kubernetes adapter on the simulated cluster (made once: seconds)."""
        return self.sim.kube()

    @functools.cached_property
    def compute(self) -> Any:
        """A Compute client for the driver's own calls (no retries: a fault refuses it too)."""
        return self.sim.compute(retry_total=0)

    @functools.cached_property
    def core(self) -> Any:
        """A plain Kubernetes client, as an operator's kubectl (made once: seconds)."""
        from kubernetes import client, config

        kubeconfig = self.sim.info["kubeconfig"]
        return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))

    def queues(self) -> dict[str, str]:
        """Job kind -> the queue name the hosts listen on."""
        return {kind.value: queue_name(kind, self.settings) for kind in QUEUES}

    def start(self, host: Host) -> None:
        """Start (or start again) a host's process; wait until it answers."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("POOLKEEPER_", "AzureWebJobs"))
        }
        # Its Azure calls say which host sent them (the simulator's held answers name it).
        env |= self.settings | {"PYTHONPATH": str(ROOT), "AZURE_HTTP_USER_AGENT": host.agent}
        log = host.root / "host.log"
        for attempt in range(3):
            # A port free a moment ago may be taken by another suite meanwhile: try another.
            port = free_port()
            command = [sys.executable, "-m", "local.host", "--root", str(host.root)]
            with open(log, "ab") as out:
                host.process = subprocess.Popen(
                    [*command, "--port", str(port)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            host.url = f"http://127.0.0.1:{port}"
            started = time.monotonic()
            try:
                wait_until(
                    lambda: _answers(host.url), timeout=60, what="local host", process=host.process
                )
                self.host_starts.append(time.monotonic() - started)
                return
            except RuntimeError:
                if attempt == 2 or "already in use" not in log.read_text():
                    raise
        raise AssertionError("unreachable")

    def kill(self, host: Host) -> None:
        """SIGKILL the host (no clean-up of any kind), as a crashed instance."""
        with self.lock:
            if host.process is not None and host.alive:
                os.killpg(host.process.pid, signal.SIGKILL)
                host.process.wait(timeout=10)
            self.kills += 1

    def kill_now(self, host: Host) -> None:
        """SIGKILL the host and end the pool leases it held (its messages come back later)."""
        with self.lock:
            self.kill(host)
            self.expire_leases()

    def ensure_running(self, host: Host) -> None:
        """Start the host unless it runs (the driver and its watcher both restart hosts)."""
        with self.lock:
            if not host.alive:
                self.start(host)

    def expire_leases(self) -> None:
        """End every pool lease now. A dead host's lease would expire on its own within 60 wall
        seconds; the product cannot tell the two apart (a live holder sees LeaseLost)."""
        container = self.services.account.blob_service().get_container_client(CONTAINER)
        for blob in container.list_blobs():
            if blob.lease.state == "leased":
                # Released meanwhile by its holder (409): nothing left to expire.
                with contextlib.suppress(HttpResponseError):
                    BlobLeaseClient(container.get_blob_client(blob.name)).break_lease(
                        lease_break_period=0
                    )

    def restart_azurite(self) -> None:
        self.azurite.restart()
        self.azurite_restarts += 1

    def live_hosts(self) -> list[Host]:
        return [h for h in self.hosts if h.alive]

    def stop(self) -> None:
        for host in self.hosts:
            if host.process is not None:
                stop_group(host.process)


def open_rig(workdir: Path, running: ExitStack, pools: tuple[ChaosPool, ...] = POOLS) -> Rig:
    """Start the simulator, Azurite (on disk) and the hosts; `running` stops them all."""
    (workdir / "sim").mkdir(parents=True, exist_ok=True)
    sim = running.enter_context(running_simulator(workdir / "sim"))
    azurite = Azurite(log=workdir / "azurite.log", location=workdir / "azurite")
    (workdir / "azurite").mkdir(exist_ok=True)
    running.enter_context(azurite)
    settings = (
        APP_DEFAULTS
        | settings_for(sim, azurite.connection_string, [p.config() for p in pools])
        | {f"AzureWebJobs.{name}.Disabled": "true" for name in TIMERS}
        | {
            "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
            "POOLKEEPER_NOTIFICATIONS_QUEUE": "chaos-notifications",
            "POOLKEEPER_LOCAL_QUEUE_LEASE_SECONDS": str(QUEUE_LEASE_SECONDS),
            # 2 product hours are 12 wall seconds at 600x: a storm does not end every job.
            "POOLKEEPER_RETRY_MINUTES": "120",
            "POOLKEEPER_LOCAL_FUNCTION_KEYS": FUNCTION_KEY,
            "POOLKEEPER_LOCAL_MASTER_KEY": "chaos-master-key",
            "IDENTITY_ENDPOINT": sim.info["identity_endpoint"],
            "IDENTITY_HEADER": sim.info["identity_header"],
        }
    )
    hosts = []
    for slot in range(HOSTS):
        root = workdir / f"host{slot}"
        root.mkdir(exist_ok=True)
        shutil.copy(ROOT / "function_app.py", root / "function_app.py")
        (root / "host.json").write_text(json.dumps(HOST_JSON))
        hosts.append(Host(slot, root))
    rig = Rig(sim, azurite, settings, Services.from_settings(settings), hosts, pools)
    running.callback(rig.stop)
    rig.kube, rig.core, rig.compute  # noqa: B018 - made now, not in the middle of a round
    for host in hosts:
        rig.start(host)
    return rig
