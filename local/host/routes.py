"""HTTP route templates as the Functions host reads them: `{id}`, `{id:int}`, `{id?}`, `{*rest}`.

Pure matching used by `local.host.http`; literal segments match case-insensitively, as in ASP.NET.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
}
_PARAM = re.compile(r"^\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}$")


@dataclass(frozen=True)
class Route:
    template: str
    pattern: re.Pattern[str]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {name: value for name, value in found.groupdict().items() if value is not None}


def compile_route(template: str) -> Route:
    """Compile a route template (without the `api/` prefix) into a matcher."""
    parts: list[str] = []
    for index, segment in enumerate(template.strip("/").split("/")):
        slash = "/" if index else ""
        param = _PARAM.match(segment)
        if param is None:
            if "{" in segment or "}" in segment:
                raise ValueError(
                    f"route {template!r}: segment {segment!r} is not a supported parameter"
                )
            parts.append(slash + re.escape(segment))
            continue
        catch_all, name, constraint, optional = param.groups()
        if constraint and constraint not in _CONSTRAINTS:
            raise ValueError(f"route {template!r}: constraint {constraint!r} is not supported")
        value = ".*" if catch_all else _CONSTRAINTS.get(constraint or "", "[^/]+")
        part = f"{slash}(?P<{name}>{value})"
        parts.append(f"(?:{part})?" if optional or catch_all else part)
    return Route(template, re.compile("(?i:" + "".join(parts) + ")"))
