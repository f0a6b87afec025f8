"""The status page's view of a pool: recorded truth, alerts, jobs and history turned into rows,
tiles and charts with times in UTC and their age. Pure: `pool_view(data, now)`.

shared/flows/dashboard.py reads the records and calls this; the templates only lay it out.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.dashboard.charts import Chart, Rule, Series, line_chart
from shared.dashboard.formats import age, percent, when
from shared.decide.capacity import Thresholds

DAY = timedelta(hours=24)
MONTHS = timedelta(days=183)  # the downscale review reads 3-6 months of daily summaries
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
        canary, rollback = image.get("canary"), image.get("rollback")
        status = _text(image.get("status"))
        if rollback:
            status += (
                f"; rolled back: {_outcome(rollback) if isinstance(rollback, dict) else rollback}"
            )
        rows.append(
            ImageRow(
                version=version,
                created=when(image.get("created_at"), now),
                source=_text(image.get("donor")),
                kernel=_text(image.get("kernel")),
                status=status,
                canary=_outcome(canary) if isinstance(canary, dict) else _text(canary),
                job=_text(image.get("job"), ""),
            )
        )
    return tuple(rows)


def _model_image(record: dict[str, Any]) -> str:
    image = record.get("model_image") or {}
    if not image:
        return "unknown (not reconciled yet)" if not record else "not reported by the scale set"
    return image.get("id") or ", ".join(f"{k} {v}" for k, v in sorted(image.items()))


def _hour_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    first = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    ticks = []
    at = first
    while at <= end:
        if at.hour % 6 == 0:
            ticks.append((at, f"{at:%H:%M}"))
        at += timedelta(hours=1)
    return ticks


def _month_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    ticks = []
    at = datetime(start.year, start.month, 1, tzinfo=UTC)
    while at <= end:
        if at >= start:
            ticks.append((at, f"{at:%b %Y}"))
        at = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
    return ticks


def _noon(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(12), tzinfo=UTC)


def counts_chart(data: PoolData, now: datetime) -> Chart:
    """Capacity, live, Ready and failed instances over the last 24 h of recorded reads."""
    start = now - DAY
    rows = [(datetime.fromisoformat(r["at"]), r) for r in data.history]

    def series(label: str, css: str, value: Any) -> Series:
        return Series(label, [(at, value(r)) for at, r in rows], css, step=True)

    peak = max(
        [
            data.max_nodes,
            *(max(r.get("capacity") or 0, r["counts"].get("live", 0)) for _, r in rows),
        ]
    )
    return line_chart(
        "Instances, last 24 h",
        [
            series("capacity", "c-capacity", lambda r: r.get("capacity")),
            series("live", "c-live", lambda r: r["counts"].get("live", 0)),
            series("ready", "c-ready", lambda r: r.get("ready")),
            series("failed", "c-failed", lambda r: r["counts"].get("failed", 0)),
            series(
                "creating + deleting",
                "c-moving",
                lambda r: r["counts"].get("creating", 0) + r["counts"].get("deleting", 0),
            ),
        ],
        start=start,
        end=now,
        y_max=-(-peak // 4) * 4,  # a multiple of the 4 tick steps: whole numbers on the axis
        x_ticks=_hour_ticks(start, now),
        rules=[
            Rule("max_nodes", data.max_nodes, "r-limit"),
            Rule("min_nodes", data.min_nodes, "r-limit"),
        ],
        empty="no reads recorded in the last 24 h — each reconcile adds one (every 5 minutes)",
    )


def usage_charts(data: PoolData, now: datetime) -> tuple[Chart, ...]:
    """CPU and memory: the hourly 1 h averages of the last 24 h against P1 and P2, and the daily
    averages and peaks of the stored months against the same thresholds."""
    start = now - DAY
    hourly: dict[str, list[tuple[datetime, float | None]]] = {"cpu": [], "memory": []}
    for day in data.days:
        midnight = datetime.combine(date.fromisoformat(day["day"]), time(0), tzinfo=UTC)
        for resource, points in hourly.items():
            for hour, value in enumerate(day.get(f"{resource}_by_hour") or []):
                # The hour's latest 1 h average: drawn at the hour's end.
                points.append((midnight + timedelta(hours=hour + 1), value))
    months_start = now - MONTHS
    day_charts, month_charts = [], []
    for resource, name in (("cpu", "CPU"), ("memory", "Memory")):
        thresholds = data.thresholds
        rules = [
            Rule("P1", getattr(thresholds, f"p1_{resource}"), "r-p1"),
            Rule("P2", getattr(thresholds, f"p2_{resource}"), "r-p2"),
        ]
        percent_chart = functools.partial(line_chart, end=now, y_max=100, rules=rules, unit="%")
        day_charts.append(
            percent_chart(
                f"{name}, last 24 h (group, 1 h average)",
                [Series(f"{name} 1 h", hourly[resource], f"c-{resource}")],
                start=start,
                x_ticks=_hour_ticks(start, now),
                empty="no complete hour of usage yet — the capacity timer records one each hour",
            )
        )
        daily = [
            Series(
                label,
                [(_noon(d["day"]), d.get(f"{resource}_{kind}")) for d in data.days],
                css,
            )
            for label, kind, css in (
                ("daily average", "avg", f"c-{resource}"),
                ("daily peak hour", "peak", "c-peak"),
            )
        ]
        month_charts.append(
            percent_chart(
                f"{name}, daily over months",
                daily,
                start=months_start,
                x_ticks=_month_ticks(months_start, now),
                empty="no complete day of usage yet — a day counts once 20 of its hours are",
            )
        )
    return (*day_charts, *month_charts)


def pool_view(data: PoolData, now: datetime) -> PoolView:
    """Everything the pool's section of the page shows. Pure."""
    record = data.record or {}
    counts = dict(record.get("counts") or {})
    shown = {state: int(counts.get(state, 0)) for state in STATES}
    others = {k: v for k, v in counts.items() if k not in STATES and k not in ("total", "active")}
    return PoolView(
        name=data.name,
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
        charts=(counts_chart(data, now), *usage_charts(data, now)),
        empty="" if record else NOT_RECONCILED,
    )
