"""Drain planning with `kubectl drain`'s filters: which pods are evicted, skipped or block.

Pure: the drain workflow calls `plan_drain` on a fresh pod list before it touches anything.
Mirrors kubectl's filter order (k8s.io/kubectl/pkg/drain/filters.go): daemon set, mirror,
local storage (emptyDir), unreplicated; terminal pods are always deletable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    EVICT = "evict"  # through the eviction API, so PodDisruptionBudgets hold
    DELETE = "delete"  # completed pods: nothing to protect, delete directly
    SKIP = "skip"  # DaemonSet and mirror pods stay on the node
    WAIT = "wait"  # already terminating: wait for it to go
    BLOCK = "block"  # the drain cannot proceed with these options


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    controller_kind: str | None = None  # kind of the ownerReference with controller: true
    mirror: bool = False  # annotation kubernetes.io/config.mirror (a static pod's mirror)
    empty_dir: bool = False  # has at least one emptyDir volume
    terminating: bool = False  # metadata.deletionTimestamp is set

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DrainOptions:
    """kubectl drain's flags; the defaults are the ones a platform team runs with."""

    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False
    force: bool = False


@dataclass(frozen=True)
class Decision:
    pod: Pod
    action: Action
    reason: str


@dataclass(frozen=True)
class DrainPlan:
    decisions: tuple[Decision, ...]

    def pods(self, action: Action) -> list[Pod]:
        return [d.pod for d in self.decisions if d.action is action]

    @property
    def blocked(self) -> bool:
        return any(d.action is Action.BLOCK for d in self.decisions)

    def left(self) -> list[str]:
        """Every pod that keeps the node from being empty (all but DaemonSet and mirror pods),
        with what the drain would do with it."""
        return [
            f"{d.pod.key}: {d.action.value} ({d.reason})"
            for d in self.decisions
            if d.action is not Action.SKIP
        ]

    def blockers(self) -> list[str]:
        """Each blocking pod with kubectl's reason, for the operator."""
        return [f"{d.pod.key}: {d.reason}" for d in self.decisions if d.action is Action.BLOCK]


def _decide(pod: Pod, options: DrainOptions) -> Decision:
    terminal = pod.phase in ("Succeeded", "Failed")
    if pod.controller_kind == "DaemonSet":
        if options.ignore_daemonsets:
            return Decision(pod, Action.SKIP, "DaemonSet-managed pod (ignored)")
        return Decision(pod, Action.BLOCK, "cannot delete DaemonSet-managed Pods")
    if pod.mirror:
        return Decision(pod, Action.SKIP, "mirror pod of a static pod (cannot be deleted)")
    if pod.terminating:
        return Decision(pod, Action.WAIT, "already terminating")
    if terminal:
        return Decision(pod, Action.DELETE, f"completed pod (phase {pod.phase})")
    if pod.empty_dir and not options.delete_emptydir_data:
        return Decision(pod, Action.BLOCK, "cannot delete Pods with local storage (emptyDir)")
    if pod.controller_kind is None and not options.force:
        return Decision(pod, Action.BLOCK, "cannot delete Pods that declare no controller")
    notes = []
    if pod.empty_dir:
        notes.append("its emptyDir data is deleted")
    if pod.controller_kind is None:
        notes.append("it declares no controller and will not come back")
    return Decision(pod, Action.EVICT, "; ".join(notes) or f"managed by {pod.controller_kind}")


def plan_drain(pods: list[Pod], options: DrainOptions) -> DrainPlan:
    """Decide, for every pod on the node, what the drain does with it and why. Pure."""
    return DrainPlan(tuple(_decide(pod, options) for pod in sorted(pods, key=lambda p: p.key)))
