"""Azure Monitor for the simulator: the metrics batch API and the Log Analytics query API.

Both answer from the world's load model (`World.utilisation`, percent used, deterministic per
minute). A *sample* is one (instance, minute) pair; it exists when all of these hold:

- the instance's power state is `running` now (the world keeps no power history, so an instance
  that is stopped, starting, stopping or being deleted has no samples at all, even for the past);
- the minute lies after the instance last booted, except that instances present when the
  scenario started (and not rebooted since) count as running for the whole retention (93 days);
- the minute is complete (its end is not after the simulated now) and within the last 93 days.

Metrics: `POST /subscriptions/{sub}/metrics:getBatch` as `azure-monitor-querymetrics`
`MetricsClient.query_resources` sends it (api-version 2024-02-01). Query parameters
`starttime`/`endtime` (ISO; default: the hour before now; `timespan=start/end` is read too),
`interval` (PT1M default, PT5M, PT15M, PT30M, PT1H, PT6H, PT12H, P1D or FULL), `metricnamespace`
(must be Microsoft.Compute/virtualMachineScaleSets), `metricnames` (comma-separated),
`aggregation` (average default, minimum, maximum, total, count), `filter`, `top`, `orderby`,
`rollupby`; body `{"resourceids": [...]}`.

- Metrics: `Percentage CPU` (cpu used) and `Available Memory Percentage` (100 - memory used),
  unit Percent. Any other name: 400 `Failed to find metric configuration for provider ...`
  listing both.
- Bins start at `starttime` rounded down to the minute and are `interval` long (FULL: one bin
  whose reported interval is the window's length); a sample counts when its minute starts in
  [starttime, endtime). Bins longer than an hour use an even sample of at most 60 minutes per
  instance, so `count` is samples taken. Every bin is listed (`timeStamp`, UTC with `Z`); a bin
  without samples has no aggregation keys at all (the SDK reads None), never a zero.
- Without `filter`: one timeseries per metric over all instances, `metadatavalues` empty. With
  `VMName eq '*'` or `VMName eq 'a' or VMName eq 'b'` (VM names are `<vmss>_<instanceId>`): one
  timeseries per matching instance that has samples, with metadata name `vmname` (lower-cased,
  as Microsoft's batch sample shows; match dimension names case-insensitively). Series are
  ranked by `orderby` (`<aggregation> asc|desc`; default the first aggregation, descending; ties
  by VM name) over the whole window and cut to `top` (default 10, as in Azure: an unset `top`
  silently drops instances beyond ten). `rollupby=VMName` merges the filtered instances into one
  series. Other dimensions: 400.
- Items come back in request order, one per distinct resource id (at most 50, else 400). An id of
  another subscription or resource type: 400 (the service checks ids by shape). A well-formed
  id that is no scale set of the world gets its metrics with `"timeseries": []`, which is how
  the service answers for resources it holds no data for (e.g. wrong region): no error.
- Errors are `{"error": {"code": "BadRequest", "message": ...}}` with HTTP 400; a subscription
  other than the scenario's is 403 `AuthorizationFailed`.

Logs: `POST /v1/workspaces/{workspaceId}/query` (`azure-monitor-query` `LogsQueryClient`), body
`{"query": KQL, "timespan": "start/end" | "start/duration" | "duration"}`; any workspace id is
accepted. The simulator cannot run KQL: it answers only *named* queries, whose first non-blank
line is `// poolkeeper:<name>`; the rest of the text is ignored. Anything else: 400
`BadArgumentError`. Named queries need a timespan (400 without). Errors are
`{"error": {"code", "message", "correlationId"}}`. Known names:

- `node-usage`: table `PrimaryResult`, one row per node (instance with samples in the timespan),
  ordered by Computer: `Computer` (string, the computer name = Kubernetes node name),
  `NodeGroup` (string), `CpuPercent` and `MemoryPercent` (real, mean percent used over the
  node's samples), `Samples` (long; one per minute, or every k-th minute when the timespan is
  longer than a day so that there are at most 1440).

A line `// poolkeeper:partial` anywhere in a named query makes the answer a partial failure: HTTP
200 with only the first half of the rows (rounded up) plus `"error": {"code": "PartialError",
...}` saying how many nodes are missing; the SDK returns a `LogsQueryPartialResult`.

Both APIs obey injected faults and throttling budgets for operations `MetricsBatch_Batch` and
`Query_Execute` (fault kinds `error` and `timeout`; any other kind acts as `error`).
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from local.sim import bodies
from local.sim.bodies import BodyError
from local.sim.world import ArmError, Instance, ScaleSet, World

NAMESPACE = "Microsoft.Compute/virtualMachineScaleSets"
RETENTION = timedelta(days=93)
MAX_RESOURCES = 50
DEFAULT_TOP = 10
GRAINS = {  # supported intervals, in minutes
    "PT1M": 1,
    "PT5M": 5,
    "PT15M": 15,
    "PT30M": 30,
    "PT1H": 60,
    "PT6H": 360,
    "PT12H": 720,
    "P1D": 1440,
}
AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
DIMENSION = "vmname"
RESOURCE_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/[^/]+/providers/(?P<type>[^/]+/[^/]+)/[^/]+",
    re.IGNORECASE,
)
DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
FILTER_TERM = re.compile(r"\s*(?P<dim>[\w ]+?)\s+eq\s+'(?P<value>[^']*)'\s*", re.IGNORECASE)
NAMED = re.compile(r"//\s*poolkeeper:(?P<name>[\w-]+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    load: str  # the World.utilisation metric it derives from
    available: bool  # reports 100 - used


METRICS = {
    spec.name.lower(): spec
    for spec in (
        MetricSpec(
            "Percentage CPU",
            "The percentage of allocated compute units that are currently in use by the "
            "Virtual Machine(s)",
            "cpu",
            False,
        ),
        MetricSpec(
            "Available Memory Percentage",
            "Amount of physical memory, in percentage, immediately available for allocation to "
            "a process or for system use in the Virtual Machine",
            "memory",
            True,
        ),
    )
}


class Acc:
    """Running aggregation of samples."""

    def __init__(self) -> None:
        self.count, self.total, self.low, self.high = 0, 0.0, math.inf, -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low, self.high = min(self.low, value), max(self.high, value)

    def merge(self, other: Acc) -> Acc:
        self.count += other.count
        self.total += other.total
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        return self

    def get(self, aggregation: str) -> float:
        return {
            "average": self.total / self.count if self.count else math.nan,
            "minimum": self.low,
            "maximum": self.high,
            "total": self.total,
            "count": float(self.count),
        }[aggregation]


def _merged(accs: Iterable[Acc]) -> Acc:
    total = Acc()
    for acc in accs:
        total.merge(acc)
    return total


# -- samples -------------------------------------------------------------------------------------


def _minutes(
    world: World,
    scale_set: ScaleSet,
    instance: Instance,
    start: datetime,
    end: datetime,
    step: int = 1,
    anchor: int = 0,
) -> range:
    """Epoch minutes with a sample in [start, end), every `step`-th counted from `anchor`."""
    if instance.power != "running" or instance.booted_at is None:
        return range(0)
    now = world.now()
    since = now - RETENTION
    if instance.booted_at > scale_set.created:  # booted since the scenario began
        since = max(since, instance.booted_at)
    low = math.ceil(max(start, since).timestamp() / 60)
    high = min(math.ceil(end.timestamp() / 60), math.floor(now.timestamp() / 60))
    return range(low + (anchor - low) % step, high, step)


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(text: str) -> timedelta:
    found = DURATION.fullmatch(text.strip())
    if not found or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise ValueError(f"'{text}' is not an ISO 8601 duration like PT1H")
    parts = {k: float(v) if v else 0.0 for k, v in found.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"'{text}' is not an ISO 8601 time like 2026-11-02T08:00:00.000Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _gate(world: World, operation: str) -> None:
    """Throttling budgets and injected faults, as for the ARM routes."""
    world.check_throttle(operation)
    fault = world.take_fault(operation, None)
    if fault is None:
        return
    if fault.kind == "timeout":
        await asyncio.sleep(fault.seconds)
        raise ArmError(504, "GatewayTimeout", "The service did not answer in time.")
    raise ArmError(fault.status, fault.error, fault.message or f"Simulated failure {fault.error}.")


async def _body(request: web.Request, code: str) -> Any:
    try:
        return bodies.decode(await request.read())
    except BodyError as error:
        raise ArmError(400, code, f"The request body is not valid JSON: {error}.") from None


# -- metrics -------------------------------------------------------------------------------------


@dataclass
class MetricsQuery:
    start: datetime
    end: datetime
    anchor: int  # epoch minute of the first bin
    grain: int  # bin length in minutes
    bins: int
    aggregations: list[str]
    vms: set[str] | None  # None: no split; {"*"}: every VM; else lower-cased VM names
    rollup: bool
    top: int
    order: tuple[str, bool]  # aggregation, descending

    def wanted(self, vm: str) -> bool:
        return self.vms is None or "*" in self.vms or vm.lower() in self.vms


def _bad(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _interval(text: str, start: datetime, end: datetime) -> tuple[int, str]:
    if text.upper() == "FULL":
        minutes = max(1, math.ceil((end - start).total_seconds() / 60))
        days, rest = divmod(minutes, 1440)
        hours, mins = divmod(rest, 60)
        clock = (f"{hours}H" if hours else "") + (f"{mins}M" if mins else "")
        return minutes, f"P{f'{days}D' if days else ''}{f'T{clock}' if clock else ''}"
    try:
        minutes = _duration(text).total_seconds() / 60
    except ValueError as error:
        raise _bad(f"Invalid interval: {error}.") from None
    for name, grain in GRAINS.items():
        if grain == minutes:
            return grain, name
    raise _bad(f"Invalid interval '{text}'; supported: {', '.join(GRAINS)}, FULL.")


def _vm_filter(text: str | None, metric: str) -> set[str] | None:
    if not text or not text.strip():
        return None
    if re.search(r"\sand\s", text, re.IGNORECASE):
        raise _bad(
            f"Metric: {metric} does not support requested dimension combination: {text}, "
            "supported ones are: VMName"
        )
    values: set[str] = set()
    for term in re.split(r"\sor\s", text, flags=re.IGNORECASE):
        found = FILTER_TERM.fullmatch(term)
        if not found:
            raise _bad(f"Invalid filter '{text}': use VMName eq '*' or VMName eq 'name' or ...")
        if found["dim"].lower() != DIMENSION:
            raise _bad(
                f"Metric: {metric} does not support requested dimension combination: "
                f"{found['dim']}, supported ones are: VMName"
            )
        values.add(found["value"].lower())
    return values


def _metrics_query(query: dict[str, str], now: datetime, metric: str) -> MetricsQuery:
    try:
        if "starttime" not in query and "/" in query.get("timespan", ""):
            query["starttime"], query["endtime"] = query["timespan"].split("/", 1)
        end = _time(query["endtime"]) if query.get("endtime") else now
        start = _time(query["starttime"]) if query.get("starttime") else end - timedelta(hours=1)
    except ValueError as error:
        raise _bad(f"Invalid starttime or endtime: {error}.") from None
    if start >= end:
        raise _bad("starttime must be before endtime.")
    grain, query["interval"] = _interval(query.get("interval") or "PT1M", start, end)
    anchor = math.floor(start.timestamp() / 60)
    bins = math.ceil((end.timestamp() / 60 - anchor) / grain)
    aggregations: list[str] = []
    for raw in (query.get("aggregation") or "average").split(","):
        name = {"sum": "total"}.get(raw.strip().lower(), raw.strip().lower())
        if name not in AGGREGATIONS:
            raise _bad(f"Invalid aggregation '{raw}'; supported: {', '.join(AGGREGATIONS)}.")
        if name not in aggregations:
            aggregations.append(name)
    try:
        top = int(query.get("top") or DEFAULT_TOP)
    except ValueError:
        top = 0
    if top < 1:
        raise _bad(f"Invalid top '{query.get('top')}': a positive integer is required.")
    order = (aggregations[0], True)
    if query.get("orderby"):
        words = query["orderby"].lower().split()
        name = {"sum": "total"}.get(words[0], words[0]) if words else ""
        if name not in AGGREGATIONS or len(words) > 2 or words[1:] not in ([], ["asc"], ["desc"]):
            raise _bad(f"Invalid orderby '{query['orderby']}': use '<aggregation> asc|desc'.")
        order = (name, words[1:] != ["asc"])
    rollup = bool(query.get("rollupby"))
    if rollup and query["rollupby"].strip().lower() != DIMENSION:
        raise _bad(f"Invalid rollupby '{query['rollupby']}': the only dimension is VMName.")
    vms = _vm_filter(query.get("filter"), metric)
    return MetricsQuery(start, end, anchor, grain, bins, aggregations, vms, rollup, top, order)


def _bins(
    world: World, scale_set: ScaleSet, instance: Instance, spec: MetricSpec, q: MetricsQuery
) -> list[Acc]:
    accs = [Acc() for _ in range(q.bins)]
    step = math.ceil(q.grain / 60)  # at most 60 samples per instance and bin
    for minute in _minutes(world, scale_set, instance, q.start, q.end, step, q.anchor):
        used = world.utilisation(scale_set, instance, spec.load, _at(minute))
        accs[(minute - q.anchor) // q.grain].add(100.0 - used if spec.available else used)
    return accs


def _points(q: MetricsQuery, accs: list[Acc]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for index, acc in enumerate(accs):
        point: dict[str, Any] = {"timeStamp": _iso(_at(q.anchor + index * q.grain))}
        if acc.count:
            point.update({a: round(acc.get(a), 6) for a in q.aggregations})
        points.append(point)
    return points


def _metric(
    world: World, scale_set: ScaleSet | None, resource_id: str, spec: MetricSpec, q: MetricsQuery
) -> dict[str, Any]:
    timeseries: list[dict[str, Any]] = []
    if scale_set is not None:
        per_vm = {
            scale_set.vm_name(i): _bins(world, scale_set, i, spec, q)
            for i in sorted(scale_set.instances.values(), key=lambda i: i.instance_id)
            if q.wanted(scale_set.vm_name(i))
        }
        if q.vms is None or q.rollup:
            merged = [_merged(column) for column in zip(*per_vm.values(), strict=True)]
            timeseries = [{"metadatavalues": [], "data": _points(q, merged or _empty(q))}]
        else:
            aggregation, descending = q.order
            ranked = sorted(
                (
                    (_merged(accs).get(aggregation) * (-1 if descending else 1), vm)
                    for vm, accs in per_vm.items()
                    if any(acc.count for acc in accs)
                ),
            )
            timeseries = [
                {
                    "metadatavalues": [
                        {"name": {"value": DIMENSION, "localizedValue": DIMENSION}, "value": vm}
                    ],
                    "data": _points(q, per_vm[vm]),
                }
                for _, vm in ranked[: q.top]
            ]
    return {
        "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{spec.name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": spec.name, "localizedValue": spec.name},
        "displayDescription": spec.description,
        "unit": "Percent",
        "timeseries": timeseries,
        "errorCode": "Success",
    }


def _empty(q: MetricsQuery) -> list[Acc]:
    return [Acc() for _ in range(q.bins)]


def _batch(request: web.Request, world: World, body: Any) -> dict[str, Any]:
    query = {key.lower(): value for key, value in request.query.items()}
    path = re.fullmatch(r"/subscriptions/([^/]+)/metrics:getBatch", request.path, re.IGNORECASE)
    subscription = path.group(1) if path else ""
    if not query.get("api-version"):
        raise _bad("The api-version query parameter is required.")
    if subscription.lower() != world.scenario.subscription.lower():
        raise ArmError(
            403,
            "AuthorizationFailed",
            f"The client does not have authorization to read metrics in subscription "
            f"'{subscription}'.",
        )
    ids = body.get("resourceids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise _bad('The body must be {"resourceids": [<resource id>, ...]} with at least one id.')
    distinct: dict[str, str] = {}
    for resource_id in ids:
        distinct.setdefault(resource_id.lower(), resource_id)
    unique = list(distinct.values())
    if len(unique) > MAX_RESOURCES:
        raise _bad(
            f"The batch has {len(unique)} resource ids; at most {MAX_RESOURCES} unique resource "
            "ids may be specified in each call."
        )
    namespace = query.get("metricnamespace", "")
    if namespace.lower() != NAMESPACE.lower():
        raise _bad(
            f"Metric namespace '{namespace}' is not supported here; the simulator serves "
            f"{NAMESPACE}."
        )
    for resource_id in unique:
        found = RESOURCE_ID.fullmatch(resource_id)
        if not found:
            raise _bad(f"'{resource_id}' is not a valid resource id.")
        if (
            found["sub"].lower() != subscription.lower()
            or found["type"].lower() != NAMESPACE.lower()
        ):
            raise _bad(
                "All resources in a batch must be in the batch's subscription and of the "
                f"requested resource type: '{resource_id}' is not."
            )
    specs: list[MetricSpec] = []
    for raw in (query.get("metricnames") or "").split(","):
        spec = METRICS.get(raw.replace("%2", ",").strip().lower())
        if spec is None:
            raise _bad(
                "Failed to find metric configuration for provider: Microsoft.Compute, resource "
                f"Type: virtualMachineScaleSets, metric: {raw}, Valid metrics: "
                + ",".join(s.name for s in METRICS.values())
            )
        if spec not in specs:
            specs.append(spec)
    q = _metrics_query(query, world.now(), specs[0].name)
    by_id = {s.id.lower(): s for s in world.scale_sets.values()}
    values = []
    for resource_id in unique:
        scale_set = by_id.get(resource_id.lower())
        values.append(
            {
                "starttime": query.get("starttime") or _iso(q.start),
                "endtime": query.get("endtime") or _iso(q.end),
                "interval": query["interval"],
                "namespace": namespace.lower(),
                "resourceregion": scale_set.location if scale_set else world.scenario.location,
                "resourceid": resource_id,
                "value": [_metric(world, scale_set, resource_id, spec, q) for spec in specs],
            }
        )
    return {"values": values}


async def metrics_batch(request: web.Request, world: World) -> web.Response:
    try:
        await _gate(world, "MetricsBatch_Batch")
        return web.json_response(_batch(request, world, await _body(request, "BadRequest")))
    except ArmError as error:
        return web.json_response(error.body(), status=error.status, headers=error.headers)


# -- logs ----------------------------------------------------------------------------------------

Table = tuple[list[tuple[str, str]], list[list[Any]]]


def node_usage(world: World, start: datetime, end: datetime) -> Table:
    """Per node over [start, end): mean cpu and memory percent used, and the sample count."""
    step = max(1, math.ceil((end - start).total_seconds() / 60 / 1440))
    rows: list[list[Any]] = []
    for scale_set in world.scale_sets.values():
        for instance in scale_set.instances.values():
            cpu, memory = Acc(), Acc()
            for minute in _minutes(world, scale_set, instance, start, end, step):
                cpu.add(world.utilisation(scale_set, instance, "cpu", _at(minute)))
                memory.add(world.utilisation(scale_set, instance, "memory", _at(minute)))
            if cpu.count:
                rows.append(
                    [
                        instance.computer_name,
                        scale_set.spec.node_group,
                        round(cpu.get("average"), 6),
                        round(memory.get("average"), 6),
                        cpu.count,
                    ]
                )
    columns = [
        ("Computer", "string"),
        ("NodeGroup", "string"),
        ("CpuPercent", "real"),
        ("MemoryPercent", "real"),
        ("Samples", "long"),
    ]
    return columns, sorted(rows, key=lambda row: row[0])


NAMED_QUERIES: dict[str, Callable[[World, datetime, datetime], Table]] = {
    "node-usage": node_usage,
}


def _timespan(text: str, now: datetime) -> tuple[datetime, datetime]:
    first, _, second = text.strip().partition("/")
    if not second:
        return now - _duration(first), now
    if second.upper().startswith("P"):
        return _time(first), _time(first) + _duration(second)
    if first.upper().startswith("P"):
        return _time(second) - _duration(first), _time(second)
    return _time(first), _time(second)


def _query(world: World, body: Any) -> dict[str, Any]:
    query = body.get("query") if isinstance(body, dict) else None
    if not isinstance(query, str) or not query.strip():
        raise ArmError(400, "BadArgumentError", "The request had some invalid properties: query.")
    lines = [line.strip() for line in query.splitlines() if line.strip()]
    named = NAMED.fullmatch(lines[0])
    if named is None or named["name"].lower() not in NAMED_QUERIES:
        raise ArmError(
            400,
            "BadArgumentError",
            "The simulator only answers named queries (first line '// poolkeeper:<name>'); "
            f"known: {', '.join(NAMED_QUERIES)}",
        )
    timespan = body.get("timespan")
    if not isinstance(timespan, str) or not timespan.strip():
        raise ArmError(
            400,
            "BadArgumentError",
            f"Named query '{named['name']}' needs a timespan: the simulator cannot read time "
            "filters in KQL.",
        )
    try:
        start, end = _timespan(timespan, world.now())
    except ValueError as error:
        raise ArmError(400, "BadArgumentError", f"Invalid timespan: {error}.") from None
    columns, rows = NAMED_QUERIES[named["name"].lower()](world, start, end)
    result: dict[str, Any] = {}
    if any((m := NAMED.fullmatch(line)) and m["name"].lower() == "partial" for line in lines):
        kept = (len(rows) + 1) // 2
        message = (
            f"Partial result (simulated by '// poolkeeper:partial'): {kept} of {len(rows)} "
            f"nodes are included; {len(rows) - kept} are missing."
        )
        result["error"] = {
            "code": "PartialError",
            "message": message,
            "details": [{"code": "EngineError", "message": message}],
        }
        rows = rows[:kept]
    table = {
        "name": "PrimaryResult",
        "columns": [{"name": name, "type": kind} for name, kind in columns],
        "rows": rows,
    }
    return {"tables": [table], **result}


async def logs_query(request: web.Request, world: World) -> web.Response:
    try:
        await _gate(world, "Query_Execute")
        if request.method == "GET":
            body: Any = dict(request.query)
        elif request.method == "POST":
            body = await _body(request, "BadArgumentError")
        else:
            raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported here.")
        return web.json_response(_query(world, body))
    except ArmError as error:
        return web.json_response(
            {
                "error": {
                    "code": error.code,
                    "message": error.message,
                    "correlationId": str(uuid.uuid4()),
                }
            },
            status=error.status,
            headers=error.headers,
        )
