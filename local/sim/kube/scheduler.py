"""A small default-scheduler: filters (unschedulable, taints, nodeSelector, cpu/memory/pods fit)
and a score that spreads a controller's pods and then prefers the least requested node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from local.sim.kube import quantity
from local.sim.kube.objects import (
    UNSCHEDULABLE_TAINT,
    Obj,
    controller_of,
    set_condition,
    terminal,
    terminating,
    tolerates,
)

if TYPE_CHECKING:
    from local.sim.kube.model import Cluster


@dataclass
class Room:
    """What is left on a node."""

    node: Obj
    cpu: int  # millicores
    memory: int  # bytes
    pods: int
    owners: dict[str, int]  # controller uid -> pods of it here


def requests(pod: Obj) -> tuple[int, int]:
    cpu = memory = 0
    for container in pod["spec"].get("containers") or []:
        wanted = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity.millicores(wanted.get("cpu", 0))
        memory += quantity.bytes_of(wanted.get("memory", 0))
    return cpu, memory


def rooms(cluster: Cluster) -> dict[str, Room]:
    found: dict[str, Room] = {}
    for node in cluster.store["nodes"].values():
        allocatable = node["status"].get("allocatable") or {}
        found[node["metadata"]["name"]] = Room(
            node,
            quantity.millicores(allocatable.get("cpu", 0)),
            quantity.bytes_of(allocatable.get("memory", 0)),
            int(allocatable.get("pods", 0)),
            {},
        )
    for pod in cluster.store["pods"].values():
        room = found.get(pod["spec"].get("nodeName", ""))
        if room is None or terminal(pod):
            continue
        cpu, memory = requests(pod)
        room.cpu, room.memory, room.pods = room.cpu - cpu, room.memory - memory, room.pods - 1
        owner = controller_of(pod)
        if owner is not None:
            room.owners[owner["uid"]] = room.owners.get(owner["uid"], 0) + 1
    return found


def why_not(pod: Obj, room: Room, cpu: int, memory: int) -> str | None:
    """The reason a node cannot take the pod, in the scheduler's words; None if it can."""
    node = room.node
    tolerations = pod["spec"].get("tolerations") or []
    if node["spec"].get("unschedulable") and not tolerates(
        tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    ):
        return "node(s) were unschedulable"
    for taint in node["spec"].get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            value = f"={taint['value']}" if taint.get("value") else ""
            return f"node(s) had untolerated taint {{{taint['key']}{value}}}"
    labels = node["metadata"].get("labels") or {}
    for key, value in (pod["spec"].get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return "node(s) didn't match Pod's node affinity/selector"
    if room.pods < 1:
        return "Too many pods"
    if cpu > room.cpu:
        return "Insufficient cpu"
    if memory > room.memory:
        return "Insufficient memory"
    return None


def schedule(cluster: Cluster) -> None:
    """Bind every pending, unbound pod to the best node that fits, oldest pod first."""
    pending = [
        p
        for p in cluster.store["pods"].values()
        if not p["spec"].get("nodeName") and not terminating(p) and not terminal(p)
    ]
    if not pending:
        return
    free = rooms(cluster)
    pending.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
    for pod in pending:
        cpu, memory = requests(pod)
        owner = controller_of(pod)
        reasons: dict[str, int] = {}
        fits: list[Room] = []
        for room in free.values():
            reason = why_not(pod, room, cpu, memory)
            if reason is None:
                fits.append(room)
            else:
                reasons[reason] = reasons.get(reason, 0) + 1
        if not fits:
            detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
            message = f"0/{len(free)} nodes are available: {detail or 'no nodes available'}."
            if set_condition(pod, "PodScheduled", "False", cluster.at, "Unschedulable", message):
                cluster.touch(pod)
            continue

        owner_uid = owner["uid"] if owner else None
        best = min(fits, key=lambda room: _score(room, cpu, memory, owner_uid))
        best.cpu, best.memory, best.pods = best.cpu - cpu, best.memory - memory, best.pods - 1
        if owner is not None:
            best.owners[owner["uid"]] = best.owners.get(owner["uid"], 0) + 1
        bind(cluster, pod, best.node["metadata"]["name"])


def _score(room: Room, cpu: int, memory: int, owner: str | None) -> tuple[int, float, str]:
    """Fewest pods of the same controller first (spreading), then the least requested node."""
    allocatable = room.node["status"]["allocatable"]
    used_cpu = 1 - (room.cpu - cpu) / max(1, quantity.millicores(allocatable["cpu"]))
    used_memory = 1 - (room.memory - memory) / max(1, quantity.bytes_of(allocatable["memory"]))
    siblings = room.owners.get(owner, 0) if owner else 0
    return siblings, used_cpu + used_memory, room.node["metadata"]["name"]


def bind(cluster: Cluster, pod: Obj, node_name: str) -> None:
    pod["spec"]["nodeName"] = node_name
    set_condition(pod, "PodScheduled", "True", cluster.at)
    cluster.touch(pod)
