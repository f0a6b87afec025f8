"""The `clusters` section: each pool names its cluster; a cluster has its server, its CA and one
auth mode; every mistake names the cluster and the field; secrets need a vault."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import ConfigError, load_config, parse_config
from shared.config.clusters import DEFAULT_CLUSTER, KEY_VAULT_SETTING
from tests.unit.test_config import document, pool

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
APP = "6dae42f8-4368-4678-94ff-3960e28e3630"
VAULT = "https://poolkeeper-kv.vault.azure.net"


def cluster(name: str = "capz-prod", **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": name,
        "server": "https://capz-prod.westeurope.cloudapp.azure.com:6443",
        "ca": {"pem": CA},
        "auth": {"mode": "token", "secret": "capz-prod-token"},
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not None}


def one_problem(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="POOLKEEPER_POOLS")
    (problem,) = caught.value.problems
    return problem


def test_pools_in_three_clusters_with_three_auth_modes_load() -> None:
    config = parse_config(
        document(
            pool("a", cluster="capz-prod"),
            pool("b", cluster="kubeadm-lab"),
            pool("c", cluster="aks-engine"),
            pool("d"),
            clusters=[
                cluster("capz-prod"),
                cluster(
                    "kubeadm-lab",
                    ca={"secret": "lab-ca"},
                    auth={"mode": "client_certificate", "secret": "lab-client"},
                    key_vault=VAULT,
                ),
                cluster("aks-engine", auth={"mode": "entra", "application_id": APP}),
            ],
        ),
        source="test",
    )
    assert [p.cluster for p in config.pools] == [
        "capz-prod",
        "kubeadm-lab",
        "aks-engine",
        "default",
    ]
    assert config.cluster("kubeadm-lab").secrets == ["lab-ca", "lab-client"]  # type: ignore[union-attr]
    assert config.cluster("aks-engine").secrets == []  # type: ignore[union-attr]
    assert config.cluster(DEFAULT_CLUSTER) is None  # the single-cluster settings describe it
    assert [p.name for p in config.pools_of("capz-prod")] == ["a"]


def test_a_kubeconfig_cluster_brings_its_own_server_and_ca() -> None:
    kubeconfig = cluster(server=None, ca=None, auth={"mode": "kubeconfig", "secret": "kc"})
    config = parse_config(document(pool(cluster="capz-prod"), clusters=[kubeconfig]), source="t")
    assert config.cluster("capz-prod").secrets == ["kc"]  # type: ignore[union-attr]
    with_server = cluster(auth={"mode": "kubeconfig", "secret": "kc"})
    problem = one_problem(document(pool(cluster="capz-prod"), clusters=[with_server]))
    assert problem.startswith("cluster 'capz-prod': a kubeconfig brings its own server and CA")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"server": "http://10.0.0.4:6443"},
            "cluster 'capz-prod' field 'server': must be the API server's https:// URL",
        ),
        ({"ca": None}, "cluster 'capz-prod': needs ca with auth mode token"),
        (
            {"ca": {"pem": CA, "secret": "x"}},
            "cluster 'capz-prod' field 'ca': must be an object",
        ),
        (
            {"ca": {"pem": "not a certificate"}},
            "cluster 'capz-prod' field 'ca.pem': must be one or more PEM certificates",
        ),
        (
            {"auth": {"mode": "password"}},
            "cluster 'capz-prod' field 'auth.mode': must be one of entra, token, "
            "client_certificate, kubeconfig",
        ),
        (
            {"auth": {"mode": "token"}},
            "cluster 'capz-prod' field 'auth.secret': is missing; must be a Key Vault secret name",
        ),
        (
            {"auth": {"mode": "token", "secret": "has spaces"}},
            "cluster 'capz-prod' field 'auth.secret': must be a Key Vault secret name",
        ),
        (
            {"auth": {"mode": "entra", "application_id": "aks"}},
            "cluster 'capz-prod' field 'auth.application_id': must be the Entra application",
        ),
        (
            {"auth": {"mode": "token", "secret": "t", "token": "eyJ..."}},
            "cluster 'capz-prod' field 'auth.token': is not a known field",
        ),
        ({"colour": "red"}, "cluster 'capz-prod' field 'colour': is not a known field"),
        (
            {"request_timeout_seconds": 600},
            "cluster 'capz-prod' field 'request_timeout_seconds': must be a number of seconds",
        ),
    ],
)
def test_each_cluster_mistake_names_the_cluster_and_the_field(
    changes: dict[str, Any], expected: str
) -> None:
    problem = one_problem(document(pool(cluster="capz-prod"), clusters=[cluster(**changes)]))
    assert problem.startswith(expected), problem


def test_a_pool_naming_an_unlisted_cluster_is_refused_naming_the_known_ones() -> None:
    problem = one_problem(document(pool("gpu", cluster="capz-staging"), clusters=[cluster()]))
    assert problem == (
        "pool 'gpu' field 'cluster': names no cluster in the top-level clusters list; got "
        "'capz-staging', known: 'default', 'capz-prod'"
    )


def test_a_cluster_listed_twice_is_refused() -> None:
    problem = one_problem(document(pool(cluster="capz-prod"), clusters=[cluster(), cluster()]))
    assert problem == "cluster 'capz-prod': is listed 2 times; names must be unique"


def test_secrets_without_a_vault_name_the_cluster_and_both_fixes() -> None:
    text = document(pool(cluster="capz-prod"), clusters=[cluster()])
    with pytest.raises(ConfigError) as caught:
        load_config({"POOLKEEPER_POOLS": text})
    assert caught.value.problems == [
        "cluster 'capz-prod': reads the Key Vault secret(s) capz-prod-token but names no vault; "
        f"set its key_vault field or the {KEY_VAULT_SETTING} app setting"
    ]
    assert load_config({"POOLKEEPER_POOLS": text, KEY_VAULT_SETTING: VAULT}).clusters
    entra = cluster(auth={"mode": "entra", "application_id": APP})
    assert load_config({"POOLKEEPER_POOLS": document(pool(cluster="capz-prod"), clusters=[entra])})
