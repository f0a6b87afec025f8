"""The pools Poolkeeper may manage (its allow-list), parsed and validated from app settings.

`function_app.py` calls `load_config(os.environ)` and hands the `Config` to flows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from shared.config.capacity import CAPACITY_ALLOWED, CapacitySettings
from shared.config.clusters import (
    CLUSTER_ALLOWED,
    DEFAULT_CLUSTER,
    KEY_VAULT_SETTING,
    Cluster,
)
from shared.config.image import IMAGE_ALLOWED, RESOURCE_GROUP_NAME, ImageSettings
from shared.config.patch import PATCH_ALLOWED, PatchSettings, Window
from shared.config.repair import REPAIR_ALLOWED, RepairSettings

POOLS_SETTING = "POOLKEEPER_POOLS"
POOLS_FILE_SETTING = "POOLKEEPER_POOLS_FILE"
DOCS = "docs/configuration.md"

# Azure's ceiling for the instances of one scale set.
MAX_SCALE_SET_SIZE = 1000

POOL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# ARM ids are case-insensitive, so keywords and the provider/type segments match in any case.
_VMSS_ID = re.compile(
    r"/subscriptions/(?P<subscription>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    rf"/resourceGroups/(?P<resource_group>{RESOURCE_GROUP_NAME.pattern})"
    r"/providers/Microsoft\.Compute/virtualMachineScaleSets/(?P<name>[A-Za-z0-9_.-]{1,64})",
    re.IGNORECASE | re.ASCII,  # ASCII: in Unicode mode, ignoring case lets "K" (Kelvin) match "k"
)
_LABEL_VALUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_PATTERNS = {"name": POOL_NAME, "vmss_id": _VMSS_ID, "node_group": _LABEL_VALUE}

# What each pool field accepts, in the words every error message uses.
_ALLOWED = {
    "name": "1-63 characters of lowercase letters, digits and '-', starting with a letter or digit",
    "vmss_id": (
        "a full ARM resource id like /subscriptions/<subscription-guid>"
        "/resourceGroups/<resource-group>/providers/Microsoft.Compute/virtualMachineScaleSets/<name>"
    ),
    "node_group": (
        "a Kubernetes label value for elastisys.io/node-group: 1-63 characters of letters, digits, "
        "'-', '_' and '.', starting and ending with a letter or digit"
    ),
    "min_nodes": "a whole number of at least 0",
    "max_nodes": f"a whole number from 1 to {MAX_SCALE_SET_SIZE} (the scale set instance limit)",
    "capacity": "an object with capacity settings (docs/capacity.md)",
    "patch": "an object with patch settings (docs/patching.md)",
    "image": "an object with image settings (docs/images.md)",
    "repair": 'an object with repair settings, or "off" (docs/repair.md)',
    "cluster": "the name of a cluster in the top-level clusters list (default "
    f"{DEFAULT_CLUSTER!r}: the single-cluster settings, docs/configuration.md#clusters)",
}


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
        lines = [f"invalid Poolkeeper configuration in {source}: {count}"]
        super().__init__("\n".join(lines + [f"  - {problem}" for problem in problems]))


class PoolNotFound(KeyError):
    """A pool name that the configuration does not define."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        super().__init__(name)
        self.name = name
        self.known = tuple(known)

    def __str__(self) -> str:
        known = ", ".join(self.known) or "none"
        return f"no pool named {self.name!r} is configured; configured pools: {known}"


_SECTIONS: dict[str, tuple[type[BaseModel], Mapping[str, str]]] = {
    "capacity": (CapacitySettings, CAPACITY_ALLOWED),
    "patch": (PatchSettings, PATCH_ALLOWED),
    "image": (ImageSettings, IMAGE_ALLOWED),
    "repair": (RepairSettings, REPAIR_ALLOWED),
}


