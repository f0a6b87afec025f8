"""Line charts as plain geometry for the status page's inline SVG (templates/chart.svg.j2). Pure.

A chart is series of (time, value) points over a time span, horizontal rules for thresholds and
axis ticks, all already in pixels, so the template only draws and no browser script is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 18, 10, 22  # margins for the axis labels


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[datetime, float | None]]  # None is a gap: no data then
    css: str  # the colour class (see templates/base.html.j2)
    step: bool = False  # counts hold until the next reading: draw steps, not slopes


@dataclass(frozen=True)
class Rule:
    label: str
    value: float
    css: str


@dataclass(frozen=True)
class Path:
    label: str
    css: str
    segments: tuple[str, ...]  # SVG polyline "x,y x,y" strings, one per run without gaps
    latest: str  # the last value, for the legend


@dataclass(frozen=True)
class PlacedRule:
    label: str
    css: str
    y: float


@dataclass(frozen=True)
class Chart:
    title: str
    summary: str  # what the chart shows, for readers who do not see it
    width: int
    height: int
    paths: tuple[Path, ...]
    rules: tuple[PlacedRule, ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    empty: str | None  # set when there is nothing to draw: what to do about it

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """The plot area: x, y, width, height."""
        return LEFT, TOP, self.width - LEFT - RIGHT, self.height - TOP - BOTTOM


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    start: datetime,
    end: datetime,
    y_max: float,
    x_ticks: Sequence[tuple[datetime, str]],
    rules: Sequence[Rule] = (),
    unit: str = "",
    empty: str,
) -> Chart:
    """Place `series` and `rules` on a chart of the span [start, end] and 0..y_max. Points
    outside the span are dropped; `empty` is kept only when no series has a point left."""
    span = (end - start).total_seconds() or 1.0
    top = max([y_max, *(r.value for r in rules)]) or 1.0
    x0, y0, width, height = LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(at: datetime) -> float:
        return round(x0 + width * (at - start).total_seconds() / span, 1)

    def y_of(value: float) -> float:
        return round(y0 + height * (1 - min(value, top) / top), 1)

    paths = []
    drawn = False
    for one in series:
        inside = [(at, v) for at, v in sorted(one.points, key=lambda p: p[0]) if start <= at <= end]
        segments: list[list[str]] = []
        run: list[str] = []
        held = 0.0  # the y of the run's last point
        for index, (at, value) in enumerate(inside):
            if value is None:
                if run:
                    segments.append(run)
                run = []
                continue
            if one.step and run:
                run.append(f"{x_of(at)},{held}")
            held = y_of(value)
            run.append(f"{x_of(at)},{held}")
            if one.step and index == len(inside) - 1:
                run.append(f"{x_of(end)},{held}")  # the last reading holds until now
        if run:
            segments.append(run)
        drawn = drawn or bool(segments)
        values = [v for _, v in inside if v is not None]
        paths.append(
            Path(
                one.label,
                one.css,
                tuple(" ".join(points) for points in segments),
                f"{_number(values[-1])}{unit}" if values else "no data",
            )
        )
    ticks = [top * i / 4 for i in range(5)]
    return Chart(
        title=title,
        summary=f"{title}: " + "; ".join(f"{p.label} {p.latest}" for p in paths),
        width=WIDTH,
        height=HEIGHT,
        paths=tuple(paths),
        rules=tuple(
            PlacedRule(f"{r.label} {_number(r.value)}{unit}", r.css, y_of(r.value)) for r in rules
        ),
        y_ticks=tuple((y_of(t), f"{_number(t)}{unit}") for t in ticks),
        x_ticks=tuple((x_of(at), label) for at, label in x_ticks if start <= at <= end),
        empty=None if drawn else empty,
    )
