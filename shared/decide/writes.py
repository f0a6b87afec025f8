"""Whose capacity write is this: each scale-up signs its write in a scale-set tag, so that a job
whose answer was lost can tell its own landed write from another job's. Pure; the scale flow
asks `write_landed` on a fresh read.

Azure allows 256 characters in a tag value: the tag keeps the marks of the last writes only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

WRITES_TAG = "poolkeeper-writes"
KEEP = 16  # marks kept in the tag (9 characters each)


def write_mark(job_id: str) -> str:
    """A job's short mark (8 hex characters of its id's SHA-256)."""
    return hashlib.sha256(job_id.encode()).hexdigest()[:8]


def tags_with_write(tags: Mapping[str, str], job_id: str) -> dict[str, str]:
    """The tags of a read, with this job's mark first in WRITES_TAG (a PATCH replaces all tags,
    so everything else is kept as read)."""
    marks = [m for m in tags.get(WRITES_TAG, "").split() if m != write_mark(job_id)]
    return dict(tags) | {WRITES_TAG: " ".join([write_mark(job_id), *marks][:KEEP])}


def write_landed(etag: str, tags: Mapping[str, str], *, base_etag: str, job_id: str) -> bool | None:
    """Did this job's write, sent with If-Match `base_etag`, land? True, False, or None when the
    read cannot tell (the scale set changed and its tags no longer carry any mark)."""
    if etag == base_etag:
        return False  # nothing has changed the scale set since the read the write was based on
    marks = tags.get(WRITES_TAG, "").split()
    if write_mark(job_id) in marks:
        return True
    if marks:
        # Others' writes are signed and ours is not among them: with If-Match, a write that
        # landed on our base would have kept our mark (each writer extends the tag it read).
        return False
    return None
