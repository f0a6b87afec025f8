"""The architecture's arrows, checked on the source: who may import whom (handbook, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDKS = ("azure", "kubernetes")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _top_level_imports(path: Path) -> set[str]:
    """Imports executed when the module loads (not those inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", _modules("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_never_imports_local(path: Path) -> None:
    assert not {m for m in _imports(path) if m.split(".")[0] == "local"}


@pytest.mark.parametrize("path", _modules("local/sim"), ids=lambda p: str(p.relative_to(ROOT)))
def test_simulator_imports_nothing_from_the_product(path: Path) -> None:
    # A simulator that shares the product's code shares its mistakes.
    assert not {m for m in _imports(path) if m.split(".")[0] == "shared"}


@pytest.mark.parametrize("path", _modules("shared/decide"), ids=lambda p: str(p.relative_to(ROOT)))
def test_decisions_import_no_adapter_flow_or_sdk(path: Path) -> None:
    bad = {
        m
        for m in _imports(path)
        if m.split(".")[0] in SDKS or m.startswith(("shared.adapters", "shared.flows"))
    }
    assert not bad


@pytest.mark.parametrize("path", _modules("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_sdks_load_lazily_and_only_in_adapters(path: Path) -> None:
    top = {m for m in _top_level_imports(path) if m.split(".")[0] in SDKS}
    assert not top, "SDKs are imported inside functions (cold start)"
    anywhere = {m for m in _imports(path) if m.split(".")[0] in SDKS}
    if anywhere:
        assert path.is_relative_to(ROOT / "shared" / "adapters"), (
            f"{sorted(anywhere)} outside adapters"
        )


@pytest.mark.parametrize(
    "path", _modules("shared/adapters"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_adapters_import_no_flow(path: Path) -> None:
    assert not {m for m in _imports(path) if m.startswith("shared.flows")}


NODE_WRITES = ("set_unschedulable", "patch_if_unchanged")


@pytest.mark.parametrize("path", _modules("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_claim_helper_cordons_or_uncordons(path: Path) -> None:
    # Invariant 11: no flow cordons or uncordons a node by hand; it claims and releases.
    if path.relative_to(ROOT).as_posix() in ("shared/flows/claims.py", "shared/adapters/kube.py"):
        return
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & set(NODE_WRITES), f"{path.name} writes a node's cordon itself"
