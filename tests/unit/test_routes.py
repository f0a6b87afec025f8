"""Unit tests for local/host/routes.py: route templates match as ASP.NET routing does."""

from __future__ import annotations

import pytest

from local.host.routes import compile_route


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        pytest.param("pools", "pools", {}, id="literal"),
        pytest.param("pools", "POOLS", {}, id="literal-upper-case"),
        pytest.param("Pools/Status", "pools/STATUS", {}, id="literal-mixed-case"),
        pytest.param("pools", "pool", None, id="literal-prefix-only"),
        pytest.param("pools", "poolsx", None, id="literal-longer"),
        pytest.param("pools", "pools/gpu", None, id="literal-extra-segment"),
        pytest.param("a.b", "axb", None, id="literal-dot-is-not-a-wildcard"),
        pytest.param("pools/{id}", "pools/gpu", {"id": "gpu"}, id="param"),
        pytest.param("POOLS/{id}", "pools/GPU", {"id": "GPU"}, id="param-value-keeps-case"),
        pytest.param("pools/{id}", "pools", None, id="param-required"),
        pytest.param("pools/{id}", "pools/gpu/x", None, id="param-one-segment-only"),
        pytest.param(
            "pools/{pool}/nodes/{node}",
            "pools/gpu/nodes/n1",
            {"pool": "gpu", "node": "n1"},
            id="two-params",
        ),
        pytest.param("items/{id:int}", "items/42", {"id": "42"}, id="int"),
        pytest.param("items/{id:int}", "items/-7", {"id": "-7"}, id="int-negative"),
        pytest.param("items/{id:int}", "items/abc", None, id="int-rejects-letters"),
        pytest.param("items/{id:int}", "items/4x2", None, id="int-rejects-mixed"),
        pytest.param("items/{name:alpha}", "items/gpu", {"name": "gpu"}, id="alpha"),
        pytest.param("items/{name:alpha}", "items/gpu2", None, id="alpha-rejects-digits"),
        pytest.param("flag/{on:bool}", "flag/TRUE", {"on": "TRUE"}, id="bool"),
        pytest.param("flag/{on:bool}", "flag/yes", None, id="bool-rejects-yes"),
        pytest.param(
            "vm/{id:guid}",
            "vm/6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64",
            {"id": "6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64"},
            id="guid",
        ),
        pytest.param("vm/{id:guid}", "vm/not-a-guid", None, id="guid-rejects"),
        pytest.param("hello/{name?}", "hello/ada", {"name": "ada"}, id="optional-given"),
        pytest.param("hello/{name?}", "hello", {}, id="optional-absent"),
        pytest.param("hello/{name?}", "hello/", {}, id="optional-absent-trailing-slash"),
        pytest.param("hello/{name?}", "hello/a/b", None, id="optional-one-segment-only"),
        pytest.param("files/{*rest}", "files/a/b/c.txt", {"rest": "a/b/c.txt"}, id="catch-all"),
        pytest.param("files/{*rest}", "files/x", {"rest": "x"}, id="catch-all-one-segment"),
        pytest.param("files/{*rest}", "files", {}, id="catch-all-without-remainder"),
        pytest.param("files/{*rest}", "filesystem/a", None, id="catch-all-needs-the-literal"),
        pytest.param("/pools/{id}/", "pools/gpu", {"id": "gpu"}, id="template-slashes-ignored"),
        pytest.param("pools/{id}", "/pools/gpu/", {"id": "gpu"}, id="path-slashes-ignored"),
    ],
)
def test_route_matches(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert compile_route(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        pytest.param("{*path}", "a/b", {"path": "a/b"}, id="catch-all-only"),
        pytest.param("{name?}", "ada", {"name": "ada"}, id="optional-only"),
    ],
)
def test_route_whose_first_segment_is_optional_or_catch_all_matches(
    template: str, path: str, expected: dict[str, str]
) -> None:
    assert compile_route(template).match(path) == expected


def test_route_keeps_its_template() -> None:
    assert compile_route("pools/{id:int}").template == "pools/{id:int}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("items/{id:decimal}", "constraint 'decimal' is not supported"),
        ("items/{id:regex}", "constraint 'regex' is not supported"),
        ("items/{id", "segment '{id' is not a supported parameter"),
        ("items/id}", "segment 'id}' is not a supported parameter"),
        ("items/x{id}", "segment 'x{id}' is not a supported parameter"),
        ("items/{1id}", "segment '{1id}' is not a supported parameter"),
        ("items/{}", "segment '{}' is not a supported parameter"),
        ("items/{id:Int}", "segment '{id:Int}' is not a supported parameter"),
    ],
    ids=[
        "decimal-constraint",
        "regex-constraint",
        "unclosed-brace",
        "unopened-brace",
        "text-before-param",
        "name-starts-with-digit",
        "empty-braces",
        "upper-case-constraint",
    ],
)
def test_bad_templates_raise_value_error_naming_the_template(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        compile_route(template)
    assert f"route {template!r}" in str(raised.value)
