"""How decisions word numbers, lists and durations in messages an operator reads.

Used by the decision modules' refusals, drift details and alert reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

LISTED = 10  # ids or names spelled out in one message; the rest are counted


def plural(number: int, noun: str) -> str:
    """`1 node`, `3 nodes`."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def listing(items: Sequence[str]) -> str:
    """The first LISTED items, and how many more."""
    shown = ", ".join(items[:LISTED])
    return shown if len(items) <= LISTED else f"{shown} and {len(items) - LISTED} more"


def span(duration: timedelta, *, days_from: int = 1) -> str:
    """A duration in its two largest units, like "2h 5m"; days only from `days_from` days on
    (so a window of a day can read "24h")."""
    seconds = max(0, int(duration.total_seconds()))
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    if seconds < days_from * 86400:
        units = units[1:]
    for index, (unit, size) in enumerate(units[:-1]):
        if seconds >= size:
            smaller, below = units[index + 1]
            rest = seconds % size // below
            return f"{seconds // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{seconds}s"
