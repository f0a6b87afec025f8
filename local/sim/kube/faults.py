"""Faults injected into the simulated API server (`/_sim/kube/faults`), chosen by verb, resource,
namespace, name, body and a window of simulated time: errors with the API server's Status body,
requests held past the client's patience that end in a timeout (a write may land first), and
write conflicts. Each fault counts the requests it answered, so a test can check that it fired.

The state lives in the cluster (`Cluster.faults`): a new scenario starts without faults.
`api` asks `Faults.take` before it serves a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from local.sim.kube.objects import BY_RESOURCE
from local.sim.kube.requestinfo import VERBS, WRITES, RequestInfo

MAX_HOLD_SECONDS = 300  # a held request always ends: no test waits on a fault for ever
SUBRESOURCES = {"status", "eviction"}
# The reason the API server gives with each status code (metav1.StatusReason).
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    503: "the server is currently unable to handle the request",
    504: "Timeout: request did not complete within requested timeout - context deadline exceeded",
}
Verb = Literal["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


class KubeFault(BaseModel):
    """A fault; docs/local-stack.md lists the fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["error", "timeout", "conflict"] = "error"
    verbs: list[Verb] | None = None  # None: every verb (a conflict: every write)
    resources: list[str] | None = None  # "nodes", "pods/eviction"; None: every request
    namespace: str | None = None
    names: list[str] | None = None
    match: re.Pattern[str] | None = None  # searched in the request's body
    status: int = Field(default=503, ge=400, le=599)  # error
    message: str | None = None
    count: int | None = Field(default=None, ge=1)
    after: int = Field(default=0, ge=0)  # matching requests let through before it fires
    start: datetime | None = Field(default=None, alias="from")  # simulated time
    until: datetime | None = None
    seconds: float = Field(default=30, ge=0, le=MAX_HOLD_SECONDS)  # timeout: wall seconds held
    applied: bool = False  # timeout: the request takes effect, then its answer is lost

    @field_validator("resources")
    @classmethod
    def _known(cls, resources: list[str] | None) -> list[str] | None:
        for target in resources or []:
            resource, _, sub = target.partition("/")
            if resource not in BY_RESOURCE or (sub and sub not in SUBRESOURCES):
                raise ValueError(
                    f"unknown resource {target!r}: one of {sorted(BY_RESOURCE)}, optionally "
                    f"with /{' or /'.join(sorted(SUBRESOURCES))}"
                )
        return resources

    @field_validator("start", "until")
    @classmethod
    def _aware(cls, moment: datetime | None) -> datetime | None:
        return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment

    @model_validator(mode="after")
    def _consistent(self) -> KubeFault:
        if self.kind == "conflict" and not set(self.verbs or WRITES) <= set(WRITES):
            raise ValueError(f"a conflict answers writes only: verbs among {list(WRITES)}")
        if self.applied and self.kind != "timeout":
            raise ValueError("applied (a write that lands, its answer lost) needs kind timeout")
        if self.start and self.until and self.until <= self.start:
            raise ValueError("until must be after from")
        return self

    def applies(self, info: RequestInfo, body: str, now: datetime) -> bool:
        """Whether this fault covers the request at `now` (uses aside)."""
        verbs = self.verbs or (WRITES if self.kind == "conflict" else VERBS)
        return (
            info.verb in verbs
            and (self.resources is None or info.target in self.resources)
            and (self.namespace is None or info.namespace == self.namespace)
            and (self.names is None or info.name in self.names)
            and (self.match is None or self.match.search(body) is not None)
            and not (self.start and now < self.start)
            and not (self.until and now >= self.until)
        )

    def answer(self) -> tuple[int, str, str]:
        """The status code, reason and message it answers with (a conflict's are the API
        server's own, built where the object is known)."""
        code = {"timeout": 504, "conflict": 409}.get(self.kind, self.status)
        message = self.message or MESSAGES.get(code, f"injected fault ({code})")
        return code, REASONS.get(code, ""), message


@dataclass
class Active:
    spec: KubeFault
    remaining: int | None
    skip: int
    fired: int = 0

    def view(self, index: int) -> dict[str, Any]:
        return self.spec.model_dump(mode="json", by_alias=True, exclude_none=True) | {
            "index": index,
            "remaining": self.remaining,
            "fired": self.fired,
        }


class Faults:
    """The cluster's faults, in the order they were added; the first that applies answers."""

    def __init__(self) -> None:
        self.active: list[Active] = []

    def add(self, spec: KubeFault) -> None:
        self.active.append(Active(spec, spec.count, spec.after))

    def clear(self) -> None:
        self.active.clear()

    def view(self) -> list[dict[str, Any]]:
        """Every fault with its uses left and how many requests it answered."""
        return [active.view(n) for n, active in enumerate(self.active)]

    def take(self, info: RequestInfo, raw: bytes, now: datetime) -> KubeFault | None:
        """The fault that answers this request, if any, counting it. Every fault that applies
        counts the request against its `after`, whichever one answers."""
        if not self.active:
            return None
        body = raw.decode("utf-8", "replace")
        chosen: Active | None = None
        for active in self.active:
            if not active.spec.applies(info, body, now):
                continue
            if active.skip > 0:
                active.skip -= 1
                continue
            if chosen is None and active.remaining != 0:
                chosen = active
        if chosen is None:
            return None
        chosen.fired += 1
        if chosen.remaining is not None:
            chosen.remaining -= 1
        return chosen.spec
