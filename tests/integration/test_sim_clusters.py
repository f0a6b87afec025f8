"""Several clusters in one simulated world, each over TLS with its own CA and auth, and the Key
Vault beside ARM: a real kubectl, the `kubernetes` client and the real SecretClient against a
running `python -m local.sim`."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from kubernetes import client, config

from local.sim.kube.access import SERVICE_ACCOUNT
from tests.debian import tool
from tests.simulator import (
    KUBE_UNAUTHORIZED,
    Simulator,
    cluster,
    running_simulator,
    scale_set,
    scenario,
)

pytestmark = pytest.mark.integration

PROD, DEV, ENT, SPARE = "capz-prod-md-0", "capz-dev-md-0", "capz-ent-md-0", "capz-spare-md-0"
APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator with three clusters, one per auth mode, and a spare scale set in none."""
    state = tmp_path_factory.mktemp("clusters")
    data = scenario(
        scale_set(PROD, 2, node_group="prod"),
        scale_set(DEV, 1, node_group="dev"),
        scale_set(ENT, 1, node_group="ent"),
        scale_set(SPARE, 1, node_group="spare"),
        clusters=[
            cluster("prod", PROD),
            cluster("dev", DEV, mode="client_certificate"),
            cluster("ent", ENT, mode="entra", audience=APP_ID),
        ],
        workloads={"daemonsets": [{"name": "kube-proxy"}]},
        key_vault={
            "secrets": {
                "webhook-key": {"value": "s3cret", "content_type": "text/plain"},
                "many": "v0",
            }
        },
    )
    (state / "scenario.json").write_text(json.dumps(data))
    with running_simulator(state, state / "scenario.json") as running:
        yield running


@pytest.fixture(scope="module")
def kubectl_binary() -> str:
    return tool("kubectl", "kubernetes-client")


def kubectl(binary: str, kubeconfig: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), "--request-timeout=10s", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def node_names(binary: str, kubeconfig: str | Path) -> list[str]:
    done = kubectl(binary, kubeconfig, "get", "nodes", "-o", "name")
    assert done.returncode == 0, done.stderr
    return sorted(line.removeprefix("node/") for line in done.stdout.split())


def api(sim: Simulator, name: str, path: str, **options: Any) -> requests.Response:
    return requests.get(
        sim.cluster(name)["server"] + path,
        verify=sim.cluster(name)["ca_cert"],
        timeout=options.pop("timeout", 10),
        **options,
    )


def test_info_names_each_cluster_its_server_ca_and_credential(sim: Simulator) -> None:
    prod, dev, ent = (sim.cluster(n) for n in ("prod", "dev", "ent"))
    assert (prod["auth"], dev["auth"], ent["auth"]) == ("token", "client_certificate", "entra")
    assert len({prod["server"], dev["server"], ent["server"]}) == 3
    assert all(c["server"].startswith("https://127.0.0.1:") for c in (prod, dev, ent))
    assert len({prod["ca_pem"], dev["ca_pem"], ent["ca_pem"]}) == 3
    assert Path(prod["ca_cert"]).read_text() == prod["ca_pem"]
    assert prod["token"] and "token" not in dev and "token" not in ent
    assert "BEGIN CERTIFICATE" in dev["client_cert_pem"] and "KEY" in dev["client_cert_pem"]
    assert ent["audience"] == APP_ID
    assert Path(ent["kubeconfig"]).name == "kubeconfig-ent"
    # The first cluster stands in for the one plain cluster of a scenario without clusters.
    assert (sim.info["kube"], sim.info["kubeconfig"]) == (prod["server"], prod["kubeconfig"])


def test_kubectl_reaches_each_cluster_with_its_own_auth(
    sim: Simulator, kubectl_binary: str
) -> None:
    assert node_names(kubectl_binary, sim.cluster("prod")["kubeconfig"]) == [
        f"{PROD}-vmss000000",
        f"{PROD}-vmss000001",
    ]
    assert node_names(kubectl_binary, sim.cluster("dev")["kubeconfig"]) == [f"{DEV}-vmss000000"]
    assert node_names(kubectl_binary, sim.cluster("ent")["kubeconfig"]) == [f"{ENT}-vmss000000"]
    pods = kubectl(kubectl_binary, sim.cluster("dev")["kubeconfig"], "get", "pods", "-A")
    assert pods.returncode == 0 and pods.stdout.count("kube-proxy-") == 1, pods.stdout


