"""Usage sources: per-node CPU and memory utilisation averages over a window, for capacity flows.

Flows call `UsageSource.node_usage` on a source from `usage_source_from_settings`; this is the only
module that imports azure-monitor-querymetrics and azure-monitor-query. Two sources:

- `PlatformMetrics` (default, needs no agent): the scale sets' platform metrics `Percentage CPU`
  and `Available Memory Percentage` through the regional metrics batch API, split by `VMName`,
  so nodes are keyed by scale-set *instance id* (the caller maps instance to node by providerID).
- `ContainerInsights` (clusters that have it): the KQL in shared/queries/node_usage.kql over
  `Perf` K8SNode counters and `KubeNodeInventory` labels, so nodes are keyed by *node name*.

Missing data is never a number: a node without samples has no entry (or `None` for a metric),
`PoolUsage.coverage` says `no-data` / `partial` / `complete`, and a failed query raises
`UsageUnavailable`. Callers must not read anything but `complete` as "idle".

Settings (`usage_source_from_settings`):

    POOLKEEPER_USAGE_SOURCE      platform (default) | container-insights
    POOLKEEPER_METRICS_ENDPOINT  platform: required, the regional endpoint of the scale sets'
                                 region, https://<region>.metrics.monitor.azure.com (the batch
                                 API answers only for resources in its own region, and with no
                                 data, not an error, for others; pools carry no region to derive
                                 it from, so it is required rather than guessed)
    POOLKEEPER_LOG_WORKSPACE     container-insights: required, the workspace id (a GUID)
    POOLKEEPER_LOGS_ENDPOINT     container-insights: default https://api.loganalytics.io/v1
    POOLKEEPER_CA_BUNDLE         optional CA bundle for both (the local simulator's test CA)
"""

from __future__ import annotations

import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

from shared.adapters.scaleset import PROCESS_GATE, ThrottleGate
from shared.config import ConfigError

SOURCE_SETTING = "POOLKEEPER_USAGE_SOURCE"
METRICS_ENDPOINT_SETTING = "POOLKEEPER_METRICS_ENDPOINT"
LOGS_ENDPOINT_SETTING = "POOLKEEPER_LOGS_ENDPOINT"
WORKSPACE_SETTING = "POOLKEEPER_LOG_WORKSPACE"
CA_BUNDLE_SETTING = "POOLKEEPER_CA_BUNDLE"
SOURCES = ("platform", "container-insights")

DEFAULT_LOGS_ENDPOINT = "https://api.loganalytics.io/v1"
# Token audiences of the public cloud. Both clients need them stated: LogsQueryClient defaults
# its audience to the endpoint, which no token service accepts for a custom endpoint.
METRICS_AUDIENCE = "https://metrics.monitor.azure.com"
LOGS_AUDIENCE = "https://api.loganalytics.io"

NAMESPACE = "Microsoft.Compute/virtualMachineScaleSets"
CPU_METRIC = "Percentage CPU"
MEMORY_METRIC = "Available Memory Percentage"  # percent *free*: used = 100 - available
VM_DIMENSION = "VMName"  # values are <vmss name>_<instance id>; the service may lower-case both
MAX_BATCH = 50  # resource ids per metrics batch call (the service's limit)
# `top` is per resource; the default of 10 silently drops instances. Instances replaced inside
# the window have series too, so ask for more than the current count, and call a resource that
# fills `top` anyway partial.
TOP_HEADROOM = 10
MAX_BINS = 60  # points per series: the window is cut into at most this many bins
GRAINS = (  # the intervals the metrics API supports
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
)

QUERIES = Path(__file__).resolve().parents[1] / "queries"
NODE_USAGE_QUERY = QUERIES / "node_usage.kql"
# The columns node_usage.kql returns (tests/unit/test_kql.py checks the query infers exactly
# these, by name and type).
NODE_USAGE_COLUMNS = {
    "Computer": "string",
    "NodeGroup": "string",
    "CpuPercent": "real",
    "MemoryPercent": "real",
    "Samples": "long",
}
CONTAINER_INSIGHTS_INTERVAL = timedelta(minutes=1)  # the agent's default collection interval

