"""The status page's charts of a pool's history: instances over 24 h from the count history,
CPU and memory over 24 h and over months from the daily summaries, against P1 and P2. Pure.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.dashboard.charts import Chart, Rule, Series, line_chart
from shared.decide.capacity import Thresholds

DAY = timedelta(hours=24)
MONTHS = timedelta(days=183)  # the downscale review reads 3-6 months of daily summaries


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


def counts_chart(
    history: list[dict[str, Any]], min_nodes: int, max_nodes: int, now: datetime
) -> Chart:
    """Capacity, live, Ready and failed instances over the last 24 h of recorded reads."""
    start = now - DAY
    rows = [(datetime.fromisoformat(r["at"]), r) for r in history]

    def series(label: str, css: str, value: Any) -> Series:
        return Series(label, [(at, value(r)) for at, r in rows], css, step=True)

    peak = max(
        [
            max_nodes,
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
            Rule("max_nodes", max_nodes, "r-limit"),
            Rule("min_nodes", min_nodes, "r-limit"),
        ],
        empty="no reads recorded in the last 24 h — each reconcile adds one (every 5 minutes)",
    )


def usage_charts(
    days: list[dict[str, Any]], thresholds: Thresholds, now: datetime
) -> tuple[Chart, ...]:
    """CPU and memory: the hourly 1 h averages of the last 24 h against P1 and P2, and the daily
    averages and peaks of the stored months against the same thresholds."""
    start = now - DAY
    hourly: dict[str, list[tuple[datetime, float | None]]] = {"cpu": [], "memory": []}
    for day in days:
        midnight = datetime.combine(date.fromisoformat(day["day"]), time(0), tzinfo=UTC)
        for resource, points in hourly.items():
            for hour, value in enumerate(day.get(f"{resource}_by_hour") or []):
                # The hour's latest 1 h average: drawn at the hour's end.
                points.append((midnight + timedelta(hours=hour + 1), value))
    months_start = now - MONTHS
    day_charts, month_charts = [], []
    for resource, name in (("cpu", "CPU"), ("memory", "Memory")):
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
                [(_noon(d["day"]), d.get(f"{resource}_{kind}")) for d in days],
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
