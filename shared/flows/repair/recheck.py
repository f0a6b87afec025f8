"""Re-check before destroy (invariant 15): right before a repair restarts, reimages, grows,
drains or deletes, the reason it was started for is read again, and when it no longer holds the
node is given back and the repair ends `done`, saying so. Plans go stale; the node does not
wait for the job. Called by the ladder (`shared.flows.repair.ladder`) and the job's removal
steps (`shared.flows.repair.job`).
"""

from __future__ import annotations

from typing import Any

from shared.decide.counting import InstanceState, ScaleSetState, VmInstance, classify
from shared.decide.repair import LADDER, Problem
from shared.flows.claims import holds, release
from shared.flows.jobs import StepContext
from shared.flows.repair.ending import end, owner
from shared.jobs import Done, Outcome

# What a repair would have done next, for "<node> is Ready again: not <done>".
NOT_DONE = {"restart": "restarted", "reimage": "reimaged", "replace": "replaced"}
EXPECTED = {  # the states in which a removal still has its reason
    Problem.FAILED: {InstanceState.FAILED},
    Problem.STUCK_CREATING: {InstanceState.CREATING},
    Problem.STUCK_DELETING: {InstanceState.DELETING},
}


def ready_node_of(ctx: StepContext, instance_id: str) -> str | None:
    """The Ready node registered for the pool's instance `instance_id`, if there is one."""
    wanted = (ctx.pool.vmss_id.lower(), instance_id)
    for node in ctx.kube.nodes():
        if node.scale_set_instance == wanted and node.ready:
            return str(node.name)
    return None


def ladder_reason_gone(ctx: StepContext, state: dict[str, Any]) -> str | None:
    """Why the ladder must not act on its node now, from a fresh read: Ready again, gone, no
    longer claimed by this job, or uncordoned by someone; None while it is still NotReady,
    ours and cordoned (or, for an instance whose node never registered, still has no Ready
    node)."""
    repair = state["repair"]
    name = repair["node"]
    if not name:
        registered = ready_node_of(ctx, repair["instance"])
        return f"{registered} registered and is Ready" if registered else None
    node = ctx.kube.node(name)
    if node is None:
        return f"node {name} is gone"
    if not holds(node, owner(ctx)):
        return f"node {name} is no longer claimed by this job"
    if not node.unschedulable:
        return f"node {name} was uncordoned by someone while this job held it"
    if node.ready:
        return f"{name} is Ready again"
    return None


def removal_reason_gone(
    ctx: StepContext, state: dict[str, Any], scale_set: ScaleSetState
) -> str | None:
    """Why the instance being removed must not be drained or deleted now, on `scale_set` (a
    fresh read): a NotReady node Ready again (and the rest of `ladder_reason_gone`), or an
    instance no longer failed or stuck. None while the reason holds, when the instance is gone,
    or when a delete of it is under way already (scale-in settles that)."""
    repair = state["repair"]
    instance = find(scale_set, repair["instance"])
    if instance is None or classify(instance) is InstanceState.DELETING:
        return None
    problem = Problem(repair["problem"])
    if problem in LADDER:
        return ladder_reason_gone(ctx, state)
    now = classify(instance)
    expected = EXPECTED.get(problem)
    if expected is not None and now not in expected:
        return f"instance {instance.instance_id} is {now} now"
    return None


def find(scale_set: ScaleSetState, instance_id: str) -> VmInstance | None:
    """The instance `instance_id` in a read of the scale set, or None."""
    return next((i for i in scale_set.instances if i.instance_id == instance_id), None)


def stand_down(ctx: StepContext, state: dict[str, Any], why: str, *, not_done: str) -> Outcome:
    """The repair's reason is gone: give the node back and end `done`, saying what was not done
    and that a replacement grown already stays (capacity is never lowered by a write)."""
    node = state["repair"]["node"]
    released = release(ctx.kube, node, owner(ctx)) if node else "-"
    note = f"{why}: not {not_done}"
    if state.get("grow"):
        note += (
            f"; the replacement added by {state['grow']} stays (capacity is only lowered by "
            "deleting named instances: a scale-in job can remove one)"
        )
    ctx.notes.append(note)
    if state.get("rung"):
        stopped = {"rung": state["rung"], "result": f"stopped: {why}"[:200]}
        state = state | {"rungs": [*state.get("rungs", []), stopped]}
    return end(ctx, state, Done({"note": note, "released": released}))
