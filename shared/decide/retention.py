"""How long Poolkeeper keeps its own records, and which have had their time. Pure: rows in, the
ones to delete out. The pruning timer (`shared/adapters/retention.py`) applies it daily.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FINISHED = frozenset({"done", "failed"})


@dataclass(frozen=True)
class Windows:
    """Each record kind's keep time (docs/deploy.md, "Security model", and docs/jobs.md)."""

    # A delivery's record makes its resend a duplicate: senders resend within hours.
    deliveries: timedelta = timedelta(days=7)
    episodes: timedelta = timedelta(days=90)
    resolved_alerts: timedelta = timedelta(days=30)
    # An alert not updated for this long (a sender that never resolved it) goes too.
    silent_alerts: timedelta = timedelta(days=90)
    finished_jobs: timedelta = timedelta(days=90)
    rejected: timedelta = timedelta(days=30)


WINDOWS = Windows()


def expired(stamp: str | None, now: datetime, window: timedelta) -> bool:
    """Is the ISO-8601 `stamp` older than `window` at `now`? A missing or unreadable stamp is
    kept: pruning never guesses."""
    if not stamp:
        return False
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return False
    if at.tzinfo is None:
        return False
    return now - at > window


def alert_expired(state: str, updated_at: str | None, now: datetime, windows: Windows) -> bool:
    """A resolved alert after `resolved_alerts`; any alert after `silent_alerts`."""
    if state == "resolved" and expired(updated_at, now, windows.resolved_alerts):
        return True
    return expired(updated_at, now, windows.silent_alerts)


def job_expired(status: str, updated_at: str | None, now: datetime, windows: Windows) -> bool:
    """A finished job after `finished_jobs`; a job still pending or running is never pruned."""
    return status in FINISHED and expired(updated_at, now, windows.finished_jobs)
