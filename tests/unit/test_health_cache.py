"""The anonymous health route answers from a short cache."""

from __future__ import annotations

from collections.abc import Mapping

from shared.flows.health import HealthCache, HealthReport


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_report_is_reused_for_its_ttl_then_made_afresh() -> None:
    made: list[int] = []

    def compute(settings: Mapping[str, str]) -> HealthReport:
        made.append(1)
        return HealthReport(ok=len(made) == 1, body={"n": len(made)})

    clock = Clock()
    cache = HealthCache(ttl=10, monotonic=clock, compute=compute)
    first = cache.report({})
    for _ in range(1000):  # a flood of requests within the ttl: one report
        assert cache.report({}) is first
    clock.now += 9.9
    assert cache.report({}) is first and len(made) == 1
    clock.now += 0.2
    fresh = cache.report({})
    assert fresh.body == {"n": 2} and not fresh.ok and len(made) == 2
