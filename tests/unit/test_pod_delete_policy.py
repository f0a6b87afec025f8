"""infra/k8s/pod-delete-policy.yaml: the ValidatingAdmissionPolicy's CEL (tests/admission.py) on
the pod deletes Poolkeeper makes (ended pods, pods a repair evicted from a dead node) and on the
ones it must not make (running pods anywhere: those are evicted)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.decide.drain import Action, DrainOptions, Pod, plan_drain
from tests.admission import denials, documents

USER = "system:serviceaccount:poolkeeper:poolkeeper"
POD: dict[str, Any] = {
    "metadata": {"name": "web-7d9f", "namespace": "shop", "uid": "u-1"},
    "spec": {"nodeName": "aks-apps-0"},
    "status": {"phase": "Running"},
}


def _denials(pod: dict[str, Any], *, user: str = USER, params: Any = None) -> list[str]:
    policy, _ = documents("pod-delete-policy.yaml")
    return denials(
        policy,
        {
            "object": None,  # a DELETE: the pod is oldObject
            "oldObject": pod,
            "request": {"userInfo": {"username": user}},
            "params": {"data": {"username": USER}} if params is None else params,
        },
    )


def test_the_policy_matches_pod_deletes_and_the_binding_denies() -> None:
    policy, binding = documents("pod-delete-policy.yaml")
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["pods"] and rule["operations"] == ["DELETE"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["paramRef"]["parameterNotFoundAction"] == "Allow"
    _, node_binding = documents("node-patch-policy.yaml")
    assert binding["spec"]["paramRef"] == node_binding["spec"]["paramRef"]  # one ConfigMap


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_an_ended_pod_that_a_drain_deletes_is_allowed(phase: str) -> None:
    pod = copy.deepcopy(POD)
    pod["status"]["phase"] = phase
    assert _denials(pod) == []
    # The drain's own plan deletes exactly such a pod (and evicts a running one).
    running = copy.deepcopy(POD)
    running["metadata"] |= {"name": "web-8e0a", "uid": "u-2"}
    plan = plan_drain([_as_pod(pod), _as_pod(running)], DrainOptions())
    assert [p.name for p in plan.pods(Action.DELETE)] == ["web-7d9f"]
    assert [p.name for p in plan.pods(Action.EVICT)] == ["web-8e0a"]
    assert _denials(running) != []


def test_a_pod_already_terminating_on_a_dead_node_may_be_force_deleted() -> None:
    pod = copy.deepcopy(POD)
    pod["metadata"]["deletionTimestamp"] = "2026-11-02T08:00:00Z"
    assert _denials(pod) == []


@pytest.mark.parametrize("namespace", ["shop", "kube-system"])
def test_a_running_or_pending_pod_is_never_deleted_by_poolkeeper(namespace: str) -> None:
    for phase in ("Running", "Pending", None):
        pod = copy.deepcopy(POD)
        pod["metadata"]["namespace"] = namespace
        if phase is None:
            del pod["status"]
        else:
            pod["status"]["phase"] = phase
        (message,) = _denials(pod)
        assert "only pods that have ended or are already terminating" in message


def test_other_users_and_a_missing_username_are_not_held_by_it() -> None:
    assert _denials(POD, user="system:serviceaccount:kube-system:replicaset-controller") == []
    assert _denials(POD, params={"data": {}}) == []


def _as_pod(raw: dict[str, Any]) -> Pod:
    """The adapter's view of a ReplicaSet's pod, as the drain plans it."""
    return Pod(
        namespace=raw["metadata"]["namespace"],
        name=raw["metadata"]["name"],
        uid=raw["metadata"]["uid"],
        phase=raw["status"]["phase"],
        controller_kind="ReplicaSet",
        terminating="deletionTimestamp" in raw["metadata"],
    )
