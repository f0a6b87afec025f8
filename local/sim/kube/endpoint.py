"""One of the scenario's clusters as the simulator serves it: its own CA, server certificate and
client credential (made at start, under `<state dir>/clusters/<name>/`), its TLS context, its
kubeconfig (`<state dir>/kubeconfig-<name>`), and what `info["clusters"][name]` publishes.

Credentials last as long as the simulator process (a loaded scenario keeps them). An `entra`
cluster's kubeconfig holds a static token from the identity endpoint, valid for 30 days.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from local.sim.kube.access import CLIENT_NAME, SERVICE_ACCOUNT, Access
from local.sim.kube.kubeconfig import Credentials, write_kubeconfig
from local.sim.kube.model import Clusters
from local.sim.scenario import ClusterAuth
from local.sim.world import World

KUBECONFIG_TOKEN_SECONDS = 30 * 24 * 3600
PEM = "application/x-pem-file"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_token() -> str:
    """A token shaped like a ServiceAccount token Secret's (a JWT; the signature is random: the
    API server compares the whole token)."""
    header = {"alg": "RS256", "kid": secrets.token_hex(16)}
    claims = {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "kube-system",
        "kubernetes.io/serviceaccount/secret.name": "poolkeeper-token",
        "kubernetes.io/serviceaccount/service-account.name": "poolkeeper",
        "kubernetes.io/serviceaccount/service-account.uid": str(uuid.uuid4()),
        "sub": SERVICE_ACCOUNT,
    }
    return ".".join(
        (
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(claims).encode()),
            _b64(secrets.token_bytes(256)),
        )
    )


class Endpoint:
    """A cluster's credentials, access rules and served address (`url`, set once bound)."""

    def __init__(
        self,
        name: str,
        auth: ClusterAuth,
        state_dir: Path,
        get_world: Callable[[], World],
        issue: Callable[[str, int], tuple[str, int]],
    ) -> None:
        self.name, self.auth = name, auth
        self.directory = state_dir / "clusters" / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = state_dir / f"kubeconfig-{name}"
        self.authority = trustme.CA(organization_name=f"poolkeeper-sim {name}")
        self.server_cert = self.authority.issue_cert("127.0.0.1", "localhost")
        self.ca_pem = self.authority.cert_pem.bytes().decode()
        self.ca_cert = self.directory / "ca.pem"
        self.ca_cert.write_text(self.ca_pem)
        self.token = service_account_token() if auth.mode == "token" else None
        self.client_cert_pem: str | None = None
        self.client_key_pem: str | None = None
        if auth.mode == "client_certificate":
            client = self.authority.issue_cert(
                CLIENT_NAME, common_name=CLIENT_NAME, organization_name=CLIENT_NAME
            )
            self.client_cert_pem = client.cert_chain_pems[0].bytes().decode()
            self.client_key_pem = client.private_key_pem.bytes().decode()
            (self.directory / "client.pem").write_text(self.client_pem or "")
        # What the kubeconfig sends: a static Entra token (kubectl runs no exec plugin here).
        self.kubeconfig_token = self.token
        if auth.mode == "entra":
            self.kubeconfig_token = issue(str(auth.audience), KUBECONFIG_TOKEN_SECONDS)[0]
        self.access = Access(auth.mode, token=self.token, audience=auth.audience)
        self.clusters = Clusters(get_world, name=name)
        self.url = ""

    @property
    def client_pem(self) -> str | None:
        """The client certificate and its key, one PEM after the other."""
        if self.client_cert_pem is None or self.client_key_pem is None:
            return None
        return self.client_cert_pem + self.client_key_pem

    def ssl_context(self) -> ssl.SSLContext:
        """TLS with the cluster's server certificate; a client_certificate cluster also asks for
        a client certificate and verifies any it is given against its CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        if self.auth.mode == "client_certificate":
            self.authority.configure_trust(context)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def served(self, url: str) -> None:
        """Bound at `url`: write the kubeconfig for it."""
        self.url = url
        credentials = Credentials(
            self.ca_pem, self.kubeconfig_token, self.client_cert_pem, self.client_key_pem
        )
        write_kubeconfig(self.kubeconfig, url, name=self.name, credentials=credentials)

    def secrets(self) -> dict[str, tuple[str, str | None]]:
        """The Key Vault secrets that carry this cluster's credential: name -> (value, content
        type), as `keyvault` documents them."""
        values: dict[str, tuple[str, str | None]] = {
            f"{self.name}-kubeconfig": (self.kubeconfig.read_text(), "application/json"),
            f"{self.name}-ca": (self.ca_pem, PEM),
        }
        if self.token is not None:
            values[f"{self.name}-token"] = (self.token, None)
        if self.client_pem is not None:
            values[f"{self.name}-client-certificate"] = (self.client_pem, PEM)
        return values

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "server": self.url,
            "ca_cert": str(self.ca_cert),
            "ca_pem": self.ca_pem,
            "auth": self.auth.mode,
            "kubeconfig": str(self.kubeconfig),
        }
        if self.token is not None:
            info["token"] = self.token
        if self.client_pem is not None:
            info["client_cert_pem"] = self.client_pem
        if self.auth.audience is not None:
            info["audience"] = self.auth.audience
        return info
