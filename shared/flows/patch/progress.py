"""What one step of a node's patch did (`Progress`), and the ways a node's patch ends early:
given back and the rollout halted, with why. Shared by `node` (claim, drain, Ready, soak) and
`operations` (install, restart, manual upgrade).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.scaleset import AzureCallError
from shared.flows.claims import Owner, release, why_not_idle
from shared.flows.jobs import StepContext

POLL = timedelta(seconds=15)


@dataclass(frozen=True)
class Progress:
    """What one advance did: come back after `delay`; STARTED (record the state now, before
    anything else); or the node ended (`outcome` set): `halt` says the rollout must take no
    further node down, `skipped` that the node was never taken (it goes to "not reached")."""

    delay: timedelta | None = None
    started: bool = False
    outcome: str | None = None
    halt: bool = False
    skipped: bool = False


STARTED = Progress(started=True)


def enter(node: dict[str, Any], phase: str, now: datetime, deadline: datetime | None) -> None:
    """Move the node to `phase`, waiting until `deadline` at the latest. The deadline is kept in
    the node's state (`nodes.<node>.deadline`), where the pool status finds a stalled claim."""
    node["phase"], node["since"] = phase, now.isoformat()
    if deadline is None:
        node.pop("deadline", None)
    else:
        node["deadline"] = deadline.isoformat()


def past(node: dict[str, Any], now: datetime) -> bool:
    """Whether the node's current wait has passed its deadline."""
    return "deadline" in node and now > datetime.fromisoformat(node["deadline"])


def still_ours(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> str | None:
    """Why the node must not be worked on now: no longer ours, uncordoned, or pods back."""
    return why_not_idle(ctx.kube, node["name"], owner)


def failed(
    ctx: StepContext, owner: Owner, node: dict[str, Any], error: AzureCallError | str
) -> Progress:
    """The node did not make it: give it back, say why, and halt the rollout."""
    why = error if isinstance(error, str) else f"{error.code}: {error.message}"
    ctx.before_write()
    released = release(ctx.kube, node["name"], owner)
    node.pop("deadline", None)
    return Progress(outcome=f"failed in {node['phase']}: {why}; {released}", halt=True)