class Pool(BaseModel):
    """One node pool: the scale set that backs it, its node group label and its size bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    vmss_id: StrictStr
    node_group: StrictStr
    min_nodes: Annotated[StrictInt, Field(ge=0)]
    max_nodes: Annotated[StrictInt, Field(ge=1, le=MAX_SCALE_SET_SIZE)]
    cluster: StrictStr = DEFAULT_CLUSTER
    capacity: CapacitySettings = CapacitySettings()
    patch: PatchSettings = PatchSettings()
    image: ImageSettings = ImageSettings()
    repair: RepairSettings = RepairSettings()

    @field_validator("name", "vmss_id", "node_group")
    @classmethod
    def _matches_pattern(cls, value: str, info: ValidationInfo) -> str:
        field = str(info.field_name)
        if not _PATTERNS[field].fullmatch(value):
            raise ValueError(f"must be {_ALLOWED[field]}")
        return value

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min_nodes > self.max_nodes:
            raise PydanticCustomError(
                "min_above_max",
                "min_nodes ({min_nodes}) must be at most max_nodes ({max_nodes})",
                {"min_nodes": self.min_nodes, "max_nodes": self.max_nodes},
            )
        return self

    @property
    def subscription_id(self) -> str:
        """The subscription GUID from `vmss_id`."""
        return self._id_part("subscription")

    @property
    def resource_group(self) -> str:
        """The resource group name from `vmss_id`."""
        return self._id_part("resource_group")

    @property
    def vmss_name(self) -> str:
        """The scale set name from `vmss_id`."""
        return self._id_part("name")

    def _id_part(self, group: str) -> str:
        match = _VMSS_ID.fullmatch(self.vmss_id)
        if match is None:  # only reachable through model_construct, which skips validation
            raise ValueError(f"pool {self.name!r} has an invalid vmss_id {self.vmss_id!r}")
        return match[group]


class Config(BaseModel):
    """Every pool Poolkeeper may act on; anything outside them is left alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pools: tuple[Pool, ...]
    clusters: tuple[Cluster, ...] = ()

    @field_validator("pools", mode="before")
    @classmethod
    def _at_least_one_pool(cls, value: object) -> object:
        # Not Field(min_length=1): that counts only the pools that validate, so one broken pool
        # out of one would also be reported as "no pools".
        if isinstance(value, list | tuple) and not value:
            raise ValueError("must list at least one pool")
        return value

    @model_validator(mode="after")
    def _pools_do_not_overlap(self) -> Self:
        if problems := _overlaps([dict(pool) for pool in self.pools]):
            raise PydanticCustomError(
                "pool_overlap", "{problems}", {"problems": "; ".join(problems)}
            )
        return self

    @model_validator(mode="after")
    def _clusters_named_once_and_known(self) -> Self:
        names = [cluster.name for cluster in self.clusters]
        problems = [
            f"cluster {name!r}: is listed {names.count(name)} times; names must be unique"
            for name in sorted(set(names))
            if names.count(name) > 1
        ]
        known = ", ".join(
            [repr(DEFAULT_CLUSTER)] + [repr(n) for n in names if n != DEFAULT_CLUSTER]
        )
        problems += [
            f"pool {pool.name!r} field 'cluster': names no cluster in the top-level clusters "
            f"list; got {pool.cluster!r}, known: {known}"
            for pool in self.pools
            if pool.cluster != DEFAULT_CLUSTER and pool.cluster not in names
        ]
        if problems:
            raise PydanticCustomError(
                "cluster_unknown", "{problems}", {"problems": "; ".join(problems)}
            )
        return self

    def cluster(self, name: str) -> Cluster | None:
        """The listed cluster called `name`; None for `default` when the single-cluster settings
        describe it."""
        return next((cluster for cluster in self.clusters if cluster.name == name), None)

    def pools_of(self, cluster: str) -> list[Pool]:
        """The pools whose nodes are in `cluster`."""
        return [pool for pool in self.pools if pool.cluster == cluster]

    def pool(self, name: str) -> Pool:
        """The pool called `name`; raises PoolNotFound if there is none."""
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise PoolNotFound(name, [pool.name for pool in self.pools])

    def pool_for_vmss(self, vmss_id: str) -> Pool | None:
        """The pool whose scale set is `vmss_id`, compared ignoring case as ARM does; else None."""
        wanted = vmss_id.lower()
        return next((pool for pool in self.pools if pool.vmss_id.lower() == wanted), None)


