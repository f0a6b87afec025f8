"""The status page's view of a pool: recorded truth, alerts, jobs and history turned into rows,
tiles and charts with times in UTC and their age. Pure: `pool_view(data, now)`.

shared/flows/dashboard.py reads the records and calls this; the templates only lay it out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.dashboard.charts import Chart
from shared.dashboard.formats import age, percent, when
from shared.dashboard.history_charts import counts_chart, usage_charts
from shared.decide.capacity import Thresholds

STATES = ("live", "creating", "deleting", "failed")  # the tiles; the other states are listed
NOT_RECONCILED = "not reconciled yet — the reconcile timer runs every 5 minutes"


@dataclass(frozen=True)
class PoolData:
    """What the flow reads for one pool; plain data from the records (see flows/dashboard.py)."""

    name: str
    vmss_id: str
    node_group: str
    min_nodes: int
    max_nodes: int
    thresholds: Thresholds  # the pool's P1/P2 levels, drawn as rules on the usage charts
    record: dict[str, Any] | None  # the truth record, None before the first reconcile
    patch_checks: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    days: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> image job's record
    repairs: list[dict[str, Any]] = field(default_factory=list)  # the repair log, oldest first
    cluster: str = "default"


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    note: str
    css: str = ""


@dataclass(frozen=True)
class AlertRow:
    name: str
    state: str
    since: str
    detail: str


@dataclass(frozen=True)
class NodeRow:
    instance: str
    node: str
    state: str
    zone: str
    ready: str
    p1: str
    kernel: str
    last_patched: str
    patch: str
    model: str
    claim: str


@dataclass(frozen=True)
class StepRow:
    step: str
    result: str
    at: str
    note: str


@dataclass(frozen=True)
class JobRow:
    id: str
    kind: str
    status: str
    step: str
    created: str
    updated: str
    requested_by: str
    outcome: str
    error: str
    steps: tuple[StepRow, ...]


@dataclass(frozen=True)
class RepairRow:
    at: str
    node: str
    problem: str
    rung: str
    status: str
    result: str
    job: str


@dataclass(frozen=True)
class ImageRow:
    version: str
    created: str
    source: str
    kernel: str
    status: str
    canary: str
    job: str


@dataclass(frozen=True)
class PoolView:
    name: str
    cluster: str
    vmss_id: str
    node_group: str
    limits: str
    reconciled: bool
    read_at: str
    by_job: str
    tiles: tuple[Tile, ...]
    counts: dict[str, int]  # every state, capacity and ready: what the browser test compares
    other_states: str
    drift: tuple[str, ...]
    cluster_error: str
    alerts: tuple[AlertRow, ...]
    nodes: tuple[NodeRow, ...]
    jobs: tuple[JobRow, ...]
    model_image: str
    images: tuple[ImageRow, ...]
    repairs: tuple[RepairRow, ...]
    charts: tuple[Chart, ...]
    empty: str  # what to do when the pool has no record yet ("" once it has one)


def _text(value: Any, default: str = "—") -> str:
    return default if value is None or value == "" else str(value)


def _ready_count(instances: dict[str, Any]) -> int:
    return sum(1 for seen in instances.values() if seen.get("ready"))


def _tiles(record: dict[str, Any], min_nodes: int, max_nodes: int) -> tuple[Tile, ...]:
    counts, capacity = record.get("counts") or {}, record.get("capacity")
    ready = _ready_count(record.get("instances") or {})
    live = counts.get("live", 0)
    tiles = [
        Tile("capacity", _text(capacity), f"limits {min_nodes} to {max_nodes}"),
        *(
            Tile(state, str(counts.get(state, 0)), "instances", f"state-{state}")
            for state in STATES
        ),
        Tile("ready nodes", str(ready), f"of {live} live", "" if ready >= live else "state-failed"),
    ]
    return tuple(tiles)


def _alert_rows(
    alerts: list[dict[str, Any]], node_group: str, now: datetime
) -> tuple[AlertRow, ...]:
    wanted = {
        f"P1/group/{node_group}": "P1 group (1 h)",
        f"P2/group/{node_group}": "P2 group (24 h)",
    }
    by_key = {a["alert"]: a for a in alerts}
    rows = []
    for key, name in wanted.items():
        found = by_key.get(key)
        if found is None:
            rows.append(AlertRow(name, "not evaluated", "—", "the capacity timer evaluates it"))
            continue
        values = found.get("values") or {}
        rows.append(
            AlertRow(
                name,
                found["state"],
                when(found.get("since"), now),
                f"CPU {percent(values.get('cpu'))}, memory {percent(values.get('memory'))}"
                f" — {_text(values.get('reason'), '')}",
            )
        )
    review = by_key.get("downscale-review")
    if review is not None:
        rows.append(
            AlertRow(
                "downscale review",
                review["state"],
                when(review.get("since"), now),
                _text((review.get("values") or {}).get("reason"), ""),
            )
        )
    return tuple(rows)


def _node_rows(data: PoolData, now: datetime) -> tuple[NodeRow, ...]:
    record = data.record or {}
    claims = record.get("claims") or {}
    p1 = {
        a["alert"].removeprefix("P1/node/"): a
        for a in data.alerts
        if a["alert"].startswith("P1/node/")
    }
    rows = []
    for instance, seen in sorted((record.get("instances") or {}).items(), key=_instance_order):
        node = seen.get("node") or ""
        check = data.patch_checks.get(node) or {}
        alert = p1.get(instance)
        claim = claims.get(node) or {}
        pending = check.get("pending")
        rows.append(
            NodeRow(
                instance=instance,
                node=node or "no node",
                state=seen.get("state", "?"),
                zone=_text(seen.get("zone")),
                ready=(
                    "—"
                    if seen.get("ready") is None
                    else ("Ready" if seen["ready"] else "NotReady")
                    + (", cordoned" if seen.get("cordoned") else "")
                ),
                p1=alert["state"] if alert else "not evaluated",
                kernel=_text(seen.get("kernel") or check.get("kernel")),
                last_patched=when(seen.get("last_patched"), now, never="never"),
                patch=(
                    "not checked"
                    if not check
                    else f"{pending} pending"
                    + (", reboot required" if check.get("reboot_required") else "")
                    + f" (checked {age(check.get('checked_at'), now)})"
                ),
                model=(
                    "latest"
                    if seen.get("latest_model")
                    else ("behind" if seen.get("latest_model") is False else "—")
                ),
                claim=(
                    f"{claim.get('kind')} job {claim.get('job')} since "
                    f"{age(claim.get('since'), now)}"
                    if claim
                    else ""
                ),
            )
        )
    return tuple(rows)


def _instance_order(item: tuple[str, Any]) -> tuple[int, str]:
    key = item[0]
    return (int(key), key) if key.isdigit() else (1 << 30, key)


def _outcome(outcome: Any) -> str:
    if outcome is None:
        return ""
    if isinstance(outcome, dict):
        return ", ".join(f"{k}: {_short(v)}" for k, v in outcome.items())
    return _short(outcome)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else _compact(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


def _job_rows(jobs: list[dict[str, Any]], now: datetime) -> tuple[JobRow, ...]:
    return tuple(
        JobRow(
            id=job["id"],
            kind=_text(job.get("kind")),
            status=_text(job.get("status")),
            step=_text(job.get("step")),
            created=when(job.get("created_at"), now),
            updated=age(job.get("updated_at"), now),
            requested_by=_text(job.get("requested_by")),
            outcome=_outcome(job.get("outcome")),
            error=_text(job.get("error"), ""),
            steps=tuple(
                StepRow(
                    step=_text(step.get("step")),
                    result=_text(step.get("result"))
                    + (f" x{step['repeats']}" if step.get("repeats") else ""),
                    at=when(step.get("at"), now),
                    note=_short(step.get("reason") or step.get("notes") or ""),
                )
                for step in job.get("steps") or []
            ),
        )
        for job in jobs
    )


def _image_rows(lineage: dict[str, dict[str, Any]], now: datetime) -> tuple[ImageRow, ...]:
    """The pool's image lineage (the ledger's `image_lineage`: version -> what the image job
    recorded), newest version first; missing fields show as "—" (docs/dashboard.md)."""
    rows = []
    for version, image in sorted(lineage.items(), reverse=True):
        canary = image.get("canary")
        status = _text(image.get("status"))
        if image.get("reason"):
            status += f": {_short(image['reason'])}"
        rows.append(
            ImageRow(
                version=version,
                created=when(image.get("created_at"), now),
                source=_text(image.get("source_node")),
                kernel=_text(image.get("kernel")),
                status=status,
                canary=_outcome(canary) if isinstance(canary, dict) else _text(canary),
                job=_text(image.get("job"), ""),
            )
        )
    return tuple(rows)


def _repair_rows(repairs: list[dict[str, Any]], now: datetime) -> tuple[RepairRow, ...]:
    """The pool's repairs (the log shared/flows/repair/ writes), newest first."""
    return tuple(
        RepairRow(
            at=when(entry.get("at"), now),
            node=f"{_text(entry.get('node'))} (instance {_text(entry.get('instance'))})",
            problem=_short(entry.get("detail") or entry.get("problem") or "—"),
            rung=_text(entry.get("rung")),
            status=_text(entry.get("status")),
            result=_short(entry.get("result") or ""),
            job=_text(entry.get("job"), ""),
        )
        for entry in reversed(repairs)
    )


