"""Reconcile: re-read a pool in full, record its truth and drift (a `reconcile` job), and the
timer's survey that decides which pools need that full read. Nothing here writes to Azure.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.checks import Checks
from shared.adapters.kube import NODE_GROUP_LABEL
from shared.adapters.scaleset import (
    LIST_REFUSED_EARLIER,
    AzureCallError,
    PermanentAzureError,
    TemporaryAzureError,
    ThrottledError,
)
from shared.config import Pool
from shared.decide.claims import delete_may_land, parse_claim, stale_claim
from shared.decide.counting import InstanceState
from shared.flows.claims import Owner, release
from shared.flows.jobs import Flow, StepContext, enqueue, register
from shared.flows.repair import follow_up as repair
from shared.flows.retries import temporary_wait
from shared.flows.truth import Truth, read_truth
from shared.jobs import Done, JobKind, Outcome, ReconcileParams

log = logging.getLogger("poolkeeper.reconcile")


def _reconcile(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("reconcile", state, error, ctx)
    outcome = {
        "counts": truth.record["counts"],
        "capacity": truth.record["capacity"],
        "drift": [d["detail"] for d in truth.record["drift"]],
    }
    params = ctx.job.typed_params()
    dry_run = isinstance(params, ReconcileParams) and params.dry_run
    claims = _release_left_over_claims(ctx, truth, dry_run=dry_run)
    return Done(outcome | ({"claims": claims} if claims else {}) | _repair(ctx, truth, dry_run))


def _repair(ctx: StepContext, truth: Truth, dry_run: bool) -> dict[str, Any]:
    """The repair this drift gets (shared.flows.repair); a failure to plan one is reported and
    leaves the reconcile done: its read and record stand."""
    try:
        return repair.follow_up(ctx, truth, dry_run=dry_run)
    except Exception as error:  # noqa: BLE001 - reported in the outcome; the next reconcile retries
        log.warning("Pool %s: no repair planned: %s", ctx.pool.name, error)
        return {"repair": f"not planned: {type(error).__name__}: {error}"[:300]}


def _release_left_over_claims(ctx: StepContext, truth: Truth, *, dry_run: bool) -> dict[str, str]:
    """Give back the pool's nodes whose claim outlived its job (it ended, or the ledger never
    knew it), as the claim found them — but never one whose instance is still being deleted
    (that delete may yet land) or that has no instance (it is going away)."""
    states = {
        seen["node"]: seen["state"]
        for seen in truth.record["instances"].values()
        if seen["node"] is not None
    }
    done: dict[str, str] = {}
    for node in truth.nodes or []:
        found = parse_claim(node.claim)
        if found is None or node.name not in states:
            continue  # not claimed, or not this pool's (invariant 8)
        record = ctx.services.tables.job(found.job) if found.job != "?" else None
        why = stale_claim(
            found,
            record.status if record else None,
            ctx.now,
            job_updated_at=record.updated_at if record else None,
        )
        if why is None:
            continue
        if states[node.name] == InstanceState.DELETING.value:
            done[node.name] = f"{why}; kept: its instance is being deleted"
            continue
        if record is not None and delete_may_land(record.state, ctx.now):
            done[node.name] = f"{why}; kept: its delete got no answer and may still land"
            continue
        if dry_run:
            done[node.name] = f"{why}; would be released (dry run)"
            continue
        ctx.before_write()
        released = release(ctx.kube, node.name, Owner(found.job, found.kind))
        log.warning("Pool %s: stale claim on %s (%s): %s", ctx.pool.name, node.name, why, released)
        done[node.name] = f"{why}; {released}"
    return done


register(JobKind.RECONCILE, Flow(first_step="reconcile", steps={"reconcile": _reconcile}))


FULL_READ_SETTING = "POOLKEEPER_FULL_READ_MINUTES"


# The survey waits this long for the clusters' node lists: a hung cluster's pools are then
# surveyed by counts alone. Each cluster's pools are surveyed as soon as its own list is in, so a
# slow cluster holds up no other.
NODE_LIST_WAIT_SECONDS = 20.0


def _node_list(services: Any, cluster: str) -> list[Any]:
    return list(services.connections.kube(cluster).nodes())


def _not_ready_in(nodes: list[Any]) -> set[str]:
    """The scale sets (lower-cased ids) and node groups with a NotReady node."""
    found: set[str] = set()
    for node in nodes:
        if not node.ready:
            found.add(node.labels.get(NODE_GROUP_LABEL, ""))
            found.add((node.scale_set_instance or ("",))[0])
    return found - {""}


def _node_lists(services: Any, clusters: list[str]) -> Iterator[tuple[str, set[str], str | None]]:
    """Each cluster's NotReady scale sets and node groups, and what went wrong reading its nodes
    (None when it answered), in the order the clusters answer; those with no answer in time
    come last, with nothing NotReady (a full read could not do better). Only waiting counts
    against the wait: a list that came in while the caller worked on another cluster's pools
    is taken as it is."""
    readers = ThreadPoolExecutor(max_workers=len(clusters) or 1)  # none waits in line
    lists = {readers.submit(_node_list, services, name): name for name in clusters}
    pending = set(lists)
    waited = 0.0
    try:
        while pending:
            ready = {f for f in pending if f.done()}
            if not ready:
                if waited >= NODE_LIST_WAIT_SECONDS:
                    break
                began = time.monotonic()
                done, _ = wait(
                    pending, timeout=NODE_LIST_WAIT_SECONDS - waited, return_when=FIRST_COMPLETED
                )
                waited += time.monotonic() - began
                ready = set(done)
                if not ready:
                    break
            for future in ready:
                pending.discard(future)
                yield _answer(lists[future], future)
    finally:
        readers.shutdown(wait=False)
    for future in pending:
        name = lists[future]
        log.warning("Survey: cluster %s did not list its nodes in time", name)
        yield name, set(), f"no answer within {NODE_LIST_WAIT_SECONDS:.0f} s"


def _answer(name: str, future: Any) -> tuple[str, set[str], str | None]:
    if (error := future.exception()) is not None:
        log.warning("Survey: cluster %s's nodes could not be read (%s)", name, error)
        status = getattr(error, "status", None)
        if isinstance(status, int) and 400 <= status < 500:
            return name, set(), None  # it answered, refusing: preflight names why
        return name, set(), f"{type(error).__name__}: {error}"
    return name, _not_ready_in(future.result()), None


def _record_answers(services: Any, answers: dict[str, str | None]) -> None:
    """Keep each cluster's answering state where the status page reads it, where it changed:
    a breaker opened in one worker is seen closed by the next survey that reads the cluster."""
    try:
        recorded = Checks(services.tables).cluster_states()
        for cluster, error in answers.items():
            if (recorded.get(cluster) or {}).get("answering", True) == (error is None):
                continue
            services.record_cluster(cluster, error)
    except Exception as error:  # noqa: BLE001 - the page's record; the survey goes on
        log.warning("Survey: clusters' answering state not recorded: %s", error)


def survey(services: Any) -> list[str]:
    """The reconcile timer: one scale-set list per resource group and one node list per cluster,
    then a full reconcile job only for pools that changed (ETag or capacity), show drift or a
    NotReady node, were never read, or were last read in full longer ago than
    POOLKEEPER_FULL_READ_MINUTES (default 60). A list that fails is replaced by one GET per
    pool's scale set; when in doubt — that fails too — the pool gets a full read."""
    now = services.clock.now()
    every = timedelta(minutes=int(services.settings.get(FULL_READ_SETTING) or 60))
    by_cluster: dict[str, list[Pool]] = {}
    for pool in services.config.pools:
        by_cluster.setdefault(pool.cluster, []).append(pool)
    listings: dict[tuple[str, str], dict[str, tuple[str, int]] | None] = {}
    answers: dict[str, str | None] = {}
    enqueued: list[str] = []
    for cluster, not_ready, error in _node_lists(services, sorted(by_cluster)):
        answers[cluster] = error
        for pool in by_cluster[cluster]:
            recorded = services.tables.pool_status(pool.name)
            seen = _seen(services, listings, pool, recorded)
            fresh = (
                recorded
                and seen is not None
                and (recorded.get("etag"), recorded.get("capacity")) == seen
                and not recorded.get("drift")
                and not recorded.get("claims")  # a claim may be left over: look again soon
                # A NotReady node is no drift of counts, but may need a repair (reconcile's).
                and not ({pool.vmss_id.lower(), pool.node_group} & not_ready)
                and now - datetime.fromisoformat(recorded["read_at"]) < every
            )
            if fresh:
                continue
            job = enqueue(
                services,
                JobKind.RECONCILE,
                pool.name,
                {},
                now=now,
                job_id=f"reconcile-{pool.name}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
                requested_by="timer:reconcile_timer",
            )
            enqueued.append(job.id)
    _record_answers(services, answers)
    return enqueued


