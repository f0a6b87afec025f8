"""Alertmanager webhook payloads as kube-prometheus-stack sends them: every alert with its full
labels, annotations, generatorURL and fingerprint (the sizes the webhook's limits are set from).
Used by the alert tests and by `bench.alert_intake`."""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import Any

PROMETHEUS = "http://prometheus-kube-prometheus-stack-prometheus.monitoring:9090"
# (alertname, severity, scope): node alerts carry a `node` label, group alerts do not.
RULES = (
    ("NodeCPUHigh", "P1", "node"),
    ("NodeMemoryHigh", "P2", "node"),
    ("NodeGroupCPUHigh", "P1", "group"),
)
EXPR = {
    "NodeCPUHigh": 'avg_over_time(instance:node_cpu_utilisation:rate5m{job="node-exporter"}'
    "[1h]) * 100 > 95",
    "NodeMemoryHigh": 'avg_over_time(instance:node_memory_utilisation:ratio{job="node-exporter"}'
    "[1h]) * 100 > 85",
    "NodeGroupCPUHigh": "avg by (label_elastisys_io_node_group) (avg_over_time(instance:node_cpu_"
    'utilisation:rate5m{job="node-exporter"}[1h]) * on (instance) group_left(label_elastisys_io_'
    "node_group) kube_node_labels) * 100 > 95",
}


def prom_alert(rule: str, severity: str, scope: str, *, group: str, index: int) -> dict[str, Any]:
    """One alert of `rule`, about node `index` of `group` (group alerts: about the group)."""
    node = f"aks-{group}-55555555-vmss{index:06x}"
    labels = {
        "alertname": rule,
        "elastisys.io/node-group": group,
        "severity": severity,
        "prometheus": "monitoring/kube-prometheus-stack-prometheus",
    }
    if scope == "node":
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
    else:
        labels["replica"] = f"shard-{index}"  # what tells group alerts of one rule apart
    subject = node if scope == "node" else f"node group {group}"
    query = urllib.parse.urlencode({"g0.expr": EXPR[rule], "g0.tab": "1"})
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {
            "summary": f"{rule}: above its threshold for 1 h",
            "description": f"{subject} has been above the {severity} threshold for the last "
            f"hour (VALUE = {90 + index % 10}.{index % 7}).",
            "runbook_url": f"https://runbooks.prometheus-operator.dev/runbooks/node/{rule.lower()}",
        },
        "startsAt": f"2026-11-02T09:{index % 60:02d}:00.{index:09d}Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"{PROMETHEUS}/graph?{query}",
        "fingerprint": hashlib.sha256(f"{rule}|{group}|{index}".encode()).hexdigest()[:16],
    }


def alertmanager_payload(count: int, *, group: str = "web") -> dict[str, Any]:
    """A webhook (version 4) of `count` firing alerts, spread over the three rules in turn."""
    alerts = [prom_alert(*RULES[i % len(RULES)], group=group, index=i) for i in range(count)]
    return {
        "version": "4",
        "groupKey": '{}/{severity=~"P1|P2"}:{}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "poolkeeper",
        "groupLabels": {},
        "commonLabels": {"elastisys.io/node-group": group},
        "commonAnnotations": {},
        "externalURL": "http://kube-prometheus-stack-alertmanager.monitoring:9093",
        "alerts": alerts,
    }


def rule_counts(count: int) -> dict[str, int]:
    """How many of `alertmanager_payload(count)`'s alerts each rule has."""
    return {rule: len(range(i, count, len(RULES))) for i, (rule, _, _) in enumerate(RULES)}