# A function must not sit in the SDK's retry loop (as for Compute): no retries on status codes,
# one on a connection that could not be made, short timeouts.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 1,
    "retry_connect": 1,
    "retry_read": 0,
    "retry_status": 0,
    "connection_timeout": 5,
    "read_timeout": 60,
}

_METRIC_ID = re.compile(r"^(?P<resource>.+?)/providers/microsoft\.insights/metrics/", re.IGNORECASE)
_REGIONAL = re.compile(r"^(?P<region>[a-z0-9]+)\.metrics\.monitor\.azure\.com$", re.IGNORECASE)


# -- results -----------------------------------------------------------------------------------


class UsageUnavailable(Exception):
    """The usage source could not answer: decide nothing that needs usage (fail safe).

    `temporary` failures (throttling, 5xx, timeouts, no connection) may succeed later, after
    `retry_after` seconds (wall) when the service said so; the others (a refused token, a bad
    request, an answer of the wrong shape) will fail again until something is fixed.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "",
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        temporary: bool | None = None,
    ) -> None:
        super().__init__(f"usage source {source or '?'} unavailable: {reason}")
        self.reason, self.source, self.code = reason, source, code
        self.status, self.retry_after = status, retry_after
        if temporary is None:
            temporary = status is not None and (status in (408, 429) or status >= 500)
        self.temporary = temporary


class Coverage(StrEnum):
    COMPLETE = "complete"  # every expected node, every expected sample, no warning
    PARTIAL = "partial"  # some data: a node or samples missing, or the source said partial
    NO_DATA = "no-data"  # not one sample in the window: never read as idle


@dataclass(frozen=True)
class PoolRef:
    """A pool as a usage source needs it; `instances` is the count from a fresh scale-set read."""

    name: str
    vmss_id: str
    node_group: str
    instances: int


@dataclass(frozen=True)
class NodeUsage:
    """One node's mean utilisation in percent used; `None` when that metric had no sample."""

    node: str  # scale-set instance id (PlatformMetrics) or Kubernetes node name
    cpu_percent: float | None
    memory_percent: float | None
    # Samples behind the means (for both metrics: the lower count) and how many a fully covered
    # window has. The unit is the source's: metric bins with data for PlatformMetrics (one-minute
    # bins for an hour, 30-minute bins for a day), one-minute agent samples for ContainerInsights.
    samples: int
    expected_samples: int

    @property
    def complete(self) -> bool:
        return (
            self.cpu_percent is not None
            and self.memory_percent is not None
            and self.samples >= self.expected_samples
        )


@dataclass(frozen=True)
class PoolUsage:
    """What a source knows about one pool's nodes over [start, end)."""

    pool: str
    start: datetime
    end: datetime
    keyed_by: Literal["instance_id", "node_name"]
    nodes: Mapping[str, NodeUsage]  # only nodes with at least one sample
    expected_nodes: int  # PoolRef.instances
    problems: tuple[str, ...] = ()  # why the answer may be incomplete beyond missing samples

    @property
    def missing_nodes(self) -> int:
        return max(0, self.expected_nodes - len(self.nodes))

    @property
    def coverage(self) -> Coverage:
        if not any(
            n.cpu_percent is not None or n.memory_percent is not None for n in self.nodes.values()
        ):
            return Coverage.NO_DATA
        if self.problems or self.missing_nodes or not all(n.complete for n in self.nodes.values()):
            return Coverage.PARTIAL
        return Coverage.COMPLETE


class UsageSource(Protocol):
    """Per-node CPU and memory utilisation of pools over a window."""

    name: str

    def node_usage(
        self, pools: Sequence[PoolRef], start: datetime, end: datetime
    ) -> dict[str, PoolUsage]:
        """Usage of every pool in `pools` over [start, end), by pool name.

        Raises UsageUnavailable when the source cannot answer.
        """
        ...


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("usage windows need timezone-aware datetimes")
    if end - start < timedelta(minutes=1):
        raise ValueError(f"usage window [{start}, {end}) is shorter than a minute")


