"""Alert webhooks: the Azure Monitor common alert schema and Alertmanager's webhook (v4), parsed
into plain `AlertEvent`s and mapped to configured pools. Called by `POST /api/alerts`.

A body that is not one of the two formats is refused with what is wrong; an alert that matches
no configured pool is reported as such, never guessed. An alert is a P1 or a P2 by the rule it
comes from (`RULES`, the conditions that infra/ and deploy/prometheus/ ship), never by the
severity its sender gave it: any other rule's alert is unrecognised (docs/alerts.md).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import json_input
from shared.adapters.usage import CPU_METRIC, MEMORY_METRIC, VM_DIMENSION
from shared.config import Config, Pool
from shared.decide.capacity import DEFAULT_THRESHOLDS

# A realistic Alertmanager payload of 1000 alerts (its most: AlertmanagerPayload) weighs about
# 1 MB (bench/results/alert_intake.md); 4 MiB leaves room for alerts with four times the labels.
MAX_BODY_BYTES = 4 * 1024 * 1024
SIGNATURE_HEADER = "x-poolkeeper-signature"
NODE_GROUP_LABELS = ("elastisys.io/node-group", "node_group", "label_elastisys_io_node_group")
# The labels a Prometheus rule carries to be one of Poolkeeper's (deploy/prometheus/).
RULE_LABEL = "poolkeeper_rule"
THRESHOLD_LABEL = "poolkeeper_threshold"


class AlertError(ValueError):
    """The request is not acceptable; `status` is the HTTP answer (400, 401, 403, 413, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Severity(StrEnum):
    P1 = "P1"
    P2 = "P2"


class Scope(StrEnum):
    GROUP = "group"
    NODE = "node"


@dataclass(frozen=True)
class Rule:
    """One P1/P2 condition Poolkeeper ships alert rules for, in the words of both senders."""

    name: str  # the Azure rule's suffix and the Prometheus `poolkeeper_rule` label
    severity: Severity
    scope: Scope  # node rules are split per VM (Azure) or keep the `node` label (Prometheus)
    setting: str  # the pool's capacity setting that holds the threshold, in percent used
    window: timedelta

    def threshold(self, pool: Pool) -> float:
        """The pool's threshold for this rule, in percent used."""
        return float(getattr(pool.capacity, self.setting))

    def azure_criterion(self, pool: Pool) -> tuple[str, str, float]:
        """(metric, operator, threshold) of the scale set's metric rule: Azure reports memory as
        percent free, so a memory rule fires below 100 - the threshold."""
        if self.setting.endswith("memory"):
            return MEMORY_METRIC, "LessThan", 100 - self.threshold(pool)
        return CPU_METRIC, "GreaterThan", self.threshold(pool)


P1_WINDOW, P2_WINDOW = DEFAULT_THRESHOLDS.p1_window, DEFAULT_THRESHOLDS.p2_window
RULES = (
    Rule("p1-node-cpu", Severity.P1, Scope.NODE, "p1_cpu", P1_WINDOW),
    Rule("p1-node-memory", Severity.P1, Scope.NODE, "p1_memory", P1_WINDOW),
    Rule("p1-group-cpu", Severity.P1, Scope.GROUP, "p1_cpu", P1_WINDOW),
    Rule("p1-group-memory", Severity.P1, Scope.GROUP, "p1_memory", P1_WINDOW),
    Rule("p2-group-cpu", Severity.P2, Scope.GROUP, "p2_cpu", P2_WINDOW),
    Rule("p2-group-memory", Severity.P2, Scope.GROUP, "p2_memory", P2_WINDOW),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}


@dataclass(frozen=True)
class AlertEvent:
    """One alert about one pool: firing or resolved, what it is about, and its rule (None: an
    unrecognised rule, recorded and notified but never acted on, `unrecognised` saying why)."""

    key: str  # deduplication key: the same delivery twice has the same key
    episode: str  # the alert's episode: its firing and its resolved share it
    source: str  # azure-monitor or alertmanager
    name: str
    pool: str
    firing: bool
    rule: Rule | None
    node: str | None
    at: datetime | None
    unrecognised: str = ""

    @property
    def severity(self) -> Severity | None:
        return self.rule.severity if self.rule else None

    @property
    def scope(self) -> Scope | None:
        return self.rule.scope if self.rule else None


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Essentials(Loose):
    alertId: str = Field(min_length=1)
    alertRule: str = Field(min_length=1)
    severity: str = Field(pattern=r"^Sev[0-4]$")
    monitorCondition: Literal["Fired", "Resolved"]
    alertTargetIDs: list[str] = []
    configurationItems: list[str] = []
    firedDateTime: datetime | None = None
    resolvedDateTime: datetime | None = None


class Dimension(Loose):
    name: str
    value: str = ""


class Criterion(Loose):
    metricName: str
    operator: str
    threshold: float  # the schema sends it as a string: "95"
    dimensions: list[Dimension] | None = None


class MetricCondition(Loose):
    windowSize: timedelta  # ISO 8601: PT1H, PT24H or P1D
    allOf: list[Criterion] = Field(min_length=1, max_length=1)


class MetricContext(Loose):
    condition: MetricCondition


class AzureData(Loose):
    essentials: Essentials
    alertContext: dict[str, Any] | None = None
    customProperties: dict[str, Any] | None = None


class AzureAlert(Loose):
    schemaId: Literal["azureMonitorCommonAlertSchema"]
    data: AzureData


class PromAlert(Loose):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = {}
    startsAt: datetime
    endsAt: datetime | None = None
    fingerprint: str = Field(min_length=1)


class AlertmanagerPayload(Loose):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str
    groupKey: str
    alerts: list[PromAlert] = Field(min_length=1, max_length=1000)


SIGNATURE_WINDOW = timedelta(minutes=5)  # a signed delivery older or newer than this is refused
_SIGNATURE_FORM = "t=<unix seconds>,sha256=<hex HMAC-SHA256 of '<t>.' + body>"


def check_signature(body: bytes, header: str | None, secret: str | None, now: datetime) -> None:
    """With a secret set: the header must be `t=<unix seconds>,sha256=<hex>`, the HMAC-SHA256
    of `<t>.` followed by the raw body, with `t` within SIGNATURE_WINDOW of `now` (wall time: the
    sender's clock and ours), so a captured delivery cannot be replayed later."""
    if not secret:
        return
    if not header:
        raise AlertError(401, f"missing {SIGNATURE_HEADER} header ({_SIGNATURE_FORM})")
    given = header.strip()
    if not given.isascii():
        # A header's bytes may reach us undecodable (as surrogates): never encode them, and a
        # signature is hex anyway, so anything else is simply a wrong one.
        raise AlertError(403, f"{SIGNATURE_HEADER} must be ASCII: {_SIGNATURE_FORM}")
    parts = dict(part.partition("=")[::2] for part in given.split(","))
    stamp, digest = parts.get("t", ""), parts.get("sha256", "")
    if not stamp.isdigit() or not digest:
        raise AlertError(403, f"{SIGNATURE_HEADER} must be {_SIGNATURE_FORM}")
    signed_at = datetime.fromtimestamp(int(stamp), tz=now.tzinfo)
    if abs(now - signed_at) > SIGNATURE_WINDOW:
        raise AlertError(
            403,
            f"{SIGNATURE_HEADER} was made at {signed_at.isoformat()}, more than "
            f"{SIGNATURE_WINDOW} from now ({now.isoformat()}): a replay, or a clock that is off",
        )
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(digest.encode(), expected.encode()):
        raise AlertError(403, f"{SIGNATURE_HEADER} does not match the body")


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]
    )


