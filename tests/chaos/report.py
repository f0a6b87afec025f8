"""The chaos run's figures: what ran (schedules, faults, kills, Azurite restarts), how the jobs
ended, and every violation with its seed; as terminal lines and as bench/results/chaos.md.

Filled by the chaos test round by round; printed by the plugin at the end of the session.
"""

from __future__ import annotations

import platform
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.driver import RoundResult
from tests.chaos.invariants import known_issue


@dataclass
class Tally:
    started: float = field(default_factory=time.monotonic)
    rounds: int = 0
    schedules: int = 0
    heavy_schedules: int = 0
    seeds: list[int] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    jobs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (generator, outcome)
    product_jobs: Counter[tuple[str, str]] = field(default_factory=Counter)  # enqueued by it
    reasons: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    kills_after_send: Counter[str] = field(default_factory=Counter)  # by the operation sent
    operator_acts: Counter[str] = field(default_factory=Counter)  # cordons, node images, brakes
    azurite_restarts: int = 0
    violations: list[tuple[int, str]] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)  # known bug -> rounds it showed in
    known_seeds: dict[str, list[int]] = field(default_factory=dict)
    round_seconds: list[float] = field(default_factory=list)
    round_lines: list[str] = field(default_factory=list)  # one per round: what it ran

    def add(self, result: RoundResult, violations: list[str]) -> None:
        rnd = result.round
        self.rounds += 1
        self.schedules += len(rnd.schedules)
        self.heavy_schedules += len(rnd.schedules) if rnd.heavy else 0
        self.seeds.append(rnd.seed)
        self.faults.update(result.faults)
        shocks = Counter(
            what.split(" ")[0]
            for d in result.done
            if (what := d.split("s ", 1)[-1]).startswith(("SIGKILL", "Azurite"))
        )
        self.kills += shocks["SIGKILL"]
        self.azurite_restarts += shocks["Azurite"]
        self.kills_after_send.update(result.kills_after_send)
        self.operator_acts.update(
            {
                "cordons mid-rollout": len(result.cordons),
                "node images on a model": result.node_images,
                "pools grown under the repair brake": len(result.brakes),
            }
        )
        sent = {s.id: s for s in result.sent}
        for record in result.records.values():
            if record.id in sent:
                self.jobs[(sent[record.id].generator, record.status)] += 1
            elif "-final-" not in record.id:
                self.product_jobs[(record.kind, record.status)] += 1
            if record.status == "failed" and record.error:
                self.reasons[_reason(record.error)] += 1
        for issue in {i for v in violations if (i := known_issue(v)) is not None}:
            self.known[issue] += 1
            self.known_seeds.setdefault(issue, []).append(rnd.seed)
        self.violations += [(rnd.seed, v) for v in violations if known_issue(v) is None]
        self.round_seconds.append(result.wall_seconds)
        self.round_lines.append(
            f"seed {rnd.seed}: {len(rnd.schedules)} schedules, {len(result.sent)} jobs sent, "
            f"{len(result.records)} in all, faults {dict(result.faults)}, "
            f"kills {shocks['SIGKILL']}, Azurite restarts {shocks['Azurite']}, "
            f"{sum(known_issue(v) is None for v in violations)} violations "
            f"(+{sum(known_issue(v) is not None for v in violations)} of a known bug), "
            f"{result.wall_seconds:.0f} s"
        )

    def lines(self) -> list[str]:
        took = time.monotonic() - self.started
        out = [*self.round_lines]
        out += [
            f"chaos: {self.rounds} rounds, {self.schedules} schedules "
            f"({self.heavy_schedules} with host kills or Azurite restarts), {self.kills} kills, "
            f"{self.azurite_restarts} Azurite restarts, {len(self.violations)} violations, "
            f"{took:.0f} s",
            "faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
            "kills right after a send: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.kills_after_send.items())) or "none"),
            "operator: " + ", ".join(f"{k} {v}" for k, v in sorted(self.operator_acts.items())),
            "jobs: " + ", ".join(f"{g} {o} {n}" for (g, o), n in sorted(self.jobs.items())),
        ]
        out += [
            f"VIOLATION (replay: --chaos-seed {s} and the same --chaos-pools): {v}"
            for s, v in self.violations
        ]
        out += [
            f"KNOWN BUG in {n} rounds (seeds {_ranges(self.known_seeds[k])[:80]}): {k}"
            for k, n in self.known.items()
        ]
        return out

    def markdown(self, command: str) -> str:
        took = time.monotonic() - self.started
        rows = sorted({g for g, _ in self.jobs})
        outcomes = ["done", "failed"]
        job_table = "\n".join(
            f"| {g} | " + " | ".join(str(self.jobs[(g, o)]) for o in outcomes) + " |" for g in rows
        )
        product_table = "\n".join(
            f"| {k} (enqueued by Poolkeeper) | "
            + " | ".join(str(self.product_jobs[(k, o)]) for o in outcomes)
            + " |"
            for k in sorted({k for k, _ in self.product_jobs})
        )
        fault_table = "\n".join(f"| {k} | {v} |" for k, v in sorted(self.faults.items()))
        fault_table += "".join(
            f"\n| worker killed right after {k} took effect | {v} |"
            for k, v in sorted(self.kills_after_send.items())
        )
        fault_table += "".join(f"\n| {k} | {v} |" for k, v in sorted(self.operator_acts.items()))
        reason_table = "\n".join(f"| {n} | {r} |" for r, n in self.reasons.most_common(12))
        violations = (
            "\n".join(f"- seed {s}: {v}" for s, v in self.violations) if self.violations else "none"
        )
        known = (
            "\n".join(
                f"- in {n} rounds (seeds {_ranges(self.known_seeds[k])}): {k}"
                for k, n in self.known.items()
            )
            or "none"
        )
        slowest = max(self.round_seconds, default=0.0)
        return f"""# Chaos suite

`{command}` on {platform.node()} ({platform.machine()}, Python {platform.python_version()}),
{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.

Three local Functions hosts on the same queues, one Azurite (on disk), the Azure and Kubernetes
simulators; a round loads a fresh world with one schedule per chaos pool, plays its
jobs and faults, waits for every job to end, settles with a last reconcile and checks the
invariants (tests/chaos/invariants.py). Replay a round with `--chaos-seed SEED`.

| figure | value |
|---|---|
| rounds | {self.rounds} |
| fault schedules | {self.schedules} |
| schedules in rounds with host kills or Azurite restarts | {self.heavy_schedules} |
| host kills (SIGKILL) | {self.kills} |
| Azurite restarts | {self.azurite_restarts} |
| invariant violations (new) | {len(self.violations)} |
| rounds showing a known, reported bug | {sum(self.known.values())} |
| duration | {took / 60:.1f} min (slowest round {slowest:.0f} s) |

## Faults by kind

| fault | injected |
|---|---|
{fault_table}

## Jobs by kind and outcome

| job | done | failed |
|---|---|---|
{job_table}
{product_table}

## Most common failure reasons (a failed job is an allowed outcome: it says why)

| jobs | reason |
|---|---|
{reason_table}

## Violations

{violations}

## Known bugs found by this suite, reported, not fixed yet

{known}

Seeds run: {_ranges(self.seeds)}
"""

    def write(self, path: Path, command: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown(command))


def _reason(error: str) -> str:
    """A failure reason without the parts that differ from job to job (names, ids, numbers)."""
    words = ":".join(error.split(":")[0:2])
    words = re.sub(r"aks-chaos\S+", "NODE", words)
    return re.sub(r"\d+", "N", words)[:100].replace("|", "/")


def _ranges(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    ordered, spans = sorted(seeds), []
    first = last = ordered[0]
    for seed in ordered[1:]:
        if seed == last + 1:
            last = seed
            continue
        spans.append(f"{first}-{last}" if last > first else str(first))
        first = last = seed
    spans.append(f"{first}-{last}" if last > first else str(first))
    return ", ".join(spans)
