"""A kubeconfig for the simulated API server (plain HTTP, no credentials)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONTEXT = "poolkeeper-sim"


def kubeconfig(
    server_url: str, *, name: str = CONTEXT, namespace: str = "default"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server_url.rstrip("/")}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path | str, server_url: str, *, name: str = CONTEXT, namespace: str = "default"
) -> Path:
    """Write a kubeconfig (JSON, which kubectl and the `kubernetes` client read as YAML)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(kubeconfig(server_url, name=name, namespace=namespace), indent=2))
    return target
