"""`GET /api/jobs`'s filters (shared.decide.job_query): each checked, a wrong one named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.decide.job_query import (
    MAX_LIMIT,
    JobQuery,
    decode_continuation,
    encode_continuation,
    parse_job_query,
)


def test_no_filter_lists_everything_fifty_at_a_time() -> None:
    assert parse_job_query({}) == JobQuery()
    assert JobQuery().limit == 50


def test_every_filter_is_read() -> None:
    token = encode_continuation({"NextPartitionKey": "job", "NextRowKey": "scale-apps-1"})
    assert token is not None
    query = parse_job_query(
        {
            "pool": "apps",
            "kind": "patch",
            "status": "waiting",
            "since": "2026-11-02T08:00:00+00:00",
            "limit": "2",
            "continuation": token,
        }
    )
    assert query == JobQuery(
        "apps",
        "patch",
        "waiting",
        datetime(2026, 11, 2, 8, tzinfo=UTC),
        2,
        {"NextPartitionKey": "job", "NextRowKey": "scale-apps-1"},
    )


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"pool": "Apps!"}, "pool: 'Apps!' is not a pool name"),
        ({"kind": "resize"}, "kind: 'resize' is not one of scale, drain"),
        ({"status": "cancelled"}, "status: 'cancelled' is not one of queued"),
        ({"since": "yesterday"}, "since: 'yesterday' is not an ISO 8601 time"),
        ({"since": "2026-11-02T08:00:00"}, "since: give a time zone"),
        ({"limit": "0"}, f"limit: '0' is not a whole number from 1 to {MAX_LIMIT}"),
        ({"limit": "lots"}, "limit: 'lots'"),
        ({"continuation": "not-a-token"}, "continuation: not a token this API gave"),
        ({"page": "2"}, "unknown query parameter(s) page; known: pool, kind"),
    ],
)
def test_a_wrong_filter_is_named_with_what_it_takes(params: dict[str, str], named: str) -> None:
    found = parse_job_query(params)
    assert isinstance(found, str) and found.startswith(named), found


def test_a_continuation_goes_out_opaque_and_comes_back_the_same() -> None:
    token = {"NextPartitionKey": "job", "NextRowKey": "x"}
    assert decode_continuation(encode_continuation(token) or "") == token
    assert encode_continuation(None) is None
    assert decode_continuation(encode_continuation({"a": "b" * 2000}) or "") is None  # too long
