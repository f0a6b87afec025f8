"""Drain a node with `kubectl drain`'s semantics, as a resumable operation.

The caller claims the node first (`shared.flows.claims`: the claim cordons it) and releases it
when it is done with it. `start_drain` checks that claim and marks the node, then every
`continue_drain` does one short round: fresh pod list, plan, evict what may go, and returns
`Waiting` (call again after `delay`), `Drained` or `DrainFailed`. Nothing here blocks for
minutes; the job machinery re-enqueues the state.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.kube import DRAINING_ANNOTATION, EvictionResult, Kube
from shared.decide.drain import Action, DrainOptions, plan_drain
from shared.flows.claims import Owner, holds

ROUND_DELAY = timedelta(seconds=5)
BUDGET_RETRY = timedelta(seconds=5)  # kubectl retries a 429 eviction after 5 s
EVICTION_WORKERS = 16
# Past the deadline, a drain with no pod held by a budget (every pod left is terminating, evicted,
# gone or deleted) gets this long for them to go: a budget that let the last pod go just before
# the deadline fails nothing it allowed. Counted from the deadline, so every drain still ends;
# shorter than claims' STALL_GRACE, so a drain in it is never reported stalled.
GOING_GRACE = timedelta(minutes=4)


@dataclass
class DrainState:
    """Everything a later round needs; JSON-serialisable (`to_json` / `from_json`)."""

    node: str
    started_at: str
    deadline: str
    options: dict[str, bool]
    evicted: dict[str, str] = field(default_factory=dict)  # pod key -> uid we evicted
    budget_blocked: list[str] = field(default_factory=list)  # pods held by a PDB last round
    rounds: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrainState:
        """From `to_json`'s dict, ignoring what else the job keeps beside it (e.g. the runner's
        `_failures` count when the drain's state is the whole job state)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Waiting:
    state: DrainState
    delay: timedelta
    remaining: list[str]


@dataclass(frozen=True)
class Drained:
    state: DrainState
    evicted: list[str]
    skipped: list[str]


@dataclass(frozen=True)
class DrainFailed:
    state: DrainState
    reason: str
    remaining: list[str]  # each pod still there, with why


DrainStep = Waiting | Drained | DrainFailed


def start_drain(
    kube: Kube,
    node: str,
    *,
    owner: Owner,
    now: datetime,
    timeout: timedelta,
    options: DrainOptions,
    refuse_scale_down_disabled: bool = False,
) -> DrainStep:
    """Check the caller's claim (which cordoned the node), mark the node, run the first round."""
    found = kube.node(node)
    state = DrainState(
        node=node,
        started_at=now.isoformat(),
        deadline=(now + timeout).isoformat(),
        options=asdict(options),
    )
    if found is None:
        return DrainFailed(state, f"node {node} does not exist", [])
    if not holds(found, owner) or not found.unschedulable:
        return DrainFailed(state, f"node {node} is not claimed and cordoned by {owner.job}", [])
    if refuse_scale_down_disabled and found.scale_down_disabled:
        return DrainFailed(state, f"node {node} is annotated scale-down-disabled", [])
    kube.annotate(node, {DRAINING_ANNOTATION: now.isoformat()})
    return continue_drain(kube, state, now=now)  # the claim was checked just now


def continue_drain(
    kube: Kube, state: DrainState, *, now: datetime, owner: Owner | None = None
) -> DrainStep:
    """One round: check the claim (given `owner`), re-read the node's pods, evict what may go,
    report progress."""
    state.rounds += 1
    if owner is not None:
        found = kube.node(state.node)
        if found is None or not holds(found, owner):
            # Someone took the node back (removed the claim): evict nothing more from it.
            return DrainFailed(state, f"node {state.node} is no longer claimed by {owner.job}", [])
    options = DrainOptions(**state.options)
    plan = plan_drain(kube.pods_on(state.node), options)
    if plan.blocked:
        return DrainFailed(state, "pods block the drain", plan.blockers())
    for pod in plan.pods(Action.DELETE):
        kube.delete_pod(pod)
    held: list[str] = []
    asked_before = dict(state.evicted)
    # Asked already means waiting for it to go; the rest are evicted together, as kubectl does.
    asking = [p for p in plan.pods(Action.EVICT) if state.evicted.get(p.key) != p.uid]
    with ThreadPoolExecutor(max_workers=EVICTION_WORKERS) as pool:
        results = list(pool.map(kube.evict, asking))
    gone: set[str] = set()
    for pod, result in zip(asking, results, strict=True):
        if result is EvictionResult.EVICTED:
            state.evicted[pod.key] = pod.uid
        elif result is EvictionResult.BUDGET:
            held.append(pod.key)
        elif result is EvictionResult.GONE:
            gone.add(pod.key)
        elif result is EvictionResult.MULTIPLE_BUDGETS:
            return DrainFailed(state, f"cannot evict {pod.key}", [f"{pod.key}: {result.value}"])
    state.budget_blocked = held
    remaining = {
        d.pod.key: _why_left(d.pod.key, d.pod.uid, d.action, held, gone, asked_before)
        for d in plan.decisions
        if d.action in (Action.EVICT, Action.WAIT, Action.DELETE)
    }
    if not remaining:
        return Drained(state, sorted(state.evicted), [p.key for p in plan.pods(Action.SKIP)])
    listed = [f"{key}: {why}" for key, why in remaining.items()]
    deadline = datetime.fromisoformat(state.deadline)
    if now >= deadline and (held or now >= deadline + GOING_GRACE):
        return DrainFailed(state, f"drain of {state.node} timed out", listed)
    return Waiting(state, BUDGET_RETRY if held else ROUND_DELAY, listed)


def _why_left(
    key: str,
    uid: str,
    action: Action,
    held: list[str],
    gone: set[str],
    asked_before: dict[str, str],
) -> str:
    """What a pod still listed this round is waiting for, in the words of the drain's report."""
    if key in held:
        return "held by its disruption budget"
    if action is Action.WAIT:
        return "terminating"
    if action is Action.DELETE:
        return "completed, deleted"
    if key in gone:
        return "gone or replaced"
    if asked_before.get(key) == uid:
        return "evicted, waiting for it to go"
    return "evicted just now"
