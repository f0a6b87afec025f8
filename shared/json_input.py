"""JSON from outside (request bodies, queue messages), parsed with a bound on nesting depth.

Python's parser recurses once per level: `[` x 5000 raises RecursionError, which is neither a
ValueError nor bad input to the callers, so it used to escape as a 500 or a poisoned message.
Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # far deeper than any job envelope or alert payload, far below the recursion limit


class TooDeep(ValueError):
    """The JSON nests deeper than the bound; a ValueError, so callers' "not JSON" paths take it."""


def loads(raw: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing text that nests arrays and objects deeper than `max_depth`."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise TooDeep(f"nested deeper than {max_depth} levels") from None
    if depth(data) > max_depth:
        raise TooDeep(f"nested deeper than {max_depth} levels")
    return data


def depth(value: Any) -> int:
    """How deep arrays and objects nest in `value` (a scalar is 0); iterative, for any depth."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest
