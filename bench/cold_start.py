"""Cold start: import time of `function_app` as shipped (lazy SDKs) against an eager import of
every SDK the product uses. Run `make bench`; writes bench/results/cold_start.md."""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "cold_start.md"
RUNS = 7
SDKS = (
    "azure.identity",
    "azure.mgmt.compute",
    "azure.monitor.query",
    "azure.monitor.querymetrics",
    "azure.storage.queue",
    "azure.storage.blob",
    "azure.data.tables",
    "kubernetes.client",
)
CASES = {
    "import function_app (as shipped)": "import function_app",
    "import function_app + every SDK eagerly": "import function_app\n"
    + "\n".join(f"import {name}" for name in SDKS),
}


def _seconds(code: str) -> float:
    timed = f"import time\nstart = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)"
    result = subprocess.run(
        [sys.executable, "-c", timed], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip())


def main() -> None:
    rows = []
    for name, code in CASES.items():
        samples = sorted(_seconds(code) for _ in range(RUNS))
        rows.append((name, statistics.median(samples), samples[0], samples[-1]))
    lines = [
        "# Cold start: importing the function app",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"Python {platform.python_version()}, {RUNS} fresh interpreters per case "
        "(time of the imports only, interpreter start-up excluded).",
        "",
        "| case | median ms | min ms | max ms |",
        "|---|---:|---:|---:|",
        *(f"| {n} | {m * 1000:.0f} | {lo * 1000:.0f} | {hi * 1000:.0f} |" for n, m, lo, hi in rows),
        "",
        f"Lazy SDK imports save about {(rows[1][1] - rows[0][1]) * 1000:.0f} ms of every cold "
        "start (the SDKs load when a function first needs them). Reproduce with `make bench`.",
        "",
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
