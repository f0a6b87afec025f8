"""Test support for the Azure simulator: a running `python -m local.sim` and SDK clients for it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from local.azurite import ROOT
from local.procs import stop_group

SUBSCRIPTION = "6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64"
RG = "mc_rg-test_aks-test_westeurope"
# A clock that moves only when a test advances it (a simulated millisecond per wall second): a
# test that needs an operation still running when it looks must not race the wall clock.
STOPPED = 0.001
# The API server's answer to a request without valid credentials (a scenario's `clusters`).
KUBE_UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


def scale_set(name: str, capacity: int, **extra: Any) -> dict[str, Any]:
    """A scale-set entry for a scenario, with test-friendly defaults."""
    return {
        "resource_group": RG,
        "name": name,
        "capacity": capacity,
        "node_group": name.split("-")[1] if name.count("-") >= 2 else name,
        "zones": ["1", "2", "3"],
    } | extra


def cluster(name: str, *scale_sets: str, mode: str = "token", **extra: Any) -> dict[str, Any]:
    """An entry of a scenario's `clusters`: `audience` (entra) and `workloads` go in `extra`."""
    auth = {"mode": mode} | ({"audience": extra.pop("audience")} if "audience" in extra else {})
    return {"name": name, "scale_sets": list(scale_sets), "auth": auth} | extra


def scenario(*scale_sets: dict[str, Any], speed: float = 600, **extra: Any) -> dict[str, Any]:
    """A scenario dict; fast clock by default so LROs finish in a fraction of a second."""
    return {
        "subscription": SUBSCRIPTION,
        "location": "westeurope",
        "clock": {"start": "2026-11-02T08:00:00Z", "speed": speed},
        "scale_sets": list(scale_sets) or [scale_set("aks-workers-11111111-vmss", 3)],
    } | extra


@dataclass
class Simulator:
    """Endpoints of a running simulator, with helpers for its admin API and the real SDKs."""

    info: dict[str, Any]
    process: subprocess.Popen[bytes]

    @property
    def admin(self) -> str:
        return self.info["admin"]

    def load(self, data: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.admin}/scenario", json=data, timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = requests.post(f"{self.admin}/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict[str, Any]:
        return requests.get(f"{self.admin}/state", timeout=10).json()

    def scale_set_state(self, name: str) -> dict[str, Any]:
        return next(s for s in self.state()["scale_sets"] if s["name"] == name)

    def calls(self) -> dict[str, Any]:
        return requests.get(f"{self.admin}/calls", timeout=10).json()

    def advance(self, seconds: float) -> None:
        self.post("clock", {"advance_seconds": seconds})

    def delete(self, path: str) -> Any:
        response = requests.delete(f"{self.admin}/{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def cluster(self, name: str) -> dict[str, Any]:
        """What the simulator published about one of the scenario's clusters."""
        return self.info["clusters"][name]

    def deny(self, cluster: str, **rule: str) -> Any:
        """Deny a permission in a cluster, e.g. verb="create", resource="pods",
        subresource="eviction"."""
        return self.post(f"kube/clusters/{cluster}/deny", rule)

    def hang(self, cluster: str, seconds: float | None = None) -> Any:
        """Hold every API request of the cluster (until `release`, or `seconds`)."""
        return self.post(
            f"kube/clusters/{cluster}/hang", {} if seconds is None else {"seconds": seconds}
        )

    def release(self, cluster: str) -> Any:
        return self.delete(f"kube/clusters/{cluster}/hang")

    def set_secret(self, name: str, value: str | dict[str, Any]) -> Any:
        """A new version of a Key Vault secret."""
        return self.post(f"keyvault/secrets/{name}", value)

    def vault_access(self, readable: bool, secrets: list[str] | None = None) -> Any:
        """Grant or revoke reading the vault (or only some secrets)."""
        body: dict[str, Any] = {"readable": readable}
        if secrets is not None:
            body["secrets"] = secrets
        return self.post("keyvault/access", body)

    def secret_client(self, **options: Any) -> Any:
        """A real SecretClient for the simulator's vault, with the managed identity."""
        from azure.keyvault.secrets import SecretClient

        return SecretClient(
            vault_url=self.info["key_vault"]["url"],
            credential=self.credential(),
            connection_verify=self.info["ca_cert"],
            **options,
        )

    def credential(self) -> Any:
        """The managed identity as App Service provides it (`running_simulator` sets the env)."""
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential()

    def kube(self, cluster: str | None = None) -> Any:
        """The product's Kubernetes adapter, connected to the simulator's cluster (or to one of
        the scenario's `clusters`, through its kubeconfig)."""
        from shared.adapters.kube import Kube

        kubeconfig = (
            self.info["kubeconfig"] if cluster is None else self.cluster(cluster)["kubeconfig"]
        )
        return Kube.from_settings({"POOLKEEPER_KUBECONFIG": kubeconfig})

    def compute(self, **options: Any) -> Any:
        """A real ComputeManagementClient pointed at the simulator."""
        from azure.mgmt.compute import ComputeManagementClient

        options.setdefault("polling_interval", 0.05)
        return ComputeManagementClient(
            self.credential(),
            SUBSCRIPTION,
            base_url=self.info["arm"],
            connection_verify=self.info["ca_cert"],
            **options,
        )


@contextmanager
def running_simulator(state_dir: Path, scenario_file: Path | None = None) -> Iterator[Simulator]:
    """Start `python -m local.sim` on free ports; always stopped."""
    if scenario_file is None:
        scenario_file = state_dir / "scenario.json"
        scenario_file.write_text(json.dumps(scenario()))
    log = open(state_dir / "sim.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.sim",
            "--scenario",
            str(scenario_file),
            "--state-dir",
            str(state_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        # A file, not a pipe: nobody reads stderr while tests run, and a full pipe blocks.
        stderr=log,
        start_new_session=True,
    )
    saved = {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    try:
        line = process.stdout.readline() if process.stdout else b""
        if not line:
            process.wait(timeout=10)
            raise RuntimeError(f"simulator did not start: {(state_dir / 'sim.log').read_text()}")
        info = json.loads(line)
        # azure-identity reads these when it fetches a token, not only when it is built.
        os.environ["IDENTITY_ENDPOINT"] = info["identity_endpoint"]
        os.environ["IDENTITY_HEADER"] = info["identity_header"]
        yield Simulator(info, process)
    finally:
        stop_group(process)
        log.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def retargeted_token(token: str, origin: str) -> str:
    """An operation token with every URL in it (the request, the status headers) moved to
    `origin`: what someone who can write the job tables could make of a stored one."""
    data = json.loads(base64.b64decode(token))
    arm = data["data"]["request"]["url"].split("/subscriptions/")[0]
    return base64.b64encode(json.dumps(data).replace(arm, origin).encode()).decode()
