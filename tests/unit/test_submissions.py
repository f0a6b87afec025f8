"""Limits on submitted jobs: the timers' ids, how far ahead, how many waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.decide.submissions import (
    MAX_PENDING_PER_POOL,
    backlog_full,
    reserved_id,
    too_far_ahead,
)

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
POOLS = ["workers", "system"]


@pytest.mark.parametrize(
    "job_id",
    [
        "patch-workers-20261103",
        "image-system-20261103",
        "downscale-workers-20261102",
        "capacity-workers-20261102T080000",
        "reconcile-system-20261102T080000-a1b2c3",
        "patch-workers-20261103-observed",
    ],
)
def test_a_timer_s_id_for_a_configured_pool_is_reserved(job_id: str) -> None:
    reason = reserved_id(job_id, POOLS)
    assert reason is not None and job_id in reason and "reserved" in reason


@pytest.mark.parametrize(
    "job_id",
    ["patch-workers-manual-1", "patch-other-20261103", "my-patch-workers-20261103", "scale-1"],
)
def test_other_ids_are_free(job_id: str) -> None:
    assert reserved_id(job_id, POOLS) is None


def test_a_job_may_be_deferred_a_week_and_no_more() -> None:
    assert too_far_ahead(None, NOW) is None
    assert too_far_ahead(NOW + timedelta(days=7), NOW) is None
    reason = too_far_ahead(NOW + timedelta(days=7, seconds=1), NOW)
    assert reason is not None and "more than 7 days ahead" in reason


def test_a_pool_takes_jobs_until_its_backlog_is_full() -> None:
    assert backlog_full("workers", MAX_PENDING_PER_POOL - 1) is None
    reason = backlog_full("workers", MAX_PENDING_PER_POOL)
    assert reason is not None and "workers" in reason and str(MAX_PENDING_PER_POOL) in reason
