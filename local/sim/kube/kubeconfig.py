"""Kubeconfigs for the simulated API servers: the plain-HTTP cluster (no credentials), or one of
the scenario's clusters over TLS (its CA, and a bearer token or a client certificate)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTEXT = "poolkeeper-sim"


@dataclass(frozen=True)
class Credentials:
    """What a kubeconfig carries for a TLS cluster: the CA to trust and what the client sends."""

    ca_pem: str
    token: str | None = None
    client_cert_pem: str | None = None
    client_key_pem: str | None = None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(
    server_url: str,
    *,
    name: str = CONTEXT,
    namespace: str = "default",
    credentials: Credentials | None = None,
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server_url.rstrip("/")}
    user: dict[str, Any] = {}
    if credentials is not None:
        cluster["certificate-authority-data"] = _b64(credentials.ca_pem)
        if credentials.token is not None:
            user["token"] = credentials.token
        if credentials.client_cert_pem is not None and credentials.client_key_pem is not None:
            user["client-certificate-data"] = _b64(credentials.client_cert_pem)
            user["client-key-data"] = _b64(credentials.client_key_pem)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path | str,
    server_url: str,
    *,
    name: str = CONTEXT,
    namespace: str = "default",
    credentials: Credentials | None = None,
) -> Path:
    """Write a kubeconfig (JSON, which kubectl and the `kubernetes` client read as YAML)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    config = kubeconfig(server_url, name=name, namespace=namespace, credentials=credentials)
    target.write_text(json.dumps(config, indent=2))
    return target