def test_a_wrong_token_is_unauthorized_and_a_wrong_ca_fails_tls(
    sim: Simulator, kubectl_binary: str, tmp_path: Path
) -> None:
    prod = json.loads(Path(sim.cluster("prod")["kubeconfig"]).read_text())
    prod["users"][0]["user"]["token"] = "not-the-token"
    wrong_token = tmp_path / "wrong-token"
    wrong_token.write_text(json.dumps(prod))
    refused = kubectl(kubectl_binary, wrong_token, "get", "nodes")
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr
    prod = json.loads(Path(sim.cluster("prod")["kubeconfig"]).read_text())
    dev_ca = json.loads(Path(sim.cluster("dev")["kubeconfig"]).read_text())
    prod["clusters"][0]["cluster"]["certificate-authority-data"] = dev_ca["clusters"][0]["cluster"][
        "certificate-authority-data"
    ]
    wrong_ca = tmp_path / "wrong-ca"
    wrong_ca.write_text(json.dumps(prod))
    untrusted = kubectl(kubectl_binary, wrong_ca, "get", "nodes")
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr and "unknown authority" in untrusted.stderr
    # The API server's own 401 body, for no credentials and for another cluster's.
    assert api(sim, "prod", "/api/v1/nodes").json() == KUBE_UNAUTHORIZED
    ent_token = sim.credential().get_token(f"{APP_ID}/.default").token
    other = api(sim, "prod", "/api/v1/nodes", headers={"Authorization": f"Bearer {ent_token}"})
    assert (other.status_code, other.json()) == (401, KUBE_UNAUTHORIZED)
    assert api(sim, "ent", "/version").json() == KUBE_UNAUTHORIZED
    assert api(sim, "dev", "/api").json() == KUBE_UNAUTHORIZED  # no client certificate


def test_a_client_certificate_of_another_ca_fails_the_handshake(
    sim: Simulator, tmp_path: Path
) -> None:
    stranger = trustme.CA().issue_cert("poolkeeper", common_name="poolkeeper")
    pem = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(pem))
    # The server refuses the certificate in the handshake (with TLS 1.3 the client sees the
    # connection end at its first read).
    with pytest.raises(requests.exceptions.ConnectionError):
        api(sim, "dev", "/api/v1/nodes", cert=str(pem))
    mine = tmp_path / "mine.pem"
    mine.write_text(sim.cluster("dev")["client_cert_pem"])
    assert api(sim, "dev", "/api/v1/nodes", cert=str(mine)).status_code == 200


def test_the_kubernetes_client_with_a_client_certificate_and_an_entra_token(
    sim: Simulator,
) -> None:
    dev = client.CoreV1Api(
        config.new_client_from_config(config_file=sim.cluster("dev")["kubeconfig"])
    )
    assert [n.metadata.name for n in dev.list_node().items] == [f"{DEV}-vmss000000"]
    token = sim.credential().get_token(f"{APP_ID}/.default").token
    answer = api(sim, "ent", "/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
    assert [n["metadata"]["name"] for n in answer.json()["items"]] == [f"{ENT}-vmss000000"]


def test_a_denied_permission_is_forbidden_and_reviews_say_so(
    sim: Simulator, kubectl_binary: str
) -> None:
    prod = sim.cluster("prod")["kubeconfig"]
    can_i = kubectl(
        kubectl_binary, prod, "auth", "can-i", "create", "pods", "--subresource=eviction"
    )
    assert (can_i.returncode, can_i.stdout.strip()) == (0, "yes")
    sim.deny("prod", verb="list", resource="nodes")
    sim.deny("prod", verb="create", resource="pods", subresource="eviction")
    try:
        listing = kubectl(kubectl_binary, prod, "get", "nodes")
        assert listing.returncode != 0
        assert (
            f'nodes is forbidden: User "{SERVICE_ACCOUNT}" cannot list resource "nodes" in API '
            'group "" at the cluster scope'
        ) in listing.stderr
        can_i = kubectl(
            kubectl_binary, prod, "auth", "can-i", "create", "pods", "--subresource=eviction"
        )
        assert can_i.stdout.strip() == "no"
        assert kubectl(kubectl_binary, prod, "get", "pods", "-A").returncode == 0
        # Another cluster keeps its permissions.
        assert node_names(kubectl_binary, sim.cluster("dev")["kubeconfig"])
        review = requests.post(
            sim.cluster("prod")["server"]
            + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            json={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "list", "resource": "nodes"}},
            },
            headers={"Authorization": f"Bearer {sim.cluster('prod')['token']}"},
            verify=sim.cluster("prod")["ca_cert"],
            timeout=10,
        )
        assert (review.status_code, review.json()["status"]) == (201, {"allowed": False})
    finally:
        sim.delete("kube/clusters/prod/deny")
    assert node_names(kubectl_binary, prod)


