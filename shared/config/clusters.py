"""The `clusters` section (docs/configuration.md#clusters): the Kubernetes API servers Poolkeeper
reaches, each with its CA and one way to authenticate; every pool names its cluster.

Secrets (tokens, client certificates, kubeconfigs, CA bundles) are never in the configuration:
it names Key Vault secrets, read with the function's managed identity. A pool that names no
cluster belongs to `default`, which the single-cluster settings (POOLKEEPER_KUBECONFIG,
POOLKEEPER_KUBECONFIG_CONTENT, POOLKEEPER_KUBE_SERVER) describe unless `clusters` lists it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

DEFAULT_CLUSTER = "default"
KEY_VAULT_SETTING = "POOLKEEPER_KEY_VAULT_URL"
# The single-cluster settings: the `default` cluster when `clusters` does not list it.
KUBECONFIG_SETTING = "POOLKEEPER_KUBECONFIG"
KUBECONFIG_CONTENT_SETTING = "POOLKEEPER_KUBECONFIG_CONTENT"
SERVER_SETTING = "POOLKEEPER_KUBE_SERVER"
CA_SETTING = "POOLKEEPER_KUBE_CA_FILE"
SINGLE_CLUSTER_SETTINGS = (KUBECONFIG_SETTING, KUBECONFIG_CONTENT_SETTING, SERVER_SETTING)

_CLUSTER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Key Vault secret names: 1-127 alphanumerics and dashes.
_SECRET_NAME = re.compile(r"[A-Za-z0-9-]{1,127}")

# What each field accepts, in the words the error messages use.
CLUSTER_ALLOWED = {
    "name": "1-63 characters of lowercase letters, digits and '-', starting with a letter or digit",
    "server": "the API server's https:// URL, like https://capz-prod-1a2b.westeurope."
    "cloudapp.azure.com:6443",
    "ca": 'an object: {"pem": "-----BEGIN CERTIFICATE-----..."} or {"secret": "<Key Vault '
    'secret name>"}',
    "pem": "one or more PEM certificates (-----BEGIN CERTIFICATE-----)",
    "secret": "a Key Vault secret name: 1-127 letters, digits and '-'",
    "auth": 'an object with "mode": one of entra, token, client_certificate, kubeconfig',
    "mode": "one of entra, token, client_certificate, kubeconfig",
    "application_id": "the Entra application (client) id the API server expects as the token "
    "audience, a GUID",
    "key_vault": "the vault's URL, like https://my-vault.vault.azure.net (default: the "
    f"{KEY_VAULT_SETTING} app setting)",
    "request_timeout_seconds": "a number of seconds from 1 to 120 (default 30: a call to this "
    "cluster's API server that has not answered by then fails, so a hung cluster holds no "
    "worker of another)",
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _secret_name(value: str) -> str:
    if not _SECRET_NAME.fullmatch(value):
        raise ValueError(f"must be {CLUSTER_ALLOWED['secret']}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaBundle(_Strict):
    """The API server's CA: inline PEM (it is public) or a Key Vault secret."""

    pem: StrictStr | None = None
    secret: StrictStr | None = None

    @field_validator("pem")
    @classmethod
    def _is_pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError(f"must be {CLUSTER_ALLOWED['pem']}")
        return value

    @field_validator("secret")
    @classmethod
    def _is_secret_name(cls, value: str | None) -> str | None:
        return None if value is None else _secret_name(value)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.pem is None) == (self.secret is None):
            raise ValueError(f"must be {CLUSTER_ALLOWED['ca']}: exactly one of pem and secret")
        return self


class EntraAuth(_Strict):
    """A token for the API server's Entra application from the managed identity (AKS-AAD
    style, aks-engine with Entra, kubelogin's server id)."""

    mode: Literal["entra"]
    application_id: StrictStr

    @field_validator("application_id")
    @classmethod
    def _is_guid(cls, value: str) -> str:
        if not _GUID.fullmatch(value):
            raise ValueError(f"must be {CLUSTER_ALLOWED['application_id']}")
        return value


class SecretAuth(_Strict):
    """A credential kept in Key Vault: a ServiceAccount token, a client certificate with its key
    (PEM), or a whole kubeconfig."""

    mode: Literal["token", "client_certificate", "kubeconfig"]
    secret: StrictStr

    @field_validator("secret")
    @classmethod
    def _is_secret_name(cls, value: str) -> str:
        return _secret_name(value)


Auth = Annotated[EntraAuth | SecretAuth, Field(discriminator="mode")]


class Cluster(_Strict):
    """One Kubernetes cluster: where its API server is, how it is trusted and how Poolkeeper
    proves itself to it. A kubeconfig brings its own server and CA."""

    name: StrictStr
    server: StrictStr | None = None
    ca: CaBundle | None = None
    auth: Auth
    key_vault: StrictStr | None = None
    request_timeout_seconds: Annotated[
        float, Field(ge=1, le=120, allow_inf_nan=False, strict=True)
    ] = 30.0

    @field_validator("name")
    @classmethod
    def _is_name(cls, value: str) -> str:
        if not _CLUSTER_NAME.fullmatch(value):
            raise ValueError(f"must be {CLUSTER_ALLOWED['name']}")
        return value

    @field_validator("server")
    @classmethod
    def _is_https(cls, value: str | None) -> str | None:
        if value is not None and not _https_url(value):
            raise ValueError(f"must be {CLUSTER_ALLOWED['server']}")
        return value

    @field_validator("key_vault")
    @classmethod
    def _is_vault(cls, value: str | None) -> str | None:
        if value is not None and not _https_url(value):
            raise ValueError(f"must be {CLUSTER_ALLOWED['key_vault']}")
        return value

    @model_validator(mode="after")
    def _server_and_ca_unless_kubeconfig(self) -> Self:
        if self.auth.mode == "kubeconfig":
            if self.server is not None or self.ca is not None:
                raise ValueError(
                    "a kubeconfig brings its own server and CA: leave out server and ca, or use "
                    "another auth mode"
                )
            return self
        missing = [f for f in ("server", "ca") if getattr(self, f) is None]
        if missing:
            raise ValueError(
                f"needs {' and '.join(missing)} with auth mode {self.auth.mode} "
                f"({'; '.join(CLUSTER_ALLOWED[f] for f in missing)})"
            )
        return self

    @property
    def secrets(self) -> list[str]:
        """The Key Vault secrets this cluster's connection reads."""
        names = [self.ca.secret] if self.ca is not None and self.ca.secret else []
        return names + ([self.auth.secret] if isinstance(self.auth, SecretAuth) else [])


def _https_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and not parts.query
