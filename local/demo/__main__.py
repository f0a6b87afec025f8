"""`python -m local.demo [--short] [--keep]`: start the stack on the demo scenario, tell the story,
print the summary and the status page's URL; exit 0 only if every step did what it said.

Ctrl-C (or SIGTERM) at any point stops the stack and everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from local.azurite import ROOT
from local.demo.clients import Cluster, Notifications, Product, World
from local.demo.report import Report, StepResult
from local.demo.running import DemoError, Stack, stack_environment
from local.demo.story import SCHEDULES, STORY, Demo, Facts, Seen, StepFailed

SCENARIO = ROOT / "local" / "scenarios" / "demo.json"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM takes Ctrl-C's way out: the stack is stopped on it


def _tell(demo: Demo, short: bool) -> list[StepResult]:
    results = []
    chapters = [chapter for chapter in STORY if chapter.short or not short]
    for number, chapter in enumerate(chapters, start=1):
        demo.report.step(number, chapter.title, chapter.plan)
        began = time.monotonic()
        try:
            seen = chapter.step(demo)
        except (StepFailed, DemoError) as error:
            seen = Seen(chapter.title, str(error), False)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            # The product answered something the story did not expect: a failed step, not a
            # lost summary (requests' errors are OSErrors).
            seen = Seen(chapter.title, repr(error), False)
        verdict = "as expected" if seen.ok else "NOT as expected"
        demo.report.say(None, f"{verdict}, in {time.monotonic() - began:.0f} s")
        results.append(StepResult(chapter.name, seen.expected, seen.happened, seen.ok))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__)
    parser.add_argument("--short", action="store_true", help="skip the patch and image runs")
    parser.add_argument(
        "--keep", action="store_true", help="leave the stack running at the end, until Ctrl-C"
    )
    parser.add_argument("--scenario", type=Path, default=SCENARIO, help="default: %(default)s")
    parser.add_argument("--port", type=int, default=0, help="local host port (default: a free one)")
    parser.add_argument("--logs", type=Path, help="folder for logs and state (default: a temp dir)")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    report = Report(console)
    # Set for SIGINT too: Python leaves it ignored when the parent did (a job started with `&`
    # by a shell without job control, as CI runners do), and Ctrl-C would then not stop the demo.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    logs = (args.logs or Path(tempfile.mkdtemp(prefix="poolkeeper-demo-"))).resolve()
    began = time.monotonic()
    stack = Stack(args.scenario.resolve(), logs, args.port, stack_environment(SCHEDULES))
    try:
        facts = Facts.read(args.scenario)
        with report.waiting("the local stack (Azurite, the Azure simulator, the Functions host)"):
            endpoints = stack.start()
        report.say(None, f"stack up in {time.monotonic() - began:.0f} s; logs in {logs}")
        product = Product(endpoints["host"], endpoints["function_key"])
        world = World(endpoints["admin"])
        cluster = Cluster(endpoints["kube"])
        notes = Notifications(endpoints["storage"])
        demo = Demo(product, world, cluster, notes, report, facts, stack.alive)
        results = _tell(demo, args.short)
        report.summary(results)
        passed = sum(r.ok for r in results)
        console.print(
            f"demo: {passed}/{len(results)} steps as expected in {time.monotonic() - began:.0f} s"
        )
        later = "" if args.keep else " (stopped with the stack now: --keep leaves it up)"
        console.print(f"status page: {product.dashboard_url()}{later}", soft_wrap=True)
        if args.keep:
            console.print("the stack keeps running; Ctrl-C stops it")
            # Ctrl-C is the way out here, not an interruption: the exit status stays the story's.
            with contextlib.suppress(KeyboardInterrupt):
                while stack.alive():
                    time.sleep(0.5)
        return 0 if passed == len(results) else 1
    except KeyboardInterrupt:
        console.print("demo: interrupted")
        return 130
    except DemoError as error:
        console.print(f"demo: {error}", soft_wrap=True)
        return 1
    finally:
        # Ctrl-C again while the stack stops would leave its parts running: not now.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with report.waiting("the stack to stop"):
            stack.stop()
        console.print("the stack is stopped")


if __name__ == "__main__":
    sys.exit(main())
