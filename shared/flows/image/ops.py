"""How image-job steps run an Azure operation or a child job without waiting in a function: start
it once, record its token (or id) in the job's state, and ask about it on each later step.

`operation` and `child` return an Outcome to hand to the runner while the work is in flight, and
the result once it has ended; a redelivered step finds the token and asks, it never starts twice.
`send_once` is for the actions that must happen at most once (power-off, start, restart, model
writes): the intent is recorded before the send, and a step that cannot know whether a send went
out judges by the observed effect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.adapters.images import Images
from shared.adapters.ledger import FINAL, JobRecord
from shared.adapters.scaleset import AzureCallError, OperationStatus, TemporaryAzureError
from shared.flows.jobs import StepContext, enqueue
from shared.flows.retries import temporary_wait
from shared.jobs import JobKind, Next, Outcome, Wait

POLL = timedelta(seconds=15)
POOL_TAG = "poolkeeper-pool"
JOB_TAG = "poolkeeper-job"
CHILD_POLL = timedelta(seconds=30)
# The longest an Azure operation of an image job may run (a version replicating to every region
# takes hours): past it the operation counts as failed, so that no step polls for ever.
OPERATION_DEADLINE = timedelta(hours=6)


def images(ctx: StepContext) -> Images:
    return Images(ctx.services.scale_sets)


def tags(ctx: StepContext) -> dict[str, str]:
    """The tags of what an image job makes: a later run finds its pool's leftovers by them."""
    return {JOB_TAG: ctx.job.id, POOL_TAG: ctx.pool.name}


def operation(
    ctx: StepContext,
    state: dict[str, Any],
    key: str,
    op: str,
    args: dict[str, Any],
    *,
    step: str,
    poll: timedelta = POLL,
) -> OperationStatus | Outcome:
    """Operation `op` under `key` in `state["ops"]`: started once, then asked once per step.
    Its end (Succeeded or Failed, with Azure's code) comes back; a refusal to start is a Failed
    status too. Temporary errors wait (bounded by the runner)."""
    ops: dict[str, Any] = state.setdefault("ops", {})
    found = ops.get(key)
    if found and "ended" in found:
        return OperationStatus(found["ended"], found.get("code"), found.get("message"))
    try:
        if not found:
            ctx.before_write()
            ops[key] = {"token": images(ctx).begin(op, **args), "since": ctx.now.isoformat()}
            return Next(step, state)  # the token is recorded before anything else happens
        status = images(ctx).status(op, found["token"], **args)
    except TemporaryAzureError as error:
        if found and _late(ctx, found):
            status = _timed_out(op)
        else:
            return temporary_wait(step, state, error, ctx)
    except AzureCallError as error:
        status = OperationStatus("Failed", error.code, error.message)
    if not status.done and _late(ctx, found):
        status = _timed_out(op)
    if not status.done:
        return Wait(step, poll, state, reason=f"{op} in progress")
    ops[key] = {"ended": status.state, "code": status.code, "message": status.message}
    return status


def _late(ctx: StepContext, found: dict[str, Any] | None) -> bool:
    since = (found or {}).get("since")
    return bool(since) and ctx.now - datetime.fromisoformat(since) > OPERATION_DEADLINE


def _timed_out(op: str) -> OperationStatus:
    return OperationStatus(
        "Failed", "OperationTimedOut", f"{op} had not ended {OPERATION_DEADLINE} after it began"
    )


# What a step sees of a one-shot action's effect: there ("done"), on its way ("under way"), not
# yet seen ("absent": a send may still land), or not any more possible ("void": e.g. the model
# changed under the send's If-Match, so the send can never land).
Seen = Literal["done", "under way", "absent", "void"]


def send_once(
    ctx: StepContext,
    state: dict[str, Any],
    key: str,
    op: str,
    args: Callable[[], dict[str, Any]],
    *,
    step: str,
    expect: dict[str, Any],
    observe: Callable[[], Seen],
    settle: timedelta,
    under_way: timedelta | None = None,
    poll: timedelta = POLL,
) -> OperationStatus | Outcome:
    """Operation `op`, which must happen at most once. Its intent (`state[key]["intent"]`: action,
    time, the effect expected, the delivery that recorded it) is recorded and persisted before
    the send; the same delivery (`ctx.invocation`) sends it,
    unless `observe` shows the effect already. A run that finds the intent without a recorded
    operation it did not send itself judges by the effect: done, or under way (waited for), or
    not yet seen - then it waits while the first send may still land (`settle` after the
    intent), and only then records a new intent. An effect under way is waited for until
    `under_way` (default `settle`) after the intent, then counts as failed. Once sent, as
    `operation`."""
    ops: dict[str, Any] = state.setdefault("ops", {})
    if key in ops:
        return operation(ctx, state, key, op, args(), step=step, poll=poll)
    mine = state.setdefault(key, {})
    intent = mine.get("intent")
    if intent is None or intent.get("refused"):  # never sent, or refused before it arrived
        mine["intent"] = {
            "action": op,
            "at": ctx.now.isoformat(),
            "expect": expect,
            "by": ctx.invocation,
        }
        return Next(step, state)  # persisted by the runner before the send below
    try:
        seen = observe()
    except TemporaryAzureError as error:
        return temporary_wait(step, state, error, ctx)
    now = ctx.now.isoformat()
    waited = ctx.now - datetime.fromisoformat(intent["at"])
    if seen == "done":
        ops[key] = {"ended": "Succeeded", "judged": "by its effect"}
        return OperationStatus("Succeeded")
    if seen == "under way":
        limit = under_way or settle
        if waited > limit:
            return OperationStatus("Failed", "Timeout", f"{op} under way but not done in {limit}")
        return Wait(step, poll, state, reason=f"{op} under way")
    if seen == "absent" and intent.get("by") == ctx.invocation and "sent_at" not in intent:
        ctx.before_write()  # a lost lease stops the step here: nothing went out
        sent = _begin(ops, key, intent, lambda: images(ctx).begin(op, **args()), now)
        if isinstance(sent, TemporaryAzureError):
            return temporary_wait(step, state, sent, ctx)
        return sent or Next(step, state)
    if seen == "absent" and waited <= settle:
        return Wait(
            step,
            poll,
            state,
            reason=f"{op} sent at {intent['at']} may still land: waiting for its effect",
            error=intent.get("unanswered"),  # a run of lost answers stays bounded by the runner
        )
    ctx.notes.append(f"{op}: no effect of the send recorded at {intent['at']}: a new intent")
    reset(state, key)
    return Next(step, state)


