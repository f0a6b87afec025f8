"""Pytest options of the chaos suite (loaded with `-p tests.chaos.plugin`, see pyproject.toml)
and its summary at the end of the session.

    --chaos-schedules N   fault schedules to run (default 8: the small run, one round)
    --chaos-pools N       schedules (pools) per round, at most 20 (default 8)
    --chaos-first-seed S  the first round's seed (rounds use S, S+1, ...)
    --chaos-seed S        replay the one round of seed S
    --chaos-report PATH   write the figures as Markdown (make chaos: bench/results/chaos.md)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # loaded with every pytest run: the suite's modules only when it runs
    from tests.chaos.report import Tally

TALLY: pytest.StashKey[Tally] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "chaos suite (tests/chaos)")
    group.addoption("--chaos-schedules", type=int, default=8, help="fault schedules to run")
    group.addoption("--chaos-pools", type=int, default=8, help="schedules (pools) per round")
    group.addoption("--chaos-first-seed", type=int, default=0, help="seed of the first round")
    group.addoption("--chaos-seed", type=int, default=None, help="replay the round of this seed")
    group.addoption("--chaos-report", default=None, help="write the figures here (Markdown)")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    tally = config.stash.get(TALLY, None)
    if tally is not None and tally.rounds:
        terminalreporter.section("chaos")
        for line in tally.lines():
            terminalreporter.write_line(line)
