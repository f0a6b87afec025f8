"""Scenario files: the world the simulator starts from (documented in docs/local-stack.md).

Parsed strictly (unknown keys are errors) so a typo in a scenario fails loudly, not silently.
`clusters` (several Kubernetes clusters, each over TLS with its own auth) is documented in
local/sim/kube/__init__.py, `key_vault` (Key Vault secrets) in local/sim/keyvault.py.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from local.sim.images import ZONAL_REGIONS
from local.sim.kube.workloads import Workloads

VM_SIZES: dict[str, tuple[int, int]] = {  # vCPUs, memory GiB
    "Standard_B2s": (2, 4),
    "Standard_D2s_v5": (2, 8),
    "Standard_D4s_v5": (4, 16),
    "Standard_D8s_v5": (8, 32),
    "Standard_D16s_v5": (16, 64),
    "Standard_E4s_v5": (4, 32),
    "Standard_E8s_v5": (8, 64),
    "Standard_F4s_v2": (4, 8),
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Clock(Strict):
    start: datetime
    speed: float = Field(default=1.0, gt=0)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-01-05T08:00:00Z")
        return value


class Latencies(Strict):
    """Simulated seconds each operation takes."""

    create: float = 90
    delete: float = 60
    force_delete: float = 30
    restart: float = 60
    power_off: float = 30
    start: float = 45
    deallocate: float = 60
    reimage: float = 120
    update_model: float = 60
    run_command: float = 20
    # A reboot (restart, or `systemctl reboot` in a run command): guest down until the kubelet
    # posts Ready again. None: 60-120 s, fixed per instance from the scenario seed.
    reboot: float | None = Field(default=None, ge=0)
    snapshot: float = 15
    gallery: float = 10
    image_definition: float = 10
    image_version: float = 1800  # creation with replication to every target region
    image_version_update: float = 60  # a change of publishing profile (excludeFromLatest)
    model_update: float = 10  # a scale-set model write that changes the image
    resource_delete: float = 10


class LoadStep(Strict):
    at: datetime
    cpu: float | None = Field(default=None, ge=0, le=100)
    memory: float | None = Field(default=None, ge=0, le=100)


class InstanceLoad(Strict):
    cpu: float = 0.0
    memory: float = 0.0


class Load(Strict):
    """Utilisation in percent: base values, steps over time, per-instance offsets, noise."""

    cpu: float = Field(default=30.0, ge=0, le=100)
    memory: float = Field(default=40.0, ge=0, le=100)
    noise: float = Field(default=2.0, ge=0, le=50)
    steps: list[LoadStep] = []
    instances: dict[str, InstanceLoad] = {}


class ImageReference(Strict):
    id: str | None = None
    publisher: str | None = None
    offer: str | None = None
    sku: str | None = None
    version: str | None = None


IDENTITY_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+",
    re.IGNORECASE,
)


class ScaleSetSpec(Strict):
    resource_group: str
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    sku: str = "Standard_D4s_v5"
    capacity: int = Field(ge=0, le=1000)
    zones: list[str] = []
    node_group: str
    agent_pool: str | None = None
    computer_name_prefix: str | None = None
    image: ImageReference = ImageReference(
        publisher="microsoft-aks", offer="aks", sku="aks-ubuntu-2204-gen2", version="2026.11.01"
    )
    load: Load = Load()
    tags: dict[str, str] = {}
    upgrade_mode: Literal["Manual", "Automatic", "Rolling"] = "Manual"  # upgradePolicy.mode
    # User-assigned identities the model carries (e.g. the kubelet's): resource ids.
    identities: list[str] = []

    @field_validator("identities")
    @classmethod
    def _identity_ids(cls, value: list[str]) -> list[str]:
        for each in value:
            if not IDENTITY_ID.fullmatch(each):
                raise ValueError(f"{each!r} is not a user-assigned identity's resource id")
        return value

    @field_validator("sku")
    @classmethod
    def _known_size(cls, value: str) -> str:
        if value not in VM_SIZES:
            raise ValueError(f"unknown VM size; the simulator knows {', '.join(VM_SIZES)}")
        return value


class Fault(Strict):
    """An injected failure; see docs/local-stack.md for the kinds."""

    operation: str
    scale_set: str | None = None
    instance: str | None = None  # an instance id: the fault covers only that instance
    kind: Literal[
        "error",
        "lro_failed",
        "partial_delete",
        "timeout",
        "lost_answer",
        "dropped",
        "held",
        "never_ready",
        "never_boots",
        "lost_writes",
    ] = "error"
    image: str | None = None  # Boot: an image version id; the fault covers boots from it
    match: str | None = None  # run command: a regular expression searched in the script
    error: str = "InternalExecutionError"
    message: str | None = None
    status: int = Field(default=409, ge=400, le=599)
    count: int | None = Field(default=None, ge=1)
    start: datetime | None = None
    end: datetime | None = None
    deleted: int = Field(default=0, ge=0)  # partial_delete: how many instances really go
    # timeout: how long the request hangs (wall seconds); held: how long its answer is held
    seconds: float = Field(default=30, gt=0)
    # lost_answer: the request takes effect `apply_after` simulated seconds after the 504, and
    # its operation then ends as `outcome` says (lro_failed uses `error`). never_ready: the node
    # is Ready for `apply_after` simulated seconds after the boot, then NotReady.
    apply_after: float = Field(default=0, ge=0)
    outcome: Literal["succeeded", "lro_failed"] = "succeeded"

    @model_validator(mode="after")
    def _boot_faults(self) -> Fault:
        if (self.operation == "Boot") != (self.kind in ("never_ready", "never_boots")):
            raise ValueError(
                "operation Boot takes kind never_ready or never_boots, and only it does"
            )
        if self.image and self.operation != "Boot":
            raise ValueError("image selects boots: it needs operation Boot")
        run_command = "VirtualMachineScaleSetVMs_RunCommand"
        if self.kind == "lost_writes" and self.operation != run_command:
            raise ValueError(f"kind lost_writes needs operation {run_command}")
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as error:
                raise ValueError(f"match is not a regular expression: {error}") from None
        return self


class Throttle(Strict):
    """A Compute-style budget: `limit` calls per `window_seconds` for a family of operations."""

    family: str
    operations: list[str]
    limit: int = Field(ge=0)
    window_seconds: float = Field(gt=0)


class RunCommandReply(Strict):
    match: str  # a regular expression searched in the joined script
    stdout: str = ""
    stderr: str = ""


class BaseOs(Strict):
    """The OS of the scale sets' base image: what every new OS disk holds."""

    name: str = "Ubuntu 24.04.1 LTS"  # nodeInfo.osImage
    release: str = "24.04"
    codename: str = "noble"
    kernel: str = Field(default="6.8.0-1015-azure", pattern=r"^\d+\.\d+\.\d+-\d+-[a-z]+$")
    packages: dict[str, str] = {
        "containerd": "1.7.12-0ubuntu4.1",
        "libc6": "2.39-0ubuntu8.3",
        "openssl": "3.0.13-0ubuntu3.4",
        "systemd": "255.4-1ubuntu8.4",
        "sudo": "1.9.15p5-3ubuntu5",
    }


