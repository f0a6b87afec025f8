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
# Under xdist (make test) the rounds run in a worker: its summary lines travel to the controller.
WORKER_LINES: pytest.StashKey[list[str]] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "chaos suite (tests/chaos)")
    group.addoption("--chaos-schedules", type=int, default=8, help="fault schedules to run")
    group.addoption("--chaos-pools", type=int, default=8, help="schedules (pools) per round")
    group.addoption("--chaos-first-seed", type=int, default=0, help="seed of the first round")
    group.addoption("--chaos-seed", type=int, default=None, help="replay the round of this seed")
    group.addoption("--chaos-report", default=None, help="write the figures here (Markdown)")


def pytest_configure(config: pytest.Config) -> None:
    if config.option.chaos_report and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--chaos-report needs one process (no -n): a worker sees its own")


def _lines(config: pytest.Config) -> list[str]:
    tally = config.stash.get(TALLY, None)
    return tally.lines() if tally is not None and tally.rounds else []


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)  # set in an xdist worker only
    if output is not None:
        output["chaos_lines"] = _lines(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller, as a worker ends: keep the chaos lines it sent."""
    lines = getattr(node, "workeroutput", {}).get("chaos_lines", [])
    node.config.stash.setdefault(WORKER_LINES, []).extend(lines)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = _lines(config) + config.stash.get(WORKER_LINES, [])
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)
