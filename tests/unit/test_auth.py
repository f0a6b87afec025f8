"""The app's sign-in check (shared/auth.py) and the local host's Easy Auth emulation's settings."""

from __future__ import annotations

import base64
import json

import pytest

from local.host.config import HostConfigError
from local.host.easyauth import Identity, load_easy_auth, mint, principal_headers
from shared.auth import OPERATOR, READER, Caller, Refusal, authorize, caller_of

ON = {"WEBSITE_AUTH_ENABLED": "True"}
KEY = "a-key-for-these-tests-of-32-bytes"


def _principal(claims: list[dict[str, str]], **extra: str) -> dict[str, str]:
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(body).encode()).decode()} | extra


def test_a_caller_is_read_from_easy_auths_principal_with_its_roles() -> None:
    headers = principal_headers(Identity("olga@contoso.example", "oid-1", (OPERATOR,)))
    assert caller_of(headers) == Caller(
        "oid-1", "olga@contoso.example", "aad", frozenset({OPERATOR})
    )
    lowered = {k.lower(): v for k, v in headers.items()}  # header names are case-insensitive
    assert caller_of(lowered) == caller_of(headers)


def test_roles_in_the_long_claim_type_and_a_name_only_in_the_claims_count() -> None:
    long_role = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    headers = _principal([{"typ": "name", "val": "rita"}, {"typ": long_role, "val": READER}])
    caller = caller_of(headers)
    assert caller is not None and caller.name == "rita" and caller.roles == {READER}
    assert caller.label() == "rita"  # no object id to add


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-MS-CLIENT-PRINCIPAL": "not base64 !"},
        {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"[1, 2]").decode()},
        _principal([{"typ": "roles", "val": OPERATOR}]),  # no name and no id: nobody
    ],
)
def test_a_missing_or_unreadable_principal_is_no_caller(headers: dict[str, str]) -> None:
    assert caller_of(headers) is None


def test_an_operator_may_read_and_a_reader_may_not_act() -> None:
    operator = principal_headers(Identity("olga", "oid-o", (OPERATOR,)))
    reader = principal_headers(Identity("rita", "oid-r", (READER,)))
    assert isinstance(authorize(operator, ON, READER), Caller)
    assert isinstance(authorize(operator, ON, OPERATOR), Caller)
    assert isinstance(authorize(reader, ON, READER), Caller)
    refused = authorize(reader, ON, OPERATOR)
    assert isinstance(refused, Refusal) and refused.status == 403
    assert "rita (oid-r) does not hold the app role Poolkeeper.Operator" in refused.error
    assert "roles held: Poolkeeper.Reader" in refused.error


def test_nobody_signed_in_is_a_401_and_without_easy_auth_no_header_is_trusted() -> None:
    nobody = authorize({}, ON, READER)
    assert isinstance(nobody, Refusal) and nobody.status == 401
    forged = principal_headers(Identity("mallory", "oid-m", (OPERATOR,)))
    for environ in ({}, {"WEBSITE_AUTH_ENABLED": "false"}):
        refused = authorize(forged, environ, READER)
        assert isinstance(refused, Refusal) and refused.status == 401
        assert "WEBSITE_AUTH_ENABLED is not true" in refused.error


def test_the_emulation_is_off_unless_easy_auth_is_enabled() -> None:
    assert load_easy_auth({}) is None
    assert load_easy_auth({"WEBSITE_AUTH_ENABLED": "False"}) is None
    auth = load_easy_auth(ON)
    assert auth is not None and auth.signed_in is None and auth.key is None


@pytest.mark.parametrize(
    "raw",
    ['{"roles": ["Poolkeeper.Reader"]}', '{"name": "x", "roles": "Poolkeeper.Reader"}', "x"],
)
def test_a_wrong_signed_in_identity_names_the_setting_and_the_shape(raw: str) -> None:
    with pytest.raises(HostConfigError, match="POOLKEEPER_LOCAL_SIGNED_IN: expected JSON like"):
        load_easy_auth(ON | {"POOLKEEPER_LOCAL_SIGNED_IN": raw})


def test_tokens_are_checked_for_signature_audience_and_expiry() -> None:
    auth = load_easy_auth(ON | {"POOLKEEPER_LOCAL_AUTH_KEY": KEY})
    assert auth is not None
    good = auth.identify(f"Bearer {mint(KEY, 'olga', [OPERATOR], oid='oid-o')}")
    assert good == Identity("olga", "oid-o", (OPERATOR,))
    forged = auth.identify(f"Bearer {mint(KEY + 'x', 'olga', [OPERATOR], oid='oid-o')}")
    expired = auth.identify(f"Bearer {mint(KEY, 'olga', [OPERATOR], oid='o', lifetime=-60)}")
    assert isinstance(forged, str) and "Signature verification failed" in forged
    assert isinstance(expired, str) and "expired" in expired
    assert auth.identify("Basic b2xnYTpwdw==") == "Authorization must be 'Bearer <token>'"


def test_tokens_without_expiry_or_object_id_or_with_odd_roles_are_refused() -> None:
    import time

    import jwt

    from local.host.easyauth import AUDIENCE, ISSUER

    auth = load_easy_auth(ON | {"POOLKEEPER_LOCAL_AUTH_KEY": KEY})
    assert auth is not None
    now = int(time.time())
    base = {"aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 60, "oid": "o"}
    for claims in (
        {k: v for k, v in base.items() if k != "exp"},  # would never expire
        {k: v for k, v in base.items() if k != "oid"},  # nobody
        base | {"roles": OPERATOR},  # a string, not a list
        base | {"roles": 5},
    ):
        refused = auth.identify(f"Bearer {jwt.encode(claims, KEY, algorithm='HS256')}")
        assert isinstance(refused, str) and refused.startswith("token refused"), claims


def test_a_cross_site_request_gets_no_session_and_only_health_is_excluded() -> None:
    signed_in = '{"name": "olga", "roles": ["Poolkeeper.Operator"]}'
    auth = load_easy_auth(ON | {"POOLKEEPER_LOCAL_SIGNED_IN": signed_in})
    assert auth is not None
    assert auth.identify(None) == Identity("olga", "olga", (OPERATOR,))
    assert auth.identify(None, cross_site=True) is None
    assert auth.excluded("/api/health") and auth.excluded("/api/health/")
    assert not auth.excluded("/api/health/x") and not auth.excluded("/api/healthz")
    assert not auth.excluded("/api/alerts")


def test_a_principal_nested_too_deep_is_no_caller() -> None:
    deep = base64.b64encode(b"[" * 100_000 + b"]" * 100_000).decode()
    assert caller_of({"X-MS-CLIENT-PRINCIPAL": deep}) is None


def test_an_entra_token_with_an_unreachable_issuer_is_a_refusal_and_not_asked_again_at_once() -> (
    None
):
    import socket

    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from local.host import easyauth

    with socket.socket() as listener:  # a port nobody answers on once closed
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    issuer = f"https://127.0.0.1:{port}/tenant/v2.0"
    settings = {"WEBSITE_AUTH_ENABLED": "true", easyauth.ISSUER_SETTING: issuer}
    auth = load_easy_auth(settings)
    assert auth is not None
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"aud": easyauth.AUDIENCE, "iss": issuer, "oid": "o", "iat": 1, "exp": 2**31}
    token = pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": "k"})
    first = auth.identify(f"Bearer {token}")
    assert isinstance(first, str) and "OpenID configuration is not readable" in first
    again = auth.identify(f"Bearer {token}")  # within ISSUER_RETRY: refused without asking
    assert isinstance(again, str) and "the issuer's keys were not readable" in again
