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
from shared.flows.claims import Claimed, claim, holds, release
from shared.flows.jobs import StepContext
from shared.flows.repair.ending import end, owner
from shared.flows.retries import temporary_wait
from shared.jobs import Done, Fail, Next, Outcome, Wait

POLL = timedelta(seconds=20)


def claim_node(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Claim (which cordons) the NotReady node before the ladder touches it."""
    node = state["repair"]["node"]
    if node:
        ctx.before_write()
        held = claim(ctx.services.kube, node, owner(ctx), ctx.now)
        if not isinstance(held, Claimed):
            return end(ctx, state, Fail(f"refused: {held.reason}"))
    return Next("rung", state)


def rung(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Start the ladder's current rung: restart or reimage (or, last, replace)."""
    repair, current = state["repair"], state["rung"]
    if current == "replace":
        return Next("grow", state)
    boot = ""
    if repair["node"]:
        node = ctx.services.kube.node(repair["node"])
        if node is None or not holds(node, owner(ctx)):
            return end(ctx, state, Fail(f"{repair['node']} was taken back or is gone: left"))
        boot = node.boot_id
    instances = Instances(ctx.services.scale_sets)
    begin = instances.begin_restart if current == "restart" else instances.begin_reimage
    ctx.before_write()
    try:
        begin(ctx.pool.vmss_id, repair["instance"])
    except ThrottledError as error:
        return temporary_wait("rung", state, error, ctx)
    except TemporaryAzureError as error:  # the answer was lost: the node will tell
        ctx.notes.append(f"{current} answer lost ({error.code}): judged by the node")
    except AzureCallError as error:
        return _climb(state, f"{current} refused: {error.code}: {error.message}")
    ctx.notes.append(f"{current} of {repair['name']} started")
    started = {"rung_since": ctx.now.isoformat(), "boot_id": boot, "acted": True}
    return Wait("await_rung", POLL, state | started, reason=f"{current} started")


def _climb(state: dict[str, Any], why: str) -> Outcome:
    """The rung did not bring the node back: the next one."""
    rungs = [*state.get("rungs", []), {"rung": state["rung"], "result": why[:200]}]
    return Next("rung", state | {"rung": next_rung(state["rung"]), "rungs": rungs})


def _back(ctx: StepContext, state: dict[str, Any]) -> str | None:
    """The node that is back Ready on a new boot, or None."""
    repair = state["repair"]
    if repair["node"]:
        node = ctx.services.kube.node(repair["node"])
        if node and node.ready and node.boot_id != state.get("boot_id"):
            return node.name
        return None
    wanted = (ctx.pool.vmss_id.lower(), repair["instance"])
    for node in ctx.services.kube.nodes():  # a node that never registered: has it now?
        if node.scale_set_instance == wanted and node.ready:
            return node.name
    return None


def await_rung(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Ready again on a new boot: given back, done; not within the timeout: the next rung."""
    repair, current = state["repair"], state["rung"]
    back = _back(ctx, state)
    if back is not None:
        released = release(ctx.services.kube, repair["node"], owner(ctx)) if repair["node"] else "-"
        rungs = [*state.get("rungs", []), {"rung": current, "result": "back Ready"}]
        state = state | {"rungs": rungs}
        note = f"{back} back Ready after the {current}"
        return end(ctx, state, Done({"note": note, "rung": current, "released": released}))
    timeout = timedelta(minutes=ctx.pool.repair.ready_timeout_minutes)
    if ctx.now - datetime.fromisoformat(state["rung_since"]) <= timeout:
        return Wait(
            "await_rung", POLL, state, reason=f"waiting for {repair['name']} after {current}"
        )
    return _climb(state, f"not back Ready within {timeout} of the {current}")
