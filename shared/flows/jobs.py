"""The job runner: a queue message in, one or more steps of its flow run under the pool's lease,
the ledger updated, and the continuation re-enqueued with its delay.

Called by every queue-triggered function and by `POST /api/jobs`. Rules that make redelivery safe:
a message runs only if it carries the job's current continuation (or starts a new job); a done
step is never run again; a message that cannot get the pool's lease comes back later unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from shared import json_input
from shared.adapters.checks import Checks
from shared.adapters.kube import ClusterUnavailable
from shared.adapters.leases import LeaseLost, Leases, PoolLease
from shared.adapters.ledger import FINAL, JobRecord, LedgerConflict, StateTooLarge, Tables
from shared.adapters.queues import Queues
from shared.adapters.scaleset import UntrustedRequest
from shared.adapters.storage import StorageAccount
from shared.clock import Clock, clock_from_settings, product_delay, visibility_timeout
from shared.config import Config, Pool, load_config
from shared.config.mode import MODE_SETTING, Mode, mode_from_settings, observe_refusal
from shared.decide.submissions import backlog_full, reserved_id, too_far_ahead
from shared.flows.targets import outside_pool
from shared.jobs import (
    PARAMS,
    SCHEMA,
    Done,
    Fail,
    Job,
    JobKind,
    Next,
    Outcome,
    Rejection,
    Wait,
    parse_job,
    queue_name,
)

log = logging.getLogger("poolkeeper.jobs")

HOLD = timedelta(minutes=5)  # product time between looks at a job observe mode holds
LEASE_RETRY = timedelta(
    seconds=15
)  # product time before a message that found the pool busy returns
STEP_BUDGET_SECONDS = 20.0  # wall time one invocation may spend on Next steps before handing over
ENQUEUED = "enqueued"  # on a step's ledger entry: its continuation message is on the queue


@dataclass
class Services:
    """Everything a flow may touch, built lazily from the settings (cold start matters)."""

    settings: Mapping[str, str]
    clock: Clock
    config: Config
    account: StorageAccount

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Services:
        return cls(
            settings,
            clock_from_settings(settings),
            load_config(settings),
            StorageAccount.from_settings(settings),
        )

    @cached_property
    def tables(self) -> Tables:
        return Tables(self.account)

    @cached_property
    def mode(self) -> Mode:
        return mode_from_settings(self.settings)

    @cached_property
    def queues(self) -> Queues:
        return Queues(self.account)

    @cached_property
    def leases(self) -> Leases:
        return Leases(self.account)

    @cached_property
    def scale_sets(self) -> Any:
        from shared.adapters.scaleset import ScaleSets

        return ScaleSets.from_settings(self.settings, clock=self.clock)

    @cached_property
    def secrets(self) -> Any:
        from shared.adapters.secrets import Secrets

        return Secrets.from_settings(self.settings)

    @cached_property
    def connections(self) -> Any:
        from shared.adapters.connections import Connections

        return Connections(
            self.config, self.settings, lambda: self.secrets, breaker_changed=self.breaker_changed
        )

    def breaker_changed(self, cluster: str, breaker: Any) -> None:
        """A cluster's breaker opened or closed (shared.adapters.connections)."""
        self.record_cluster(
            cluster, breaker.last_error if breaker.open else None, held=breaker.open
        )

    def record_cluster(self, cluster: str, error: str | None, *, held: bool = False) -> None:
        """Keep whether a cluster answers (`error` None), and whether calls to it are held back,
        where the status page reads it."""
        Checks(self.tables).put_cluster_state(
            cluster,
            {
                "answering": error is None,
                "open": held,
                "at": self.clock.now().isoformat(),
                "last_error": (error or "")[:300],
            },
        )

    def kube_for(self, pool: Pool) -> Any:
        """The Kubernetes API of the pool's cluster."""
        return self.connections.kube(pool.cluster)

    @property
    def kube(self) -> Any:
        """The `default` cluster's API (the single-cluster settings, or the cluster listed so)."""
        return self.connections.kube()


