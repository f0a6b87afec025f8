"""Pure rules: reading a claim, when a claim is left over, and whose capacity write landed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.decide.claims import (
    Claim,
    delete_may_land,
    parse_claim,
    stale_claim,
    stalled_claim,
)
from shared.decide.writes import KEEP, WRITES_TAG, tags_with_write, write_landed, write_mark

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def test_a_claim_reads_back_what_was_written() -> None:
    claim = Claim("scale-1", "scale", NOW.isoformat(), was_unschedulable=True)
    assert parse_claim(claim.encode()) == claim
    assert parse_claim(None) is None and parse_claim("") is None


@pytest.mark.parametrize(
    "raw", ["someone's note", "[]", '{"kind": "scale"}', "{", '{"job": "x/y", "at": "2026-01-01"}']
)
def test_an_unreadable_claim_is_nobodys_and_never_stale(raw: str) -> None:
    claim = parse_claim(raw)
    assert claim is not None and claim.job == "?"
    assert stale_claim(claim, None, NOW + timedelta(days=30)) is None


@pytest.mark.parametrize(
    ("status", "age", "stale"),
    [
        ("done", timedelta(0), True),
        ("failed", timedelta(0), True),
        ("running", timedelta(days=2), False),
        ("waiting", timedelta(days=2), False),
        ("queued", timedelta(days=2), False),
        (None, timedelta(minutes=59), False),
        (None, timedelta(minutes=61), True),
    ],
)
def test_a_claim_is_left_over_when_its_job_ended_or_was_never_known(
    status: str | None, age: timedelta, stale: bool
) -> None:
    claim = Claim("job-1", "drain", (NOW - age).isoformat(), was_unschedulable=False)
    assert (stale_claim(claim, status, NOW) is not None) is stale


@pytest.mark.parametrize(
    ("idle", "stale"), [(timedelta(minutes=90), False), (timedelta(hours=3), True)]
)
def test_a_claim_of_a_job_that_stopped_moving_is_left_over(idle: timedelta, stale: bool) -> None:
    claim = Claim("job-1", "scale", NOW.isoformat(), was_unschedulable=False)
    updated = (NOW - idle).isoformat()
    assert (stale_claim(claim, "waiting", NOW, job_updated_at=updated) is not None) is stale


@pytest.mark.parametrize(
    ("state", "may_land"),
    [
        ({}, False),
        ({"deleted": ["1"], "sent_at": "{t-10m}", "definitive": True}, False),
        ({"deleted": ["1"], "sent_at": "{t-10m}", "definitive": False}, True),
        ({"deleted": ["1"], "sent_at": "{t-40m}", "definitive": False}, False),
        ({"deleted": ["1"], "sent_at": "{t-1m}", "definitive": True, "lost_at": "{t-10m}"}, True),
        ({"deleted": ["1"], "sent_at": "{t-1m}", "definitive": True, "lost_at": "{t-40m}"}, False),
    ],
)
def test_a_delete_without_an_answer_may_land_until_the_deadline(
    state: dict[str, object], may_land: bool
) -> None:
    stamps = {
        "{t-1m}": NOW - timedelta(minutes=1),
        "{t-10m}": NOW - timedelta(minutes=10),
        "{t-40m}": NOW - timedelta(minutes=40),
    }
    filled = {k: stamps[v].isoformat() if isinstance(v, str) else v for k, v in state.items()}
    assert delete_may_land(filled, NOW) is may_land


def test_a_write_signs_the_tags_it_read_and_keeps_the_rest() -> None:
    tags = tags_with_write({"team": "platform", WRITES_TAG: "aaaaaaaa"}, "job-1")
    assert tags == {"team": "platform", WRITES_TAG: f"{write_mark('job-1')} aaaaaaaa"}
    many = {WRITES_TAG: " ".join(f"{n:08x}" for n in range(40))}
    signed = tags_with_write(many, "job-2")[WRITES_TAG].split()
    assert len(signed) == KEEP and signed[0] == write_mark("job-2")
    assert len(" ".join(signed)) <= 256  # Azure's limit for a tag value


@pytest.mark.parametrize(
    ("etag", "marks", "landed"),
    [
        ('"5"', "", False),  # nothing changed since the read the write was based on
        ('"6"', "{mine} bbbbbbbb", True),
        ('"7"', "bbbbbbbb {mine}", True),  # ours, then another job's on top
        ('"6"', "bbbbbbbb", False),  # another job's write took our base ETag
        ('"6"', "", None),  # changed, and nobody's marks: cannot tell
    ],
)
def test_whose_write_landed(etag: str, marks: str, landed: bool | None) -> None:
    tags = {WRITES_TAG: marks.format(mine=write_mark("job-1"))} if marks else {}
    assert write_landed(etag, tags, base_etag='"5"', job_id="job-1") is landed


NODE_STATE = {
    "nodes": {"n1": {"phase": "upgrading", "since": "2026-11-02T08:00:00+00:00"}},
}


@pytest.mark.parametrize(
    ("status", "deadline", "minutes_after", "stalled"),
    [
        ("waiting", "2026-11-02T09:00:00+00:00", 4, False),  # within the grace
        ("waiting", "2026-11-02T09:00:00+00:00", 6, True),
        ("running", "2026-11-02T09:00:00+00:00", 60, True),
        ("failed", "2026-11-02T09:00:00+00:00", 60, False),  # ended: reconcile's business
        ("waiting", None, 600, False),  # no deadline recorded: nothing to judge by
    ],
)
def test_a_claim_is_stalled_when_its_live_job_is_past_its_recorded_deadline(
    status: str, deadline: str | None, minutes_after: int, stalled: bool
) -> None:
    state = {
        "nodes": {"n1": NODE_STATE["nodes"]["n1"] | ({"deadline": deadline} if deadline else {})}
    }
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes_after)
    found = stalled_claim("n1", status, "rollout", state, now)
    assert (found is not None) == stalled
    if found:
        assert found == {
            "node": "n1",
            "step": "rollout: upgrading",
            "since": "2026-11-02T08:00:00+00:00",
            "deadline": deadline,
        }


def test_a_job_wide_deadline_counts_for_every_node_it_holds() -> None:
    state = {"deadline": "2026-11-02T09:00:00+00:00", "since": "2026-11-02T08:30:00+00:00"}
    now = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    found = stalled_claim("n2", "waiting", "drain", state, now)
    assert found is not None and found["step"] == "drain" and found["since"] == state["since"]