def load_config(settings: Mapping[str, str]) -> Config:
    """Read the pools from POOLKEEPER_POOLS or the file POOLKEEPER_POOLS_FILE names (and check
    POOLKEEPER_MODE, so that a mistyped mode stops everything as any mistake does)."""
    from shared.config.mode import mode_from_settings

    mode_from_settings(settings)
    # A blank setting counts as unset: deployments often declare a setting with an empty value.
    inline = settings.get(POOLS_SETTING, "")
    file = settings.get(POOLS_FILE_SETTING, "").strip()
    both = f"{POOLS_SETTING} (inline JSON) and {POOLS_FILE_SETTING} (path to a JSON file)"
    if inline.strip() and file:
        raise ConfigError("app settings", [f"set only one of {both}; both are set"])
    if inline.strip():
        return _with_vault(parse_config(inline, source=POOLS_SETTING), POOLS_SETTING, settings)
    if not file:
        raise ConfigError("app settings", [f"set one of {both}; neither is set (see {DOCS})"])
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate the BOM some Windows editors write
    except FileNotFoundError:
        problem = f"{POOLS_FILE_SETTING} is {file!r}, but there is no file at {path.absolute()}"
        raise ConfigError(POOLS_FILE_SETTING, [problem]) from None
    except (OSError, UnicodeDecodeError) as error:
        problem = f"{POOLS_FILE_SETTING} is {file!r}, but {path.absolute()} cannot be read: {error}"
        raise ConfigError(POOLS_FILE_SETTING, [problem]) from None
    source = f"{POOLS_FILE_SETTING} ({path.absolute()})"
    return _with_vault(parse_config(text, source=source), source, settings)


def _with_vault(config: Config, source: str, settings: Mapping[str, str]) -> Config:
    """Every cluster that reads a secret has a vault to read it from."""
    problems = []
    if not settings.get(KEY_VAULT_SETTING, "").strip():
        problems += [
            f"cluster {cluster.name!r}: reads the Key Vault secret(s) "
            f"{', '.join(cluster.secrets)} but names no vault; set its key_vault field or the "
            f"{KEY_VAULT_SETTING} app setting"
            for cluster in config.clusters
            if cluster.secrets and cluster.key_vault is None
        ]
    if problems:
        raise ConfigError(source, problems)
    return config


def parse_config(text: str, *, source: str) -> Config:
    """Validate the pools JSON `text`; all problems at once, `source` naming where it came from."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        problem = f"not valid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        raise ConfigError(source, [problem]) from None
    except _DuplicateKey as error:
        raise ConfigError(source, [str(error)]) from None
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        # Overlaps are found again over the raw pools, so they are reported next to field mistakes
        # (pydantic checks them only once every pool is valid).
        details = [detail for detail in error.errors() if detail["type"] != "pool_overlap"]
        problems = [_explain(detail, data) for detail in details]
        raise ConfigError(source, problems + _overlaps(_raw_pools(data))) from None


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would silently keep the last of two equal keys; a repeated max_nodes is a mistake.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(
                f"key {key!r} appears twice in one JSON object; each key may appear once"
            )
        result[key] = value
    return result


def _explain(error: ErrorDetails, data: object) -> str:
    """One pydantic error in our words: which pool, which field, what is allowed, what was given."""
    loc, kind, got = error["loc"], error["type"], f"got {_show(error['input'])}"
    if kind == "cluster_unknown":
        return str(error.get("ctx", {})["problems"])
    if not loc:
        return f'the configuration must be a JSON object like {{"pools": [...]}}; {got}'
    if loc[0] == "clusters":
        return _explain_cluster(error, data)
    if loc[0] != "pools":
        return (
            f"top-level field {loc[0]!r}: is not a known field; allowed top-level fields are "
            "pools, clusters"
        )
    if len(loc) == 1 and kind == "missing":
        return "top-level field 'pools': is missing; must be a list of at least one pool"
    if len(loc) == 1:
        return f"top-level field 'pools': must be a list of at least one pool; {got}"
    pool, fields = _pool_label(_raw_pools(data), int(loc[1])), ", ".join(Pool.model_fields)
    if kind == "min_above_max":
        ctx = error.get("ctx", {})
        return (
            f"{pool} field 'min_nodes': must be at most max_nodes ({ctx['max_nodes']}); "
            f"got {ctx['min_nodes']}"
        )
    if len(loc) == 2:
        return f"{pool}: must be an object with the fields {fields}; {got}"
    field = str(loc[2])
    if field in _SECTIONS and len(loc) > 3:
        model, allowed_values = _SECTIONS[field]
        if field == "patch" and loc[3] == "window" and len(loc) > 4:
            model = Window
        path = ".".join(str(part) for part in loc[2:] if not isinstance(part, int))
        sub = path.rsplit(".", 1)[-1]
        if kind == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            return f"{pool} field '{path}': is not a known field; allowed: {allowed}"
        return f"{pool} field '{path}': must be {allowed_values.get(sub, 'valid')}; {got}"
    if kind == "extra_forbidden":
        return f"{pool} field {field!r}: is not a known field; allowed fields are {fields}"
    if kind == "missing":
        return f"{pool} field {field!r}: is missing; must be {_ALLOWED[field]}"
    return f"{pool} field {field!r}: must be {_ALLOWED[field]}; {got}"


def _explain_cluster(error: ErrorDetails, data: object) -> str:
    """A mistake in the clusters list, named by the cluster's name where it has a usable one."""
    loc, kind, got = error["loc"], error["type"], f"got {_show(error['input'])}"
    if len(loc) == 1:
        return f"top-level field 'clusters': must be a list of clusters; {got}"
    raw = data.get("clusters") if isinstance(data, dict) else None
    entry = raw[loc[1]] if isinstance(raw, list) and isinstance(loc[1], int) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    label = f"cluster {name!r}" if isinstance(name, str) and name else f"clusters[{loc[1]}]"
    # The auth union puts its tag ("entra", "token") in the location: not a field anyone wrote.
    parts = [str(p) for p in loc[2:] if not isinstance(p, int)]
    if (
        parts[:1] == ["auth"]
        and len(parts) > 1
        and parts[1] in ("entra", "token", "client_certificate", "kubeconfig")
    ):
        del parts[1]
    path, leaf = ".".join(parts), (parts or [""])[-1]
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{label} field {path!r}: {message}; {got}" if path else f"{label}: {message}"
    if not path:
        fields = ", ".join(Cluster.model_fields)
        return f"{label}: must be an object with the fields {fields}; {got}"
    if kind == "extra_forbidden":
        allowed = {
            "": ", ".join(Cluster.model_fields),
            "ca": "pem, secret",
            "auth": "mode, and application_id (entra) or secret (token, client_certificate, "
            "kubeconfig)",
        }[path.rpartition(".")[0]]
        return f"{label} field '{path}': is not a known field; allowed: {allowed}"
    if kind == "union_tag_invalid" or (kind == "union_tag_not_found"):
        return f"{label} field 'auth.mode': must be {CLUSTER_ALLOWED['mode']}; {got}"
    if kind == "missing":
        return f"{label} field '{path}': is missing; must be {CLUSTER_ALLOWED.get(leaf, 'set')}"
    return f"{label} field '{path}': must be {CLUSTER_ALLOWED.get(leaf, 'valid')}; {got}"


