"""The demo's stack: `python -m local.stack` as a child process (Azurite, the Azure simulator and
the local Functions host behind it), read for its endpoint line and stopped on every way out.

Used by `local.demo.__main__`.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from local.azurite import ROOT
from local.procs import stop_group

START_TIMEOUT = 120.0  # seconds for all three parts to answer, on a loaded machine
STOP_GRACE = 30.0  # the stack stops its three parts, each with its own grace


class DemoError(RuntimeError):
    """The demo cannot go on (the stack did not start, an endpoint answered nonsense)."""


def stack_environment(schedules: dict[str, str]) -> dict[str, str]:
    """This shell's environment without Poolkeeper's own settings (a user's POOLKEEPER_* or
    AzureWebJobs* would change the story), plus the timer schedules the story relies on."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POOLKEEPER_", "AzureWebJobs"))
    }
    return env | schedules


class Stack:
    """`python -m local.stack` started by `start` (which returns its endpoint line, see
    docs/local-stack.md) and stopped, with all it started, by `stop`."""

    def __init__(self, scenario: Path, logs: Path, port: int, env: dict[str, str]) -> None:
        self.scenario = scenario
        self.logs = logs
        self.port = port
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, Any]:
        self.logs.mkdir(parents=True, exist_ok=True)
        errors = self.logs / "stack.err"
        with open(errors, "ab") as err:
            # A session of its own: a Ctrl-C in the terminal reaches the demo only, which then
            # stops the stack in order (SIGTERM: the stack stops its parts).
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "local.stack",
                    "--scenario",
                    str(self.scenario),
                    "--logs",
                    str(self.logs),
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        try:
            return self._endpoints(errors)
        except BaseException:
            self.stop()
            raise

    def _endpoints(self, errors: Path) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if selector.select(timeout=0.5):
                    line = self.process.stdout.readline()
                    if line:
                        return json.loads(line)
                if self.process.poll() is not None:
                    raise DemoError(
                        f"the local stack exited with code {self.process.returncode}: "
                        f"{errors.read_text().strip() or 'no message'} (logs in {self.logs})"
                    )
        raise DemoError(
            f"the local stack was not up after {START_TIMEOUT:.0f} s (logs in {self.logs})"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace=STOP_GRACE)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
