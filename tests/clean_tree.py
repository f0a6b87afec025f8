"""A test run leaves the checkout as it found it (issue 18): when `git status` is empty at the
start of a session, it must be empty at the end, or the run fails naming what changed. Tests
write to their temp dirs; only the targets made to write the tree (`make screenshots`, `make
chaos`'s report) are exempt. Loaded by tests/conftest.py; checked once, by the xdist
controller (or the only process), after every test ran.
"""

from __future__ import annotations

import subprocess

import pytest

from local.azurite import ROOT

CLEAN_AT_START: pytest.StashKey[bool] = pytest.StashKey()
CHANGED: pytest.StashKey[str] = pytest.StashKey()


def _status() -> str | None:
    """`git status --porcelain` of the checkout; None when there is no git checkout to ask."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _checked(config: pytest.Config) -> bool:
    """Not in an xdist worker (the controller checks once), nor in a run asked to write the
    tree."""
    writes_tree = config.getoption("screenshots", None) or config.getoption("chaos_report", None)
    return not hasattr(config, "workerinput") and not writes_tree


def pytest_sessionstart(session: pytest.Session) -> None:
    if _checked(session.config):
        # A tree already dirty (someone editing while tests run) cannot be judged: not checked.
        session.config.stash[CLEAN_AT_START] = _status() == ""


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not session.config.stash.get(CLEAN_AT_START, False):
        return
    changed = _status()
    if changed:
        session.config.stash[CHANGED] = changed
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    changed = config.stash.get(CHANGED, None)
    if changed:
        terminalreporter.section("the test run changed the checkout", red=True)
        terminalreporter.write_line("git status --porcelain after the run (it was clean before):")
        terminalreporter.write_line(changed.rstrip())
