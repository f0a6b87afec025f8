"""Kubernetes objects as the API serves them (plain JSON dicts), and small helpers over them.

Objects are kept in the cluster exactly in their wire shape, so patches apply to what clients see.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

SERVER_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.4",
    "gitCommit": "a78aa47129b8539636eb86a9d00e31b2720fe06b",
    "gitTreeState": "clean",
    "buildDate": "2024-12-10T18:37:29Z",
    "goVersion": "go1.22.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}
KUBELET_VERSION = SERVER_VERSION["gitVersion"]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
SHUTDOWN_TAINT = "node.cloudprovider.kubernetes.io/shutdown"
NODE_GROUP_LABEL = "elastisys.io/node-group"

# DefaultTolerationSeconds admission: every pod tolerates a NotReady/unreachable node for 5 min.
DEFAULT_TOLERATIONS: list[Obj] = [
    {
        "key": NOT_READY_TAINT,
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]
# What the DaemonSet controller adds to its pods.
DAEMON_TOLERATIONS: list[Obj] = [
    {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"},
]


@dataclass(frozen=True)
class Kind:
    """One served resource: where it lives in the API and what it is called."""

    group: str
    version: str
    resource: str  # plural, as in URLs
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How errors name it: `pods`, `deployments.apps`."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


READ = ("get", "list")
KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "nodes", "Node", False, (*READ, "patch", "update", "delete"), ("no",)),
    Kind("", "v1", "pods", "Pod", True, (*READ, "delete"), ("po",), ("all",)),
    Kind("", "v1", "namespaces", "Namespace", False, READ, ("ns",)),
    Kind("", "v1", "configmaps", "ConfigMap", True, READ, ("cm",)),
    Kind("apps", "v1", "deployments", "Deployment", True, READ, ("deploy",), ("all",)),
    Kind("apps", "v1", "replicasets", "ReplicaSet", True, READ, ("rs",), ("all",)),
    Kind("apps", "v1", "daemonsets", "DaemonSet", True, READ, ("ds",), ("all",)),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, READ, ("pdb",)),
)
BY_RESOURCE: dict[str, Kind] = {k.resource: k for k in KINDS}


def ts(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes metav1.Time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stable_hash(*parts: object, length: int = 10) -> str:
    """A short name-safe hash (the alphabet Kubernetes uses for generated names)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    number = int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=16).digest(), "big")
    text = ""
    for _ in range(length):
        number, rest = divmod(number, len(alphabet))
        text += alphabet[rest]
    return text


def key_of(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def owner_ref(owner: Obj, *, block: bool = True) -> Obj:
    ref: Obj = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def controller_of(obj: Obj) -> Obj | None:
    refs: list[Obj] = obj["metadata"].get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def condition(obj: Obj, kind: str) -> Obj | None:
    conditions: list[Obj] = obj.get("status", {}).get("conditions") or []
    return next((found for found in conditions if found.get("type") == kind), None)


def set_condition(
    obj: Obj,
    kind: str,
    status: str,
    at: datetime,
    reason: str | None = None,
    message: str | None = None,
    *,
    heartbeat: bool = False,
) -> bool:
    """Set a condition, keeping `lastTransitionTime` unless the status flips. True if it changed."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    current = condition(obj, kind)
    new: Obj = {"type": kind, "status": status}
    if heartbeat:
        new["lastHeartbeatTime"] = ts(at)
    if current is not None and current.get("status") == status:
        new["lastTransitionTime"] = current.get("lastTransitionTime", ts(at))
        if heartbeat:
            new["lastHeartbeatTime"] = current.get("lastHeartbeatTime", ts(at))
    else:
        new["lastTransitionTime"] = ts(at)
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    if current == new:
        return False
    if current is None:
        conditions.append(new)
    else:
        conditions[conditions.index(current)] = new
    return True


def pod_ready(pod: Obj) -> bool:
    ready = condition(pod, "Ready")
    return ready is not None and ready.get("status") == "True"


def node_ready(node: Obj) -> bool:
    ready = condition(node, "Ready")
    return ready is not None and ready.get("status") == "True"


def terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def terminal(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def is_mirror(pod: Obj) -> bool:
    return MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {})


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    return any(_tolerates(t, taint) for t in tolerations)


def _tolerates(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if toleration.get("operator", "Equal") == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and toleration.get("value", "") == taint.get("value", "")


def toleration_for(tolerations: list[Obj], taint: Obj) -> Obj | None:
    """The toleration that lets a pod stay longest on a NoExecute taint (None: not tolerated)."""
    matching = [t for t in tolerations if _tolerates(t, taint)]
    if not matching:
        return None
    forever = [t for t in matching if t.get("tolerationSeconds") is None]
    return forever[0] if forever else max(matching, key=lambda t: t["tolerationSeconds"])
