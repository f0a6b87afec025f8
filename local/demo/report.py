"""The demo's output with `rich`: a rule per step, one line per event stamped with simulated time,
a spinner while it waits, and the closing summary table.

Used by `local.demo.story` and `local.demo.__main__`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table


@dataclass(frozen=True)
class StepResult:
    """One step of the story: what it said it would do, what it saw, and whether they match."""

    name: str
    expected: str
    happened: str
    ok: bool


class Report:
    def __init__(self, console: Console) -> None:
        self.console = console

    def step(self, number: int, title: str, plan: str) -> None:
        self.console.rule(f"[bold]{number}. {escape(title)}")
        self.console.print(f"[italic]{escape(plan)}")

    def say(self, at: datetime | None, text: str) -> None:
        """One event; `at` is the simulated time it happened (None: not about the world)."""
        stamp = f"{at:%a %H:%M}" if at else "         "
        self.console.print(f"[dim]{stamp}[/] {escape(text)}", soft_wrap=True)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        self.console.print(table)

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        with self.console.status(f"waiting for {escape(what)}…"):
            yield

    def summary(self, results: list[StepResult]) -> None:
        table = Table(title="Summary", title_justify="left", show_lines=True)
        table.add_column("step", no_wrap=True)
        table.add_column("result", no_wrap=True)
        table.add_column("expected", overflow="fold")
        table.add_column("happened", overflow="fold")
        for result in results:
            table.add_row(
                escape(result.name),
                "[green]PASS" if result.ok else "[red]FAIL",
                escape(result.expected),
                escape(result.happened),
            )
        self.console.print(table)
