"""The shipped alert rules work end to end: promtool accepts the PrometheusRule, and the payloads
that the Bicep metric rules and the Prometheus alerts produce go through the real webhook code
(Azurite, the Azure simulator) and become the P1/P2 they are meant to be. An alert from any
other rule is recorded and notified, never acted on."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.adapters.ledger import AlertLog
from shared.config import load_config
from shared.flows.capacity.alerts import receive
from shared.flows.jobs import Services
from tests.alert_payloads import (
    PROMETHEUS_RULES,
    azure_alert,
    azure_rules,
    prom_alert,
    prometheus_alerts,
    webhook,
)
from tests.debian import tool
from tests.integration.test_alert_webhook import VMSS_ID, _notifications, _queued, _services
from tests.simulator import Simulator

pytestmark = pytest.mark.integration

# What each rule's firing alert asks for: the group P1s one node, the rest a notification.
EXPECTED = {
    "p1-node-cpu": "rebalance",
    "p1-node-memory": "rebalance",
    "p1-group-cpu": "scale_up",
    "p1-group-memory": "scale_up",
    "p2-group-cpu": "p2",
    "p2-group-memory": "p2",
}


def test_promtool_accepts_the_shipped_rules(tmp_path: Path) -> None:
    # promtool reads a rules file; the PrometheusRule's spec is exactly one.
    rules = tmp_path / "poolkeeper.rules.yaml"
    rules.write_text(yaml.safe_dump(yaml.safe_load(PROMETHEUS_RULES.read_text())["spec"]))
    done = subprocess.run(
        [tool("promtool", "prometheus"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


def _kinds(services: Services) -> list[str]:
    return [n["kind"] for n in _notifications(services)]


def _fresh(alert: dict[str, Any]) -> dict[str, Any]:
    """Its own fingerprint: the session's tables remember every delivery of every test."""
    return alert | {"fingerprint": uuid.uuid4().hex[:16]}


def _state(services: Services, alert: str) -> str:
    return {a["alert"]: a["state"] for a in AlertLog(services.tables).alerts("web")}[alert]


@pytest.mark.parametrize("rule", azure_rules(), ids=lambda r: r["name"])
def test_an_azure_monitor_alert_from_each_bicep_rule_becomes_its_p1_or_p2(
    sim: Simulator, azurite: Any, rule: dict[str, Any]
) -> None:
    services = _services(sim, azurite)
    name = f"poolkeeper-web-{rule['name']}-{uuid.uuid4().hex[:6]}"  # the session shares tables
    fired = azure_alert(rule, VMSS_ID, rule_name=name)
    status, answer = receive(services, json.dumps(fired).encode(), None)
    assert status == 202 and answer["unrecognised"] == [], answer
    wanted = EXPECTED[rule["name"]]
    assert len(answer["jobs"]) == (wanted == "scale_up")
    assert _kinds(services) == [wanted]
    resolved = azure_alert(rule, VMSS_ID, condition="Resolved", rule_name=name)
    assert receive(services, json.dumps(resolved).encode(), None)[1]["jobs"] == []
    assert _state(services, f"azure-monitor:{name}") == "resolved"


@pytest.mark.parametrize("name", sorted(prometheus_alerts()))
def test_an_alertmanager_alert_from_each_prometheus_rule_becomes_its_p1_or_p2(
    sim: Simulator, azurite: Any, name: str
) -> None:
    services = _services(sim, azurite)
    rule = prometheus_alerts()[name]
    body = webhook([_fresh(prom_alert(rule, group="web", index=1))])
    status, answer = receive(services, json.dumps(body).encode(), None)
    assert status == 202 and answer["unrecognised"] == [], answer
    wanted = EXPECTED[rule["labels"]["poolkeeper_rule"]]
    assert len(answer["jobs"]) == (wanted == "scale_up")
    assert _kinds(services) == [wanted]


def _azure_p1_group() -> dict[str, Any]:
    return next(r for r in azure_rules() if r["name"] == "p1-group-cpu")


UNRECOGNISED: list[tuple[str, Any]] = [
    ("azure: a Sev0 rule at another threshold", lambda: {**_azure_p1_group(), "threshold": 80}),
    ("azure: the P1 threshold over 5 minutes", lambda: {**_azure_p1_group(), "window": "PT5M"}),
    ("azure: another metric", lambda: {**_azure_p1_group(), "metric": "Disk Read Bytes"}),
    (
        "azure: P2's 24 h threshold per VM",
        lambda: {
            **next(r for r in azure_rules() if r["name"] == "p2-group-cpu"),
            "dimensions": [{"name": "VMName"}],
        },
    ),
    (
        "alertmanager: severity critical without the rule label",
        lambda: {"alert": "KubeNodeHot", "expr": "x > 1", "labels": {"severity": "critical"}},
    ),
    (
        "alertmanager: the shipped rule edited to another threshold",
        lambda: {
            **prometheus_alerts()["PoolkeeperGroupCPUP1"],
            "labels": {
                "severity": "P1",
                "poolkeeper_rule": "p1-group-cpu",
                "poolkeeper_threshold": "60",
            },
        },
    ),
]


@pytest.mark.parametrize(("case", "make"), UNRECOGNISED, ids=[u[0] for u in UNRECOGNISED])
def test_an_alert_from_another_rule_is_recorded_and_notified_but_never_acted_on(
    sim: Simulator, azurite: Any, case: str, make: Any
) -> None:
    services = _services(sim, azurite)
    name = f"somebody-elses-rule-{uuid.uuid4().hex[:6]}"
    if case.startswith("azure"):
        body = azure_alert(make(), VMSS_ID, rule_name=name)
        body["data"]["essentials"]["severity"] = "Sev0"
        source = "azure-monitor"
    else:
        body = webhook([_fresh(prom_alert({**make(), "alert": name}, group="web", index=3))])
        source = "alertmanager"
    status, answer = receive(services, json.dumps(body).encode(), None)
    assert status == 202 and answer["jobs"] == [] and answer["unrecognised"], answer
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 0
    (notice,) = _notifications(services)
    assert notice["kind"] == "unrecognised" and "not acted on" in notice["message"], notice
    assert _state(services, f"{source}:{name}") == "fired"


def test_a_pool_with_its_own_thresholds_acts_on_its_own_rules_only(
    sim: Simulator, azurite: Any
) -> None:
    services = _services(sim, azurite)
    config = json.loads(services.settings["POOLKEEPER_POOLS"])
    config["pools"][0]["capacity"] = {"p1_cpu": 90}
    services.settings["POOLKEEPER_POOLS"] = json.dumps(config)
    services.config = load_config(services.settings)
    own = next(r for r in azure_rules({"p1_cpu": 90}) if r["name"] == "p1-group-cpu")
    status, answer = receive(services, json.dumps(azure_alert(own, VMSS_ID)).encode(), None)
    assert status == 202 and len(answer["jobs"]) == 1, answer
    default = _azure_p1_group()  # a rule still at 95 is not this pool's P1
    status, answer = receive(services, json.dumps(azure_alert(default, VMSS_ID)).encode(), None)
    assert status == 202 and answer["unrecognised"] == ["poolkeeper-web-p1-group-cpu"], answer