@dataclass
class StepContext:
    """What a step sees: its job and pool, the services, the lease it must `check()` before a
    write, and the product time when the step began."""

    job: Job
    pool: Pool
    services: Services
    lease: PoolLease | None
    now: datetime
    notes: list[str] = field(default_factory=list)
    # This delivery of the job's message: the same for every step one invocation runs. A step
    # that recorded an intent and finds it again under the same invocation knows nothing was
    # sent in between (a redelivery, after a worker died mid-send, comes with another).
    invocation: str = ""

    @property
    def kube(self) -> Any:
        """The Kubernetes API of the job's pool's cluster."""
        return self.services.kube_for(self.pool)

    def before_write(self) -> None:
        """Call right before any write to Azure or the cluster: a lost lease stops the step."""
        if self.lease is not None:
            self.lease.check()


Step = Callable[[StepContext, dict[str, Any]], Outcome]


@dataclass(frozen=True)
class Flow:
    first_step: str
    steps: Mapping[str, Step]
    needs_lease: bool = True
    # Undo what the job did so far when it has to give up (e.g. uncordon); returns what was
    # done, for the outcome. Called with the state of the step that kept failing.
    abort: Callable[[StepContext, dict[str, Any]], dict[str, Any]] | None = None


STEP_RETRIES = 5  # a step that raises is retried this many times, then the job is aborted
STEP_RETRY_DELAY = timedelta(seconds=30)


RETRY_SETTING = "POOLKEEPER_RETRY_MINUTES"
DEFAULT_RETRY_MINUTES = 30


MIN_RETRY_MINUTES = 5  # at least the time a delete whose answer was lost needs to show itself


def retry_limit(settings: Mapping[str, str]) -> timedelta:
    """How long one step may keep retrying temporary errors (POOLKEEPER_RETRY_MINUTES)."""
    raw = settings.get(RETRY_SETTING) or str(DEFAULT_RETRY_MINUTES)
    try:
        minutes = int(raw)
    except ValueError:
        minutes = -1
    if minutes < MIN_RETRY_MINUTES:
        log.error(
            "%s=%r is not a whole number of minutes of at least %d; using %d. Fix the setting.",
            RETRY_SETTING,
            raw,
            MIN_RETRY_MINUTES,
            DEFAULT_RETRY_MINUTES,
        )
        minutes = DEFAULT_RETRY_MINUTES
    return timedelta(minutes=minutes)


