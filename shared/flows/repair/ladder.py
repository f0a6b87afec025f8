"""The repair ladder for a NotReady node (or a live instance whose node never registered), under
a claim: `claim`, then `rung` restarts or reimages and `await_rung` waits for Ready on a new
boot within ready_timeout_minutes; a rung that did not bring it back climbs to the next, and
the last (replace) hands over to the job's `grow` (`shared.flows.repair.job`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.adapters.instances import Instances
from shared.adapters.scaleset import AzureCallError, TemporaryAzureError, ThrottledError
from shared.decide.repair import next_rung
from shared.flows.claims import Claimed, claim, release
from shared.flows.jobs import StepContext
from shared.flows.repair.ending import end, owner
from shared.flows.repair.recheck import (
    NOT_DONE,
    find,
    ladder_reason_gone,
    ready_node_of,
    stand_down,
)
from shared.flows.retries import temporary_wait
from shared.jobs import Done, Fail, Next, Outcome, Wait

POLL = timedelta(seconds=20)
# How much longer than ready_timeout_minutes a restart or reimage still running on the instance
# is given to land before the ladder climbs past it (Azure's own operations end within this).
LAND_GRACE = timedelta(minutes=20)


def claim_node(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Claim (which cordons) the NotReady node before the ladder touches it."""
    node = state["repair"]["node"]
    if node:
        ctx.before_write()
        held = claim(ctx.kube, node, owner(ctx), ctx.now)
        if not isinstance(held, Claimed):
            return end(ctx, state, Fail(f"refused: {held.reason}"))
    return Next("rung", state)


def rung(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Start the ladder's current rung (restart or reimage; last, replace), if its reason still
    holds: the intent is recorded first (and the runner saves it), then sent by the same
    delivery. Another delivery that finds the intent may have been preceded by a send (a worker
    that died right after it): it does not send again, the node tells whether it landed
    (`await_rung`)."""
    repair, current = state["repair"], state["rung"]
    intent = state.get("intent") or {}
    if intent.get("action") == current and intent.get("by") != ctx.invocation:
        ctx.notes.append(
            f"the {current} may have been sent before this delivery (intent of {intent['at']}): "
            "judged by the node, not sent again"
        )
        started = _started(intent, intent["at"])
        return Wait("await_rung", POLL, state | started, reason=f"{current} may have been sent")
    why = ladder_reason_gone(ctx, state)
    if why is not None:
        return stand_down(ctx, state, why, not_done=NOT_DONE[current])
    if current == "replace":
        return Next("grow", state)
    if intent.get("action") != current:
        node = ctx.kube.node(repair["node"]) if repair["node"] else None
        intent = {
            "action": current,
            "at": ctx.now.isoformat(),
            "expect": {"boot_id_not": node.boot_id if node is not None else ""},
            "by": ctx.invocation,
        }
        return Next("rung", state | {"intent": intent})
    return _send(ctx, state, intent)


def _send(ctx: StepContext, state: dict[str, Any], intent: dict[str, Any]) -> Outcome:
    repair, current = state["repair"], state["rung"]
    instances = Instances(ctx.services.scale_sets)
    begin = instances.begin_restart if current == "restart" else instances.begin_reimage
    ctx.before_write()
    try:
        begin(ctx.pool.vmss_id, repair["instance"])
    except ThrottledError as error:  # refused before anything happened: a new intent, later
        return temporary_wait("rung", {k: v for k, v in state.items() if k != "intent"}, error, ctx)
    except TemporaryAzureError as error:  # the answer was lost: the node will tell
        ctx.notes.append(f"{current} answer lost ({error.code}): judged by the node")
    except AzureCallError as error:
        return _climb(state, f"{current} refused: {error.code}: {error.message}")
    ctx.notes.append(f"{current} of {repair['name']} started")
    started = _started(intent, ctx.now.isoformat())
    return Wait("await_rung", POLL, state | started, reason=f"{current} started")


def _started(intent: dict[str, Any], since: str) -> dict[str, Any]:
    """The rung's wait: from when it was sent, for a boot other than the one before it."""
    return {"rung_since": since, "boot_id": intent["expect"]["boot_id_not"], "acted": True}


def _climb(state: dict[str, Any], why: str) -> Outcome:
    """The rung did not bring the node back: the next one."""
    rungs = [*state.get("rungs", []), {"rung": state["rung"], "result": why[:200]}]
    return Next("rung", state | {"rung": next_rung(state["rung"]), "rungs": rungs})


def _back(ctx: StepContext, state: dict[str, Any]) -> str | None:
    """The node that is back Ready on a new boot, or None."""
    repair = state["repair"]
    if repair["node"]:
        node = ctx.kube.node(repair["node"])
        if node and node.ready and node.boot_id != state.get("boot_id"):
            return node.name
        return None
    return ready_node_of(ctx, repair["instance"])  # a node that never registered: has it now?


def await_rung(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Ready again on a new boot: given back, done. Past ready_timeout_minutes the rung is
    judged before the ladder climbs past it: a node Ready again by now is given back, an
    operation still running on the instance may still land (waited for, up to LAND_GRACE)."""
    repair, current = state["repair"], state["rung"]
    back = _back(ctx, state)
    if back is not None:
        released = release(ctx.kube, repair["node"], owner(ctx)) if repair["node"] else "-"
        rungs = [*state.get("rungs", []), {"rung": current, "result": "back Ready"}]
        state = state | {"rungs": rungs}
        note = f"{back} back Ready after the {current}"
        return end(ctx, state, Done({"note": note, "rung": current, "released": released}))
    timeout = timedelta(minutes=ctx.pool.repair.ready_timeout_minutes)
    waited = ctx.now - datetime.fromisoformat(state["rung_since"])
    if waited <= timeout:
        return Wait(
            "await_rung", POLL, state, reason=f"waiting for {repair['name']} after {current}"
        )
    why = ladder_reason_gone(ctx, state)
    if why is not None:
        return stand_down(ctx, state, why, not_done=NOT_DONE[str(next_rung(current))])
    try:
        instance = find(ctx.services.scale_sets.read(ctx.pool.vmss_id), repair["instance"])
    except TemporaryAzureError as error:
        return temporary_wait("await_rung", state, error, ctx)
    if instance is None:
        return stand_down(
            ctx, state, f"instance {repair['instance']} is gone", not_done=NOT_DONE["replace"]
        )
    running = instance.provisioning.lower() == "updating"  # an operation on it: may still land
    if running and waited <= timeout + LAND_GRACE:
        return Wait(
            "await_rung",
            POLL,
            state,
            reason=f"the {current} is still running on instance {repair['instance']}",
        )
    still = " (an operation still running on it)" if running else ""
    return _climb(state, f"not back Ready within {timeout} of the {current}{still}")
