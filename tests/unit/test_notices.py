"""The alert webhook's notice digest (shared/decide/notices.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.decide.notices import DIGEST_INTERVAL, held_text, notice_due

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_a_notice_is_due_first_and_again_only_after_the_interval() -> None:
    assert notice_due(None, NOW, DIGEST_INTERVAL)
    assert not notice_due(NOW - timedelta(minutes=14), NOW, DIGEST_INTERVAL)
    assert notice_due(NOW - DIGEST_INTERVAL, NOW, DIGEST_INTERVAL)


def test_the_next_notice_counts_what_was_held_back_and_says_nothing_otherwise() -> None:
    since = NOW - timedelta(minutes=20)
    assert held_text(3, since) == "; 3 more since 11:40Z, held back (one notice per 15 min)"
    assert held_text(0, since) == "" and held_text(2, None) == ""
