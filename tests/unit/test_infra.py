"""The deployment files agree with the code: Bicep parses, its app settings are the ones the
product reads, storage is identity-only, and the cluster role covers what a drain calls."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]


def _bicep(path: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=ROOT / path)


@pytest.mark.parametrize("path", ["infra/main.bicep", "infra/modules/node-access.bicep"])
def test_bicep_files_parse(path: str) -> None:
    assert _bicep(path)["resources"]


def _app_settings() -> dict[str, Any]:
    app = _bicep("infra/main.bicep")["resources"]["app"]["config"]
    return {s["name"]: s["value"] for s in app["properties"]["siteConfig"]["appSettings"]}


def test_app_settings_give_identity_based_storage_and_the_pools() -> None:
    settings = _app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__clientId",
        "POOLKEEPER_POOLS",
        "POOLKEEPER_KUBE_SERVER",
    } <= settings.keys()
    assert "AzureWebJobsStorage" not in settings  # no connection string, no account key


def test_every_poolkeeper_setting_in_the_bicep_is_read_by_the_product() -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "shared").rglob("*.py"))
    for name in _app_settings():
        if name.startswith("POOLKEEPER_"):
            assert f'"{name}"' in code, f"{name} is set in infra but nothing reads it"


def test_storage_account_refuses_shared_keys_and_old_tls() -> None:
    storage = _bicep("infra/main.bicep")["resources"]["storage"]["config"]["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["allowBlobPublicAccess"] is False


def test_function_runtime_matches_the_projects_python() -> None:
    app = _bicep("infra/main.bicep")["resources"]["app"]["config"]["properties"]
    runtime = app["functionAppConfig"]["runtime"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert runtime["name"] == "python"
    assert re.search(rf">={runtime['version']}\b", project["requires-python"])


def test_cluster_role_covers_every_call_the_kubernetes_adapter_makes() -> None:
    role = yaml.safe_load((ROOT / "infra/k8s/rbac.yaml").read_text())
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    needed = {
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "patch"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "delete"),
        ("", "pods/eviction", "create"),
    }
    assert needed <= granted
    assert not any(v in ("*", "create", "update") for _, r, v in granted if r == "nodes")