def _number(value: Any) -> float | None:
    """A finite float, else None: a missing aggregate must not turn into a zero or a NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _to_unavailable(error: Exception, source: str) -> UsageUnavailable:
    """An SDK exception as UsageUnavailable, with the service's status, code and Retry-After."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(error, ClientAuthenticationError):  # no token, or the service refused it
        status = error.status_code
        return UsageUnavailable(str(error), source=source, code="Authentication", status=status)
    if isinstance(error, ServiceRequestError | ServiceResponseError):  # no answer (in time)
        return UsageUnavailable(
            str(error), source=source, code=type(error).__name__, temporary=True
        )
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        odata = error.error
        code = (getattr(odata, "code", None) if odata else None) or error.reason
        message = (getattr(odata, "message", None) if odata else None) or str(error.message)
        return UsageUnavailable(
            message,
            source=source,
            code=code,
            status=error.status_code,
            retry_after=_retry_after(error.response) if error.status_code == 429 else None,
        )
    return UsageUnavailable(
        str(error) or type(error).__name__, source=source, code=type(error).__name__
    )


def _retry_after(response: Any) -> float:
    raw = (response.headers.get("Retry-After") or "").strip() if response is not None else ""
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 30.0


class _Gated(ABC):
    """Builds one client lazily and honours Retry-After for everything this source calls."""

    source = ""

    def __init__(self, gate: ThrottleGate | None) -> None:
        self._gate = gate or PROCESS_GATE
        self._client: Any = None
        self._lock = threading.Lock()

    @abstractmethod
    def _new_client(self) -> Any:
        """The SDK client this source queries through (built on first use)."""

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(self, key: tuple[str, str], call: Any) -> Any:
        wait = self._gate.remaining(key)
        if wait > 0:
            raise UsageUnavailable(
                f"throttled: no calls for another {wait:.0f} s (Retry-After)",
                source=self.source,
                code="Throttled",
                status=429,
                retry_after=wait,
            )
        from azure.core.exceptions import AzureError

        try:
            return call()
        except AzureError as error:  # every SDK failure (HTTP, connection, token) is ours
            unavailable = _to_unavailable(error, self.source)
            if unavailable.status == 429 and unavailable.retry_after:
                self._gate.block(key, unavailable.retry_after)
            raise unavailable from error


# -- Azure Monitor platform metrics ------------------------------------------------------------


def regional_metrics_endpoint(location: str) -> str:
    """The metrics batch endpoint of an Azure region ('West Europe' or 'westeurope')."""
    return f"https://{location.replace(' ', '').lower()}.metrics.monitor.azure.com"


def _grain(window: timedelta) -> timedelta:
    """The finest supported interval that cuts the window into at most MAX_BINS bins."""
    for grain in GRAINS:
        if window <= grain * MAX_BINS:
            return grain
    return GRAINS[-1]


@dataclass
class _Series:
    """One VM's points of one metric: the mean over its bins, weighted by sample counts."""

    total: float = 0.0
    weight: float = 0.0
    bins: int = 0
    bins_with_data: int = 0

    def add(self, average: float | None, count: float | None) -> None:
        self.bins += 1
        if average is None:
            return
        self.bins_with_data += 1
        weight = count if count else 1.0  # no count aggregate: bins weigh the same
        self.total += average * weight
        self.weight += weight

    @property
    def mean(self) -> float | None:
        return self.total / self.weight if self.weight else None


@dataclass
class _Pending:
    """The series collected for one resource of a batch."""

    vmss_name: str
    series: dict[str, dict[str, _Series]] = field(default_factory=dict)  # metric -> instance
    problems: list[str] = field(default_factory=list)


