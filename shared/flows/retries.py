"""How a step waits out a temporary Azure error: after Azure's Retry-After (as product time) or a
fixed delay, marked as a retry so the runner bounds the run (POOLKEEPER_RETRY_MINUTES).
Called by the scale and reconcile steps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.adapters.scaleset import TemporaryAzureError
from shared.clock import product_delay
from shared.flows.jobs import StepContext
from shared.jobs import Wait

RETRY = timedelta(seconds=30)


def temporary_wait(
    step: str, state: dict[str, Any], error: TemporaryAzureError, ctx: StepContext
) -> Wait:
    """Come back to `step` after the delay Azure asked for (or RETRY)."""
    delay = product_delay(ctx.services.clock, error.retry_after) if error.retry_after else RETRY
    return Wait(
        step,
        delay,
        state,
        reason=f"{type(error).__name__} {error.code}: {error.message}",
        error=error.code or type(error).__name__,
    )
