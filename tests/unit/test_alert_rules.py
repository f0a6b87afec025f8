"""The shipped alert rules are the product's P1/P2 conditions: the Bicep metric rules and the
PrometheusRule carry the capacity defaults' thresholds and windows, and each is one of
`shared.alerts.RULES`. (That their payloads become P1/P2: tests/integration/test_alert_rules.py.)"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from pycep import BicepParser

from shared.adapters.usage import CPU_METRIC, MEMORY_METRIC, VM_DIMENSION
from shared.alerts import RULE_LABEL, RULES, RULES_BY_NAME, THRESHOLD_LABEL, Scope, Severity
from shared.config import CapacitySettings, Pool
from shared.decide.capacity import DEFAULT_THRESHOLDS
from tests.alert_payloads import (
    MAIN_BICEP,
    azure_rules,
    capacity_defaults,
    per_group,
    prometheus_alerts,
)

ISO = {"PT1H": timedelta(hours=1), "PT24H": timedelta(hours=24)}
POOL = Pool(
    name="web",
    vmss_id="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.Compute/virtualMachineScaleSets/web",
    node_group="web",
    min_nodes=1,
    max_nodes=5,
)


def test_the_bicep_defaults_are_the_capacity_defaults() -> None:
    fields = ("p1_cpu", "p1_memory", "p2_cpu", "p2_memory")
    assert capacity_defaults() == {f: CapacitySettings.model_fields[f].default for f in fields}
    assert capacity_defaults() == {f: getattr(DEFAULT_THRESHOLDS, f) for f in fields}


def test_the_product_rules_use_the_evaluations_windows() -> None:
    for rule in RULES:
        wanted = (
            DEFAULT_THRESHOLDS.p1_window
            if rule.severity is Severity.P1
            else (DEFAULT_THRESHOLDS.p2_window)
        )
        assert rule.window == wanted, rule


@pytest.mark.parametrize("capacity", [{}, {"p1_cpu": 90, "p1_memory": 80, "p2_cpu": 70}])
def test_each_bicep_rule_is_a_product_rule_with_the_pools_threshold(
    capacity: dict[str, Any],
) -> None:
    pool = POOL.model_copy(update={"capacity": CapacitySettings(**capacity)})
    deployed = {r["name"]: r for r in azure_rules(capacity)}
    assert sorted(deployed) == sorted(RULES_BY_NAME)
    for name, bicep in deployed.items():
        rule = RULES_BY_NAME[name]
        assert (bicep["metric"], bicep["operator"], bicep["threshold"]) == rule.azure_criterion(
            pool
        )
        assert ISO[bicep["window"]] == rule.window
        assert bicep["severity"] == (1 if rule.severity is Severity.P1 else 3)
        split = [d["name"] for d in bicep["dimensions"]]
        assert split == ([VM_DIMENSION] if rule.scope is Scope.NODE else [])
    assert {r.azure_criterion(pool)[0] for r in RULES} == {CPU_METRIC, MEMORY_METRIC}


def test_each_pool_gets_its_own_thresholds_over_the_defaults_and_the_common_schema() -> None:
    parsed = BicepParser().parse(file_path=MAIN_BICEP)
    module = parsed["modules"]["poolAlerts"]["config"]
    union = module["config"]["params"]["thresholds"]["function"]
    assert union["type"] == "union" and union["parameters"]["arg_1"] == "capacityDefaults"
    assert module["loop_type"]["detail"]["item_name"] == "pool"
    group = parsed["resources"]["alertsGroup"]["config"]["config"]["properties"]
    (receiver,) = group["webhookReceivers"]
    assert receiver["useCommonAlertSchema"] is True
    # A Secure Webhook: an Entra ID token for the app registration, no key in the URL.
    assert receiver["serviceUri"].endswith("/api/alerts") and "code=" not in receiver["serviceUri"]
    assert receiver["useAadAuth"] is True
    assert receiver["identifierUri"] == "api://${signInClientId}"
    assert receiver["objectId"] == "signInAppObjectId"


def _threshold(expr: str) -> float:
    found = re.fullmatch(r"(?s).*>\s*([0-9.]+)\s*", expr)
    assert found, expr
    return float(found[1])


def _window(expr: str, recordings: dict[str, str]) -> timedelta:
    (recorded,) = re.findall(r"poolkeeper:[a-z_:0-9]+", expr)
    (hours,) = re.findall(r"\[(\d+)h\]", recordings[recorded])
    return timedelta(hours=int(hours))


def test_each_prometheus_alert_is_a_product_rule_with_the_default_threshold() -> None:
    import yaml

    from tests.alert_payloads import PROMETHEUS_RULES

    spec = yaml.safe_load(PROMETHEUS_RULES.read_text())["spec"]
    recordings = {
        r["record"]: r["expr"] for g in spec["groups"] for r in g["rules"] if "record" in r
    }
    alerts = prometheus_alerts()
    assert sorted(a["labels"][RULE_LABEL] for a in alerts.values()) == sorted(RULES_BY_NAME)
    for alert in alerts.values():
        labels = alert["labels"]
        rule = RULES_BY_NAME[labels[RULE_LABEL]]
        default = rule.threshold(POOL)
        assert _threshold(alert["expr"]) == float(labels[THRESHOLD_LABEL]) == default, alert
        assert labels["severity"] == rule.severity.value
        assert _window(alert["expr"], recordings) == rule.window
        assert per_group(alert) == (rule.scope is Scope.GROUP)
        resource = "cpu" if rule.setting.endswith("cpu") else "memory"
        assert f"node_{resource}_used" in alert["expr"]
