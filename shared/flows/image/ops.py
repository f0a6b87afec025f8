"""How image-job steps run an Azure operation or a child job without waiting in a function: start
it once, record its token (or id) in the job's state, and ask about it on each later step.

`operation` and `child` return an Outcome to hand to the runner while the work is in flight, and
the result once it has ended; a redelivered step finds the token and asks, it never starts twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.adapters.images import Images
from shared.adapters.ledger import FINAL, JobRecord
from shared.adapters.scaleset import AzureCallError, OperationStatus, TemporaryAzureError
from shared.flows.jobs import StepContext, enqueue
from shared.flows.retries import temporary_wait
from shared.jobs import JobKind, Next, Outcome, Wait

POLL = timedelta(seconds=15)
CHILD_POLL = timedelta(seconds=30)


def images(ctx: StepContext) -> Images:
    return Images(ctx.services.scale_sets)


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
        return temporary_wait(step, state, error, ctx)
    except AzureCallError as error:
        status = OperationStatus("Failed", error.code, error.message)
    if not status.done:
        return Wait(step, poll, state, reason=f"{op} in progress")
    ops[key] = {"ended": status.state, "code": status.code, "message": status.message}
    return status


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


def child(
    ctx: StepContext,
    state: dict[str, Any],
    key: str,
    kind: JobKind,
    params: dict[str, Any],
    *,
    step: str,
) -> ChildEnded | Outcome:
    """A job this one needs done (e.g. the canary's scale-up), run by its own flow with all its
    guards: enqueued once under a derived id, then waited for; its record once it has ended."""
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
        )
        children[key] = job_id
        return Wait(step, CHILD_POLL, state, reason=f"waiting for {kind} job {job_id}")
    record = ctx.services.tables.job(job_id)
    if record is None or record.status not in FINAL:
        status = record.status if record else "queued"
        return Wait(step, CHILD_POLL, state, reason=f"{kind} job {job_id} is {status}")
    return ChildEnded(record)
