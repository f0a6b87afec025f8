"""Alert webhooks: the Azure Monitor common alert schema and Alertmanager's webhook (v4), parsed
into plain `AlertEvent`s and mapped to configured pools. Called by `POST /api/alerts`.

A body that is not one of the two formats is refused with what is wrong; an alert that matches
no configured pool is reported as such, never guessed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import json_input
from shared.config import Config, Pool

# A realistic Alertmanager payload of 1000 alerts (its most: AlertmanagerPayload) weighs about
# 1 MB (bench/results/alert_intake.md); 4 MiB leaves room for alerts with four times the labels.
MAX_BODY_BYTES = 4 * 1024 * 1024
SIGNATURE_HEADER = "x-poolkeeper-signature"
NODE_GROUP_LABELS = ("elastisys.io/node-group", "node_group", "label_elastisys_io_node_group")


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
class AlertEvent:
    """One alert about one pool: firing or resolved, and what it is about."""

    key: str  # deduplication key: the same delivery twice has the same key
    source: str  # azure-monitor or alertmanager
    name: str
    pool: str
    firing: bool
    severity: Severity
    scope: Scope
    node: str | None
    at: datetime | None


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


def check_signature(body: bytes, header: str | None, secret: str | None) -> None:
    """With a secret set: the header must be `sha256=<hex HMAC-SHA256 of the raw body>`."""
    if not secret:
        return
    if not header:
        raise AlertError(401, f"missing {SIGNATURE_HEADER} header (sha256=<hex HMAC of the body>)")
    given = header.strip()
    if not given.isascii():
        # A header's bytes may reach us undecodable (as surrogates): never encode them, and a
        # signature is hex anyway, so anything else is simply a wrong one.
        raise AlertError(403, f"{SIGNATURE_HEADER} must be ASCII: sha256=<hex HMAC of the body>")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
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


def _scope(declared: Any, *, single_node: bool) -> Scope:
    """Node scope for alerts about one VM or node, unless the alert says `scope: group`."""
    declared = str(declared or "").lower()
    if declared in ("node", "group"):
        return Scope(declared)
    return Scope.NODE if single_node else Scope.GROUP


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
    return [
        AlertEvent(
            key=f"azure:{essentials.alertId}:{essentials.monitorCondition}",
            source="azure-monitor",
            name=essentials.alertRule,
            pool=pool.name,
            firing=firing,
            severity=Severity.P1 if essentials.severity in ("Sev0", "Sev1") else Severity.P2,
            scope=_scope(
                custom.get("scope"),
                single_node=any(
                    "/virtualmachines/" in t.lower() for t in essentials.alertTargetIDs
                ),
            ),
            node=custom.get("node"),
            at=essentials.firedDateTime if firing else essentials.resolvedDateTime,
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
        severity = alert.labels.get("severity", "").upper()
        found.append(
            AlertEvent(
                key=f"alertmanager:{alert.fingerprint}:{alert.status}:{alert.startsAt.isoformat()}",
                source="alertmanager",
                name=name,
                pool=pool.name,
                firing=alert.status == "firing",
                severity=Severity.P1 if severity in ("P1", "CRITICAL") else Severity.P2,
                scope=_scope(alert.labels.get("scope"), single_node="node" in alert.labels),
                node=alert.labels.get("node") or alert.labels.get("instance"),
                at=alert.startsAt if alert.status == "firing" else alert.endsAt,
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