def _undo(flow: Flow, context: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Run the flow's abort; what it did, or why it could not."""
    if flow.abort is None:
        return {}
    try:
        return flow.abort(context, state)
    except Exception as abort_error:  # noqa: BLE001 - the job still ends, with both
        return {"abort_failed": f"{type(abort_error).__name__}: {abort_error}"}


def _guarded(flow: Flow, name: str, context: StepContext, state: dict[str, Any]) -> Outcome:
    """Run a step; an unexpected error becomes a bounded retry, then an abort with its reason;
    a run of temporary-error waits of one step is bounded in time the same way."""
    try:
        outcome = flow.steps[name](context, state)
        if isinstance(outcome, Next | Wait):
            outcome.state.pop("_failures", None)  # the step went through: a fresh count
    except (LeaseLost, LedgerConflict):
        raise
    except ClusterUnavailable as error:
        # The cluster is not answering: a temporary error, waited out and bounded like Azure's.
        delay = max(STEP_RETRY_DELAY, product_delay(context.services.clock, error.retry_in))
        outcome = Wait(name, delay, state, reason=str(error)[:500], error="ClusterUnavailable")
    except UntrustedRequest as error:
        # A token in the state was changed: asking again would ask the same host. Ends now.
        log.error("Job %s: step %s: %s", context.job.id, name, error)
        undone = _undo(flow, context, state)
        return Fail(f"step {name}: {error}"[:500], {"aborted": undone})
    except Exception as error:  # noqa: BLE001 - recorded on the job; the abort path runs below
        failures = int(state.get("_failures", 0)) + 1
        reason = f"step {name} failed: {type(error).__name__}: {error}"[:500]
        log.warning("Job %s: %s (attempt %d of %d)", context.job.id, reason, failures, STEP_RETRIES)
        if failures < STEP_RETRIES:
            return Wait(name, STEP_RETRY_DELAY, state | {"_failures": failures}, reason=reason)
        undone = _undo(flow, context, state)
        return Fail(f"{reason} ({failures} attempts); gave up", {"aborted": undone})
    if not isinstance(outcome, Wait):
        return outcome
    if outcome.error is None:
        outcome.state.pop("_retries", None)  # an ordinary wait: the job is making progress
        return outcome
    retries = dict(outcome.state.get("_retries") or {})
    now = context.now.isoformat()
    last = retries.get(outcome.step) or {}
    since = last.get("since") or now
    limit = retry_limit(context.services.settings)
    if context.now - datetime.fromisoformat(since) < limit:
        retries[outcome.step] = {"since": since, "last": now, "error": outcome.error}
        outcome.state["_retries"] = retries
        return outcome
    reason = (
        f"gave up on step {outcome.step} after {limit} of temporary errors since {since}; "
        f"last: {outcome.reason or outcome.error}"
    )[:500]
    undone = _undo(flow, context, outcome.state)
    from shared.adapters.notify import Notifier

    try:
        Notifier(context.services.queues, context.services.settings).send(
            pool=context.pool.name,
            kind="job_failed",
            severity="P2",
            at=context.now,
            values={"job": context.job.id, "kind": context.job.kind.value, "error": outcome.error},
            message=f"job {context.job.id} ({context.job.kind}) failed: {reason}",
        )
    except Exception as error:  # noqa: BLE001 - the job still ends; the log carries the notice
        log.error(
            "Job %s failed (%s); its notification failed too: %s", context.job.id, reason, error
        )
    return Fail(reason, {"azure_error": outcome.error, "aborted": undone})


def _with_entry(steps: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The ledger's steps with `entry` added. A wait that repeats the last wait (same step, same
    reason) is folded into it as a count, with the steps run in between (the same again), so a
    long retry keeps the row small."""
    if entry["result"] == "wait":
        for back in range(len(steps) - 1, max(-1, len(steps) - 6), -1):
            last = steps[back]
            if last.get("result") != "wait":
                continue
            if (last.get("step"), last.get("reason")) == (entry["step"], entry.get("reason")):
                folded = last | {
                    "repeats": int(last.get("repeats", 1)) + 1,
                    "last_at": entry["at"],
                    "wait_seconds": entry.get("wait_seconds"),
                }
                folded.pop(ENQUEUED, None)
                return [*steps[:back], folded]
            break
    return [*steps, entry]


FLOWS: dict[JobKind, Flow] = {}


def register(kind: JobKind, flow: Flow) -> None:
    FLOWS[kind] = flow


@dataclass(frozen=True)
class Handled:
    """What became of one message (for logs and the HTTP answer)."""

    result: str  # rejected, duplicate, deferred, busy, held, ran
    job_id: str | None = None
    status: str | None = None
    reason: str | None = None


def _continuation_message(job: Job, token: str) -> str:
    return job.model_copy(update={"continuation": token}).to_message()


def enqueue(
    services: Services,
    kind: JobKind,
    pool: str,
    params: dict[str, Any],
    *,
    job_id: str,
    requested_by: str,
    now: datetime,
    parent: str | None = None,
) -> Job:
    """Put a job that Poolkeeper itself decided on its queue (timers, webhooks, reviews), or one
    that job `parent` needs done. In observe mode a decision goes out as a dry run under its id
    with OBSERVED appended (so the real one is free once acting); a child is its parent's."""
    if parent is None and services.mode is Mode.OBSERVE and "dry_run" in PARAMS[kind].model_fields:
        params = params | {"dry_run": True}
        job_id = observed_id(job_id)
    job = Job.model_validate(
        {
            "schema": SCHEMA,
            "id": job_id,
            "kind": kind,
            "pool": pool,
            "params": params,
            "requested_by": requested_by[:200],
            "created_at": now,
        }
        | ({"parent": parent} if parent else {})
    )
    services.queues.send(queue_name(kind, services.settings), job.to_message())
    return job


OBSERVED = "-observed"


def observed_id(job_id: str) -> str:
    """The id of the dry run observe mode sends in place of job `job_id`."""
    return job_id[: 128 - len(OBSERVED)] + OBSERVED


def enqueue_once(services: Services, kind: JobKind, pool: str, job_id: str, *, timer: str) -> bool:
    """A timer's job for one period: enqueued under `job_id` unless the ledger already has it
    (in observe mode: its dry run's id)."""
    if services.tables.job(observed_id(job_id) if services.mode is Mode.OBSERVE else job_id):
        return False
    now = services.clock.now()
    enqueue(services, kind, pool, {}, job_id=job_id, requested_by=f"timer:{timer}", now=now)
    return True


PENDING = frozenset({"queued", "deferred"})  # recorded on submission; no worker has started it


def _same_job(record: JobRecord, job: Job) -> bool:
    """Is `job` the job `record` was made for? Compared parsed, so whitespace, key order and the
    notation of a time do not count; the continuation (Poolkeeper's own) does not either."""
    try:
        recorded = Job.model_validate_json(record.envelope)
    except ValueError:  # an envelope from an older schema: not provably the same
        return False
    # Who sent it does not make it another job: a resend by a colleague is the same job.
    ours = {"continuation": None, "submitted_by": None}
    return recorded.model_copy(update=ours) == job.model_copy(update=ours)


def submit(
    services: Services, raw: str, *, queue: str | None = None, submitted_by: str | None = None
) -> Job:
    """Validate a job (as `POST /api/jobs` does), record it in the ledger (queued, or deferred
    until its not_before) and put it on its queue. Rejection if invalid or naming a target
    outside its pool (422, `outside_pool`), or 409 if its id is taken by another job; the same
    job again is accepted and changes nothing. `TargetsUnknown` when targets cannot be read."""
    pools = frozenset(p.name for p in services.config.pools)
    probe = queue
    if probe is None:
        # The request names its kind; validate against the queue that kind belongs on.
        try:
            kind = JobKind(json_input.loads(raw).get("kind"))
            probe = queue_name(kind, services.settings)
        except (ValueError, AttributeError, TypeError):
            probe = ""
    job = parse_job(raw, queue=probe, settings=services.settings, pools=pools)
    if job.continuation or job.parent or job.submitted_by:
        field = next(f for f in ("continuation", "parent", "submitted_by") if getattr(job, f))
        raise Rejection(f"{field} is set by Poolkeeper only; leave it out", job.id)
    if submitted_by:
        job = job.model_copy(update={"submitted_by": submitted_by[:400]})
    if services.mode is Mode.OBSERVE and not _dry(job):
        raise Rejection(observe_refusal(), job.id, status=409)
    outside = outside_pool(services, job)
    if outside:
        raise Rejection(outside, job.id, status=422)
    reserved = reserved_id(job.id, pools)
    if reserved:
        raise Rejection(reserved, job.id, status=409)
    now = services.clock.now()
    far = too_far_ahead(job.not_before, now)
    if far:
        raise Rejection(far, job.id, status=422)
    full = backlog_full(job.pool, services.tables.pending_jobs(job.pool))
    if full and services.tables.job(job.id) is None:  # a resend of a recorded job stays a 202
        raise Rejection(full, job.id, status=429)
    deferred = job.not_before is not None and now < job.not_before
    created = services.tables.create_job(
        job,
        first_step=FLOWS[job.kind].first_step,
        now=now,
        status="deferred" if deferred else "queued",
    )
    if created is None:  # the id is taken: by this same job (a resend) or by another one
        existing = services.tables.job(job.id)
        if existing is not None and not _same_job(existing, job):
            raise Rejection(
                f"job id {job.id!r} is already taken by another job ({existing.kind} on pool "
                f"{existing.pool}, {existing.status}, requested by {existing.requested_by}, "
                f"created {existing.created_at}): an id names one job, choose a new one",
                job.id,
                status=409,
            )
        if existing is not None:  # the same job again: it keeps its first submitter
            first = json.loads(existing.envelope).get("submitted_by")
            job = job.model_copy(update={"submitted_by": first})
            if existing.status not in PENDING:
                return job  # already started or finished: its messages are the runner's
    # Sent again for a resend of a pending job: the first send may be what failed. The runner
    # runs a job once whatever the number of its messages (the ledger decides).
    services.queues.send(queue_name(job.kind, services.settings), job.to_message())
    return job


def _unsubmitted(job: Job) -> Job:
    """A job the runner records itself: only POST /api/jobs records a submitter, in the ledger
    before its message is sent, so a message naming one for a job not yet recorded was written
    by hand (queue writers are trusted, not identified)."""
    return job.model_copy(update={"submitted_by": None}) if job.submitted_by else job


def handle(services: Services, queue: str, raw: str) -> Handled:
    """Run what one queue message asks for. Never raises for bad input: it is recorded."""
    now = services.clock.now()
    pools = frozenset(p.name for p in services.config.pools)
    try:
        job = parse_job(raw, queue=queue, settings=services.settings, pools=pools)
    except Rejection as rejection:
        services.tables.reject(
            queue=queue, raw=raw, reason=rejection.reason, job_id=rejection.job_id, now=now
        )
        log.warning("Rejected a message on %s: %s", queue, rejection.reason)
        return Handled("rejected", rejection.job_id, reason=rejection.reason)
    flow = FLOWS[job.kind]
    if job.not_before and now < job.not_before:
        if job.continuation is None:
            # A job another system put on the queue shows as deferred too (a no-op when the
            # ledger has it already, e.g. from POST /api/jobs or an earlier deferral).
            services.tables.create_job(
                _unsubmitted(job), first_step=flow.first_step, now=now, status="deferred"
            )
        services.queues.send(
            queue, raw, delay_seconds=visibility_timeout(services.clock, job.not_before - now)
        )
        return Handled("deferred", job.id)
    record = services.tables.job(job.id)
    if record is not None and record.status in PENDING and not _same_job(record, job):
        reason = (
            f"job id {job.id!r} is recorded for another job ({record.kind} on pool "
            f"{record.pool}, {record.status}); this message differs from it"
        )
        services.tables.reject(queue=queue, raw=raw, reason=reason, job_id=job.id, now=now)
        return Handled("rejected", job.id, reason=reason)
    if record is None and job.continuation:
        reason = "continuation of a job the ledger does not know"
        services.tables.reject(queue=queue, raw=raw, reason=reason, job_id=job.id, now=now)
        return Handled("rejected", job.id, reason=reason)
    if record is not None and not _current(record, job, services, queue):
        return Handled("duplicate", job.id, record.status)
    # Observe mode writes nothing anywhere (handbook invariant 17). A job that has not started
    # does not start unless it only reads; one under way (started in act mode), and a job it
    # started, is held: its message comes back every HOLD, unrun, until act mode resumes it.
    if services.mode is Mode.OBSERVE and not _dry(job):
        starting = record is None or record.status in PENDING
        if not starting or _parent_under_way(services, job):
            services.queues.send(queue, raw, delay_seconds=visibility_timeout(services.clock, HOLD))
            log.warning(
                "Job %s (%s, pool %s) held: observe mode; it goes on once %s=act",
                job.id,
                job.kind,
                job.pool,
                MODE_SETTING,
            )
            return Handled("held", job.id)
        reason = observe_refusal()
        services.tables.reject(queue=queue, raw=raw, reason=reason, job_id=job.id, now=now)
        if record is not None:  # recorded when it was submitted: it ends here, saying why
            with contextlib.suppress(LedgerConflict):
                services.tables.update_job(record, status="failed", error=reason)
        log.warning("Job %s (%s, pool %s) not run: observe mode", job.id, job.kind, job.pool)
        return Handled("rejected", job.id, reason=reason)

    lease = services.leases.acquire(job.pool) if flow.needs_lease else None
    if flow.needs_lease and lease is None:
        # Another writer has the pool: come back later with the same message. It does not fail.
        services.queues.send(
            queue, raw, delay_seconds=visibility_timeout(services.clock, LEASE_RETRY)
        )
        log.info("Job %s waits for the lease on pool %s", job.id, job.pool)
        return Handled("busy", job.id)
    try:
        return _run(services, queue, job, flow, lease)
    finally:
        if lease is not None:
            lease.release()


def _parent_under_way(services: Services, job: Job) -> bool:
    """Is this a job that a job under way (not a dry run) started and waits for?"""
    if job.parent is None:
        return False
    parent = services.tables.job(job.parent)
    if parent is None or parent.status in FINAL:
        return False
    return not _dry(Job.model_validate_json(parent.envelope))


def _dry(job: Job) -> bool:
    """Does the job only read (a dry run, or a kind that never writes)?"""
    return bool(getattr(job.typed_params(), "dry_run", job.kind is JobKind.DOWNSCALE_REVIEW))


def _current(record: JobRecord, job: Job, services: Services, queue: str) -> bool:
    """Does this message carry the job's live continuation? Resend a lost one if needed."""
    if record.status in FINAL:
        return False
    if job.continuation == record.continuation:
        return True
    if (
        record.status == "waiting"
        and record.sent_from == job.continuation
        and record.continuation
        and not (record.steps and record.steps[-1].get(ENQUEUED))
    ):
        # The wait was recorded but its worker died before it noted the continuation as
        # enqueued: it may never have gone out. Send it, due when the wait ends. (Only then: a
        # copy of a continuation that is on the queue would run early, and its own redelivery
        # would copy the next one, for the rest of the job.)
        services.queues.send(
            queue,
            _continuation_message(job, record.continuation),
            delay_seconds=_remaining_wait(record, services),
        )
    return False


def _remaining_wait(record: JobRecord, services: Services) -> int:
    """The visibility delay left of the wait the record's last step asked for."""
    waited = timedelta(seconds=(record.steps[-1].get("wait_seconds") if record.steps else 0) or 0)
    due = datetime.fromisoformat(record.updated_at) + waited
    return visibility_timeout(services.clock, max(timedelta(0), due - services.clock.now()))


def _note_enqueued(services: Services, record: JobRecord) -> None:
    """Mark the last step's continuation as on the queue, so a redelivery does not resend it."""
    steps = [*record.steps[:-1], record.steps[-1] | {ENQUEUED: True}]
    with contextlib.suppress(LedgerConflict):  # if it has run already, it was on the queue
        services.tables.update_job(record, steps=steps)


def _run(services: Services, queue: str, job: Job, flow: Flow, lease: PoolLease | None) -> Handled:
    now = services.clock.now()
    record = services.tables.job(job.id)
    if record is None:
        record = services.tables.create_job(_unsubmitted(job), first_step=flow.first_step, now=now)
        if record is None:
            return Handled("duplicate", job.id)
    elif not _current(record, job, services, queue):  # re-checked under the lease
        return Handled("duplicate", job.id, record.status)
    pool = services.config.pool(job.pool)
    started = time.monotonic()
    invocation = uuid.uuid4().hex
    try:
        while True:
            now = services.clock.now()
            context = StepContext(job, pool, services, lease, now, invocation=invocation)
            outcome = _guarded(flow, record.step, context, dict(record.state))
            entry: dict[str, Any] = {
                "step": record.step,
                "at": now.isoformat(),
                "result": type(outcome).__name__.lower(),
            }
            if context.notes:
                entry["notes"] = context.notes
            if isinstance(outcome, Wait):
                entry["wait_seconds"] = outcome.delay.total_seconds()
                if outcome.reason:
                    entry["reason"] = outcome.reason[:500]
            steps = _with_entry(record.steps, entry)
            updated = now.isoformat()
            if isinstance(outcome, Next) and time.monotonic() - started < STEP_BUDGET_SECONDS:
                record = services.tables.update_job(
                    record,
                    status="running",
                    step=outcome.step,
                    state=outcome.state,
                    steps=steps,
                    updated_at=updated,
                )
                continue
            if isinstance(outcome, Next | Wait):
                delay = outcome.delay if isinstance(outcome, Wait) else timedelta(0)
                token = uuid.uuid4().hex
                record = services.tables.update_job(
                    record,
                    status="waiting",
                    step=outcome.step,
                    state=outcome.state,
                    steps=steps,
                    continuation=token,
                    sent_from=job.continuation,
                    updated_at=updated,
                )
                services.queues.send(
                    queue,
                    _continuation_message(job, token),
                    delay_seconds=visibility_timeout(services.clock, delay),
                )
                _note_enqueued(services, record)
                return Handled("ran", job.id, "waiting")
            if isinstance(outcome, Done):
                services.tables.update_job(
                    record,
                    status="done",
                    outcome=outcome.outcome,
                    steps=steps,
                    updated_at=updated,
                    continuation=None,
                )
                log.info(
                    "Job %s (%s, pool %s) done: %s", job.id, job.kind, job.pool, outcome.outcome
                )
                return Handled("ran", job.id, "done")
            assert isinstance(outcome, Fail)
            services.tables.update_job(
                record,
                status="failed",
                error=outcome.reason,
                outcome=outcome.outcome,
                steps=steps,
                updated_at=updated,
                continuation=None,
            )
            log.error("Job %s (%s, pool %s) failed: %s", job.id, job.kind, job.pool, outcome.reason)
            return Handled("ran", job.id, "failed", outcome.reason)
    except StateTooLarge as error:
        # The job's state outgrew its ledger row: it cannot go on. Undo what it holds and end
        # it, instead of a message retried into the poison queue and a job "running" for ever.
        undone = _undo(flow, StepContext(job, pool, services, lease, now), dict(record.state))
        log.error("Job %s (%s, pool %s) failed: %s", job.id, job.kind, job.pool, error)
        with contextlib.suppress(LedgerConflict):
            services.tables.update_job(
                record,
                status="failed",
                state={},
                error=str(error),
                outcome={"aborted": undone},
                updated_at=services.clock.now().isoformat(),
                continuation=None,
            )
        return Handled("ran", job.id, "failed", str(error))
    except LeaseLost as error:
        # The lease expired under a step, which stopped before its write. Nothing newer than this
        # message's continuation was recorded, so the job resumes from it once the pool is free.
        log.warning("Job %s stopped, to resume later: %s", job.id, error)
        services.queues.send(
            queue, job.to_message(), delay_seconds=visibility_timeout(services.clock, LEASE_RETRY)
        )
        return Handled("busy", job.id, reason=str(error))
    except LedgerConflict as error:
        # Someone else advanced this job; our message is a duplicate from here on.
        log.warning("Job %s stopped: %s", job.id, error)
        return Handled("duplicate", job.id, reason=str(error))