class OsUpdate(Strict):
    """Updates published to the archive at `date`: `packages` package updates (the first N of
    the image's packages, see local/sim/guest.py) and optionally a new kernel."""

    date: datetime
    kernel: str | None = Field(default=None, pattern=r"^\d+\.\d+\.\d+-\d+-[a-z]+$")
    packages: int = Field(default=0, ge=0, le=500)
    security: bool = False
    breaks: bool = False  # booting this kernel leaves the node never Ready

    _aware = field_validator("date")(Clock._aware.__func__)  # type: ignore[attr-defined]


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SECRET_NAME = r"^[0-9a-zA-Z-]{1,127}$"


class ClusterAuth(Strict):
    """How clients authenticate to a cluster (local/sim/kube/__init__.py)."""

    mode: Literal["token", "client_certificate", "entra", "none"]
    audience: str | None = Field(default=None, min_length=1)  # entra: the server application id

    @model_validator(mode="after")
    def _audience(self) -> ClusterAuth:
        if (self.mode == "entra") != (self.audience is not None):
            raise ValueError("mode entra takes an audience (the application id), and only it does")
        return self


class ClusterSpec(Strict):
    """A Kubernetes cluster whose nodes are the instances of `scale_sets`."""

    name: str = Field(pattern=DNS_LABEL)
    scale_sets: list[str] = []
    auth: ClusterAuth
    workloads: Workloads | None = None  # default: the top-level workloads that fit its nodes


class SecretSpec(Strict):
    """A Key Vault secret's current version (local/sim/keyvault.py)."""

    value: str
    content_type: str | None = None
    exp: datetime | None = None
    nbf: datetime | None = None
    enabled: bool = True
    tags: dict[str, str] = {}

    _aware = field_validator("exp", "nbf")(Clock._aware.__func__)  # type: ignore[attr-defined]

    @classmethod
    def of(cls, entry: str | SecretSpec) -> SecretSpec:
        return cls(value=entry) if isinstance(entry, str) else entry


# The application ID URI of Poolkeeper's app registration on the local cloud (the local Easy
# Auth's audience, local/host/easyauth.py AUDIENCE).
POOLKEEPER_API = "api://poolkeeper-local"


class ApplicationSpec(Strict):
    """An app registration with a client secret (local/sim/entra.py), and the app roles it holds
    on other applications: {application ID URI: [role, ...]}."""

    name: str
    client_id: str = Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    client_secret: str = Field(min_length=8)
    object_id: str = Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    roles: dict[str, list[str]] = {}


