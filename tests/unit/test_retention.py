"""Which of Poolkeeper's own records have had their time (shared/decide/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.decide.retention import WINDOWS, alert_expired, expired, job_expired

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def test_a_stamp_older_than_its_window_has_expired_and_one_inside_it_has_not() -> None:
    assert expired(_ago(8), NOW, WINDOWS.deliveries)
    assert not expired(_ago(6), NOW, WINDOWS.deliveries)


def test_a_missing_unreadable_or_naive_stamp_is_kept() -> None:
    for stamp in (None, "", "yesterday", "2026-01-01T00:00:00"):
        assert not expired(stamp, NOW, timedelta(0))


def test_resolved_alerts_go_after_a_month_and_any_alert_after_three_silent_months() -> None:
    assert alert_expired("resolved", _ago(31), NOW, WINDOWS)
    assert not alert_expired("fired", _ago(31), NOW, WINDOWS)  # may still be an open episode
    assert alert_expired("fired", _ago(91), NOW, WINDOWS)
    assert not alert_expired("resolved", _ago(29), NOW, WINDOWS)


def test_only_finished_jobs_are_pruned_however_old_a_pending_one_is() -> None:
    assert job_expired("done", _ago(91), NOW, WINDOWS)
    assert job_expired("failed", _ago(91), NOW, WINDOWS)
    assert not job_expired("done", _ago(89), NOW, WINDOWS)
    for status in ("queued", "deferred", "running", "waiting"):
        assert not job_expired(status, _ago(400), NOW, WINDOWS)
