"""The simulator's request-body and name rules (`local/sim/bodies.py`, `local/sim/naming.py`) as
table tests: no loop, no HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from local.sim import bodies, naming
from local.sim.bodies import BodyError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", None),
        (b"  \n", None),
        (b'{"a": [1, {"b": "[[[["}]}', {"a": [1, {"b": "[[[["}]}),  # brackets in strings
        ('\ufeff{"a": "\u00e9"}'.encode(), {"a": "\u00e9"}),  # a BOM, then UTF-8
    ],
)
def test_decode_reads_utf8_json(raw: bytes, expected: Any) -> None:
    assert bodies.decode(raw) == expected


def test_decode_takes_the_depth_limit_and_not_one_level_more() -> None:
    assert bodies.nesting("[" * 64 + "]" * 64, 64) == 64
    bodies.decode(b"[" * 64 + b"]" * 64)
    with pytest.raises(BodyError, match="deeper than 64"):
        bodies.decode(b"[" * 65 + b"]" * 65)
    with pytest.raises(BodyError, match="deeper than 100"):
        bodies.decode(b'{"a":' * 5000 + b"1" + b"}" * 5000, max_depth=100)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"[" * 100_000, "deeper than 64"),  # refused before the parser recurses
        (b"{not json", "not JSON"),
        (b'{"a": 1', "not JSON"),
        (b'"unterminated [[[[', "not JSON"),
    ],
)
def test_decode_refuses_what_cannot_be_read(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        bodies.decode(raw)


def test_shapes_name_the_field_that_is_wrong() -> None:
    assert bodies.obj(None, "properties") == {}
    assert bodies.objects(None, "targetRegions") == []
    assert bodies.tags({"team": "platform"}) == {"team": "platform"}
    with pytest.raises(BodyError, match="'properties' must be a JSON object, not a string"):
        bodies.obj("x", "properties")
    with pytest.raises(BodyError, match=r"'targetRegions\[1\]' must be a JSON object"):
        bodies.objects([{}, 5], "targetRegions")
    with pytest.raises(BodyError, match=r"'tags\.team' must be a string, not an object"):
        bodies.tags({"team": {"a": 1}})
    with pytest.raises(BodyError, match="'tags' must be a JSON object, not a list"):
        bodies.tags([1])


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("a", False),
        ("a" * 90, False),
        ("MC_rg-(test)_aks.westeurope", False),
        ("gruppe-\u00e4\u00f6", False),  # letters are Unicode letters
        ("", True),
        ("a" * 91, True),
        ("trailing.", True),
        ("with space", True),
        ("star*", True),
    ],
)
def test_resource_group_names(name: str, refused: bool) -> None:
    assert (naming.resource_group(name) is not None) == refused


def test_a_resource_group_refusal_names_the_invalid_characters() -> None:
    message = naming.resource_group("a*b c*")
    assert message is not None and "has these invalid characters: ' *'" in message


@pytest.mark.parametrize(
    ("rule", "name", "refused"),
    [
        (naming.snapshot, "poolkeeper-workers-1-0-0", False),
        (naming.snapshot, "snap_", False),  # may end with an underscore
        (naming.snapshot, "s" * 80, False),
        (naming.snapshot, "s" * 81, True),
        (naming.snapshot, "snap.", True),
        (naming.snapshot, "-snap", True),
        (naming.gallery, "poolkeeper_gallery.v2", False),
        (naming.gallery, "my-gallery", True),  # no hyphens in a gallery's name
        (naming.gallery, "_gallery", True),
        (naming.gallery, "gallery.", True),
        (naming.image_definition, "aks-workers.v2_x", False),
        (naming.image_definition, "def_", True),
        (naming.image_definition, "d\u00e9f", True),  # ASCII only
        (naming.image_version, "1.0.0", False),
        (naming.image_version, "2147483647.0.10", False),
        (naming.image_version, "1.0.2147483648", True),  # each part a 32-bit integer
        (naming.image_version, "1.0", True),
        (naming.image_version, "1.0.0.0", True),
        (naming.image_version, "1.a.0", True),
        (naming.scale_set, "aks-workers-11111111-vmss", False),
        (naming.scale_set, "v" * 64, False),
        (naming.scale_set, "v" * 65, True),
        (naming.scale_set, "vmss.", True),
        (naming.scale_set, "vmss-", True),
        (naming.scale_set, "vm_ss", True),
        (naming.scale_set, "vm ss", True),
    ],
)
def test_compute_names_by_type(rule: Any, name: str, refused: bool) -> None:
    assert (rule(name) is not None) == refused
