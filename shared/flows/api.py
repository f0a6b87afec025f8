"""What the function bindings call: run a queue message, enqueue reconciles, and the operator
endpoints (`POST /api/jobs`, `GET /api/jobs/{id}`, `GET /api/pools[/{name}]`).

Imported lazily by `function_app.py`, so the health endpoint's cold start stays small.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from shared.adapters.ledger import Tables
from shared.adapters.queues import Queues
from shared.adapters.repair_log import RepairLog
from shared.adapters.storage import INTAKE_OPTIONS, StorageUnavailable, unavailable_as_error
from shared.config import Pool, PoolNotFound
from shared.decide.imaging import version_key
from shared.decide.job_query import encode_continuation, parse_job_query

# Imported for their side effect: each registers its job kind's flow.
from shared.flows import reconcile
from shared.flows.capacity import downscale
from shared.flows.image import pipeline as image
from shared.flows.jobs import Handled, Services, handle, submit
from shared.flows.patch import rollout as patch
from shared.flows.repair import job as repair  # noqa: F401
from shared.flows.scale import drain_job  # noqa: F401
from shared.flows.scale import job as scale  # noqa: F401
from shared.flows.targets import TargetsUnknown
from shared.flows.truth import public_status, stalled_claims
from shared.jobs import Rejection, queue_name

log = logging.getLogger("poolkeeper.api")
IMAGES_SHOWN = 10  # the pool's newest image versions in its status
REPAIRS_SHOWN = 20  # the pool's latest repairs in its status (each with its rung)


@functools.cache
def services() -> Services:
    """One set of clients per worker process (the SDK clients and the throttle gate live here)."""
    return Services.from_settings(dict(os.environ))


class IntakeServices(Services):
    """The services for HTTP requests: storage clients that give up within seconds, so a storage
    outage is a quick 503 that the caller retries, not a request held for a minute."""

    @cached_property
    def tables(self) -> Tables:
        return Tables(self.account, **INTAKE_OPTIONS)

    @cached_property
    def queues(self) -> Queues:
        return Queues(self.account, **INTAKE_OPTIONS)

    # What a job names is checked against its pool with fresh reads (shared.flows.targets),
    # bounded the same way.
    @cached_property
    def scale_sets(self) -> Any:
        from shared.adapters.scaleset import ScaleSets

        return ScaleSets.from_settings(self.settings, clock=self.clock, **INTAKE_OPTIONS)

    @cached_property
    def connections(self) -> Any:
        from shared.adapters.connections import Connections

        return Connections(
            self.config,
            self.settings,
            lambda: self.secrets,
            one_attempt=True,
            read_timeout=INTAKE_OPTIONS["read_timeout"],
            breaker_changed=self.breaker_changed,
        )


@functools.cache
def intake() -> IntakeServices:
    return IntakeServices.from_settings(dict(os.environ))


def _unavailable(error: StorageUnavailable) -> tuple[int, dict[str, Any]]:
    log.warning("Storage did not answer an HTTP request: %s", error)
    return 503, {"error": f"storage is unavailable, try again shortly: {error}"}


def run_message(queue_setting: str, body: bytes) -> Handled:
    """Run one message from the queue `queue_setting` names; bad input is recorded, not raised."""
    svc = services()
    queue = svc.settings.get(queue_setting) or queue_setting
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError as error:
        reason = f"not UTF-8 text: {error}"
        svc.tables.reject(
            queue=queue,
            raw=body.decode("utf-8", "replace"),
            reason=reason,
            job_id=None,
            now=svc.clock.now(),
        )
        return Handled("rejected", reason=reason)
    handled = handle(svc, queue, raw)
    log.info(
        "Message on %s: %s (job %s, %s)",
        queue,
        handled.result,
        handled.job_id,
        handled.status or handled.reason or "",
    )
    return handled


def enqueue_reconciles() -> list[str]:
    """The reconcile timer: a full reconcile job for each pool that needs one (see survey)."""
    return reconcile.survey(services())


def enqueue_patches() -> list[str]:
    """The patch timer: a patch job for each pool whose window is open (see enqueue_patches)."""
    return patch.enqueue_patches(services())


def enqueue_images() -> list[str]:
    """The image timer: an image job for each pool with image.automatic (see enqueue_images)."""
    return image.enqueue_images(services())


def submit_job(
    body: bytes, content_type: str | None, submitted_by: str
) -> tuple[int, dict[str, Any]]:
    """202 with the job id and its queue; 400/409/415/422/429 with what is wrong; 503 naming what
    did not answer (storage, or Azure or the cluster for a repair's targets). `submitted_by`: the
    signed-in caller, recorded on the job."""
    refused = _not_json(content_type)
    if refused:
        return refused
    svc = intake()
    try:
        with unavailable_as_error():
            job = submit(svc, body.decode("utf-8"), submitted_by=submitted_by)
    except StorageUnavailable as error:
        return _unavailable(error)
    except TargetsUnknown as error:
        log.warning("Could not check what a submitted job names: %s", error)
        return 503, {"error": f"could not check that the job's targets are in its pool: {error}"}
    except UnicodeDecodeError as error:
        return 400, {"error": f"body is not UTF-8 text: {error}"}
    except Rejection as rejection:
        return rejection.status, {"error": rejection.reason, "job_id": rejection.job_id}
    return 202, {
        "id": job.id,
        "kind": job.kind.value,
        "pool": job.pool,
        "queue": queue_name(job.kind, svc.settings),
        "status_url": f"/api/jobs/{job.id}",
        "submitted_by": job.submitted_by,
    }


def job(job_id: str) -> tuple[int, dict[str, Any]]:
    try:
        with unavailable_as_error():
            record = intake().tables.job(job_id)
    except StorageUnavailable as error:
        return _unavailable(error)
    if record is None:
        return 404, {"error": f"no job {job_id!r} in the ledger"}
    return 200, record.public()


def jobs(params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """`GET /api/jobs`: a page of jobs (filters pool, kind, status, since; limit; continuation),
    newest id order aside, and `next` for the following page; 400 naming a wrong filter."""
    query = parse_job_query(params)
    if isinstance(query, str):
        return 400, {"error": query}
    try:
        with unavailable_as_error():
            found, token = intake().tables.list_jobs(
                pool=query.pool,
                kind=query.kind,
                status=query.status,
                since=query.since,
                limit=query.limit,
                continuation=query.continuation,
            )
    except StorageUnavailable as error:
        return _unavailable(error)
    except ValueError as error:  # a token the Tables service refuses
        return 400, {"error": f"continuation: {error}"}
    return 200, {"jobs": found, "next": encode_continuation(token)}


def pools(name: str | None) -> tuple[int, Any]:
    """Each pool's (or one pool's) status; 404 for a pool not configured, 503 naming storage."""
    svc = intake()
    names = [p.name for p in svc.config.pools]
    if name is not None:
        try:
            svc.config.pool(name)
        except PoolNotFound:
            return 404, {"error": f"no pool {name!r}; configured: {', '.join(names)}"}
        names = [name]
    try:
        with unavailable_as_error():
            found = [_pool_status(svc, pool) for pool in names]
    except StorageUnavailable as error:
        return _unavailable(error)
    return 200, (found[0] if name is not None else {"pools": found})


def preflight_report() -> tuple[int, Any]:
    """GET /api/preflight: 200 with every check (`ok` false names what fails)."""
    from shared.flows.preflight import preflight

    return 200, preflight(intake())


def _pool_status(svc: Services, pool: str) -> dict[str, Any]:
    record = svc.tables.pool_status(pool)
    return (
        _configured(svc.config.pool(pool))
        | (public_status(record) if record else _not_reconciled(svc.settings))
        | {"patch_checks": svc.tables.patch_status(pool)}
        | {"stalled_claims": stalled_claims(svc, record, svc.clock.now()) if record else []}
        | {"repairs": RepairLog(svc.tables).entries(pool)[-REPAIRS_SHOWN:]}
        | {"images": _lineage(svc.tables.image_lineage(pool))}
    )


def _lineage(versions: Mapping[str, Any]) -> list[Any]:
    """The pool's image versions, newest first (what image jobs made of each)."""
    return [versions[v] for v in sorted(versions, key=version_key, reverse=True)][:IMAGES_SHOWN]


