"""infra/k8s/node-patch-policy.yaml: the ValidatingAdmissionPolicy's CEL (tests/admission.py) on
the node updates Poolkeeper makes and on ones it must not make."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.adapters.kube import CLAIM_ANNOTATION, DRAINING_ANNOTATION, PROTOTYPE_LABEL
from tests.admission import denials, documents

USER = "system:serviceaccount:poolkeeper:poolkeeper"
NODE: dict[str, Any] = {
    "metadata": {
        "name": "aks-apps-0",
        "labels": {"elastisys.io/node-group": "apps", "kubernetes.io/os": "linux"},
        "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
    },
    "spec": {"providerID": "azure:///x/virtualMachines/0", "podCIDR": "10.244.0.0/24"},
}


def _documents() -> tuple[dict[str, Any], dict[str, Any]]:
    return documents("node-patch-policy.yaml")


def _denials(new: dict[str, Any], *, user: str = USER, params: Any = None) -> list[str]:
    """The messages of the validations that fail for this update of NODE."""
    policy, _ = _documents()
    return denials(
        policy,
        {
            "object": new,
            "oldObject": NODE,
            "request": {"userInfo": {"username": user}},
            "params": {"data": {"username": USER}} if params is None else params,
        },
    )


def test_the_policy_matches_node_updates_and_the_binding_denies() -> None:
    policy, binding = _documents()
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["nodes"] and rule["operations"] == ["UPDATE"]
    assert policy["spec"]["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    # No ConfigMap yet, or a CEL error: other writers of nodes are never blocked by it.
    assert binding["spec"]["paramRef"]["parameterNotFoundAction"] == "Allow"


def test_what_poolkeeper_does_to_a_node_is_allowed() -> None:
    cordoned = copy.deepcopy(NODE)
    cordoned["spec"]["unschedulable"] = True
    cordoned["metadata"]["annotations"] |= {CLAIM_ANNOTATION: "{}", DRAINING_ANNOTATION: "now"}
    cordoned["metadata"]["labels"] |= {PROTOTYPE_LABEL: "true"}
    assert _denials(cordoned) == []
    released = copy.deepcopy(cordoned)
    del released["spec"]["unschedulable"]
    del released["metadata"]["annotations"][CLAIM_ANNOTATION]
    assert _denials(released) == []


@pytest.mark.parametrize(
    ("change", "denied"),
    [
        ("taint", "only spec.unschedulable"),
        ("provider id", "only spec.unschedulable"),
        ("node group label", "only poolkeeper.io/ labels"),
        ("foreign label removed", "only poolkeeper.io/ labels"),
        ("foreign annotation", "only poolkeeper.io/ annotations"),
    ],
)
def test_anything_else_poolkeeper_changes_is_denied(change: str, denied: str) -> None:
    node = copy.deepcopy(NODE)
    if change == "taint":
        node["spec"]["taints"] = [{"key": "x", "effect": "NoSchedule"}]
    elif change == "provider id":
        node["spec"]["providerID"] = "azure:///y"
    elif change == "node group label":
        node["metadata"]["labels"]["elastisys.io/node-group"] = "other"
    elif change == "foreign label removed":
        del node["metadata"]["labels"]["kubernetes.io/os"]
    else:
        node["metadata"]["annotations"]["example.com/owner"] = "me"
    (message,) = _denials(node)
    assert denied in message


def test_other_writers_and_a_missing_username_are_not_held_by_it() -> None:
    tainted = copy.deepcopy(NODE)
    tainted["spec"]["taints"] = [{"key": "node.kubernetes.io/unschedulable"}]
    assert _denials(tainted, user="system:node:aks-apps-0") == []
    assert _denials(tainted, params={"data": {}}) == []  # a ConfigMap without the name