def _begin(
    ops: dict[str, Any], key: str, intent: dict[str, Any], begin: Callable[[], str], now: str
) -> OperationStatus | TemporaryAzureError | None:
    """Send: None once the token is recorded; a refusal; or a temporary error (when it may have
    reached Azure, the intent says so, and its waits stay bounded by the runner)."""
    intent["sent_at"] = now  # within this delivery: never a second send of this intent
    try:
        ops[key] = {"token": begin(), "since": now}
    except TemporaryAzureError as error:
        if error.status in (429, 503) or error.code == "RetryAfterPending":
            # Refused before it reached the resource: not sent; a later delivery may send it.
            intent["refused"] = True
        else:  # a timeout or a lost answer: it may have landed, or land later
            intent["unanswered"] = error.code or type(error).__name__
        return error
    except AzureCallError as error:
        ops[key] = {"ended": "Failed", "code": error.code, "message": error.message}
        return OperationStatus("Failed", error.code, error.message)
    return None


def reset(state: dict[str, Any], key: str) -> None:
    """Forget a one-shot action (its intent and operation), so that it can be planned again."""
    forget(state, key)
    (state.get(key) or {}).pop("intent", None)


def forget(state: dict[str, Any], *keys: str) -> None:
    """Drop ended operations, so the same key can run again (e.g. a retry with other args)."""
    for key in keys:
        state.get("ops", {}).pop(key, None)


def child_id(parent: str, key: str) -> str:
    """`<parent>.<key>`, or, when that outgrows a job id (128), a short hash of the parent in
    its place: distinct for every key and never the parent's own id."""
    wanted = f"{parent}.{key}"
    if len(wanted) <= 128:
        return wanted
    digest = hashlib.sha256(parent.encode()).hexdigest()[:16]
    return f"{parent[: 127 - len(key) - 17]}-{digest}.{key}"


@dataclass(frozen=True)
class ChildEnded:
    record: JobRecord

    @property
    def done(self) -> bool:
        return self.record.status == "done"


@dataclass(frozen=True)
class ChildLate:
    """A child job that had not ended by the deadline its parent gave it (it may still run)."""

    job_id: str
    status: str
    deadline: datetime

    def why(self, what: str) -> str:
        return f"{what} {self.job_id} had not ended by {self.deadline:%H:%M}Z ({self.status})"


def child(
    ctx: StepContext,
    state: dict[str, Any],
    key: str,
    kind: JobKind,
    params: dict[str, Any],
    *,
    step: str,
    within: timedelta | None,
) -> ChildEnded | ChildLate | Outcome:
    """A job this one needs done (e.g. the canary's scale-up), run by its own flow with all its
    guards: enqueued once under a derived id, then waited for; its record once it has ended, or
    ChildLate when it has not ended `within` its enqueueing (None: its own deadlines bound it)."""
    children: dict[str, str] = state.setdefault("children", {})
    job_id = children.get(key) or child_id(ctx.job.id, key)
    if key not in children:
        ctx.before_write()
        enqueue(
            ctx.services,
            kind,
            ctx.pool.name,
            params,
            job_id=job_id,
            requested_by=f"image job {ctx.job.id}",
            now=ctx.now,
            parent=ctx.job.id,
        )
        children[key] = job_id
        state.setdefault("children_since", {})[key] = ctx.now.isoformat()
        return Wait(step, CHILD_POLL, state, reason=f"waiting for {kind} job {job_id}")
    record = ctx.services.tables.job(job_id)
    if record is None or record.status not in FINAL:
        status = record.status if record else "queued"
        since = state.setdefault("children_since", {}).setdefault(key, ctx.now.isoformat())
        deadline = datetime.fromisoformat(since) + within if within is not None else None
        if deadline is not None and ctx.now > deadline:
            return ChildLate(job_id, status, deadline)
        return Wait(step, CHILD_POLL, state, reason=f"{kind} job {job_id} is {status}")
    return ChildEnded(record)
