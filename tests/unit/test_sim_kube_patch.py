"""The Kubernetes simulator's PATCH types: strategic merge, merge (RFC 7386), JSON (RFC 6902)."""

from __future__ import annotations

import pytest

from local.sim.kube.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply,
)

NODE = {
    "metadata": {"name": "n1", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
    "spec": {"taints": [{"key": "k1", "effect": "NoSchedule"}]},
    "status": {
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "DiskPressure", "status": "False"},
        ]
    },
}


def test_strategic_merge_merges_maps_and_null_removes_a_key() -> None:
    patched = apply(
        STRATEGIC_MERGE_PATCH,
        NODE,
        {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"unschedulable": True}},
    )
    assert patched["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert patched["spec"]["unschedulable"] is True
    assert NODE["metadata"]["labels"] == {"a": "1", "b": "2"}, "the target is never modified"


def test_strategic_merge_replaces_atomic_lists_like_taints() -> None:
    patched = apply(
        STRATEGIC_MERGE_PATCH, NODE, {"spec": {"taints": [{"key": "k2", "effect": "NoExecute"}]}}
    )
    assert patched["spec"]["taints"] == [{"key": "k2", "effect": "NoExecute"}]


def test_strategic_merge_merges_keyed_lists_and_honours_delete_directives() -> None:
    patched = apply(
        STRATEGIC_MERGE_PATCH,
        NODE,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "DiskPressure", "$patch": "delete"},
                    {"type": "PIDPressure", "status": "False"},
                ]
            },
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["z"]},
        },
    )
    assert patched["status"]["conditions"] == [
        {"type": "Ready", "status": "False"},
        {"type": "PIDPressure", "status": "False"},
    ]
    assert patched["metadata"]["finalizers"] == ["y", "z"]


def test_strategic_merge_replace_and_retain_keys_directives() -> None:
    replaced = apply(STRATEGIC_MERGE_PATCH, NODE, {"metadata": {"$patch": "replace", "name": "n1"}})
    assert replaced["metadata"] == {"name": "n1"}
    retained = apply(
        STRATEGIC_MERGE_PATCH,
        NODE,
        {"spec": {"$retainKeys": ["unschedulable"], "unschedulable": True}},
    )
    assert retained["spec"] == {"unschedulable": True}


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patched = apply(MERGE_PATCH, target, {"a": "z", "c": {"f": None}, "list": [3]})
    assert patched == {"a": "z", "c": {"d": "e"}, "list": [3]}


def test_json_patch_operations() -> None:
    patched = apply(
        JSON_PATCH,
        NODE,
        [
            {"op": "test", "path": "/metadata/name", "value": "n1"},
            {"op": "add", "path": "/spec/unschedulable", "value": True},
            {"op": "add", "path": "/metadata/labels/team~1owner", "value": "ops"},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "replace", "path": "/spec/taints/0/effect", "value": "NoExecute"},
            {"op": "copy", "from": "/metadata/labels/b", "path": "/metadata/labels/d"},
            {"op": "move", "from": "/metadata/labels/d", "path": "/metadata/labels/e"},
            {"op": "add", "path": "/spec/taints/-", "value": {"key": "k3", "effect": "NoSchedule"}},
        ],
    )
    assert patched["spec"]["unschedulable"] is True
    assert patched["metadata"]["labels"] == {"b": "2", "team/owner": "ops", "e": "2"}
    assert [t["key"] for t in patched["spec"]["taints"]] == ["k1", "k3"]
    assert patched["spec"]["taints"][0]["effect"] == "NoExecute"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (JSON_PATCH, [{"op": "test", "path": "/metadata/name", "value": "other"}], 422),
        (JSON_PATCH, [{"op": "remove", "path": "/metadata/nothing"}], 422),
        (JSON_PATCH, {"op": "add"}, 400),
        (MERGE_PATCH, ["not", "an", "object"], 400),
        (STRATEGIC_MERGE_PATCH, {"status": {"conditions": [{"status": "True"}]}}, 422),
        ("application/apply-patch+yaml", {}, 415),
    ],
)
def test_bad_patches_name_their_problem_and_status(
    content_type: str, body: object, status: int
) -> None:
    with pytest.raises(PatchError) as raised:
        apply(content_type, NODE, body)
    assert raised.value.status == status
