"""Request bodies as the simulator's routes read them: JSON from UTF-8 bytes, no deeper than a
limit, and shape checks that name the field. Pure; ARM, Monitor, the admin API and the Kubernetes
API call it, and each answers a `BodyError` with its own 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

# ARM reads bodies with Json.NET, whose default MaxDepth is 64: deeper content is refused.
ARM_DEPTH = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class BodyError(ValueError):
    """Why a request body cannot be used: the message its 400 carries."""


def nesting(text: str, limit: int) -> int:
    """How deeply arrays and objects nest in JSON `text`, counted up to `limit + 1` at most
    (a depth bomb is refused after `limit + 1` brackets, whatever its size)."""
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


def decode(raw: bytes, *, max_depth: int = ARM_DEPTH) -> Any:
    """The JSON value of a body (None for an empty one); `BodyError` for bytes that are not
    UTF-8, text that is not JSON, or nesting deeper than `max_depth`."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise BodyError(f"the body is not UTF-8 (byte {error.start} is not valid)") from None
    if not text.strip():
        return None
    if nesting(text, max_depth) > max_depth:
        raise BodyError(f"the body nests deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise BodyError(f"the body is not JSON: {error}") from None


async def json_body(request: web.Request) -> Any:
    """The JSON body of an admin request; `BodyError` (a ValueError) when it cannot be read."""
    return decode(await request.read())


def obj(value: Any, path: str) -> dict[str, Any]:
    """`value` as a JSON object ({} when absent); `BodyError` naming `path` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BodyError(f"'{path}' must be a JSON object, not {_kind(value)}")
    return value


def objects(value: Any, path: str) -> list[dict[str, Any]]:
    """`value` as a list of JSON objects ([] when absent)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BodyError(f"'{path}' must be a list, not {_kind(value)}")
    return [obj(item, f"{path}[{n}]") for n, item in enumerate(value)]


def text(value: Any, path: str) -> str | None:
    """`value` as a string (None when absent)."""
    if value is None or isinstance(value, str):
        return value
    raise BodyError(f"'{path}' must be a string, not {_kind(value)}")


def tags(value: Any, path: str = "tags") -> dict[str, str]:
    """ARM tags: an object of string values ({} when absent)."""
    found = obj(value, path)
    for key, item in found.items():
        text(item, f"{path}.{key}")
    return found


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
