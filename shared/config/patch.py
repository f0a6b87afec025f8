"""A pool's `patch` section (docs/patching.md): the maintenance window, how many nodes may be out,
soak, deadlines, blockers, and what to do with a node that cannot be drained.

Part of the pool configuration (`shared.config.Pool.patch`); every field is optional.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_SELECTOR_TERM = re.compile(
    r"\s*[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?\s*((=|==|!=)\s*[A-Za-z0-9._-]{0,63}\s*)?"
)

# What each field accepts, in the words the error messages use.
PATCH_ALLOWED = {
    "automatic": "true or false (default false: the patch timer leaves the pool alone; jobs "
    "submitted by hand or by other systems still run)",
    "window": "an object with days, start, end and time_zone (docs/patching.md)",
    "days": f"a list of days from {', '.join(DAYS)} (default: every day)",
    "start": "a time HH:MM (24 h, default 00:00)",
    "end": "a time HH:MM (24 h, default 23:59; earlier than start means the window ends next day)",
    "time_zone": "an IANA time zone such as UTC or Europe/Stockholm (default UTC)",
    "max_unavailable": "a whole number of nodes from 1 to 100 (default 1)",
    "soak_minutes": "a whole number of minutes from 0 to 1440 (default 5)",
    "drain_timeout_minutes": "a whole number of minutes from 1 to 1440 (default 30)",
    "ready_timeout_minutes": "a whole number of minutes from 1 to 240 (default 15)",
    "install_timeout_minutes": "a whole number of minutes from 1 to 90 (default 90, Azure's own "
    "limit for a run command)",
    "upgrade_timeout_minutes": "a whole number of minutes from 1 to 1440 (default 60)",
    "blocking_pod_selectors": (
        "a list of label selectors like app=database,tier!=cache (pods on a node that match "
        "any of them hold its patch)"
    ),
    "undrainable": "skip (uncordon and report) or quarantine (keep cordoned, label, report)",
    "mode": "updates (install updates, then reboot) or reboot_only (reboot nodes that ask for it)",
    "kured_daemonset": "namespace/name of kured's DaemonSet, whose lock Poolkeeper respects",
}


class Window(BaseModel):
    """When a pool may be patched: on `days`, from `start` to `end`, in `time_zone`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = DAYS
    start: StrictStr = "00:00"
    end: StrictStr = "23:59"
    time_zone: StrictStr = "UTC"

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one day")
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError("must be HH:MM")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone") from None
        return value


class PatchSettings(BaseModel):
    """A pool's patch section; the defaults patch one node at a time, any day, any hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    automatic: StrictBool = False
    window: Window = Window()
    max_unavailable: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    soak_minutes: Annotated[StrictInt, Field(ge=0, le=1440)] = 5
    drain_timeout_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = 30
    ready_timeout_minutes: Annotated[StrictInt, Field(ge=1, le=240)] = 15
    install_timeout_minutes: Annotated[StrictInt, Field(ge=1, le=90)] = 90
    upgrade_timeout_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = 60
    blocking_pod_selectors: tuple[StrictStr, ...] = ()
    undrainable: Literal["skip", "quarantine"] = "skip"
    mode: Literal["updates", "reboot_only"] = "updates"
    kured_daemonset: StrictStr = "kube-system/kured"

    @field_validator("blocking_pod_selectors")
    @classmethod
    def _selectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for selector in value:
            if not selector.strip() or not all(
                _SELECTOR_TERM.fullmatch(term) for term in selector.split(",")
            ):
                raise ValueError(f"{selector!r} is not a label selector like app=db,tier!=cache")
        return value

    @field_validator("kured_daemonset")
    @classmethod
    def _namespaced(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?", value):
            raise ValueError("must be namespace/name")
        return value
