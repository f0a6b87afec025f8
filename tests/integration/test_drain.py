"""The product's drain against the simulated cluster, through the real `kubernetes` client:
kubectl's filter table, PodDisruptionBudgets, timeouts, uncordon on abort, and the same
evictions as a real `kubectl drain`."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.adapters.kube import DRAINING_ANNOTATION, Kube
from shared.clock import FileClock
from shared.decide.drain import DrainOptions
from shared.flows.claims import Claimed, Owner, claim, release
from shared.flows.drain import (
    Drained,
    DrainFailed,
    DrainStep,
    Waiting,
    continue_drain,
    start_drain,
)
from tests.simulator import RG, Simulator, scale_set, scenario

VMSS = "aks-apps-22222222-vmss"
NODE0 = "aks-apps-22222222-vmss000000"
GROUP = {"elastisys.io/node-group": "apps"}
ALL_FLAGS = DrainOptions(ignore_daemonsets=True, delete_emptydir_data=True, force=True)
OWNER = Owner("drain-test", "drain")


def _load(sim: Simulator, workloads: dict[str, Any], capacity: int = 2, **extra: Any) -> None:
    sim.load(scenario(scale_set(VMSS, capacity, zones=[]), workloads=workloads, **extra))


def _drive(
    sim: Simulator, step: DrainStep, limit: float = 30, *, at: datetime | None = None
) -> DrainStep:
    """Run rounds the way the job machinery will: wait the product delay, on the product clock
    (or with every round's `now` held at `at`: a moment the test chose, however far the
    simulated clock runs ahead on a slow machine)."""
    clock = FileClock(Path(sim.info["clock_file"]))
    deadline = time.monotonic() + limit
    while isinstance(step, Waiting) and time.monotonic() < deadline:
        time.sleep(clock.real_seconds(step.delay))
        step = continue_drain(sim.kube(), step.state, now=at or clock.now())
    return step


def _start(sim: Simulator, options: DrainOptions, timeout: float = 3600) -> DrainStep:
    clock = FileClock(Path(sim.info["clock_file"]))
    assert isinstance(claim(sim.kube(), NODE0, OWNER, clock.now()), Claimed)
    return start_drain(
        sim.kube(),
        NODE0,
        owner=OWNER,
        now=clock.now(),
        timeout=timedelta(seconds=timeout),
        options=options,
    )


def _pods(sim: Simulator, node: str) -> list[dict[str, Any]]:
    view = requests.get(f"{sim.admin}/kube/pods", timeout=10).json()
    return view["nodes"][node]["pods"]


def _evicted(sim: Simulator) -> set[str]:
    log = requests.get(f"{sim.admin}/kube/evictions", timeout=10).json()["evictions"]
    return {f"{e['namespace']}/{e['pod']}" for e in log if e["outcome"] == "evicted"}


MIXED = {
    "deployments": [
        {"name": "web", "replicas": 4, "node_selector": GROUP, "termination_grace_seconds": 30},
        {"name": "cache", "replicas": 2, "node_selector": GROUP, "empty_dir": True},
    ],
    "daemonsets": [{"name": "kube-proxy"}],
    "static_pods": [{"name": "node-exporter"}],
    "pods": [
        {"name": "debug", "node": NODE0},
        {"name": "migration", "node": NODE0, "phase": "Succeeded"},
    ],
}


def test_drain_follows_kubectls_filter_table(sim: Simulator) -> None:
    _load(sim, MIXED)
    kube: Kube = sim.kube()
    before = {f"{p.namespace}/{p.name}": p for p in kube.pods_on(NODE0)}
    terminating = next(k for k in before if k.startswith("default/web-"))
    namespace, name = terminating.split("/")
    kube._core.delete_namespaced_pod(name, namespace, grace_period_seconds=30)

    result = _drive(sim, _start(sim, ALL_FLAGS))

    assert isinstance(result, Drained), result
    kinds = {key: pod.controller_kind for key, pod in before.items()}
    # DaemonSet and mirror pods stay; everything else left, by eviction or deletion.
    assert sorted(result.skipped) == sorted(
        k for k, kind in kinds.items() if kind in ("DaemonSet", "Node")
    )
    expected = {
        k
        for k, p in before.items()
        if p.controller_kind not in ("DaemonSet", "Node")
        and p.phase == "Running"
        and k != terminating
    }
    assert set(result.evicted) == expected == _evicted(sim)
    assert "default/debug" in expected  # bare pod, only with force
    assert any(k.startswith("default/cache-") for k in expected)  # emptyDir, only with the flag
    left = {f"{p['namespace']}/{p['name']}" for p in _pods(sim, NODE0)}
    assert left == set(result.skipped)  # the completed pod was deleted, the terminating one went
    node = kube.node(NODE0)
    assert node is not None and node.unschedulable and DRAINING_ANNOTATION in node.annotations


def test_default_flags_refuse_bare_and_emptydir_pods_and_abort_uncordons(sim: Simulator) -> None:
    _load(sim, MIXED)
    result = _start(sim, DrainOptions())
    assert isinstance(result, DrainFailed)
    assert "default/debug: cannot delete Pods that declare no controller" in result.remaining
    assert any("cannot delete Pods with local storage" in r for r in result.remaining)
    assert _evicted(sim) == set()  # nothing touched before the plan allowed it
    assert release(sim.kube(), NODE0, OWNER) == "uncordoned"
    node = sim.kube().node(NODE0)
    assert node is not None and not node.unschedulable
    assert DRAINING_ANNOTATION not in node.annotations


def _two_pods_one_disruption(sim: Simulator) -> tuple[Kube, str]:
    """Two replicas on NODE0 under a budget of one disruption, and a second node that joins
    cordoned: no replacement can be Ready before the test uncordons it, however slow this
    machine is against the simulated clock."""
    _load(
        sim,
        {
            "deployments": [
                {"name": "api", "replicas": 2, "node_selector": GROUP, "pdb": {"min_available": 1}}
            ]
        },
        capacity=1,
    )
    compute = sim.compute()
    compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 2}}).result()
    kube = sim.kube()
    other = "aks-apps-22222222-vmss000001"
    deadline = time.monotonic() + 30
    while kube.node(other) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    kube.set_unschedulable(other, True)
    return kube, other


def test_budget_holds_the_drain_until_a_replacement_is_ready_elsewhere(sim: Simulator) -> None:
    # Both replicas start on the only node; a second node joins; the budget lets one go at a time.
    kube, other = _two_pods_one_disruption(sim)
    step = _start(sim, DrainOptions())
    held_rounds = 0
    clock = FileClock(Path(sim.info["clock_file"]))
    while isinstance(step, Waiting):
        held_rounds += bool(step.state.budget_blocked)
        if held_rounds:
            kube.set_unschedulable(other, False)
        time.sleep(clock.real_seconds(step.delay))
        step = continue_drain(sim.kube(), step.state, now=clock.now())
    assert isinstance(step, Drained), step
    assert held_rounds >= 1  # the second pod waited for the first one's replacement
    assert len(step.evicted) == 2
    log = requests.get(f"{sim.admin}/kube/evictions", timeout=10).json()["evictions"]
    assert [e["outcome"] for e in log].count("blocked") >= 1


def test_two_budgets_matching_one_pod_fail_the_drain_with_the_reason(sim: Simulator) -> None:
    _load(
        sim,
        {
            "deployments": [
                {"name": "api", "replicas": 2, "node_selector": GROUP, "pdb": {"min_available": 1}}
            ],
            "pdbs": [{"name": "extra", "selector": {"app": "api"}, "max_unavailable": 1}],
        },
    )
    result = _drive(sim, _start(sim, DrainOptions()))
    assert isinstance(result, DrainFailed)
    assert any("more than one PodDisruptionBudget" in r for r in result.remaining)


def test_drain_times_out_naming_the_pods_still_there(sim: Simulator) -> None:
    _load(
        sim,
        {
            "deployments": [
                {"name": "db", "replicas": 2, "node_selector": GROUP, "pdb": {"min_available": 2}}
            ]
        },
        capacity=1,
    )
    result = _drive(sim, _start(sim, DrainOptions(), timeout=120))
    assert isinstance(result, DrainFailed)
    assert result.reason == f"drain of {NODE0} timed out"
    assert len(result.remaining) == 2
    assert all(r.endswith("held by its disruption budget") for r in result.remaining)
    assert release(sim.kube(), NODE0, OWNER) == "uncordoned"
    assert not sim.kube().node(NODE0).unschedulable


def test_a_pod_its_budget_lets_go_just_past_the_deadline_gets_time_to_go(
    sim: Simulator,
) -> None:
    # The budget holds the second pod until the first one's replacement is Ready; the round that
    # finally evicts it comes past the drain's deadline (a busy queue). That round made progress:
    # the pod gets GOING_GRACE to go instead of the drain failing on what it just did.
    kube, other = _two_pods_one_disruption(sim)
    first = _start(sim, DrainOptions(), timeout=120)
    assert isinstance(first, Waiting) and len(first.state.budget_blocked) == 1, first
    (held,) = first.state.budget_blocked
    kube.set_unschedulable(other, False)

    def allowed() -> int:
        (pdb,) = requests.get(f"{sim.admin}/kube/pdbs", timeout=10).json()["pdbs"]
        return int(pdb["disruptions_allowed"])

    deadline = time.monotonic() + 60
    while allowed() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert allowed() == 1, "the replacement never became Ready"
    late = datetime.fromisoformat(first.state.deadline) + timedelta(minutes=1)
    step = continue_drain(sim.kube(), first.state, now=late)
    assert isinstance(step, Waiting), step  # was: DrainFailed "timed out" on the pod it evicted
    # The first pod may still be in its grace period: going, not held by anything.
    assert f"{held}: evicted just now" in step.remaining, step.remaining
    assert all(r.endswith(("evicted just now", ": terminating")) for r in step.remaining), step
    # Its next rounds come within that grace (held at the late moment however far the simulated
    # clock runs ahead on a busy machine): the pod goes and the drain ends.
    done = _drive(sim, step, at=late)
    assert isinstance(done, Drained), done
    assert len(done.evicted) == 2


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        subprocess.run(
            ["apt-get", "install", "-y", "kubernetes-client"], check=True, capture_output=True
        )
        found = shutil.which("kubectl")
    assert found, "kubectl is needed for this test and could not be installed"
    return found


def test_product_and_kubectl_evict_the_same_pods(sim: Simulator) -> None:
    workloads = {key: value for key, value in MIXED.items() if key != "pods"}
    _load(sim, workloads)
    completed = subprocess.run(
        [
            _kubectl(),
            "--kubeconfig",
            sim.info["kubeconfig"],
            "--request-timeout=20s",
            "drain",
            NODE0,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    by_kubectl = _evicted(sim)

    _load(sim, workloads)  # the same scenario again: the same pods, by name
    result = _drive(sim, _start(sim, DrainOptions(delete_emptydir_data=True)))
    assert isinstance(result, Drained), result
    assert by_kubectl == _evicted(sim) == set(result.evicted)
    assert by_kubectl  # not vacuous


@pytest.mark.parametrize("missing", ["aks-apps-22222222-vmss00zzzz"])
def test_drain_of_a_node_that_does_not_exist_fails_and_touches_nothing(
    sim: Simulator, missing: str
) -> None:
    _load(sim, MIXED)
    clock = FileClock(Path(sim.info["clock_file"]))
    result = start_drain(
        sim.kube(),
        missing,
        owner=OWNER,
        now=clock.now(),
        timeout=timedelta(minutes=5),
        options=DrainOptions(),
    )
    assert isinstance(result, DrainFailed) and "does not exist" in result.reason


def test_drain_for_removal_refuses_a_scale_down_disabled_node(sim: Simulator) -> None:
    _load(sim, MIXED)
    kube = sim.kube()
    kube.annotate(NODE0, {"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"})
    clock = FileClock(Path(sim.info["clock_file"]))
    assert isinstance(claim(kube, NODE0, OWNER, clock.now()), Claimed)
    result = start_drain(
        kube,
        NODE0,
        owner=OWNER,
        now=clock.now(),
        timeout=timedelta(minutes=5),
        options=DrainOptions(),
        refuse_scale_down_disabled=True,
    )
    assert isinstance(result, DrainFailed) and "scale-down-disabled" in result.reason
    assert _evicted(sim) == set()  # refused before any eviction
    assert release(kube, NODE0, OWNER) == "uncordoned"
    assert not kube.node(NODE0).unschedulable


def test_a_drain_without_the_claim_touches_nothing(sim: Simulator) -> None:
    _load(sim, MIXED)
    clock = FileClock(Path(sim.info["clock_file"]))
    result = start_drain(
        sim.kube(),
        NODE0,
        owner=OWNER,
        now=clock.now(),
        timeout=timedelta(minutes=5),
        options=ALL_FLAGS,
    )
    assert isinstance(result, DrainFailed) and "not claimed and cordoned" in result.reason
    assert _evicted(sim) == set()
    assert not sim.kube().node(NODE0).unschedulable


def test_labels_set_and_removed_and_kubeconfig_content_connects(sim: Simulator) -> None:
    _load(sim, {})
    content = Path(sim.info["kubeconfig"]).read_text()
    kube = Kube.from_settings({"POOLKEEPER_KUBECONFIG_CONTENT": content})
    kube.label(NODE0, {"poolkeeper.io/prototype": "true"})
    assert kube.node(NODE0).labels["poolkeeper.io/prototype"] == "true"
    kube.label(NODE0, {"poolkeeper.io/prototype": None})
    assert "poolkeeper.io/prototype" not in kube.node(NODE0).labels


def test_entra_mode_connects_with_a_managed_identity_token(sim: Simulator) -> None:
    _load(sim, {})
    kube = Kube.from_settings({"POOLKEEPER_KUBE_SERVER": sim.info["kube"]})
    nodes = kube.nodes()
    assert {n.name for n in nodes} == {NODE0, "aks-apps-22222222-vmss000001"}
    assert all(n.ready and n.scale_set_instance for n in nodes)