class EntraSpec(Strict):
    """The directory's app registrations; by default the two alert senders of docs/alerts.md."""

    applications: list[ApplicationSpec] = [
        ApplicationSpec(
            name="alertmanager",
            client_id="5b0c2f1e-9a7d-4e38-b1c6-0d2e4f6a8b11",
            client_secret="local-alertmanager-secret",
            object_id="7c1d3a2f-0b8e-4f49-a2d7-1e3f5a7b9c22",
            roles={POOLKEEPER_API: ["Poolkeeper.AlertSender"]},
        ),
        ApplicationSpec(
            name="AzNS AAD Webhook",
            client_id="461e8683-5575-4561-ac7f-899cc907d62a",  # Azure Monitor's, as in Entra
            client_secret="local-azure-monitor-secret",
            object_id="9e2f4b3a-1c0d-4a5b-b3e8-2f4a6b8c0d33",
            roles={POOLKEEPER_API: ["Poolkeeper.AlertSender"]},
        ),
    ]


class KeyVaultSpec(Strict):
    """The one vault the simulator serves, on the ARM port (local/sim/keyvault.py)."""

    name: str = Field(default="kv-poolkeeper", pattern=r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
    resource_group: str = "rg-poolkeeper"
    readable: bool = True  # the managed identity holds "Key Vault Secrets User" on the vault
    secrets: dict[str, str | SecretSpec] = {}

    @field_validator("secrets")
    @classmethod
    def _names(cls, secrets: dict[str, str | SecretSpec]) -> dict[str, str | SecretSpec]:
        seen: set[str] = set()
        for name in secrets:
            if not re.match(SECRET_NAME, name):
                raise ValueError(f"secret name {name!r}: 1-127 letters, digits and hyphens")
            if name.lower() in seen:
                raise ValueError(f"secret {name!r} is defined twice (names ignore case)")
            seen.add(name.lower())
        return secrets


class PermissionSpec(Strict):
    """One entry of ARM's permissions list for a scope (Microsoft.Authorization/permissions)."""

    actions: list[str] = []
    not_actions: list[str] = []


class Scenario(Strict):
    subscription: str = Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    tenant: str = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    location: str = "westeurope"
    clock: Clock
    latencies: Latencies = Latencies()
    page_size: int = Field(default=100, ge=1, le=1000)
    scale_sets: list[ScaleSetSpec]
    faults: list[Fault] = []
    throttling: list[Throttle] = []
    run_command: list[RunCommandReply] = []  # fixed replies, matched before the shell runs
    os: BaseOs = BaseOs()
    os_updates: list[OsUpdate] = []
    # Regions with availability zones: a Standard_ZRS image replica elsewhere fails its version.
    zonal_regions: list[str] = list(ZONAL_REGIONS)
    seed: int = 7
    workloads: Workloads = Workloads()  # the cluster's pods (local/sim/kube/__init__.py)
    # Several clusters, each over TLS with its own auth; None: one plain-HTTP cluster of every
    # scale set (local/sim/kube/__init__.py)
    clusters: list[ClusterSpec] | None = None
    key_vault: KeyVaultSpec = KeyVaultSpec()
    entra: EntraSpec = EntraSpec()
    # The caller's effective permissions, as ARM lists them: keyed by a resource group's name
    # (assignments there) or a resource's id (assignments at it; a resource's list adds its
    # group's). A group not listed: every action ("*"), there and on its resources.
    permissions: dict[str, list[PermissionSpec]] = {}
    pools: dict[str, Any] | None = None  # Poolkeeper's configuration for this world, verbatim

    @model_validator(mode="after")
    def _cluster_members(self) -> Scenario:
        if self.clusters is None:
            return self
        if not self.clusters:
            raise ValueError("clusters: list at least one cluster, or leave clusters out")
        known = {s.name.lower() for s in self.scale_sets}
        names: set[str] = set()
        owner: dict[str, str] = {}
        for cluster in self.clusters:
            if cluster.name in names:
                raise ValueError(f"clusters: {cluster.name!r} is listed twice")
            names.add(cluster.name)
            for member in cluster.scale_sets:
                if member.lower() not in known:
                    raise ValueError(f"clusters.{cluster.name}: no scale set {member!r}")
                if member.lower() in owner:
                    raise ValueError(
                        f"clusters: scale set {member!r} is in {owner[member.lower()]!r} and "
                        f"{cluster.name!r}; a scale set belongs to one cluster at most"
                    )
                owner[member.lower()] = cluster.name
        return self


class ScenarioError(ValueError):
    """A scenario file that cannot be loaded; the message lists every problem."""


def parse_scenario(data: Any, *, source: str) -> Scenario:
    """Validate a scenario, naming each bad field by its path."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            + (f" (got {e['input']!r})" if not isinstance(e.get("input"), dict | list) else "")
            for e in error.errors()
        ]
        raise ScenarioError(f"scenario {source} is invalid:\n  " + "\n  ".join(problems)) from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ScenarioError(f"scenario {path} cannot be read: {error}") from error
    return parse_scenario(data, source=str(path))
