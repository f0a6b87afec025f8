"""Outside JSON is parsed with a bound on nesting: deep input is a ValueError, never a crash."""

from __future__ import annotations

import json

import pytest

from shared.json_input import MAX_DEPTH, TooDeep, depth, loads


@pytest.mark.parametrize(
    "raw",
    ["[" * 5000, "[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000],
    ids=["unclosed arrays", "closed arrays", "objects"],
)
def test_nesting_past_the_recursion_limit_is_a_value_error(raw: str) -> None:
    with pytest.raises(TooDeep, match="nested deeper than"):
        loads(raw)
    assert issubclass(TooDeep, ValueError)


def test_nesting_just_past_the_bound_is_refused_and_at_the_bound_accepted() -> None:
    at = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert depth(loads(at)) == MAX_DEPTH
    with pytest.raises(TooDeep):
        loads("[" + at + "]")


def test_ordinary_documents_parse_as_json_does() -> None:
    raw = '{"a": [1, {"b": null}], "c": "x"}'
    assert loads(raw) == json.loads(raw)
    assert depth(loads(raw)) == 3 and depth(1) == 0