def _raw_pools(data: object) -> list[Any]:
    pools = data.get("pools") if isinstance(data, dict) else None
    return pools if isinstance(pools, list) else []


def _valid(pool: object, field: str) -> str | None:
    """The pool's value for a name, vmss_id or node_group field, if it is well-formed."""
    value = pool.get(field) if isinstance(pool, dict) else None
    return value if isinstance(value, str) and _PATTERNS[field].fullmatch(value) else None


def _pool_label(pools: Sequence[object], index: int, *, with_index: bool = False) -> str:
    # A pool is named by its name when that name is usable, else by its position.
    name = _valid(pools[index], "name") if index < len(pools) else None
    if name is None:
        return f"pools[{index}]"
    return f"pool {name!r} (pools[{index}])" if with_index else f"pool {name!r}"


def _overlaps(pools: Sequence[object]) -> list[str]:
    """Pools that share a name, a scale set or a node group; each belongs to exactly one pool."""
    # Raw pools rather than validated ones, so a pool with a mistake elsewhere still reports
    # what it shares with another; vmss_id compares ignoring case because ARM ids do.
    rules = {
        "name": "must be unique across pools",
        "vmss_id": "must be a scale set that no other pool manages (ids compare ignoring case)",
        "node_group": "must be a node group that no other pool owns",
    }
    problems = []
    for field, rule in rules.items():
        owners: dict[str, int] = {}
        for index, pool in enumerate(pools):
            value = _valid(pool, field)
            if value is None:
                continue
            first = owners.setdefault(value.lower() if field == "vmss_id" else value, index)
            if first != index:
                problems.append(
                    f"{_pool_label(pools, index, with_index=True)} field {field!r}: {rule}; "
                    f"got {value!r}, already used by {_pool_label(pools, first, with_index=True)}"
                )
    return problems


def _show(value: object) -> str:
    """A given value as written: strings quoted, anything else as JSON, long values cut short."""
    # Long enough for any ARM id, short enough that a pasted blob does not flood the log.
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 300 else text[:297] + "..."
