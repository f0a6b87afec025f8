"""A real kubectl against the simulated API server: get nodes, cordon, and drain a node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.sim.kube import Clusters, pods_by_node, write_kubeconfig
from local.sim.kube.model import Cluster
from local.sim.kube.serve import Served, serve_in_thread, standalone_app, world_from
from tests.simulator import scale_set, scenario

pytestmark = pytest.mark.integration

WORKERS = "aks-workers-11111111-vmss"
NODES = [f"{WORKERS}00000{n}" for n in range(3)]
WORKLOADS: dict[str, Any] = {
    "deployments": [
        # 4 replicas on 3 nodes: one node has two, and the budget lets only one go at a time.
        {"name": "web", "replicas": 4, "pdb": {"max_unavailable": 1}},
        {"name": "cache", "replicas": 3, "empty_dir": True},
    ],
    "daemonsets": [{"name": "kube-proxy"}],
    "static_pods": [{"name": "node-exporter"}],
    "pods": [
        {"name": f"done-{n}", "node": name, "phase": "Succeeded"} for n, name in enumerate(NODES)
    ],
}


def _install_kubectl() -> str:
    """kubectl from PATH, else Debian's kubernetes-client; a test without it fails, never skips."""
    found = shutil.which("kubectl")
    if found:
        return found
    steps = [["apt-get", "update"], ["apt-get", "install", "-y", "kubernetes-client"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"kubectl is missing and {' '.join(step)} failed:\n{done.stderr}")
    found = shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl is still missing after installing kubernetes-client")
    return found


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    return _install_kubectl()


class Kubectl:
    def __init__(self, binary: str, served: Served, cluster: Cluster, root: Path) -> None:
        self.binary, self.served, self.cluster = binary, served, cluster
        self.kubeconfig = write_kubeconfig(root / "kubeconfig", served.url)
        self.cache = root / "kube-cache"

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        return subprocess.run(
            [
                self.binary,
                "--kubeconfig",
                str(self.kubeconfig),
                "--cache-dir",
                str(self.cache),
                "--request-timeout=10s",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (
            f"kubectl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def pods(self) -> dict[str, Any]:
        return self.served.call(lambda: pods_by_node(self.cluster))


@pytest.fixture
def kubectl(kubectl_binary: str, tmp_path: Path) -> Iterator[Kubectl]:
    """A world of three workers with workloads, served with a fast clock (grace periods pass in
    a fraction of a second), and kubectl configured for it."""
    world, workloads = world_from(
        scenario(scale_set(WORKERS, 3), speed=600) | {"workloads": WORKLOADS}
    )
    clusters = Clusters(lambda: world, lambda _: workloads)
    holder: dict[str, Cluster] = {}

    def make() -> Any:
        holder["cluster"] = clusters()
        return standalone_app(lambda: world, clusters)

    with serve_in_thread(make) as served:
        yield Kubectl(kubectl_binary, served, holder["cluster"], tmp_path)


def test_kubectl_gets_nodes(kubectl: Kubectl) -> None:
    out = kubectl.ok("get", "nodes")
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [line.split()[:2] for line in lines[1:]] == [[name, "Ready"] for name in NODES]
    listed = json.loads(kubectl.ok("get", "nodes", "-o", "json"))
    assert listed["items"][0]["spec"]["providerID"].endswith(f"/{WORKERS}/virtualMachines/0")


def test_kubectl_cordons_a_node(kubectl: Kubectl) -> None:
    assert kubectl.ok("cordon", NODES[1]).strip() == f"node/{NODES[1]} cordoned"
    statuses = {
        line.split()[0]: line.split()[1] for line in kubectl.ok("get", "nodes").splitlines()[1:]
    }
    assert statuses == {NODES[0]: "Ready", NODES[1]: "Ready,SchedulingDisabled", NODES[2]: "Ready"}
    assert kubectl.ok("uncordon", NODES[1]).strip() == f"node/{NODES[1]} uncordoned"


def test_kubectl_drains_a_node_and_its_pods_come_back_elsewhere(kubectl: Kubectl) -> None:
    before = kubectl.pods()["nodes"]
    target = max(NODES, key=lambda n: sum(p["name"].startswith("web-") for p in before[n]["pods"]))
    moving = {p["name"] for p in before[target]["pods"] if p["name"].startswith(("web-", "cache-"))}
    assert len([m for m in moving if m.startswith("web-")]) == 2

    drained = kubectl(
        "drain", target, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"
    )
    assert drained.returncode == 0, f"{drained.stdout}\n{drained.stderr}"
    assert f"node/{target} drained" in drained.stdout
    assert "will retry after 5s" in drained.stderr, "the second web pod waited for its budget"

    after = kubectl.pods()["nodes"]
    assert after[target]["unschedulable"]
    left = sorted(p["owner"].split("/")[0] for p in after[target]["pods"])
    assert left == ["DaemonSet", "Node"], "only the daemon and the mirror pod stay"
    elsewhere = [p for n in NODES if n != target for p in after[n]["pods"]]
    for prefix, count in (("web-", 4), ("cache-", 3)):
        pods = [p for p in elsewhere if p["name"].startswith(prefix) and p["ready"]]
        assert len(pods) == count, f"{prefix} replicas are Ready on the other nodes"
    assert not moving & {p["name"] for p in elsewhere}, "evicted pods are replaced, not moved"
    outcomes = {
        (e["pod"], e["outcome"]) for e in kubectl.served.call(lambda: kubectl.cluster.evictions)
    }
    assert ("done-" + str(NODES.index(target)), "deleted") in outcomes
    assert any(outcome == "blocked" for _, outcome in outcomes)
