"""Label selectors (query strings and LabelSelector objects) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

_SET = re.compile(
    r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\)|(==|=|!=)\s*(\S*))?\s*$"
)


def _split(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parse_label_selector(text: str | None) -> Callable[[dict[str, str]], bool]:
    """`app=web,tier!=db,env in (a,b),!canary,zone`; ValueError when malformed."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in _split(text or ""):
        found = _SET.match(part)
        if not found:
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
        negate, key, set_op, values, op, value = found.groups()
        if negate and (set_op or op):
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
        options = {v.strip() for v in (values or "").split(",") if v.strip()}
        tests.append(_requirement(key, "!" if negate else set_op or op or "exists", value, options))
    return lambda labels: all(test(labels) for test in tests)


def _requirement(
    key: str, op: str, value: str | None, options: set[str]
) -> Callable[[dict[str, str]], bool]:
    def test(labels: dict[str, str]) -> bool:
        if op == "!":
            return key not in labels
        if op == "exists":
            return key in labels
        if op == "in":
            return labels.get(key) in options
        if op == "notin":
            return labels.get(key) not in options
        if op == "!=":
            return labels.get(key) != value
        return key in labels and labels[key] == value

    return test


def label_selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector object (matchLabels and matchExpressions)."""
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def selector_is_empty(selector: Obj | None) -> bool:
    return not selector or not (selector.get("matchLabels") or selector.get("matchExpressions"))


# Field paths each resource supports in fieldSelector (the API server's field label conversion).
FIELDS: dict[str, dict[str, Callable[[Obj], str]]] = {
    "pods": {
        "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
        "spec.restartPolicy": lambda o: o["spec"].get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o["spec"].get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o["spec"].get("serviceAccountName", ""),
        "spec.hostNetwork": lambda o: str(bool(o["spec"].get("hostNetwork"))).lower(),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
        "status.nominatedNodeName": lambda o: o.get("status", {}).get("nominatedNodeName", ""),
    },
    "nodes": {"spec.unschedulable": lambda o: str(bool(o["spec"].get("unschedulable"))).lower()},
}
_COMMON: dict[str, Callable[[Obj], str]] = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
}


def parse_field_selector(resource: str, text: str | None) -> Predicate:
    """`spec.nodeName=n1,status.phase!=Succeeded`; ValueError for a malformed or unknown field."""
    fields = {**_COMMON, **FIELDS.get(resource, {})}
    tests: list[Predicate] = []
    for part in _split(text or ""):
        found = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not found:
            raise ValueError(f"invalid selector: '{part.strip()}'; can't understand '{part}'")
        field, op, value = found.groups()
        getter = fields.get(field)
        if getter is None:
            raise ValueError(f'field label not supported: "{field}"')
        tests.append(_field_test(getter, op == "!=", value))
    return lambda obj: all(test(obj) for test in tests)


def _field_test(getter: Callable[[Obj], str], negate: bool, value: str) -> Predicate:
    def test(obj: Obj) -> bool:
        return (getter(obj) == value) != negate

    return test