def _model_image(record: dict[str, Any]) -> str:
    image = record.get("model_image") or {}
    if not image:
        return "unknown (not reconciled yet)" if not record else "not reported by the scale set"
    return image.get("id") or ", ".join(f"{k} {v}" for k, v in sorted(image.items()))


def pool_view(data: PoolData, now: datetime) -> PoolView:
    """Everything the pool's section of the page shows. Pure."""
    record = data.record or {}
    counts = dict(record.get("counts") or {})
    shown = {state: int(counts.get(state, 0)) for state in STATES}
    others = {k: v for k, v in counts.items() if k not in STATES and k not in ("total", "active")}
    return PoolView(
        name=data.name,
        cluster=data.cluster,
        vmss_id=data.vmss_id,
        node_group=data.node_group,
        limits=f"{data.min_nodes} to {data.max_nodes} nodes",
        reconciled=bool(record),
        read_at=when(record.get("read_at"), now, never="never"),
        by_job=_text(record.get("by_job"), ""),
        tiles=_tiles(record, data.min_nodes, data.max_nodes) if record else (),
        counts=shown
        | {
            "capacity": record.get("capacity"),
            "ready": _ready_count(record.get("instances") or {}),
        },
        other_states=", ".join(f"{k} {v}" for k, v in others.items() if v),
        drift=tuple(d.get("detail", "") for d in record.get("drift") or []),
        cluster_error=_text(record.get("cluster_error"), ""),
        alerts=_alert_rows(data.alerts, data.node_group, now),
        nodes=_node_rows(data, now),
        jobs=_job_rows(data.jobs, now),
        model_image=_model_image(record),
        images=_image_rows(data.images, now),
        repairs=_repair_rows(data.repairs, now),
        charts=(
            counts_chart(data.history, data.min_nodes, data.max_nodes, now),
            *usage_charts(data.days, data.thresholds, now),
        ),
        empty="" if record else NOT_RECONCILED,
    )


