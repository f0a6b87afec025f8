"""The Kubernetes simulator's label and field selectors, and resource quantities."""

from __future__ import annotations

import pytest

from local.sim.kube import quantity
from local.sim.kube.selectors import (
    label_selector_matches,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "front", "zone": "1"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web,tier=front", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("zone in (1, 2)", True),
        ("zone notin (1,2)", False),
        ("app in (db),tier=front", False),
        ("app", True),
        ("!app", False),
        ("!missing", True),
    ],
)
def test_label_selector_strings(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector)(LABELS) is matches


def test_malformed_label_selector_is_an_error() -> None:
    with pytest.raises(ValueError, match="unable to parse requirement"):
        parse_label_selector("app=web,=x")


def test_label_selector_objects_with_expressions() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["1", "3"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    assert label_selector_matches(selector, LABELS)
    assert not label_selector_matches(selector, LABELS | {"canary": "yes"})
    assert not label_selector_matches({}, LABELS), "an empty selector matches nothing here"


POD = {
    "metadata": {"name": "p1", "namespace": "default"},
    "spec": {"nodeName": "n1", "restartPolicy": "Always"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("spec.nodeName=n1", True),
        ("spec.nodeName==n2", False),
        ("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed", True),
        ("metadata.name=p1,metadata.namespace=default", True),
        ("status.phase!=Running", False),
    ],
)
def test_pod_field_selectors(selector: str, matches: bool) -> None:
    assert parse_field_selector("pods", selector)(POD) is matches


def test_unknown_field_label_is_an_error() -> None:
    with pytest.raises(ValueError, match=r'field label not supported: "spec\.color"'):
        parse_field_selector("pods", "spec.color=blue")


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("250m", 250), ("1", 1000), ("1.5", 1500), (2, 2000), ("0.1", 100), ("100u", 1)],
)
def test_cpu_quantities_in_millicores(text: str | int, millicores: int) -> None:
    assert quantity.millicores(text) == millicores


@pytest.mark.parametrize(
    ("text", "size"),
    [("128Mi", 128 * 2**20), ("1Gi", 2**30), ("512M", 512 * 10**6), ("1e3", 1000), ("16Ki", 16384)],
)
def test_memory_quantities_in_bytes(text: str, size: int) -> None:
    assert quantity.bytes_of(text) == size
    assert quantity.bytes_of(quantity.format_bytes(size)) == size


def test_bad_quantity_is_an_error() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        quantity.parse("12 apples")