class PlatformMetrics(_Gated):
    """Azure Monitor platform metrics of the pools' scale sets (metrics batch API)."""

    name = source = "platform"

    def __init__(
        self,
        credential: Any,
        *,
        endpoint: str,
        ca_bundle: str | None = None,
        audience: str = METRICS_AUDIENCE,
        gate: ThrottleGate | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(gate)
        self._credential = credential
        self._endpoint = endpoint.rstrip("/")
        self._options = _CLIENT_OPTIONS | {"audience": audience} | client_options
        if ca_bundle:
            self._options["connection_verify"] = ca_bundle
        host = urlparse(self._endpoint).hostname or ""
        regional = _REGIONAL.match(host)
        self._region = regional["region"].lower() if regional else None

    def _new_client(self) -> Any:
        from azure.monitor.querymetrics import MetricsClient

        return MetricsClient(self._endpoint, self._credential, **self._options)

    def node_usage(
        self, pools: Sequence[PoolRef], start: datetime, end: datetime
    ) -> dict[str, PoolUsage]:
        _check_window(start, end)
        grain = _grain(end - start)
        resources: dict[str, list[PoolRef]] = {}  # lower-cased vmss id -> pools on it
        for pool in pools:
            resources.setdefault(pool.vmss_id.lower(), []).append(pool)
        found: dict[str, _Pending] = {}
        for subscription, batch in _batches(resources):
            top = max(pool.instances for rid in batch for pool in resources[rid]) + TOP_HEADROOM
            found.update(self._batch(subscription, batch, start, end, grain, top))
        return {
            pool.name: self._pool_usage(pool, found[pool.vmss_id.lower()], start, end)
            for pool in pools
        }

    def _batch(
        self,
        subscription: str,
        resource_ids: list[str],
        start: datetime,
        end: datetime,
        grain: timedelta,
        top: int,
    ) -> dict[str, _Pending]:
        def call() -> Any:
            return self.client().query_resources(
                resource_ids=resource_ids,
                metric_namespace=NAMESPACE,
                metric_names=[CPU_METRIC, MEMORY_METRIC],
                timespan=(start, end),
                granularity=grain,
                aggregations=["average", "count"],
                max_results=top,
                filter=f"{VM_DIMENSION} eq '*'",
            )

        results = self._call((subscription.lower(), "Microsoft.Insights/metrics"), call)
        pending = {rid: _Pending(_vmss_name(rid)) for rid in resource_ids}
        for index, result in enumerate(results):
            rid = self._resource_of(result, index, resource_ids, len(results))
            self._collect(pending[rid], result, top)
        return pending

    @staticmethod
    def _resource_of(result: Any, index: int, requested: list[str], answered: int) -> str:
        """Which requested resource a result is for: its metric ids name it (the result object
        does not); else the service's documented order, when it answered every resource."""
        for metric in result.metrics:
            found = _METRIC_ID.match(metric.id or "")
            if found and found["resource"].lower() in requested:
                return found["resource"].lower()
        if answered == len(requested):
            return requested[index]
        raise UsageUnavailable(
            f"cannot tell which resource result {index} of {answered} is for "
            f"({len(requested)} were requested)",
            source="platform",
            code="UnmatchedResult",
        )

    def _collect(self, pending: _Pending, result: Any, top: int) -> None:
        region = (result.resource_region or "").replace(" ", "").lower()
        if self._region and region and region != self._region:
            pending.problems.append(
                f"the scale set is in {region} but the metrics endpoint is {self._region}'s: "
                f"set {METRICS_ENDPOINT_SETTING} to {regional_metrics_endpoint(region)}"
            )
        for metric in result.metrics:
            name = (metric.name or "").lower()
            if name not in (CPU_METRIC.lower(), MEMORY_METRIC.lower()):
                continue
            if len(metric.timeseries) >= top:
                pending.problems.append(
                    f"{metric.name}: {len(metric.timeseries)} series fill top={top}; "
                    "instances may be missing"
                )
            per_vm = pending.series.setdefault(name, {})
            for series in metric.timeseries:
                vm = _dimension(series.metadata_values, VM_DIMENSION)
                if vm is None:
                    pending.problems.append(f"{metric.name}: a series without {VM_DIMENSION}")
                    continue
                prefix, _, instance_id = vm.rpartition("_")
                if not instance_id or prefix.lower() != pending.vmss_name.lower():
                    pending.problems.append(f"{metric.name}: unexpected {VM_DIMENSION} {vm!r}")
                    continue
                collected = per_vm.setdefault(instance_id, _Series())
                for point in series.data:
                    collected.add(_number(point.average), _number(point.count))

    @staticmethod
    def _pool_usage(pool: PoolRef, pending: _Pending, start: datetime, end: datetime) -> PoolUsage:
        cpu = pending.series.get(CPU_METRIC.lower(), {})
        free = pending.series.get(MEMORY_METRIC.lower(), {})
        nodes: dict[str, NodeUsage] = {}
        for instance_id in sorted(set(cpu) | set(free), key=_instance_order):
            used, available = cpu.get(instance_id, _Series()), free.get(instance_id, _Series())
            samples = min(used.bins_with_data, available.bins_with_data)
            if not (used.bins_with_data or available.bins_with_data):
                continue
            memory_free = available.mean
            nodes[instance_id] = NodeUsage(
                node=instance_id,
                cpu_percent=used.mean,
                memory_percent=None if memory_free is None else 100.0 - memory_free,
                samples=samples,
                expected_samples=max(used.bins, available.bins),
            )
        return PoolUsage(
            pool=pool.name,
            start=start,
            end=end,
            keyed_by="instance_id",
            nodes=nodes,
            expected_nodes=pool.instances,
            problems=tuple(dict.fromkeys(pending.problems)),
        )


def _batches(resources: Mapping[str, Any]) -> Iterable[tuple[str, list[str]]]:
    """Resource ids in calls of at most MAX_BATCH, one subscription per call (the API's rule)."""
    by_subscription: dict[str, list[str]] = {}
    for rid in resources:
        parts = rid.split("/")
        if len(parts) < 3 or parts[1] != "subscriptions":
            raise ValueError(f"not a resource id: {rid!r}")
        by_subscription.setdefault(parts[2], []).append(rid)
    for subscription, ids in by_subscription.items():
        for first in range(0, len(ids), MAX_BATCH):
            yield subscription, ids[first : first + MAX_BATCH]


def _vmss_name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def _dimension(values: Mapping[str, Any] | None, name: str) -> str | None:
    """A dimension's value, matching its name ignoring case (the service lower-cases it)."""
    for key, value in (values or {}).items():
        if key.lower() == name.lower() and value:
            return str(value)
    return None


def _instance_order(instance_id: str) -> tuple[int, str]:
    return (int(instance_id), "") if instance_id.isdigit() else (1 << 62, instance_id)


# -- Container Insights (Log Analytics) ----------------------------------------------------------


class ContainerInsights(_Gated):
    """Container Insights node counters in a Log Analytics workspace (KQL: node_usage.kql)."""

    name = source = "container-insights"

    def __init__(
        self,
        credential: Any,
        *,
        workspace_id: str,
        endpoint: str = DEFAULT_LOGS_ENDPOINT,
        ca_bundle: str | None = None,
        audience: str = LOGS_AUDIENCE,
        query: str | None = None,
        sample_interval: timedelta = CONTAINER_INSIGHTS_INTERVAL,
        gate: ThrottleGate | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(gate)
        self._credential = credential
        self._workspace = workspace_id
        self._endpoint = endpoint.rstrip("/")
        self._query = query if query is not None else NODE_USAGE_QUERY.read_text()
        self._interval = sample_interval
        self._options = _CLIENT_OPTIONS | {"audience": audience} | client_options
        if ca_bundle:
            self._options["connection_verify"] = ca_bundle

    def _new_client(self) -> Any:
        from azure.monitor.query import LogsQueryClient

        return LogsQueryClient(self._credential, endpoint=self._endpoint, **self._options)

    def node_usage(
        self, pools: Sequence[PoolRef], start: datetime, end: datetime
    ) -> dict[str, PoolUsage]:
        _check_window(start, end)
        from azure.monitor.query import LogsQueryPartialResult

        def call() -> Any:
            return self.client().query_workspace(
                self._workspace, self._query, timespan=(start, end)
            )

        result = self._call((self._workspace.lower(), "LogAnalytics"), call)
        problems: tuple[str, ...] = ()
        if isinstance(result, LogsQueryPartialResult):
            error = result.partial_error
            code = getattr(error, "code", None) or "PartialError"
            message = getattr(error, "message", None) or "no message"
            problems = (f"Log Analytics answered a partial result: {code}: {message}",)
            tables = result.partial_data
        else:
            tables = result.tables
        rows = _rows(tables)
        expected = math.ceil((end - start) / self._interval)
        by_group: dict[str, dict[str, NodeUsage]] = {}
        for row in rows:
            samples = int(_number(row["Samples"]) or 0)
            if not samples:
                continue
            node = NodeUsage(
                node=str(row["Computer"]),
                cpu_percent=_number(row["CpuPercent"]),
                memory_percent=_number(row["MemoryPercent"]),
                samples=samples,
                expected_samples=expected,
            )
            by_group.setdefault(str(row["NodeGroup"] or ""), {})[node.node] = node
        return {
            pool.name: PoolUsage(
                pool=pool.name,
                start=start,
                end=end,
                keyed_by="node_name",
                nodes=by_group.get(pool.node_group, {}),
                expected_nodes=pool.instances,
                problems=problems,
            )
            for pool in pools
        }


def _rows(tables: Sequence[Any]) -> list[dict[str, Any]]:
    """The first table's rows as dicts, after checking it has node_usage.kql's columns."""
    if not tables:
        return []
    table = tables[0]
    columns = list(table.columns)
    missing = [name for name in NODE_USAGE_COLUMNS if name not in columns]
    if missing:
        raise UsageUnavailable(
            f"the node-usage query answered columns {columns}, without {missing}",
            source="container-insights",
            code="UnexpectedColumns",
        )
    return [dict(zip(columns, row, strict=False)) for row in table.rows]


# -- choosing a source -------------------------------------------------------------------------


def usage_source_from_settings(
    settings: Mapping[str, str], *, credential: Any = None
) -> PlatformMetrics | ContainerInsights:
    """The source POOLKEEPER_USAGE_SOURCE names; ConfigError names any missing setting."""
    kind = (settings.get(SOURCE_SETTING) or "platform").strip().lower()
    if kind not in SOURCES:
        raise ConfigError(
            "app settings",
            [f"{SOURCE_SETTING} is {kind!r}; it must be one of: {', '.join(SOURCES)}"],
        )
    ca_bundle = settings.get(CA_BUNDLE_SETTING) or None
    if kind == "platform":
        endpoint = (settings.get(METRICS_ENDPOINT_SETTING) or "").strip()
        if not endpoint:
            raise ConfigError(
                "app settings",
                [
                    f"{METRICS_ENDPOINT_SETTING} is not set: the usage source 'platform' needs "
                    f"the metrics endpoint of the scale sets' region, e.g. "
                    f"{regional_metrics_endpoint('westeurope')}"
                ],
            )
        return PlatformMetrics(
            credential or _default_credential(), endpoint=endpoint, ca_bundle=ca_bundle
        )
    workspace = (settings.get(WORKSPACE_SETTING) or "").strip()
    if not workspace:
        raise ConfigError(
            "app settings",
            [
                f"{WORKSPACE_SETTING} is not set: the usage source 'container-insights' needs "
                "the Log Analytics workspace id (a GUID) that Container Insights writes to"
            ],
        )
    return ContainerInsights(
        credential or _default_credential(),
        workspace_id=workspace,
        endpoint=(settings.get(LOGS_ENDPOINT_SETTING) or "").strip() or DEFAULT_LOGS_ENDPOINT,
        ca_bundle=ca_bundle,
    )


def _default_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