def _pool_for(config: Config, *, targets: list[str], labels: dict[str, Any]) -> Pool | None:
    compute = [t for t in targets if "/microsoft.compute/" in t.lower()]
    for target in compute:
        pool = config.pool_for_vmss(target.lower().split("/virtualmachines/")[0])
        if pool is not None:
            return pool
    if compute:
        # The alert is about a scale set or VM that no pool manages: never act on another
        # pool because a label says so (allow-list by resource id first).
        return None
    for label in NODE_GROUP_LABELS:
        group = labels.get(label)
        if group:
            return next((p for p in config.pools if p.node_group == group), None)
    return None


def _azure_rule(
    context: dict[str, Any] | None, pool: Pool, *, per_vm: bool
) -> tuple[Rule | None, str, str | None]:
    """The rule a metric alert's criterion is (metric, operator, threshold, window, split per
    VM or not), or why none; and the VM it names."""
    try:
        condition = MetricContext.model_validate(context or {}).condition
    except ValidationError:
        return None, "not a metric alert with one criterion", None
    (criterion,) = condition.allOf
    vms = [d.value for d in criterion.dimensions or [] if d.name.lower() == VM_DIMENSION.lower()]
    scope = Scope.NODE if per_vm or vms else Scope.GROUP
    for rule in RULES:
        metric, operator, threshold = rule.azure_criterion(pool)
        if (
            (rule.scope, rule.window, operator) == (scope, condition.windowSize, criterion.operator)
            and criterion.metricName.lower() == metric.lower()
            and math.isclose(criterion.threshold, threshold, abs_tol=1e-6)
        ):
            return rule, "", vms[0] if vms else None
    what = (
        f"{criterion.metricName} {criterion.operator} {criterion.threshold:g} over "
        f"{_span(condition.windowSize)}{' per VM' if scope is Scope.NODE else ''}"
    )
    return None, f"{what} is not one of pool {pool.name}'s P1/P2 rules", vms[0] if vms else None


