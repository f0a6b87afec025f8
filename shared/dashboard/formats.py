"""Times and numbers as the status page shows them: UTC with the age, percentages. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        found = value
    else:
        try:
            found = datetime.fromisoformat(value)
        except ValueError:
            return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def span(delta: timedelta) -> str:
    """A duration in its two largest units: "45 s", "3 min", "2 h 5 min", "3 d 4 h"."""
    seconds = int(abs(delta).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


def age(value: str | datetime | None, now: datetime, *, never: str = "—") -> str:
    """How long ago `value` was ("3 min ago", "in 5 min" for a time ahead of `now`)."""
    at = _parse(value)
    if at is None:
        return never
    delta = now - at
    if abs(delta) < timedelta(seconds=1):
        return "just now"
    return f"{span(delta)} ago" if delta > timedelta(0) else f"in {span(delta)}"


def when(value: str | datetime | None, now: datetime, *, never: str = "—") -> str:
    """The time in UTC and its age: "2026-11-02 08:15:03 UTC (3 min ago)"."""
    at = _parse(value)
    if at is None:
        return never if value in (None, "") else str(value)
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({age(at, now)})"


def percent(value: float | None) -> str:
    """A percentage with one decimal, or "no data"."""
    return "no data" if value is None else f"{value:.1f} %"
