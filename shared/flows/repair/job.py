"""Repair jobs (kind `repair`, on the scale queue): reconcile's follow-up on drift, one repair a
pool at a time, each planned again on its own fresh read (`shared.decide.repair`).

- a failed instance, or one stuck Creating or Deleting: `remove` deletes it (by force when
  stuck, once; a stuck one that does not go is escalated), a replacement first when the pool
  would drop below min_nodes; one with a node is claimed first, and drained through scale-in;
- a node NotReady (or a live instance whose node never registered): the ladder, under a claim
  (`shared.flows.repair.ladder`: restart, then reimage); then replace: `grow` adds one through
  a scale job, and the bad one is drained and deleted through the scale-in steps;
- a node repaired too often today: `quarantine` (cordoned for good, annotated, reported);
- a node whose instance is gone: `orphan` reports it, and deletes it only when allowed.

Every end is written to the pool's repair log (`GET /api/pools/{name}` shows it).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import FINAL
from shared.adapters.repair_log import RepairLog
from shared.adapters.scaleset import (
    AzureCallError,
    PermanentAzureError,
    TemporaryAzureError,
    ThrottledError,
)
from shared.decide.counting import InstanceState, classify
from shared.decide.repair import (
    LADDER,
    QUARANTINE_ANNOTATION,
    Problem,
    Quarantine,
    Repair,
)
from shared.flows.claims import Claimed, claim, holds, release
from shared.flows.jobs import RETRY_SETTING, Flow, Step, StepContext, enqueue, register
from shared.flows.repair import ladder
from shared.flows.repair.ending import end, owner, params
from shared.flows.repair.follow_up import (
    brake_notice,
    canary_in_progress,
    notify,
    plan_for,
)
from shared.flows.repair.recheck import (
    EXPECTED,
    NOT_DONE,
    find,
    removal_reason_gone,
    stand_down,
)
from shared.flows.retries import temporary_wait
from shared.flows.scale import scale_in
from shared.flows.truth import read_truth
from shared.jobs import Done, Fail, JobKind, Next, Outcome, Wait

log = logging.getLogger("poolkeeper.repair")

POLL = ladder.POLL
GROW_DEADLINE = timedelta(minutes=40)  # the scale job's own ready wait is 20 minutes


def _plan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Fresh read, then the repair to do (or why none), planned again from scratch."""
    asked = params(ctx)
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("plan", state, error, ctx)
    if truth.nodes is None:
        return Fail("cannot repair: the cluster's nodes could not be read (fail safe)")
    plan = plan_for(ctx.services, ctx.pool, truth, ctx.now, target=asked.node or asked.instance)
    described = plan.describe()
    # Checked here too, not only by reconcile: a repair asked for by hand, or queued before the
    # model changed, must not restart or replace nodes while an image job proves a canary.
    canary = canary_in_progress(ctx.services, ctx.pool.name)
    if asked.dry_run:
        return Done(
            {"dry_run": True, "plan": described} | ({"waits_for": canary} if canary else {})
        )
    state = {"started_at": ctx.now.isoformat(), "plan": described}
    if plan.action is not None:
        state["repair"] = _target(plan.action)
    if canary is not None:
        refusal = Fail(f"refused: waits: {canary}; nothing was touched", {"plan": described})
        return end(ctx, state, refusal, status="refused")
    if plan.brake is not None:
        brake_notice(ctx.services, ctx.pool.name, plan.brake, ctx.now)
        refusal = Fail(f"refused (brake): {plan.brake}", {"plan": described})
        return end(ctx, state, refusal, status="refused")
    if plan.action is None:
        why = described["left_out"] or "nothing to repair now"
        return end(ctx, state, Done({"note": f"no repair: {why}", "plan": described}))
    finding = plan.action.finding
    member = finding.member
    state = {"started_at": ctx.now.isoformat(), "repair": state["repair"]}
    RepairLog(ctx.services.tables).put(
        ctx.pool.name,
        {
            "job": ctx.job.id,
            "at": state["started_at"],
            "status": "running",
            "problem": finding.problem.value,
            "node": member.name,
            "instance": member.instance_id,
            "detail": finding.detail,
            "acted": False,
        },
        ctx.now,
    )
    ctx.notes.append(finding.detail)
    if isinstance(plan.action, Quarantine):
        return Next("quarantine", state | {"reason": plan.action.reason})
    if finding.problem is Problem.ORPHAN_NODE:
        return Next("orphan", state)
    if finding.problem in LADDER:
        return Next("claim", state | {"rung": plan.action.first_rung, "rungs": []})
    if (
        finding.problem is Problem.FAILED
        and truth.record["counts"]["active"] - 1 < ctx.pool.min_nodes
    ):
        ctx.notes.append(f"a replacement first: the pool keeps min_nodes {ctx.pool.min_nodes}")
        return Next("grow", state)
    return _removal(state)