def _configured(pool: Pool) -> dict[str, Any]:
    """The pool's allow-list entry, shown whether or not it was reconciled yet."""
    return {
        "pool": pool.name,
        "cluster": pool.cluster,
        "vmss_id": pool.vmss_id,
        "node_group": pool.node_group,
        "min_nodes": pool.min_nodes,
        "max_nodes": pool.max_nodes,
    }


def _not_reconciled(settings: Mapping[str, str]) -> dict[str, Any]:
    schedule = settings.get("RECONCILE_SCHEDULE") or "its schedule"
    return {
        "read_at": None,
        "note": f"not reconciled yet: the reconcile timer runs on {schedule} (RECONCILE_SCHEDULE), "
        "or submit a reconcile job",
    }


def _not_json(content_type: str | None) -> tuple[int, dict[str, Any]] | None:
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        return None
    # A form or text/plain body is what a cross-site page can send without asking.
    return 415, {"error": f"Content-Type must be application/json, not {media or 'none'!r}"}


def alerts(
    body: bytes, signature: str | None, content_type: str | None
) -> tuple[int, dict[str, Any]]:
    """`POST /api/alerts`: 202 with the job ids; 400/401/403/413/415/422 with what is wrong."""
    from shared.flows.capacity.alerts import receive

    refused = _not_json(content_type)
    if refused:
        return refused

    try:
        with unavailable_as_error():
            return receive(intake(), body, signature)
    except StorageUnavailable as error:
        return _unavailable(error)


def deliver_notification(body: bytes) -> None:
    """The webhook queue's trigger: POST one notification to `POOLKEEPER_NOTIFY_WEBHOOK`. A
    failure is logged (the webhook's host only) and raised, so the host retries the message and
    keeps it in the poison queue once its attempts are spent."""
    from shared.adapters.notify import WEBHOOK_SETTING, WebhookFailed, deliver

    webhook = os.environ.get(WEBHOOK_SETTING)
    if not webhook:
        log.warning("A notification for the webhook arrived, but %s is not set", WEBHOOK_SETTING)
        return
    try:
        deliver(body.decode("utf-8", "replace"), webhook)
    except WebhookFailed as error:
        log.warning("%s; the host retries it", error)
        raise


def prune_records() -> dict[str, int]:
    """The pruning timer: delete deliveries, episodes, alerts, finished jobs and rejected
    messages past their windows (shared/decide/retention.py)."""
    from shared.adapters.retention import prune
    from shared.decide.retention import WINDOWS

    svc = services()
    gone = prune(svc.tables, svc.clock.now(), WINDOWS)
    log.info("Pruned records past their windows: %s", gone)
    return gone


def evaluate_capacity() -> list[dict[str, Any]]:
    """The capacity timer: evaluate every pool, record and notify alerts, enqueue scale-ups."""
    from shared.flows.capacity.evaluation import evaluate_capacity as run

    return run(services())


def review_downscale() -> list[dict[str, Any]]:
    """The weekly downscale review of every pool."""
    return downscale.review_all(services())
