"""Alert payloads as the shipped rules produce them: Alertmanager webhooks (v4) for the alerts of
deploy/prometheus/poolkeeper-rules.yaml, with kube-prometheus-stack's labels, annotations,
generatorURL and fingerprint (the sizes the webhook's limits are set from), and Azure Monitor
common-alert-schema payloads for the metric rules of infra/modules/pool-alerts.bicep.
Used by the alert tests and by `bench.alert_intake`."""

from __future__ import annotations

import functools
import hashlib
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import yaml
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "poolkeeper-rules.yaml"
POOL_ALERTS = ROOT / "infra" / "modules" / "pool-alerts.bicep"
MAIN_BICEP = ROOT / "infra" / "main.bicep"
PROMETHEUS = "http://prometheus-kube-prometheus-stack-prometheus.monitoring:9090"
GROUP_LABEL = "label_elastisys_io_node_group"


def prometheus_alerts() -> dict[str, dict[str, Any]]:
    """The alerting rules of the shipped PrometheusRule, by alert name."""
    spec = yaml.safe_load(PROMETHEUS_RULES.read_text())["spec"]
    return {r["alert"]: r for group in spec["groups"] for r in group["rules"] if "alert" in r}


def per_group(rule: dict[str, Any]) -> bool:
    """A group rule aggregates its nodes away; only the node group label stays."""
    return rule["expr"].lstrip().startswith(f"avg by ({GROUP_LABEL})")


# The three kinds a payload exercises: a rebalancing notice, a P2 notice and a group scale-up.
PAYLOAD_RULES = ("PoolkeeperNodeCPUP1", "PoolkeeperGroupCPUP2", "PoolkeeperGroupCPUP1")


def prom_alert(
    rule: dict[str, Any], *, group: str, index: int, status: str = "firing"
) -> dict[str, Any]:
    """One alert of `rule` with the labels its expression keeps, about node `index` of `group`
    (group rules: about the group)."""
    name = rule["alert"]
    node = f"aks-{group}-55555555-vmss{index:06x}"
    labels = {
        "alertname": name,
        **rule["labels"],
        GROUP_LABEL: group,
        "prometheus": "monitoring/kube-prometheus-stack-prometheus",
    }
    if per_group(rule):
        labels["replica"] = f"shard-{index}"  # what tells group alerts of one rule apart
    else:
        labels |= {
            "container": "node-exporter",
            "endpoint": "http-metrics",
            "instance": f"10.240.{index // 250}.{index % 250 + 4}:9100",
            "job": "node-exporter",
            "namespace": "monitoring",
            "node": node,
            "pod": f"kube-prometheus-stack-prometheus-node-exporter-{index:05x}",
            "service": "kube-prometheus-stack-prometheus-node-exporter",
        }
    subject = f"node group {group}" if per_group(rule) else node
    query = urllib.parse.urlencode({"g0.expr": rule["expr"], "g0.tab": "1"})
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": f"{name}: {subject} above its threshold",
            "description": f"{subject} has been above the {labels['severity']} threshold "
            f"(VALUE = {90 + index % 10}.{index % 7}).",
            "runbook_url": f"https://runbooks.example.org/poolkeeper/{name.lower()}",
        },
        "startsAt": f"2026-11-02T09:{index % 60:02d}:00.{index:09d}Z",
        "endsAt": "0001-01-01T00:00:00Z"
        if status == "firing"
        else f"2026-11-02T11:{index % 60:02d}:00Z",
        "generatorURL": f"{PROMETHEUS}/graph?{query}",
        "fingerprint": hashlib.sha256(f"{name}|{group}|{index}".encode()).hexdigest()[:16],
    }


def webhook(alerts: list[dict[str, Any]], *, group: str = "web") -> dict[str, Any]:
    """An Alertmanager webhook (version 4) carrying `alerts`."""
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": '{}/{poolkeeper_rule=~"p[12]-.+"}:{}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "poolkeeper",
        "groupLabels": {},
        "commonLabels": {GROUP_LABEL: group},
        "commonAnnotations": {},
        "externalURL": "http://kube-prometheus-stack-alertmanager.monitoring:9093",
        "alerts": alerts,
    }


