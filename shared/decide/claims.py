"""Node claims as data: who holds a node, what it found, and whether a claim is left over.

Pure; the claim helper (`shared.flows.claims`) reads and writes the annotation, reconcile asks
`stale_claim` which claims to release.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

FINAL = frozenset({"done", "failed"})
UNKNOWN_JOB_GRACE = timedelta(hours=1)  # a claim whose job the ledger never knew, kept this long


@dataclass(frozen=True)
class Claim:
    """The value of `poolkeeper.io/claimed-by`: the job, its kind, when, and what it found."""

    job: str
    kind: str
    at: str
    was_unschedulable: bool  # restored on release: an operator's cordon stays

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def parse_claim(raw: str | None) -> Claim | None:
    """The claim in an annotation value; an unreadable one is a claim by `?` (never ours)."""
    if not raw:
        return None
    try:
        data: Any = json.loads(raw)
        return Claim(
            job=str(data["job"]),
            kind=str(data.get("kind", "")),
            at=str(data.get("at", "")),
            was_unschedulable=bool(data.get("was_unschedulable", False)),
        )
    except (ValueError, TypeError, KeyError):
        # Someone wrote something else there: it still means "not free", and only a person can
        # say what it should be; release never touches it.
        return Claim(job="?", kind="unreadable", at="", was_unschedulable=True)


def stale_claim(claim: Claim, job_status: str | None, now: datetime) -> str | None:
    """Why a claim is left over (its job ended, or the ledger never knew it), or None if live."""
    if claim.job == "?":
        return None
    if job_status in FINAL:
        return f"job {claim.job} is {job_status}"
    if job_status is None:
        try:
            age = now - datetime.fromisoformat(claim.at)
        except ValueError:
            return f"job {claim.job} is unknown to the ledger and the claim has no time"
        if age > UNKNOWN_JOB_GRACE:
            return f"job {claim.job} is unknown to the ledger since {claim.at}"
    return None