def cluster_notices(
    records: dict[str, dict[str, Any]], now: datetime, clusters: Iterable[str]
) -> dict[str, str]:
    """A line for each configured cluster that is not answering (its record, see
    shared.adapters.connections); none for one that answers or is no longer configured."""
    notices: dict[str, str] = {}
    configured = set(clusters)
    for cluster, record in sorted(records.items()):
        if cluster not in configured or record.get("answering", True):
            continue
        held = " — calls to it are held back (breaker open)" if record.get("open") else ""
        notices[cluster] = (
            f"cluster {cluster} is not answering since {when(record.get('at'), now)}{held}; "
            f"its pools' jobs wait and retry. Last error: {_short(record.get('last_error'), 300)}"
        )
    return notices


@dataclass(frozen=True)
class PreflightRow:
    kind: str  # cluster, resource group, pool
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class PreflightView:
    ok: bool
    at: str
    rows: tuple[PreflightRow, ...]  # failures first


def preflight_view(report: dict[str, Any] | None, now: datetime) -> PreflightView | None:
    """The last preflight (GET /api/preflight) as a table: every check, failures first, each
    with what is wrong or, when it passed, what it found."""
    if not report:
        return None
    rows: list[PreflightRow] = []
    for kind, key in (("cluster", "clusters"), ("resource group", "resource_groups")):
        for name, check in sorted((report.get(key) or {}).items()):
            passed = f"version {check['version']}" if check.get("version") else "all allowed"
            detail = check.get("error") or check.get("warning") or passed
            rows.append(PreflightRow(kind, name, bool(check.get("ok")), _short(detail, 400)))
    if usage := report.get("usage"):
        coverage = ", ".join(f"{pool} {c}" for pool, c in (usage.get("coverage") or {}).items())
        passed = "answers" + (f"; data: {coverage}" if coverage else "")
        detail = usage.get("error") or passed
        name = usage.get("source") or "—"
        rows.append(PreflightRow("usage source", name, bool(usage.get("ok")), _short(detail, 400)))
    for name, check in sorted((report.get("pools") or {}).items()):
        gallery = (check.get("gallery") or {}).get("note") or ""
        passed = (
            f"cluster {check.get('cluster')}, {check.get('instances')} instances, "
            f"capacity {check.get('capacity')}" + (f"; gallery {gallery}" if gallery else "")
        )
        warning = (check.get("permissions") or {}).get("warning")
        detail = check.get("error") or (f"{passed}; {warning}" if warning else passed)
        rows.append(PreflightRow("pool", name, bool(check.get("ok")), _short(detail, 400)))
    rows.sort(key=lambda row: row.ok)  # stable: failures first, each kind in order
    return PreflightView(bool(report.get("ok")), when(report.get("at"), now), tuple(rows))
