"""The scenario's `workloads` section: what runs on the simulated cluster (see the package doc).

Parsed strictly, like the rest of a scenario: unknown keys are errors.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from local.sim.kube import quantity

NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Requests(Strict):
    cpu: str | int | float = "100m"
    memory: str | int = "128Mi"

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | int | float) -> str | int | float:
        quantity.parse(value)
        return value


def _int_or_percent(value: int | str | None) -> int | str | None:
    if isinstance(value, str) and not PERCENT.match(value):
        raise ValueError('must be an integer or a percentage like "25%"')
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    return value


class Budget(Strict):
    """A PodDisruptionBudget: exactly one of `min_available` and `max_unavailable`."""

    name: str | None = Field(default=None, pattern=NAME)  # default: the workload's name
    min_available: int | str | None = None
    max_unavailable: int | str | None = None
    unhealthy_pod_eviction_policy: Literal["IfHealthyBudget", "AlwaysAllow"] | None = None

    @field_validator("min_available", "max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: int | str | None) -> int | str | None:
        return _int_or_percent(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Budget:
        if (self.min_available is None) == (self.max_unavailable is None):
            raise ValueError("give exactly one of min_available and max_unavailable")
        return self


class PodTemplate(Strict):
    """What every workload's pods share."""

    labels: dict[str, str] = {}  # default: {"app": <name>}
    requests: Requests = Requests()
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []  # Kubernetes tolerations, verbatim
    image: str = "registry.k8s.io/pause:3.10"
    termination_grace_seconds: int = Field(default=30, ge=0)
    empty_dir: bool = False  # mount an emptyDir volume (drain needs --delete-emptydir-data)
    start_seconds: float | None = Field(default=None, ge=0)  # default: the section's


class Deployment(PodTemplate):
    name: str = Field(pattern=NAME)
    namespace: str = Field(default="default", pattern=NAME)
    replicas: int = Field(ge=0, le=10000)
    pdb: Budget | None = None


class DaemonSet(PodTemplate):
    name: str = Field(pattern=NAME)
    namespace: str = Field(default="kube-system", pattern=NAME)
    # On the DaemonSet object, e.g. kured's reboot lock `weave.works/kured-node-lock`.
    annotations: dict[str, str] = {}


class StaticPod(PodTemplate):
    """A kubelet static pod: a mirror pod `<name>-<node>` on every node matching node_selector."""

    name: str = Field(pattern=NAME)
    namespace: str = Field(default="kube-system", pattern=NAME)


class BarePod(PodTemplate):
    """A pod with no controller; `node` binds it to a node by name, else the scheduler places it."""

    name: str = Field(pattern=NAME)
    namespace: str = Field(default="default", pattern=NAME)
    node: str | None = None
    phase: Literal["Running", "Succeeded"] = "Running"  # Succeeded: a completed pod


class StandaloneBudget(Budget):
    """A PodDisruptionBudget of its own, e.g. a second one overlapping a deployment's."""

    name: str = Field(pattern=NAME)
    namespace: str = Field(default="default", pattern=NAME)
    selector: dict[str, str] = Field(min_length=1)


class ConfigMap(Strict):
    """A ConfigMap, e.g. cluster-autoscaler's `kube-system/cluster-autoscaler-status`."""

    name: str = Field(pattern=NAME)
    namespace: str = Field(default="kube-system", pattern=NAME)
    data: dict[str, str] = {}


class Workloads(Strict):
    start_seconds: float = Field(default=5, ge=0)  # bound pod -> Running and Ready
    replace_seconds: float = Field(default=2, ge=0)  # missing pod noticed -> replacement created
    deployments: list[Deployment] = []
    daemonsets: list[DaemonSet] = []
    static_pods: list[StaticPod] = []
    pods: list[BarePod] = []
    pdbs: list[StandaloneBudget] = []
    config_maps: list[ConfigMap] = []

    @model_validator(mode="after")
    def _unique(self) -> Workloads:
        seen: set[tuple[str, str, str]] = set()
        named: list[tuple[str, str, str]] = [
            *(("deployment", d.namespace, d.name) for d in self.deployments),
            *(("daemonset", d.namespace, d.name) for d in self.daemonsets),
            *(("static pod", s.namespace, s.name) for s in self.static_pods),
            *(("pod", p.namespace, p.name) for p in self.pods),
            *(("pdb", b.namespace, b.name) for b in self.pdbs),
            *(("configmap", c.namespace, c.name) for c in self.config_maps),
            *(
                ("pdb", d.namespace, d.pdb.name or d.name)
                for d in self.deployments
                if d.pdb is not None
            ),
        ]
        for key in named:
            if key in seen:
                raise ValueError(f"{key[0]} {key[1]}/{key[2]} is defined twice")
            seen.add(key)
        return self


def parse_workloads(data: Workloads | dict[str, Any] | None) -> Workloads:
    if isinstance(data, Workloads):
        return data
    return Workloads.model_validate(data or {})
