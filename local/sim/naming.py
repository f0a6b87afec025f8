"""Which names Azure accepts for what the simulator creates: resource groups (ARM's rules) and
Compute resources by type (learn.microsoft.com, "Naming rules and restrictions for Azure
resources"). Pure; `tenancy` and `arm` answer a refusal with ARM's 400.

Each check returns why a name is refused, or None.
"""

from __future__ import annotations

import re

# Letters and digits are Unicode ones (ARM uses Char.IsLetterOrDigit), as `\w` is here.
_GROUP_CHARS = re.compile(r"[-\w.()]+")
_INT32 = 2**31 - 1
# Characters a scale set's name may not hold (besides whitespace and control characters).
_SCALE_SET_FORBIDDEN = set("~!@#$%^&*()=+_[]{}\\|;:.'\",<>/?")


def resource_group(name: str) -> str | None:
    """ARM: 1-90 letters, digits, '-', '.', '(', ')' or '_', not ending in '.'."""
    bad = "".join(sorted(set(_GROUP_CHARS.sub("", name))))
    if bad:
        return (
            f"The provided resource group name '{name}' has these invalid characters: "
            f"'{bad}'. The name can only be a letter, digit, '-', '.', '(', ')' or '_'."
        )
    if not 1 <= len(name) <= 90:
        return (
            f"The provided resource group name '{name}' is {len(name)} characters long; "
            "it must be 1 to 90 characters."
        )
    if name.endswith("."):
        return f"The provided resource group name '{name}' ends with '.', which is not allowed."
    return None


def _alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _rule(name: str, allowed: str, longest: int, *, end_underscore: bool = False) -> bool:
    """1..longest characters from ASCII alphanumerics and `allowed`, starting with an
    alphanumeric and ending with one (or '_' where `end_underscore`)."""
    return (
        1 <= len(name) <= longest
        and all(_alnum(c) or c in allowed for c in name)
        and _alnum(name[0])
        and (_alnum(name[-1]) or (end_underscore and name[-1] == "_"))
    )


def snapshot(name: str) -> str | None:
    if _rule(name, "_.-", 80, end_underscore=True):
        return None
    return _refused("Snapshot", name, "'_', '.' and '-'", "end with a letter, digit or '_'")


def gallery(name: str) -> str | None:
    return None if _rule(name, "_.", 80) else _refused("Gallery", name, "'_' and '.'")


def image_definition(name: str) -> str | None:
    if _rule(name, "_.-", 80):
        return None
    return _refused("Gallery image", name, "'_', '-' and '.'")


def _refused(what: str, name: str, others: str, end: str = "end with a letter or digit") -> str:
    return (
        f"{what} name {name} is invalid. It must be 1 to 80 characters, can only include "
        f"letters, digits, {others}, and must begin with a letter or digit and {end}."
    )


def image_version(name: str) -> str | None:
    """MajorVersion.MinorVersion.Patch, each a 32-bit integer."""
    parts = name.split(".")
    if len(parts) == 3 and all(p.isascii() and p.isdigit() and int(p) <= _INT32 for p in parts):
        return None
    return (
        f"Gallery image version name {name} is invalid. Gallery image version names are "
        "MajorVersion.MinorVersion.Patch, e.g. 1.0.0, each part a 32-bit integer."
    )


def scale_set(name: str) -> str | None:
    """A Linux scale set: 1-64 characters, none of the forbidden ones, not starting with '_'
    nor ending with '.' or '-'."""
    if (
        1 <= len(name) <= 64
        and not any(c in _SCALE_SET_FORBIDDEN or c.isspace() or not c.isprintable() for c in name)
        and not name.endswith((".", "-"))
    ):
        return None
    return (
        f"Resource name {name} is invalid. A scale set's name is 1 to 64 characters, may not "
        "hold spaces, control characters or any of ~ ! @ # $ % ^ & * ( ) = + _ [ ] { } \\ | ; : "
        ". ' \" , < > / ?, and may not end with '.' or '-'."
    )
