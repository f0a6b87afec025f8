"""Limits on jobs submitted through `POST /api/jobs`: ids the timers own, how far ahead a job
may be deferred, how many may wait per pool. Pure: given `now`. (Messages written straight onto
the queues are trusted: whoever can write them can write the ledger too.)"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

MAX_DEFER = timedelta(days=7)
MAX_PENDING_PER_POOL = 20  # queued or deferred, not started: a backlog, not a schedule

# Ids Poolkeeper's own timers and reconcile give their jobs (`enqueue_once` skips a period whose
# id is taken: a squatted id would cancel that window's patch or image run).
_TIMER_IDS = {
    "patch": r"\d{8}",
    "image": r"\d{8}",
    "downscale": r"\d{8}",
    "capacity": r"\d{8}T\d{6}",
    "reconcile": r"\d{8}T\d{6}-[0-9a-f]{6}",
}


def reserved_id(job_id: str, pools: Iterable[str]) -> str | None:
    """Why `job_id` may not be submitted (it has the shape of a timer's id), or None."""
    for prefix, stamp in _TIMER_IDS.items():
        for pool in pools:
            if re.fullmatch(rf"{prefix}-{re.escape(pool)}-{stamp}(-observed)?", job_id):
                return (
                    f"job id {job_id!r} has the form Poolkeeper's {prefix} jobs use "
                    f"({prefix}-<pool>-<date>): those ids are reserved; choose another"
                )
    return None


def too_far_ahead(not_before: datetime | None, now: datetime) -> str | None:
    """Why a job deferred to `not_before` is refused (more than MAX_DEFER ahead), or None."""
    if not_before is None or not_before - now <= MAX_DEFER:
        return None
    return (
        f"not_before {not_before.isoformat()} is more than {MAX_DEFER.days} days ahead: "
        "submit it closer to its time"
    )


def backlog_full(pool: str, pending: int) -> str | None:
    """Why one more job for `pool` is refused (MAX_PENDING_PER_POOL waiting already), or None."""
    if pending < MAX_PENDING_PER_POOL:
        return None
    return (
        f"pool {pool} has {pending} jobs waiting to start (at most {MAX_PENDING_PER_POOL}): "
        "let them run before submitting more"
    )
