"""The simulated Key Vault without a server: its challenge, token audience, bodies and errors, and
the scenario's `key_vault` section. The real SecretClient against it: tests/integration/
test_sim_clusters.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from local.sim.identity import TokenIssuer
from local.sim.keyvault import Caller, Vault, handle, operation, resource_for
from local.sim.scenario import KeyVaultSpec, ScenarioError, SecretSpec, parse_scenario
from tests.simulator import scenario

HOST = "127.0.0.1:4443"
RESOURCE = "https://0.0.1:4443"
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
ISSUER = TokenIssuer("tenant-1")
CALLER = Caller("sub-1", "tenant-1", "westeurope", "")


def vault(**spec: Any) -> Vault:
    return Vault(KeyVaultSpec.model_validate(spec), lambda: NOW)


def get(
    vault: Vault, path: str, token: str | None = None, api_version: str | None = "7.5"
) -> tuple[int, dict[str, str], Any]:
    query = f"?api-version={api_version}" if api_version else ""
    headers = {"Host": HOST}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = make_mocked_request("GET", path + query, headers=headers)
    caller = Caller("sub-1", "tenant-1", "westeurope", headers.get("Authorization", ""))
    response = handle(request, vault, caller)
    return response.status, dict(response.headers), json.loads(response.text or "null")


def token(resource: str = RESOURCE) -> str:
    return ISSUER.issue(resource)[0]


def test_the_challenge_names_a_resource_the_client_accepts_for_the_vault_host() -> None:
    assert resource_for("127.0.0.1:4443") == RESOURCE
    assert resource_for("myvault.vault.azure.net") == "https://vault.azure.net"
    assert resource_for("localhost:8443") == "https://localhost:8443"
    status, headers, body = get(vault(secrets={"a": "b"}), "/secrets/a")
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/tenant-1", resource="{RESOURCE}"'
    )
    assert body == {
        "error": {
            "code": "Unauthorized",
            "message": "AKV10000: Request is missing a Bearer or PoP token.",
        }
    }


def test_the_challenge_passes_the_clients_own_resource_check() -> None:
    from azure.keyvault.secrets._shared.challenge_auth_policy import (
        _validate_challenge_resource,
    )

    _validate_challenge_resource(RESOURCE + "/.default", f"https://{HOST}/secrets/a")


def test_only_tokens_for_the_vaults_resource_are_taken() -> None:
    store = vault(secrets={"a": "b"})
    status, _, body = get(store, "/secrets/a", token("https://management.azure.com/"))
    assert status == 401
    assert body["error"]["message"] == (
        f"AKV10022: Invalid audience. Expected {RESOURCE}, found: https://management.azure.com/."
    )
    assert get(store, "/secrets/a", "not.a.token")[0] == 401
    assert get(store, "/secrets/a", ISSUER.issue(RESOURCE, lifetime=-5)[0])[0] == 401
    for audience in (RESOURCE, RESOURCE + "/"):
        assert get(store, "/secrets/a", token(audience))[0] == 200


def test_a_secret_bundle_and_its_versions() -> None:
    store = vault(
        secrets={
            "Kubeconfig": {
                "value": "v1",
                "content_type": "application/json",
                "exp": "2027-01-01T00:00:00Z",
                "tags": {"cluster": "prod"},
            }
        }
    )
    first = store.secrets["kubeconfig"][1][0]
    second = store.set("kubeconfig", SecretSpec(value="v2"))
    status, _, latest = get(store, "/secrets/kubeconfig/", token())
    assert status == 200
    assert latest == {
        "value": "v2",
        "id": f"https://{HOST}/secrets/Kubeconfig/{second.id}",
        "attributes": {
            "enabled": True,
            "created": int(NOW.timestamp()),
            "updated": int(NOW.timestamp()),
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        },
    }
    status, _, old = get(store, f"/secrets/KUBECONFIG/{first.id}", token())
    assert (status, old["value"], old["contentType"], old["tags"]) == (
        200,
        "v1",
        "application/json",
        {"cluster": "prod"},
    )
    assert old["attributes"]["exp"] == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    status, _, versions = get(store, "/secrets/kubeconfig/versions", token())
    assert [v["id"].rsplit("/", 1)[1] for v in versions["value"]] == [first.id, second.id]
    assert versions["nextLink"] is None
    assert "value" not in versions["value"][0]


def test_lists_are_paged_with_a_next_link() -> None:
    store = vault(secrets={f"s{n}": str(n) for n in range(30)})
    status, _, page = get(store, "/secrets", token())
    assert (status, len(page["value"])) == (200, 25)
    assert page["nextLink"].startswith(f"https://{HOST}/secrets?api-version=7.5&$skiptoken=")
    link = page["nextLink"].removeprefix(f"https://{HOST}")
    path, query = link.split("?", 1)
    request = make_mocked_request(
        "GET", f"{path}?{query}", headers={"Host": HOST, "Authorization": f"Bearer {token()}"}
    )
    rest = json.loads(handle(request, store, CALLER).text or "")
    assert [s["id"].rsplit("/", 1)[1] for s in rest["value"]] == [f"s{n}" for n in range(25, 30)]
    assert rest["nextLink"] is None


def test_missing_secrets_and_versions_are_secret_not_found() -> None:
    store = vault(secrets={"a": "b"})
    status, _, body = get(store, "/secrets/nope", token())
    assert status == 404
    assert body["error"]["code"] == "SecretNotFound"
    assert body["error"]["message"].startswith(
        "A secret with (name/id) nope was not found in this key vault. If you recently deleted"
    )
    status, _, body = get(store, "/secrets/a/0123456789abcdef0123456789abcdef", token())
    assert (status, body["error"]["code"]) == (404, "SecretNotFound")
    assert "(name/id) a/0123456789abcdef0123456789abcdef" in body["error"]["message"]


def test_without_the_role_every_read_is_forbidden_by_rbac() -> None:
    store = vault(secrets={"a": "b", "c": "d"}, readable=False)
    status, _, body = get(store, "/secrets/a", token())
    assert status == 403
    assert body["error"]["code"] == "Forbidden"
    assert body["error"]["innererror"] == {"code": "ForbiddenByRbac"}
    message = body["error"]["message"]
    assert message.startswith("Caller is not authorized to perform action on resource.\r\n")
    assert f"oid={ISSUER.principal};" in message
    assert "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'" in message
    assert "/providers/microsoft.keyvault/vaults/kv-poolkeeper/secrets/a'" in message
    assert (
        "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
        in get(store, "/secrets", token())[2]["error"]["message"]
    )
    # A missing secret is forbidden too: the role is checked first.
    assert get(store, "/secrets/nope", token())[0] == 403
    store.readable, store.unreadable = True, {"c"}
    assert get(store, "/secrets/a", token())[0] == 200
    assert get(store, "/secrets/c", token())[0] == 403


def test_a_disabled_version_is_refused_and_an_expired_one_served() -> None:
    store = vault(
        secrets={
            "off": {"value": "x", "enabled": False},
            "old": {"value": "y", "exp": "2020-01-01T00:00:00Z"},
        }
    )
    status, _, body = get(store, "/secrets/off", token())
    assert (status, body["error"]["innererror"]["code"]) == (403, "SecretDisabled")
    assert get(store, "/secrets/old", token())[2]["value"] == "y"


def test_api_versions_and_operations() -> None:
    store = vault(secrets={"a": "b"})
    assert get(store, "/secrets/a", token(), api_version=None)[0] == 400
    status, _, body = get(store, "/secrets/a", token(), api_version="1.0")
    assert (status, body["error"]["code"]) == (400, "BadParameter")
    assert get(store, "/secrets/a", token(), api_version="2026-04-01")[0] == 200
    for path, name in (
        ("/secrets", "GetSecrets"),
        ("/secrets/a/versions", "GetSecretVersions"),
        ("/secrets/a/", "GetSecret"),
        ("/secrets/a/0123", "GetSecret"),
    ):
        assert operation(make_mocked_request("GET", path)) == name


def test_credentials_of_clusters_never_replace_a_scenarios_secret() -> None:
    store = vault(secrets={"prod-token": "mine"})
    assert store.add_default("PROD-TOKEN", "theirs") is False
    assert store.add_default("prod-ca", "pem", "application/x-pem-file") is True
    assert store.secrets["prod-token"][1][-1].value == "mine"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"secrets": {"bad_name": "x"}}, "secret name 'bad_name'"),
        ({"secrets": {"a": "x", "A": "y"}}, "defined twice"),
        ({"secrets": {"a": {"value": "x", "exp": "2027-01-01T00:00:00"}}}, "time zone"),
        ({"secrets": {"a": {"content": "x"}}}, "value"),
        ({"name": "x"}, "key_vault.name"),
        ({"readable": "yes please"}, "key_vault.readable"),
    ],
)
def test_a_bad_key_vault_section_is_refused(section: dict[str, Any], problem: str) -> None:
    with pytest.raises(ScenarioError, match=problem):
        parse_scenario(scenario(key_vault=section), source="test")
