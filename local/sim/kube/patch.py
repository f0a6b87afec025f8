"""The three PATCH types the API server accepts for built-in kinds.

- `application/json-patch+json` (RFC 6902),
- `application/merge-patch+json` (RFC 7386),
- `application/strategic-merge-patch+json`: merge patch plus list merge keys and `$patch`,
  `$retainKeys`, `$deleteFromPrimitiveList/…` and `$setElementOrder/…` directives. The merge keys
  come from the Go struct tags of the core types; lists not named here are replaced whole
  (`listType=atomic`, as `spec.taints` is).
"""

from __future__ import annotations

import copy
from typing import Any

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

# Field name -> merge key for lists of objects with patchStrategy=merge in the core types.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
MERGE_PRIMITIVE_LISTS = {"finalizers"}


class PatchError(ValueError):
    """A patch that cannot be applied; `status` is the HTTP status the API server answers."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def apply(content_type: str, target: Any, patch: Any) -> Any:
    """The patched copy of `target` (never modified in place)."""
    base = content_type.split(";")[0].strip().lower()
    if base == JSON_PATCH:
        return json_patch(target, patch)
    if base == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise PatchError("a merge patch must be a JSON object", 400)
        return merge_patch(target, patch)
    if base == STRATEGIC_MERGE_PATCH:
        if not isinstance(patch, dict):
            raise PatchError("a strategic merge patch must be a JSON object", 400)
        return strategic_merge(copy.deepcopy(target), patch)
    raise PatchError(
        f"the body of the request was in an unknown format - accepted media types "
        f"include: {', '.join(PATCH_TYPES)}",
        415,
    )


# -- RFC 7386 -------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- strategic merge ------------------------------------------------------------------------------


def strategic_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge `patch` into `target` (modified and returned)."""
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive is not None:
        raise PatchError(f"Unknown patch type: {directive}")
    retain = patch.get("$retainKeys")
    if retain is not None:
        for key in list(target):
            if key not in retain:
                del target[key]
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(target.get(field), list):
                target[field] = [item for item in target[field] if item not in value]
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            merged = strategic_merge(current if isinstance(current, dict) else {}, value)
            if value.get("$patch") == "delete":
                target.pop(key, None)
            else:
                target[key] = merged
        elif isinstance(value, list):
            target[key] = _merge_list(key, target.get(key), value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if field in MERGE_PRIMITIVE_LISTS and isinstance(current, list):
        return current + [item for item in patch if item not in current]
    merge_key = MERGE_KEYS.get(field)
    if merge_key is None or not isinstance(current, list):
        replaced = [i for i in patch if not (isinstance(i, dict) and i.get("$patch"))]
        return copy.deepcopy(replaced)
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {merge_key}")
        index = next(
            (n for n, old in enumerate(result) if old.get(merge_key) == item[merge_key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge(result[index], item)
    return result


# -- RFC 6902 -------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(document: Any, tokens: list[str]) -> tuple[Any, str]:
    node = document
    for token in tokens[:-1]:
        node = _child(node, token)
    return node, tokens[-1]


def _child(node: Any, token: str) -> Any:
    try:
        if isinstance(node, list):
            return node[int(token)]
        return node[token]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"path element {token!r} does not exist") from None


def _get(document: Any, path: str) -> Any:
    node = document
    for token in _pointer(path):
        node = _child(node, token)
    return node


def _add(document: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(document, tokens)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            index = int(last) if last.isdigit() else -1
            if not 0 <= index <= len(parent):
                raise PatchError(f"index {last!r} is out of bounds")
            parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"cannot add to {path!r}")
    return document


def _remove(document: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(document, tokens)
    try:
        if isinstance(parent, list):
            parent.pop(int(last))
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"unable to remove nonexistent key: {last}") from None
    return document


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations", 400)
    document = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid JSON patch operation: {operation!r}", 400)
        op, path = operation["op"], operation["path"]
        if op == "add":
            document = _add(document, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            document = _remove(document, path)
        elif op == "replace" and path == "":
            document = copy.deepcopy(operation.get("value"))
        elif op == "replace":
            _get(document, path)
            document = _add(_remove(document, path), path, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            value = copy.deepcopy(_get(document, operation["from"]))
            if op == "move":
                document = _remove(document, operation["from"])
            document = _add(document, path, value)
        elif op == "test":
            if _get(document, path) != operation.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"unexpected kind: {op}", 400)
    return document
