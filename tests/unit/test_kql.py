"""The KQL in shared/queries/, checked by Microsoft's Kusto analyzer (npm
@kusto/language-service-next, run by tests/kql/check.mjs) against the Container Insights table
schemas: no syntax, semantic or analyzer diagnostic, and the result columns the adapter reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.usage import NODE_USAGE_COLUMNS, NODE_USAGE_QUERY

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "kql" / "check.mjs"
QUERIES = sorted((ROOT / "shared" / "queries").glob("*.kql"))
PACKAGE = ROOT / "node_modules" / "@kusto" / "language-service-next" / "package.json"


def run_check(*files: Path, json_output: bool = True) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the KQL check needs Node.js (20, as Azurite does)")
    if not PACKAGE.exists():
        pytest.fail(f"{PACKAGE.parent} is missing: run `npm ci` in {ROOT}")
    flags = ["--json"] if json_output else []
    return subprocess.run(
        [node, str(CHECK), *flags, *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # about 2 s; minutes when two suites share a loaded 2-core machine
        check=False,
    )


def report(process: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert process.stdout, process.stderr
    return {entry["file"]: entry for entry in json.loads(process.stdout)["files"]}


WRONG = {  # id: (query, the one diagnostic's code, the text it points at)
    "unknown-column": (
        'Perf | where ObjectName == "K8SNode" | summarize avg(CounterValu) by Computer',
        "KS142",
        "CounterValu",
    ),
    "unknown-label-column": (
        "KubeNodeInventory | project Computer, NodeLabels",
        "KS142",
        "NodeLabels",
    ),
    "unknown-table": ("InsightsMetrics | take 1", "KS204", "InsightsMetrics"),
    "type-error": ("Perf | extend X = CounterValue + Computer", "KS106", "+"),
    "join-kind": ("Perf | join (KubeNodeInventory) on Computer", "KS508", "join"),
}


@pytest.fixture(scope="module")
def shipped() -> subprocess.CompletedProcess[str]:
    """One analyzer run over every shipped query (node starts in about 2 s, so run it once)."""
    return run_check(*QUERIES)


@pytest.fixture(scope="module")
def wrong(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    """One analyzer run over a file per deliberately wrong query: (exit code, report by id)."""
    folder = tmp_path_factory.mktemp("wrong-kql")
    files = {}
    for name, (query, _, _) in WRONG.items():
        files[name] = folder / f"{name}.kql"
        files[name].write_text(f"// poolkeeper:node-usage\n{query}\n")
    process = run_check(*files.values())
    by_file = report(process)
    return process.returncode, {name: by_file[str(path)] for name, path in files.items()}


def test_there_are_queries_to_check() -> None:
    assert NODE_USAGE_QUERY in QUERIES


def test_every_query_passes_the_kusto_analyzer_without_a_diagnostic(shipped) -> None:
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    entries = report(shipped)
    assert len(entries) == len(QUERIES)
    assert {
        file: entry["diagnostics"] for file, entry in entries.items() if entry["diagnostics"]
    } == {}


def test_the_node_usage_query_returns_the_columns_the_adapter_reads(shipped) -> None:
    entry = report(shipped)[str(NODE_USAGE_QUERY)]

    assert {c["name"]: c["type"] for c in entry["columns"]} == NODE_USAGE_COLUMNS
    assert [c["name"] for c in entry["columns"]] == list(NODE_USAGE_COLUMNS)


def test_the_node_usage_query_is_named_for_the_simulator() -> None:
    # The local simulator cannot run KQL: it answers a query by the name on its first line.
    assert NODE_USAGE_QUERY.read_text().splitlines()[0] == "// poolkeeper:node-usage"


def test_the_human_readable_report_counts_the_diagnostics() -> None:
    process = run_check(*QUERIES, json_output=False)

    assert process.returncode == 0, process.stdout + process.stderr
    assert process.stdout.strip() == f"{len(QUERIES)} file(s) checked, 0 diagnostic(s)"


def test_wrong_queries_fail_the_check(wrong) -> None:
    returncode, _ = wrong
    assert returncode == 1


@pytest.mark.parametrize("name", list(WRONG))
def test_a_wrong_query_is_flagged(wrong, name: str) -> None:
    _, entries = wrong
    _, code, text = WRONG[name]

    diagnostics = entries[name]["diagnostics"]

    assert [(d["code"], d["text"], d["line"]) for d in diagnostics] == [(code, text, 2)]
