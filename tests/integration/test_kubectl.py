"""A real kubectl against the simulated API server: get nodes, cordon, and drain a node."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.sim.kube import Clusters, pods_by_node, write_kubeconfig
from local.sim.kube.model import Cluster
from local.sim.kube.serve import Served, serve_in_thread, standalone_app, world_from
from tests.debian import tool
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


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    return tool("kubectl", "kubernetes-client")  # Debian's, installed when missing


class Kubectl:
    def __init__(self, binary: str, served: Served, cluster: Cluster, root: Path) -> None:
        self.binary, self.served, self.cluster = binary, served, cluster
        self.kubeconfig = write_kubeconfig(root / "kubeconfig", served.url)
        self.cache = root / "kube-cache"

    def command(self, *args: str) -> list[str]:
        return [
            self.binary,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache),
            "--request-timeout=10s",
            *args,
        ]

    @staticmethod
    def env() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
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


def _wait_for_blocked_eviction(kubectl: Kubectl, drain: subprocess.Popen[str]) -> Any:
    """The first eviction the budget refused; fails if kubectl exits first. The wall-clock
    limit only bounds a failure: nothing else lets the budget allow it meanwhile."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and drain.poll() is None:
        history = kubectl.served.call(lambda: list(kubectl.cluster.evictions))
        blocked = [e for e in history if e["outcome"] == "blocked"]
        if blocked:
            return blocked[0]
        time.sleep(0.05)
    out, err = drain.communicate(timeout=30) if drain.poll() is not None else ("", "")
    pytest.fail(
        f"no eviction was blocked by the budget (kubectl exit {drain.poll()}):\n{out}\n{err}"
    )


def test_kubectl_drain_retries_while_the_budget_blocks_and_pods_come_back_elsewhere(
    kubectl: Kubectl,
) -> None:
    """The other nodes are cordoned while kubectl drains, so no replacement can become Ready and
    the budget must refuse the second web pod, whatever the speed of the machine; once the test
    uncordons them, the replacements start and kubectl's retry goes through."""
    before = kubectl.pods()["nodes"]
    target = max(NODES, key=lambda n: sum(p["name"].startswith("web-") for p in before[n]["pods"]))
    moving = {p["name"] for p in before[target]["pods"] if p["name"].startswith(("web-", "cache-"))}
    web_moving = {m for m in moving if m.startswith("web-")}
    assert len(web_moving) == 2
    others = [n for n in NODES if n != target]
    for node in others:
        kubectl.ok("cordon", node)

    drain = subprocess.Popen(
        kubectl.command(
            "drain", target, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=150s"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env(),
    )
    try:
        blocked = _wait_for_blocked_eviction(kubectl, drain)
        assert blocked["pod"] in web_moving and blocked["code"] == 429
        assert blocked["budgets"] == ["web"]
        waiting = kubectl.pods()
        assert drain.poll() is None, "kubectl waits while the budget blocks"
        assert blocked["pod"] in {p["name"] for p in waiting["nodes"][target]["pods"]}
        for node in others:
            kubectl.ok("uncordon", node)
        out, err = drain.communicate(timeout=180)
    finally:
        if drain.poll() is None:
            drain.kill()
            drain.communicate()
    assert drain.returncode == 0, f"{out}\n{err}"
    assert f"node/{target} drained" in out
    assert f'pods/"{blocked["pod"]}"' in err and "will retry after 5s" in err, err

    after = kubectl.pods()
    assert after["nodes"][target]["unschedulable"]
    left = sorted(p["owner"].split("/")[0] for p in after["nodes"][target]["pods"])
    assert left == ["DaemonSet", "Node"], "only the daemon and the mirror pod stay"
    assert not after["unscheduled"]
    elsewhere = [p for n in others for p in after["nodes"][n]["pods"]]
    for prefix, count in (("web-", 4), ("cache-", 3)):
        pods = [p for p in elsewhere if p["name"].startswith(prefix) and p["ready"]]
        assert len(pods) == count, f"{prefix} replicas are Ready on the other nodes"
    assert not moving & {p["name"] for p in elsewhere}, "evicted pods are replaced, not moved"
    history = kubectl.served.call(lambda: list(kubectl.cluster.evictions))
    outcomes = [(e["pod"], e["outcome"]) for e in history]
    assert ("done-" + str(NODES.index(target)), "deleted") in outcomes
    refused = outcomes.index((blocked["pod"], "blocked"))
    assert (blocked["pod"], "evicted") in outcomes[refused:], "the retry evicted the pod"
    assert {pod for pod, outcome in outcomes if outcome == "evicted"} == moving
