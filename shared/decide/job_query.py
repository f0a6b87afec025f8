"""`GET /api/jobs`'s query: which jobs to list, read from the query string. Each filter is
checked, and a wrong one is named with what it takes; nothing is guessed."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.config.pools import POOL_NAME
from shared.jobs import JobKind

STATUSES = ("queued", "deferred", "running", "waiting", "done", "failed")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
KNOWN = ("pool", "kind", "status", "since", "limit", "continuation")


@dataclass(frozen=True)
class JobQuery:
    pool: str | None = None
    kind: str | None = None
    status: str | None = None
    since: datetime | None = None
    limit: int = DEFAULT_LIMIT
    continuation: dict[str, str] | None = None  # the Tables service's, decoded


def parse_job_query(params: Mapping[str, str]) -> JobQuery | str:
    """The query, or what is wrong with it (for a 400)."""
    unknown = sorted(set(params) - set(KNOWN))
    if unknown:
        return f"unknown query parameter(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}"
    pool = params.get("pool") or None
    if pool is not None and not POOL_NAME.fullmatch(pool):
        return f"pool: {pool!r} is not a pool name (lowercase letters, digits and hyphens)"
    kind = params.get("kind") or None
    if kind is not None and kind not in {k.value for k in JobKind}:
        return f"kind: {kind!r} is not one of {', '.join(k.value for k in JobKind)}"
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        return f"status: {status!r} is not one of {', '.join(STATUSES)}"
    since = None
    if params.get("since"):
        try:
            since = datetime.fromisoformat(params["since"])
        except ValueError:
            return f"since: {params['since']!r} is not an ISO 8601 time like 2026-11-02T08:00:00Z"
        if since.tzinfo is None:
            return "since: give a time zone, e.g. 2026-11-02T08:00:00Z"
    limit = DEFAULT_LIMIT
    if params.get("limit"):
        if not params["limit"].isdigit() or not 1 <= int(params["limit"]) <= MAX_LIMIT:
            return f"limit: {params['limit']!r} is not a whole number from 1 to {MAX_LIMIT}"
        limit = int(params["limit"])
    continuation = None
    if params.get("continuation"):
        continuation = decode_continuation(params["continuation"])
        if continuation is None:
            return "continuation: not a token this API gave (pass `next` of the previous page)"
    return JobQuery(pool, kind, status, since, limit, continuation)


def encode_continuation(token: Mapping[str, str] | None) -> str | None:
    """The Tables service's continuation as an opaque, URL-safe string."""
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(dict(token)).encode()).decode()


def decode_continuation(text: str) -> dict[str, str] | None:
    try:
        token = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(token, dict)
        or not token
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 1024 for k, v in token.items()
        )
    ):
        return None
    return token
