"""Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `1G`, `1e3`) as integers.

CPU is counted in millicores, memory in bytes; both round up as the API server does.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def parse(value: str | int | float) -> Decimal:
    """A quantity as a decimal number of base units; ValueError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    found = _QUANTITY.match(value.strip())
    if not found:
        raise ValueError(f"quantities must match the regular expression {_QUANTITY.pattern!r}")
    try:
        return Decimal(found.group(1)) * _SUFFIXES[found.group(2)]
    except InvalidOperation as error:
        raise ValueError(f"not a quantity: {value!r}") from error


def millicores(value: str | int | float) -> int:
    return math.ceil(parse(value) * 1000)


def bytes_of(value: str | int | float) -> int:
    return math.ceil(parse(value))


def format_millicores(value: int) -> str:
    return str(value // 1000) if value % 1000 == 0 else f"{value}m"


def format_bytes(value: int) -> str:
    """Bytes the way the API server canonicalises binary quantities (largest exact suffix)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if value and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)