def test_a_hung_cluster_holds_every_request_until_released(sim: Simulator) -> None:
    headers = {"Authorization": f"Bearer {sim.cluster('prod')['token']}"}
    sim.hang("prod")
    try:
        with pytest.raises(requests.exceptions.ReadTimeout):
            api(sim, "prod", "/version", headers=headers, timeout=1)
        with pytest.raises(requests.exceptions.ReadTimeout):
            api(sim, "prod", "/version", timeout=1)  # before authentication
        token = sim.credential().get_token(f"{APP_ID}/.default").token
        ent = api(sim, "ent", "/version", headers={"Authorization": f"Bearer {token}"})
        assert ent.status_code == 200  # another cluster answers
        listed = requests.get(f"{sim.admin}/kube/clusters", timeout=10).json()
        assert (listed["prod"]["hung"], listed["ent"]["hung"]) == (True, False)
    finally:
        sim.release("prod")
    assert api(sim, "prod", "/version", headers=headers).status_code == 200
    sim.hang("prod", seconds=0.5)
    assert api(sim, "prod", "/version", headers=headers, timeout=10).status_code == 200


def test_faults_are_injected_per_cluster(sim: Simulator, tmp_path: Path) -> None:
    fault = {"kind": "error", "status": 503, "resources": ["nodes"], "count": 1}
    sim.post("kube/clusters/dev/faults", fault)
    pem = tmp_path / "dev-client.pem"
    pem.write_text(sim.cluster("dev")["client_cert_pem"])
    prod = {"Authorization": f"Bearer {sim.cluster('prod')['token']}"}
    assert api(sim, "prod", "/api/v1/nodes", headers=prod).status_code == 200
    failed = api(sim, "dev", "/api/v1/nodes", cert=str(pem))
    assert (failed.status_code, failed.json()["reason"]) == (503, "ServiceUnavailable")
    assert api(sim, "dev", "/api/v1/nodes", cert=str(pem)).status_code == 200
    faults = requests.get(f"{sim.admin}/kube/clusters/dev/faults", timeout=10).json()["faults"]
    assert faults[0]["fired"] == 1
    requests_seen = requests.get(f"{sim.admin}/kube/clusters/dev/requests", timeout=10).json()
    assert requests_seen["calls"][-1]["user"] == "poolkeeper"


def test_the_secret_client_reads_the_vault_unmodified(sim: Simulator) -> None:
    secrets = sim.secret_client()
    secret = secrets.get_secret("webhook-key")
    assert (secret.value, secret.properties.content_type) == ("s3cret", "text/plain")
    assert (
        secret.id
        == f"{sim.info['key_vault']['url']}/secrets/webhook-key/{secret.properties.version}"
    )
    for n in range(1, 4):
        sim.set_secret("many", f"v{n}")
    assert secrets.get_secret("many").value == "v3"
    versions = list(secrets.list_properties_of_secret_versions("many", max_page_size=2))
    assert len(versions) == 4
    first = versions[0].version
    assert secrets.get_secret("many", first).value == "v0"
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError, match="SecretNotFound"):
        secrets.get_secret("nope")
    sim.vault_access(False, ["webhook-key"])
    try:
        with pytest.raises(HttpResponseError) as forbidden:
            secrets.get_secret("webhook-key")
        assert forbidden.value.status_code == 403
        assert "getSecret/action" in str(forbidden.value)
        assert secrets.get_secret("many").value == "v3"
    finally:
        sim.vault_access(True)
    calls = sim.calls()["counters"]
    assert calls["GetSecret"] >= 5 and calls["GetSecretVersions"] >= 2


def test_each_clusters_credential_is_in_the_vault(
    sim: Simulator, kubectl_binary: str, tmp_path: Path
) -> None:
    secrets = sim.secret_client()
    assert sim.cluster("prod")["secrets"] == ["prod-kubeconfig", "prod-ca", "prod-token"]
    assert sim.cluster("dev")["secrets"] == ["dev-kubeconfig", "dev-ca", "dev-client-certificate"]
    assert sim.cluster("ent")["secrets"] == ["ent-kubeconfig", "ent-ca"]
    assert secrets.get_secret("prod-token").value == sim.cluster("prod")["token"]
    assert secrets.get_secret("dev-ca").value == sim.cluster("dev")["ca_pem"]
    assert (
        secrets.get_secret("dev-client-certificate").value == sim.cluster("dev")["client_cert_pem"]
    )
    kubeconfig = tmp_path / "from-vault"
    kubeconfig.write_text(secrets.get_secret("dev-kubeconfig").value)
    assert node_names(kubectl_binary, kubeconfig) == [f"{DEV}-vmss000000"]
    # The vault's CA verifies that cluster's server.
    context = ssl.create_default_context(cadata=secrets.get_secret("prod-ca").value)
    assert context.cert_store_stats()["x509_ca"] == 1