def _target(action: Repair | Quarantine) -> dict[str, Any]:
    """What the repair is of, as its state and the repair log carry it."""
    finding = action.finding
    member = finding.member
    return {
        "problem": finding.problem.value,
        "name": member.name,
        "node": member.name if member.has_node else None,
        "instance": member.instance_id,
        "detail": finding.detail,
        "force": getattr(action, "force", False),
    }


def _removal(state: dict[str, Any]) -> Outcome:
    """A victim with a node goes through scale-in (claim, drain, checked delete, settle); one
    without a node, or stuck, is deleted directly."""
    repair = state["repair"]
    if repair["node"] and not repair["force"]:
        plan = {"victims": [repair["instance"]], "nodes": [repair["node"]]}
        return Next("drain", state | {"plan": plan, "drains": {}, "acted": True})
    return Next("remove", state)


def _remove(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Delete the instance (by force when stuck), if it still has the reason it is removed for:
    failed or stuck, or live with no node at all; a node it has is claimed first."""
    repair = state["repair"]
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("remove", state, error, ctx)
    victim = find(truth.state, repair["instance"])
    if victim is None:
        return end(ctx, state, Done({"note": "the instance is gone already"}))
    seen = truth.record["instances"][victim.instance_id]
    name = seen["node"] or victim.computer_name
    sent = {
        "plan": {"victims": [victim.instance_id], "nodes": [name]},
        "deleted": [victim.instance_id],
        "sent_at": ctx.now.isoformat(),
        "acted": True,
    }
    if (
        classify(victim) is InstanceState.DELETING
        and repair["problem"] != Problem.STUCK_DELETING.value
    ):
        # Our delete may have been sent before this delivery (the worker died with its answer),
        # or someone else's is under way: nothing is sent again, the outcome is settled.
        ctx.notes.append(f"instance {victim.instance_id} is being deleted already; settling")
        return Next("settle", state | sent | {"definitive": False})
    expected = EXPECTED.get(Problem(repair["problem"]))
    if expected is not None and classify(victim) not in expected:
        why = f"instance {victim.instance_id} is {classify(victim)} now"
        return stand_down(ctx, state, why, not_done=_not_done(state))
    if expected is None and seen["node"] is not None:  # it registered since
        why = f"instance {victim.instance_id} has node {seen['node']} now"
        return stand_down(ctx, state, why, not_done=_not_done(state))
    if seen["node"] is not None and repair["problem"] != Problem.STUCK_DELETING.value:
        ctx.before_write()
        held = claim(ctx.kube, seen["node"], owner(ctx), ctx.now)
        if not isinstance(held, Claimed):
            return end(ctx, state, Fail(f"refused: {held.reason}"))
    ctx.before_write()
    try:
        token = ctx.services.scale_sets.begin_delete(
            ctx.pool.vmss_id, [victim.instance_id], force=bool(repair["force"])
        )
    except ThrottledError as error:  # refused before anything happened
        return temporary_wait("remove", state, error, ctx)
    except PermanentAzureError as error:  # refused: Azure did nothing
        return Next("settle", state | sent | {"definitive": True} | _error(error))
    except AzureCallError as error:  # no answer: it may be happening anyway
        lost = {"definitive": False, "lost_at": ctx.now.isoformat()}
        return Next("settle", state | sent | lost | _error(error))
    return Next("await_delete", state | sent | {"definitive": False, "token": token})


def _not_done(state: dict[str, Any]) -> str:
    return NOT_DONE.get(state.get("rung") or "", "removed")


def _error(error: AzureCallError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "status": error.status}}


def _grow(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """A replacement through the scale-up path: a scale job of +1, its id derived from ours."""
    grow = f"{ctx.job.id}-grow"[:128]
    if ctx.services.tables.job(grow) is None:
        enqueue(
            ctx.services,
            JobKind.SCALE,
            ctx.pool.name,
            {"delta": 1},
            job_id=grow,
            requested_by=f"repair:{ctx.job.id}",
            now=ctx.job.created_at,  # the same envelope if this step runs twice
            parent=ctx.job.id,
        )
    since = {"grow": grow, "grow_since": ctx.now.isoformat(), "acted": True}
    return Wait("await_grow", POLL, state | since, reason=f"replacement requested ({grow})")


def _await_grow(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    record = ctx.services.tables.job(state["grow"])
    if record is None or record.status not in FINAL:
        if ctx.now - datetime.fromisoformat(state["grow_since"]) > GROW_DEADLINE:
            why = (
                f"the replacement {state['grow']} did not come within {GROW_DEADLINE} "
                "(the repair's grow deadline); it may still add a node"
            )
            return end(ctx, state, Fail(why, {"released": _give_back(ctx, state)}))
        return Wait("await_grow", POLL, state, reason=f"waiting for {state['grow']}")
    if record.status == "failed":
        why = f"the replacement {state['grow']} failed: {record.error}"
        return end(ctx, state, Fail(why, {"released": _give_back(ctx, state)}))
    ctx.notes.append(f"replacement {state['grow']} is live and Ready")
    return _removal(state)


def _give_back(ctx: StepContext, state: dict[str, Any]) -> str:
    node = state["repair"]["node"]
    return release(ctx.kube, node, owner(ctx)) if node else "-"


def _quarantine(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Cordon the node for good (no claim: nothing releases it), say why on it, report it."""
    kube, repair = ctx.kube, state["repair"]
    ctx.before_write()
    held = claim(kube, repair["node"], owner(ctx), ctx.now)
    if not isinstance(held, Claimed):
        return end(ctx, state, Fail(f"refused: {held.reason}"))
    mark = {"reason": state["reason"], "at": ctx.now.isoformat(), "job": ctx.job.id}
    kube.annotate(repair["node"], {QUARANTINE_ANNOTATION: json.dumps(mark)})
    released = release(kube, repair["node"], owner(ctx), keep_cordoned=True)
    notify(
        ctx.services,
        ctx.pool.name,
        "repair_quarantined",
        "P2",
        ctx.now,
        f"node {repair['node']} of pool {ctx.pool.name} is quarantined: {state['reason']}. It "
        f"stays cordoned; lift it by removing {QUARANTINE_ANNOTATION} and uncordoning it",
        node=repair["node"],
        job=ctx.job.id,
    )
    done = Done({"quarantined": repair["node"], "reason": state["reason"], "released": released})
    return end(ctx, state, done, status="quarantined")


def _orphan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """A node whose instance is gone: reported (the cloud node controller normally removes it);
    deleted only when the pool allows it."""
    name = state["repair"]["name"]
    message = f"node {name} of pool {ctx.pool.name} has no instance in its scale set: " + (
        "deleting the Node object"
        if ctx.pool.repair.delete_orphan_nodes
        else "reported only (repair.delete_orphan_nodes is false); the cloud node "
        "controller normally removes it"
    )
    notify(ctx.services, ctx.pool.name, "repair_orphan_node", "P3", ctx.now, message, node=name)
    if not ctx.pool.repair.delete_orphan_nodes:
        return end(ctx, state, Done({"note": message}))
    ctx.before_write()
    ctx.kube.delete_node(name)
    return end(ctx, state | {"acted": True}, Done({"note": message, "deleted_node": name}))


def _drain(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Scale-in's drain; on a node the ladder gave up on (restart and reimage did not bring it
    back, so its kubelet is down) the pods it evicted never finish terminating: once evicted
    (their budgets held), they are force-deleted, as `kubectl delete pod --force
    --grace-period=0` does for a node known dead, so the drain can end."""
    outcome = scale_in.drain(ctx, state)
    name = state["repair"]["node"]
    if not isinstance(outcome, Wait) or state.get("rung") != "replace" or not name:
        return outcome
    kube = ctx.kube
    node = kube.node(name)
    if node is None or node.ready or not holds(node, owner(ctx)):
        return outcome
    dead = [pod for pod in kube.pods_on(name) if pod.terminating]
    for pod in dead:
        ctx.before_write()
        kube.delete_pod(pod, grace_seconds=0)
    if dead:
        ctx.notes.append(f"force-deleted {len(dead)} evicted pod(s) left on dead node {name}")
    return outcome


def _ending(step: Step) -> Step:
    """A scale-in step whose end is also the repair's end (written to the repair log)."""

    def run(ctx: StepContext, state: dict[str, Any]) -> Outcome:
        outcome = step(ctx, state)
        return end(ctx, state, outcome) if isinstance(outcome, Done | Fail) else outcome

    return run


def _checked(step: Step, name: str) -> Step:
    """A destructive scale-in step (a drain round, the delete) that first reads again the
    reason for the removal, and stands down when it is gone (invariant 15)."""

    def run(ctx: StepContext, state: dict[str, Any]) -> Outcome:
        try:
            scale_set = ctx.services.scale_sets.read(ctx.pool.vmss_id)
        except TemporaryAzureError as error:
            return temporary_wait(name, state, error, ctx)
        why = removal_reason_gone(ctx, state, scale_set)
        if why is not None:
            return stand_down(ctx, state, why, not_done=_not_done(state))
        return _ending(step)(ctx, state)

    return run


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up: a removal under way is scale-in's to undo; else the node is given back. The
    repair log says the repair failed (and a person is told, if it had acted)."""
    if state.get("plan", {}).get("victims"):
        undone = scale_in.abort(ctx, state)
    else:
        node = (state.get("repair") or {}).get("node")
        undone = {"released": release(ctx.kube, node, owner(ctx))} if node else {}
    if state.get("repair"):
        why = "gave up after repeated errors in a step"
        if not state.get("_failures"):  # a run of temporary errors past its deadline
            for step, run in (state.get("_retries") or {}).items():
                why = (
                    f"gave up on step {step}: temporary errors since {run.get('since')}, "
                    f"longer than {RETRY_SETTING} allows; last {run.get('error')}"
                )
        end(ctx, state, Fail(why))
    return undone


STEPS: dict[str, Step] = {
    "plan": _plan,
    "claim": ladder.claim_node,
    "rung": ladder.rung,
    "await_rung": ladder.await_rung,
    "grow": _grow,
    "await_grow": _await_grow,
    "remove": _remove,
    "quarantine": _quarantine,
    "orphan": _orphan,
    "drain": _checked(_drain, "drain"),
    "delete": _checked(scale_in.delete, "delete"),
    "await_delete": _ending(scale_in.await_delete),
    "settle": _ending(scale_in.settle_step),
}
register(JobKind.REPAIR, Flow(first_step="plan", steps=STEPS, abort=_abort))
