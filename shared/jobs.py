"""The job envelope every queue message carries, its validation, and the step-machine vocabulary.

Other systems enqueue these too, so the envelope is strict and published as a JSON Schema
(`docs/schemas/job.schema.json`). Flows return the step outcomes; `shared.flows.jobs` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from shared import json_input

SCHEMA = "poolkeeper/job/v1"
MAX_MESSAGE_BYTES = 64 * 1024  # an Azure Storage queue message


class JobKind(StrEnum):
    SCALE = "scale"
    DRAIN = "drain"
    RECONCILE = "reconcile"
    DOWNSCALE_REVIEW = "downscale_review"
    PATCH = "patch"
    REPAIR = "repair"
    IMAGE = "image"


# Default queue per kind; each can be renamed by the setting named here.
QUEUES: dict[JobKind, tuple[str, str]] = {
    JobKind.SCALE: ("POOLKEEPER_SCALE_QUEUE", "scale-jobs"),
    JobKind.DRAIN: ("POOLKEEPER_DRAIN_QUEUE", "drain-jobs"),
    JobKind.RECONCILE: ("POOLKEEPER_RECONCILE_QUEUE", "reconcile-jobs"),
    # Reviews only read and recommend, like reconciles: they share that queue.
    JobKind.DOWNSCALE_REVIEW: ("POOLKEEPER_RECONCILE_QUEUE", "reconcile-jobs"),
    JobKind.PATCH: ("POOLKEEPER_PATCH_QUEUE", "patch-jobs"),
    # Repairs delete, replace and restart instances under the pool's lease, like scale jobs.
    JobKind.REPAIR: ("POOLKEEPER_SCALE_QUEUE", "scale-jobs"),
    JobKind.IMAGE: ("POOLKEEPER_IMAGE_QUEUE", "image-jobs"),
}


def queue_name(kind: JobKind, settings: Mapping[str, str]) -> str:
    """The queue that carries jobs of `kind`."""
    setting, default = QUEUES[kind]
    return settings.get(setting) or default


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NodeName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]


class ScaleParams(Strict):
    """Scale up by `delta` > 0 or to `target`; scale in by `delta` < 0, by naming `nodes`, or by
    naming `instances` that have no node (one that never registered: nothing to drain)."""

    delta: StrictInt | None = None
    target: StrictInt | None = Field(default=None, ge=0, le=1000)
    nodes: list[NodeName] = Field(default=[], max_length=100)
    instances: list[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]] = Field(
        default=[], max_length=100
    )
    dry_run: StrictBool = False
    force_delete: StrictBool = False

    @model_validator(mode="after")
    def _one_intent(self) -> ScaleParams:
        given = [name for name in ("delta", "target") if getattr(self, name) is not None]
        given += [name for name in ("nodes", "instances") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of delta (non-zero), target, nodes or instances")
        if self.delta == 0:
            raise ValueError("delta must not be 0")
        return self


class DrainParams(Strict):
    node: NodeName
    delete_emptydir_data: StrictBool = False
    force: StrictBool = False
    timeout_seconds: StrictInt = Field(default=900, ge=30, le=86400)
    dry_run: StrictBool = False


class ReconcileParams(Strict):
    dry_run: StrictBool = False


class ReviewParams(Strict):
    pass


class PatchParams(Strict):
    """Patch the pool's nodes that need it (or only `nodes`), at most `max_unavailable` at once
    (default: the pool's `patch.max_unavailable`)."""

    nodes: list[NodeName] = Field(default=[], max_length=1000)
    max_unavailable: StrictInt | None = Field(default=None, ge=1, le=100)
    dry_run: StrictBool = False
    # upgrade: move each node whose instance runs an older model to the latest one
    # (manualupgrade) instead of installing updates; image jobs roll their new image out so.
    action: Literal["patch", "upgrade"] = "patch"


class ImageParams(Strict):
    """Capture a prototype image of the pool (docs/images.md); `dry_run` names the donor."""

    dry_run: StrictBool = False


class RepairParams(Strict):
    """Repair one instance (`instance`) or node (`node`) of the pool, or, naming neither, the
    pool's most urgent problem; reconcile enqueues these with both set."""

    instance: str | None = Field(default=None, pattern=r"^[0-9]{1,9}$")
    node: NodeName | None = None
    dry_run: StrictBool = False


PARAMS: dict[JobKind, type[Strict]] = {
    JobKind.SCALE: ScaleParams,
    JobKind.DRAIN: DrainParams,
    JobKind.RECONCILE: ReconcileParams,
    JobKind.DOWNSCALE_REVIEW: ReviewParams,
    JobKind.PATCH: PatchParams,
    JobKind.REPAIR: RepairParams,
    JobKind.IMAGE: ImageParams,
}


class Job(Strict):
    """The envelope: `schema`, `id`, `kind`, `pool`, `params`, `requested_by` (a free note),
    `created_at`."""

    schema_: Literal["poolkeeper/job/v1"] = Field(alias="schema")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description="idempotency key")
    kind: JobKind
    pool: str = Field(min_length=1, max_length=63)
    params: dict[str, Any] = {}
    requested_by: str = Field(min_length=1, max_length=200)
    created_at: datetime
    not_before: datetime | None = None
    continuation: str | None = Field(
        default=None,
        max_length=64,
        description="set by Poolkeeper when it re-enqueues a waiting job; leave it out",
    )
    parent: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        description="set by Poolkeeper on a job another job of its started; leave it out",
    )
    submitted_by: str | None = Field(
        default=None,
        max_length=400,
        description="set by Poolkeeper from the submitter's sign-in (POST /api/jobs); leave it out",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("created_at", "not_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-02T08:00:00Z")
        return value

    def typed_params(self) -> Strict:
        return PARAMS[self.kind].model_validate(self.params)

    def to_message(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class Rejection(Exception):
    """A message that is not a job Poolkeeper will run; `reason` says why, for the record."""

    def __init__(self, reason: str, job_id: str | None = None, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
        self.status = status  # for HTTP: 400 malformed, 422 well-formed but not runnable


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(envelope)'}: {e['msg']}" for e in error.errors()
    )


def parse_job(
    raw: str | bytes, *, queue: str, settings: Mapping[str, str], pools: frozenset[str]
) -> Job:
    """Validate a queue message or request body as a job for `queue`; `Rejection` says why not."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Rejection(f"message is {len(raw)} bytes; at most {MAX_MESSAGE_BYTES}")
    try:
        data = json_input.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:  # TooDeep is a ValueError
        raise Rejection(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise Rejection("not a JSON object: a job envelope is an object")
    job_id = data.get("id") if isinstance(data.get("id"), str) else None
    if data.get("schema") != SCHEMA:
        raise Rejection(f"schema must be {SCHEMA!r}, got {data.get('schema')!r}", job_id)
    try:
        job = Job.model_validate(data)
    except ValidationError as error:
        raise Rejection(f"invalid envelope: {_problems(error)}", job_id) from None
    if job.pool not in pools:
        known = ", ".join(sorted(pools)) or "none"
        raise Rejection(f"unknown pool {job.pool!r} (configured: {known})", job.id, status=422)
    expected = queue_name(job.kind, settings)
    if queue != expected:
        raise Rejection(
            f"a {job.kind} job was sent to {queue!r}; it belongs on {expected!r}", job.id
        )
    try:
        job.typed_params()
    except ValidationError as error:
        raise Rejection(
            f"invalid params for a {job.kind} job: {_problems(error)}", job.id, status=422
        ) from None
    return job


def job_schema() -> dict[str, Any]:
    """The JSON Schema published for other systems (envelope, with params per kind)."""
    schema = Job.model_json_schema(by_alias=True)
    schema["$id"] = "https://poolkeeper.io/schemas/job/v1"
    schema["title"] = "Poolkeeper job envelope (poolkeeper/job/v1)"
    schema["$defs"] = schema.get("$defs", {}) | {
        f"{kind.value}_params": model.model_json_schema() for kind, model in PARAMS.items()
    }
    schema["description"] = (
        "One envelope for every job. `params` must match `<kind>_params` in $defs. "
        "Send each kind to its queue: scale and repair to scale-jobs, drain to drain-jobs, "
        "reconcile and downscale_review to reconcile-jobs, patch to patch-jobs, image to "
        "image-jobs (names are settings)."
    )
    return schema


# -- the step machine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Next:
    """Go on with `step` now (same invocation, if time allows)."""

    step: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Come back to `step` after `delay` of product time (a queue visibility delay)."""

    step: str
    delay: timedelta
    state: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    # Set when the wait retries a temporary error (e.g. an Azure 5xx): such retries of one step
    # are bounded in time by the runner, then the job fails naming this error.
    error: str | None = None


@dataclass(frozen=True)
class Done:
    outcome: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    reason: str
    outcome: dict[str, Any] = field(default_factory=dict)


Outcome = Next | Wait | Done | Fail