def alertmanager_payload(count: int, *, group: str = "web") -> dict[str, Any]:
    """A webhook of `count` firing alerts, spread over `PAYLOAD_RULES` in turn."""
    shipped = prometheus_alerts()
    rules = [shipped[name] for name in PAYLOAD_RULES]
    return webhook(
        [prom_alert(rules[i % len(rules)], group=group, index=i) for i in range(count)],
        group=group,
    )


def rule_counts(count: int) -> dict[str, int]:
    """How many of `alertmanager_payload(count)`'s alerts each rule has."""
    return {rule: len(range(i, count, len(PAYLOAD_RULES))) for i, rule in enumerate(PAYLOAD_RULES)}


# -- Azure Monitor ---------------------------------------------------------------------------------


def _resolve(value: Any, names: dict[str, Any]) -> Any:
    """A pycep expression's value: variables and parameters by name, property access and the
    subtraction the rules use; literals as they are."""
    if isinstance(value, str):
        return _resolve(names[value], names) if value in names else value
    if isinstance(value, list):
        return [_resolve(v, names) for v in value]
    if isinstance(value, dict) and isinstance(value.get("operator"), dict):
        kind, operands = value["operator"]["type"], value["operator"]["operands"]
        left, right = operands["operand_1"], operands["operand_2"]
        if kind == "property_accessor":
            return _resolve(left, names)[right]
        if kind == "substract":  # pycep's spelling
            return _resolve(left, names) - _resolve(right, names)
        raise ValueError(f"no evaluation for {kind}")
    if isinstance(value, dict):
        return {k: _resolve(v, names) for k, v in value.items()}
    return value


@functools.cache
def _bicep(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def capacity_defaults() -> dict[str, Any]:
    """The thresholds main.bicep gives a pool without a `capacity` section."""
    return dict(_bicep(MAIN_BICEP)["variables"]["capacityDefaults"]["value"])


def azure_rules(capacity: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The metric rules pool-alerts.bicep deploys for a pool with this `capacity` section, as
    ARM would evaluate them: name, severity, window and the one criterion."""
    names = {name: v["value"] for name, v in _bicep(POOL_ALERTS)["variables"].items()}
    names["thresholds"] = capacity_defaults() | (capacity or {})
    return _resolve(names["rules"], names)


def azure_alert(
    rule: dict[str, Any],
    vmss_id: str,
    *,
    condition: str = "Fired",
    vm: str = "aks-web-55555555-vmss_2",
    rule_name: str = "",
) -> dict[str, Any]:
    """The common alert schema payload Azure Monitor sends for one of `azure_rules()`."""
    vmss = vmss_id.rsplit("/", 1)[-1]
    dimensions = [{"name": "VMName", "value": vm}] if rule["dimensions"] else []
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{vmss_id.split('/')[2]}/providers/"
                f"Microsoft.AlertsManagement/alerts/{uuid.uuid4()}",
                "alertRule": rule_name or f"poolkeeper-web-{rule['name']}",
                "severity": f"Sev{rule['severity']}",
                "signalType": "Metric",
                "monitorCondition": condition,
                "monitoringService": "Platform",
                "alertTargetIDs": [vmss_id.lower()],
                "configurationItems": [vmss],
                "originAlertId": str(uuid.uuid4()),
                "firedDateTime": "2026-11-02T09:00:00.000Z",
                "resolvedDateTime": "2026-11-02T10:00:00.000Z" if condition == "Resolved" else None,
                "description": f"Poolkeeper {rule['name']} for pool web",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {
                "properties": None,
                "conditionType": "SingleResourceMultipleMetricCriteria",
                "condition": {
                    "windowSize": rule["window"],
                    "allOf": [
                        {
                            "metricName": rule["metric"],
                            "metricNamespace": "Microsoft.Compute/virtualMachineScaleSets",
                            "operator": rule["operator"],
                            "threshold": str(rule["threshold"]),  # the schema sends a string
                            "timeAggregation": "Average",
                            "dimensions": dimensions,
                            "metricValue": 97.2,
                            "webTestName": None,
                        }
                    ],
                    "windowStartTime": "2026-11-02T08:00:00.000Z",
                    "windowEndTime": "2026-11-02T09:00:00.000Z",
                },
            },
            "customProperties": None,
        },
    }
