"""`make demo`'s short version end to end: `python -m local.demo --short` starts the stack (Azurite,
the Azure simulator, the local Functions host, on free ports), tells the capacity and count-truth
steps and the closing comparison against it, and leaves no process behind; so does a Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.azurite import ROOT
from local.demo.running import DemoError
from local.demo.story import Facts
from tests.integration.test_stack import _alive, _descendants

pytestmark = pytest.mark.integration

SHORT_STEPS = ("capacity", "count truth", "record = truth")
TIMEOUT = 240  # wall seconds for the short run on a loaded machine (it takes about 35 s)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _demo(
    folder: Path, *args: str, sigint_ignored: bool = False
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the demo in a session of its own; its output goes to a file (returned).
    `sigint_ignored`: it inherits SIGINT ignored, as from a CI runner's background job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLKEEPER_", "AzureWebJobs"))}
    out = folder / "demo.out"
    with open(out, "wb") as stdout:
        demo = subprocess.Popen(
            [sys.executable, "-m", "local.demo", "--logs", str(folder / "logs"), *args],
            cwd=ROOT,
            env=env | {"COLUMNS": "160"},
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
    return demo, out


def _watch(
    demo: subprocess.Popen[bytes], out: Path, until: float, stop_when: str | None = None
) -> set[int]:
    """Every process the demo started, seen while it runs (until it ends, the deadline passes,
    or its output shows `stop_when`)."""
    seen: set[int] = set()
    while demo.poll() is None and time.monotonic() < until:
        seen |= _descendants(demo.pid)
        if stop_when and stop_when in out.read_text():
            break
        time.sleep(0.2)
    return seen


def _stopped(demo: subprocess.Popen[bytes], seen: set[int]) -> None:
    """End the demo if it still runs (SIGTERM: it stops its stack), then check nothing is left."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in seen):
        time.sleep(0.1)
    assert not [pid for pid in seen if _alive(pid)], "the demo left processes behind"


def test_short_demo_tells_its_steps_passes_and_stops_everything(tmp_path: Path) -> None:
    demo, out = _demo(tmp_path, "--short")
    seen: set[int] = set()
    try:
        seen = _watch(demo, out, time.monotonic() + TIMEOUT)
        output = out.read_text()
        assert demo.poll() == 0, output[-6000:]
    finally:
        _stopped(demo, seen)
    assert len(seen) >= 4  # the stack, Azurite, the simulator and the host at least
    lines = output.splitlines()
    for step in SHORT_STEPS:  # its summary row: the name, then PASS on the same line
        assert any(line.startswith(f"│ {step} ") and "│ PASS" in line for line in lines), step
    assert not any("FAIL" in line for line in lines), output
    assert f"demo: {len(SHORT_STEPS)}/{len(SHORT_STEPS)} steps as expected" in output
    assert "notification P1: P1/group/workers firing" in output
    assert "CannotAllocateRemainingVMsInAvailabilitySet" in output
    assert "status page: http://127.0.0.1:" in output and "code=" not in output
    assert "the stack is stopped" in output


def test_ctrl_c_stops_the_stack_and_everything_it_started(tmp_path: Path) -> None:
    # Started with SIGINT ignored, as CI's runner starts jobs: Ctrl-C must still stop the demo (it
    # finished with 0 instead when it relied on Python's default handler).
    demo, out = _demo(tmp_path, "--short", sigint_ignored=True)
    seen: set[int] = set()
    try:
        seen = _watch(demo, out, time.monotonic() + 120, stop_when="stack up in")
        assert demo.poll() is None, out.read_text()
        demo.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends it
        # Its output says where the interrupt landed: -2 once (round 11, stop 27), not traced.
        assert demo.wait(timeout=60) == 130, out.read_text()[-3000:]
    finally:
        _stopped(demo, seen)
    assert len(seen) >= 4
    output = out.read_text()
    assert "demo: interrupted" in output and "the stack is stopped" in output


def test_the_story_reads_its_facts_from_the_scenario_and_refuses_one_that_does_not_fit() -> None:
    # local.demo reads them before it starts anything: small.json has no patch window.
    with pytest.raises(DemoError, match=r"small\.json does not fit the story: .*patch window"):
        Facts.read(ROOT / "local" / "scenarios" / "small.json")
    facts = Facts.read(ROOT / "local" / "scenarios" / "demo.json")
    assert (facts.scale_set, facts.kernel) == ("demo-workers-vmss", "6.8.0-1017-azure")