def _seen(
    services: Any,
    listings: dict[tuple[str, str], dict[str, tuple[str, int]] | None],
    pool: Pool,
    recorded: dict[str, Any] | None,
) -> tuple[str, int] | None:
    """The pool's scale set's (ETag, capacity), from its resource group's list, listed once per
    survey. When the list is refused (roles assigned at each scale set do not allow listing the
    group's) or fails, the pool's own scale set is looked at with one GET instead; None when
    that fails as well, so the pool gets a full read, unless Azure is throttling: then what was
    `recorded` stands (a full read would only add calls)."""
    group = (pool.subscription_id.lower(), pool.resource_group.lower())
    if group not in listings:
        listings[group] = None
        try:
            listings[group] = services.scale_sets.survey(*group)
        except PermanentAzureError as error:
            # Refused (once an hour: the adapter remembers), not broken: a GET each will do.
            level = logging.DEBUG if error.code == LIST_REFUSED_EARLIER else logging.INFO
            log.log(
                level,
                "Survey: may not list the scale sets of %s/%s (%s); one GET per pool instead",
                *group,
                error.code or error.status,
            )
        except AzureCallError as error:
            log.warning("Survey: listing %s/%s failed (%s); one GET per pool", *group, error)
    listed = listings[group]
    if listed is not None:
        return listed.get(pool.vmss_id.lower())
    try:
        return services.scale_sets.peek(pool.vmss_id)
    except ThrottledError as error:
        log.warning(
            "Survey: %s throttled (%s); pool %s as recorded", pool.vmss_id, error, pool.name
        )
        return (recorded or {}).get("etag"), (recorded or {}).get("capacity")
    except AzureCallError as error:
        log.warning(
            "Survey: %s not readable (%s); reading pool %s in full", pool.vmss_id, error, pool.name
        )
        return None
