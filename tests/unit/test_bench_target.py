"""`make bench` runs every benchmark in bench/ (docs cite their results files)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_bench_runs_every_benchmark_module() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nbench: deps\n", 1)[1].split("\n\n", 1)[0]
    run = set(re.findall(r"-m bench\.(\w+)", recipe))
    runnable = {
        path.stem for path in (ROOT / "bench").glob("*.py") if "__main__" in path.read_text()
    }
    assert runnable - run == set(), "add these to the bench target of the Makefile"
    assert run <= runnable