def _prometheus_rule(labels: dict[str, str], pool: Pool) -> tuple[Rule | None, str]:
    """The rule an alert's `poolkeeper_rule` label names, if its threshold is the pool's."""
    rule = RULES_BY_NAME.get(labels.get(RULE_LABEL, ""))
    if rule is None:
        return None, f"no {RULE_LABEL} label naming one of {', '.join(RULES_BY_NAME)}"
    given = labels.get(THRESHOLD_LABEL, "")
    try:
        threshold = float(given)
    except ValueError:
        return None, f"{THRESHOLD_LABEL} {given!r} is not a number"
    if not math.isclose(threshold, rule.threshold(pool), abs_tol=1e-6):
        return None, (
            f"{rule.name} fires above {threshold:g} but pool {pool.name}'s {rule.setting} is "
            f"{rule.threshold(pool):g}"
        )
    return rule, ""


def _span(window: timedelta) -> str:
    hours = window / timedelta(hours=1)
    return f"{hours:g} h" if hours >= 1 else f"{window / timedelta(minutes=1):g} min"


def _azure(data: dict[str, Any], config: Config) -> list[AlertEvent | str]:
    try:
        alert = AzureAlert.model_validate(data)
    except ValidationError as error:
        raise AlertError(
            400, f"not a valid Azure Monitor common alert: {_problems(error)}"
        ) from None
    essentials = alert.data.essentials
    custom = alert.data.customProperties or {}
    pool = _pool_for(config, targets=essentials.alertTargetIDs, labels=custom)
    if pool is None:
        return [
            f"{essentials.alertRule}: targets {essentials.alertTargetIDs} match no configured pool"
        ]
    firing = essentials.monitorCondition == "Fired"
    rule, why, vm = _azure_rule(
        alert.data.alertContext,
        pool,
        per_vm=any("/virtualmachines/" in t.lower() for t in essentials.alertTargetIDs),
    )
    return [
        AlertEvent(
            key=f"azure:{essentials.alertId}:{essentials.monitorCondition}",
            episode=f"azure:{essentials.alertId}",  # Azure gives each firing a new alertId
            source="azure-monitor",
            name=essentials.alertRule,
            pool=pool.name,
            firing=firing,
            rule=rule,
            node=vm or custom.get("node"),
            at=essentials.firedDateTime if firing else essentials.resolvedDateTime,
            unrecognised=why,
        )
    ]


def _alertmanager(data: dict[str, Any], config: Config) -> list[AlertEvent | str]:
    try:
        payload = AlertmanagerPayload.model_validate(data)
    except ValidationError as error:
        raise AlertError(
            400, f"not a valid Alertmanager webhook (v4): {_problems(error)}"
        ) from None
    found: list[AlertEvent | str] = []
    for alert in payload.alerts:
        name = alert.labels.get("alertname", "unnamed")
        pool = _pool_for(config, targets=[], labels=alert.labels)
        if pool is None:
            found.append(f"{name}: labels {sorted(alert.labels)} name no configured node group")
            continue
        rule, why = _prometheus_rule(alert.labels, pool)
        found.append(
            AlertEvent(
                key=f"alertmanager:{alert.fingerprint}:{alert.status}:{alert.startsAt.isoformat()}",
                episode=f"alertmanager:{alert.fingerprint}:{alert.startsAt.isoformat()}",
                source="alertmanager",
                name=name,
                pool=pool.name,
                firing=alert.status == "firing",
                rule=rule,
                node=alert.labels.get("node") or alert.labels.get("instance"),
                at=alert.startsAt if alert.status == "firing" else alert.endsAt,
                unrecognised=why,
            )
        )
    return found


def parse_alerts(body: bytes, config: Config) -> tuple[list[AlertEvent], list[str]]:
    """The events for configured pools, and why each other alert was not mapped."""
    if len(body) > MAX_BODY_BYTES:
        raise AlertError(413, f"body is {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        data = json_input.loads(body)
    except (ValueError, UnicodeDecodeError) as error:  # TooDeep is a ValueError
        raise AlertError(400, f"body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise AlertError(400, "body must be a JSON object")
    if data.get("schemaId") == "azureMonitorCommonAlertSchema":
        parsed = _azure(data, config)
    elif "alerts" in data and "version" in data:
        parsed = _alertmanager(data, config)
    else:
        raise AlertError(
            400,
            "unknown alert format: expected the Azure Monitor common alert "
            "schema (schemaId azureMonitorCommonAlertSchema) or an Alertmanager "
            "webhook (version 4)",
        )
    events = [p for p in parsed if isinstance(p, AlertEvent)]
    unmatched = [p for p in parsed if isinstance(p, str)]
    return events, unmatched
