"""Node claims as data: who holds a node, what it found, and whether a claim is left over.

Pure; the claim helper (`shared.flows.claims`) reads and writes the annotation, reconcile asks
`stale_claim` which claims to release.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

FINAL = frozenset({"done", "failed"})
UNKNOWN_JOB_GRACE = timedelta(hours=1)  # a claim whose job the ledger never knew, kept this long
STALLED_AFTER = timedelta(hours=2)  # a job that has not moved this long will not come back
# A delete whose answer was lost: a victim must look steady this long after the send before it
# may be sent again, and the outcome is given up as unknown after the deadline.
SETTLE_QUIET = timedelta(minutes=3)
SETTLE_DEADLINE = timedelta(minutes=30)


@dataclass(frozen=True)
class Claim:
    """The value of `poolkeeper.io/claimed-by`: the job, its kind, when, and what it found."""

    job: str
    kind: str
    at: str
    was_unschedulable: bool  # restored on release: an operator's cordon stays
    # Annotations the job set while it held the node, with what was there before (None: none);
    # put back on release, whoever releases (the job, or reconcile after it ended).
    restore: dict[str, str | None] = field(default_factory=dict)

    def encode(self) -> str:
        data = asdict(self)
        if not self.restore:
            del data["restore"]
        return json.dumps(data, separators=(",", ":"))


UNREADABLE = Claim(job="?", kind="unreadable", at="", was_unschedulable=True)
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # the envelope's id pattern


def parse_claim(raw: str | None) -> Claim | None:
    """The claim in an annotation value. One Poolkeeper did not write (unreadable, or a job id
    no job can have) is a claim by `?`: it still means "not free", only a person can say what
    it should be, and nothing releases it."""
    if not raw:
        return None
    try:
        data: Any = json.loads(raw)
        if not isinstance(data, dict):
            return UNREADABLE
        restore = data.get("restore") or {}
        if not isinstance(restore, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in restore.items()
        ):
            return UNREADABLE
        claim = Claim(
            job=str(data["job"]),
            kind=str(data.get("kind", "")),
            at=str(data.get("at", "")),
            was_unschedulable=bool(data.get("was_unschedulable", False)),
            restore=dict(restore),
        )
    except (ValueError, TypeError, KeyError):
        return UNREADABLE
    return claim if _JOB_ID.fullmatch(claim.job) else UNREADABLE


def stale_claim(
    claim: Claim, job_status: str | None, now: datetime, *, job_updated_at: str | None = None
) -> str | None:
    """Why a claim is left over, or None while its job may still act on it: the job ended, the
    ledger never knew it (for an hour), or it has not moved for STALLED_AFTER (its messages
    were lost, e.g. to the poison queue)."""
    if claim.job == "?":
        return None
    if job_status in FINAL:
        return f"job {claim.job} is {job_status}"
    if job_status is None:
        age = _age(claim.at, now)
        if age is None or age > UNKNOWN_JOB_GRACE:
            return f"job {claim.job} is unknown to the ledger (claimed {claim.at or 'at no time'})"
        return None
    idle = _age(job_updated_at or "", now)
    if idle is not None and idle > STALLED_AFTER:
        return f"job {claim.job} has not moved since {job_updated_at}"
    return None


def _age(stamp: str, now: datetime) -> timedelta | None:
    try:
        return now - datetime.fromisoformat(stamp)
    except (ValueError, TypeError):  # not a time, or one without a zone
        return None


def delete_may_land(job_state: Mapping[str, Any], now: datetime) -> bool:
    """Whether a scale-in's delete, sent without a definite answer, may still land on its
    victims: until SETTLE_DEADLINE after the send, a victim that looks steady is not yet safe
    to give back."""
    if not job_state.get("deleted"):
        return False
    if job_state.get("lost_at"):  # one of its sends got no answer
        lost = _age(str(job_state["lost_at"]), now)
        return lost is None or lost < SETTLE_DEADLINE
    if job_state.get("definitive"):
        return False
    sent = _age(str(job_state.get("sent_at", "")), now)
    return sent is None or sent < SETTLE_DEADLINE


STALL_GRACE = timedelta(minutes=5)  # a job that runs acts within a round or two of a deadline


def stalled_claim(
    node: str, job_status: str, job_step: str, job_state: Mapping[str, Any], now: datetime
) -> dict[str, Any] | None:
    """A claim whose job is alive (not ended) but has not acted on its own deadline: the
    deadline its state records for its wait on `node` (`nodes.<node>.deadline`, else the job's
    own `deadline`), passed by more than STALL_GRACE. What the pool status shows of it, or None.
    Pure."""
    if job_status in FINAL:
        return None  # a left-over claim: reconcile releases it (stale_claim)
    own = (job_state.get("nodes") or {}).get(node)
    own = own if isinstance(own, Mapping) else {}
    deadline = own.get("deadline") or job_state.get("deadline")
    late = _age(str(deadline or ""), now)
    if late is None or late <= STALL_GRACE:
        return None
    return {
        "node": node,
        "step": f"{job_step}: {own['phase']}" if own.get("phase") else job_step,
        "since": own.get("since") or job_state.get("since"),
        "deadline": deadline,
    }
