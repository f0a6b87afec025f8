"""A cluster's circuit breaker, as plain data. After FAILURES_TO_OPEN calls in a row that got no
answer (connection refused, timed out) or the API server's 5xx, the breaker opens: calls to that
cluster fail at once for OPEN_SECONDS instead of each waiting out its timeout, so a hung cluster
does not hold the workers other clusters' jobs need. Then one call is let through (half-open):
its answer closes the breaker, its failure opens it again. Times are wall seconds (a monotonic
clock): what the breaker saves is wall time spent waiting on sockets."""

from __future__ import annotations

from dataclasses import dataclass, replace

FAILURES_TO_OPEN = 3
OPEN_SECONDS = 60.0


@dataclass(frozen=True)
class Breaker:
    failures: int = 0  # in a row
    opened_at: float | None = None
    trial_since: float | None = None  # a half-open call is under way
    last_error: str = ""

    @property
    def open(self) -> bool:
        return self.opened_at is not None


def admit(breaker: Breaker, now: float) -> tuple[bool, Breaker]:
    """Whether a call may go now, and the breaker after letting it (a half-open trial is marked,
    so concurrent calls keep failing fast until its answer; a trial that never reports back is
    given up after OPEN_SECONDS)."""
    if breaker.opened_at is None:
        return True, breaker
    if now < breaker.opened_at + OPEN_SECONDS:
        return False, breaker
    if breaker.trial_since is not None and now < breaker.trial_since + OPEN_SECONDS:
        return False, breaker
    return True, replace(breaker, trial_since=now)


def after_success(breaker: Breaker) -> Breaker:
    """The cluster answered: closed, the count cleared."""
    return Breaker() if breaker.failures or breaker.open else breaker


def after_failure(breaker: Breaker, now: float, error: str) -> Breaker:
    """A call got no answer or a 5xx: counted; open at the threshold (again, from a trial)."""
    failures = breaker.failures + 1
    opens = breaker.open or failures >= FAILURES_TO_OPEN
    return Breaker(
        failures=failures,
        opened_at=now if opens else None,
        trial_since=None,
        last_error=error[:300],
    )


def retry_in(breaker: Breaker, now: float) -> float:
    """Wall seconds until the breaker lets a call through (0 when it would now)."""
    if breaker.opened_at is None:
        return 0.0
    return max(0.0, breaker.opened_at + OPEN_SECONDS - now)
