"""The job envelope: the published schema is current, and validation says what is wrong."""

from __future__ import annotations

import json

import pytest

from shared.export_schema import TARGET, render
from shared.jobs import SCHEMA, Job, Rejection, parse_job

POOLS = frozenset({"apps"})
SETTINGS: dict[str, str] = {}


def _job(**changes: object) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "id": "job-1",
        "kind": "scale",
        "pool": "apps",
        "params": {"delta": 2},
        "requested_by": "ops",
        "created_at": "2026-11-02T08:00:00Z",
    } | changes


def test_committed_schema_is_the_generated_one() -> None:
    assert TARGET.read_text() == render(), "run `python -m shared.export_schema`"


def test_schema_names_every_envelope_field_and_forbids_others() -> None:
    schema = json.loads(TARGET.read_text())
    assert set(schema["required"]) == {"schema", "id", "kind", "pool", "requested_by", "created_at"}
    assert schema["additionalProperties"] is False
    assert {"scale_params", "drain_params", "reconcile_params"} <= schema["$defs"].keys()


def test_a_valid_scale_job_parses_and_round_trips() -> None:
    job = parse_job(json.dumps(_job()), queue="scale-jobs", settings=SETTINGS, pools=POOLS)
    assert Job.model_validate_json(job.to_message()) == job


def test_queue_names_follow_their_settings() -> None:
    settings = {"POOLKEEPER_SCALE_QUEUE": "pk-scale"}
    parse_job(json.dumps(_job()), queue="pk-scale", settings=settings, pools=POOLS)
    with pytest.raises(Rejection, match="belongs on 'pk-scale'"):
        parse_job(json.dumps(_job()), queue="scale-jobs", settings=settings, pools=POOLS)


@pytest.mark.parametrize(
    ("message", "reason", "status"),
    [
        (b"\xff\xfe", "not JSON", 400),
        ("x" * 70000, "at most", 400),
        (json.dumps(_job(params={"nodes": ["Bad_Name"]})), "invalid params", 422),
        (json.dumps(_job(params={"delta": True})), "invalid params", 422),
        (json.dumps(_job(id="has spaces")), "invalid envelope", 400),
        (json.dumps(_job(kind="drain", params={})), "belongs on", 400),
    ],
)
def test_rejections_say_why_and_carry_an_http_status(message, reason: str, status: int) -> None:
    with pytest.raises(Rejection) as raised:
        parse_job(message, queue="scale-jobs", settings=SETTINGS, pools=POOLS)
    assert reason in raised.value.reason
    assert raised.value.status == status
