"""How often the alert webhook may tell on-call about one pool and kind: one notification per
DIGEST_INTERVAL, the alerts in between counted and named in the next one. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

DIGEST_INTERVAL = timedelta(minutes=15)


def notice_due(last_sent: datetime | None, now: datetime, interval: timedelta) -> bool:
    """May a notification go now, the last one of its pool and kind having gone at `last_sent`?"""
    return last_sent is None or now - last_sent >= interval


def held_text(held: int, since: datetime | None) -> str:
    """What the next notification adds about the alerts held back since the last one."""
    if held <= 0 or since is None:
        return ""
    minutes = int(DIGEST_INTERVAL.total_seconds() // 60)
    return f"; {held} more since {since:%H:%M}Z, held back (one notice per {minutes} min)"
