"""GET /api/preflight: does this deployment give Poolkeeper what its pools need? Per cluster: the
API server reachable with the configured credential, and every Kubernetes permission Poolkeeper
uses (SelfSubjectAccessReview); per pool: its scale set readable, and who else writes its
capacity. Read-only, so it runs in observe mode, which is when it is meant to run."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from shared.config import Pool
from shared.decide.owners import capacity_owner

log = logging.getLogger("poolkeeper.preflight")

# (verb, resource, group, subresource): what the adapters call (infra/k8s/rbac.yaml grants it).
PERMISSIONS = (
    ("get", "nodes", "", ""),
    ("list", "nodes", "", ""),
    ("patch", "nodes", "", ""),
    ("delete", "nodes", "", ""),
    ("list", "pods", "", ""),
    ("delete", "pods", "", ""),
    ("create", "pods", "", "eviction"),
    ("get", "daemonsets", "apps", ""),
    ("list", "poddisruptionbudgets", "policy", ""),
)
# A cluster that has not answered the checks by then is reported as hanging.
CLUSTER_WAIT_SECONDS = 30.0


def preflight(services: Any) -> dict[str, Any]:
    """The checks, every one named with ok and what is wrong; `ok` when all pass."""
    names = sorted({pool.cluster for pool in services.config.pools})
    readers = ThreadPoolExecutor(max_workers=len(names) or 1)  # none waits in line
    running = {name: readers.submit(_cluster, services, name) for name in names}
    wait(running.values(), timeout=CLUSTER_WAIT_SECONDS)
    readers.shutdown(wait=False)
    clusters = {
        name: future.result()
        if future.done()
        else {"ok": False, "error": f"no answer within {CLUSTER_WAIT_SECONDS:.0f} s"}
        for name, future in running.items()
    }
    pools = {pool.name: _pool(services, pool) for pool in services.config.pools}
    ok = all(c["ok"] for c in clusters.values()) and all(p["ok"] for p in pools.values())
    for name, check in clusters.items():
        if not check["ok"]:
            log.warning("Preflight: cluster %s: %s", name, check.get("error") or check)
    return {"ok": ok, "mode": services.mode.value, "clusters": clusters, "pools": pools}


def _cluster(services: Any, name: str) -> dict[str, Any]:
    try:
        kube = services.connections.kube(name)
        version = kube.version()
    except Exception as error:  # noqa: BLE001 - any failure is the answer for this cluster
        return {
            "ok": False,
            "error": f"cluster {name} not reachable or not authenticated: {_short(error)}",
        }
    missing: list[str] = []
    try:
        for verb, resource, group, sub in PERMISSIONS:
            if not kube.allowed(verb, resource, group, sub):
                missing.append(_permission(verb, resource, group, sub))
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "version": version, "error": f"access reviews failed: {_short(error)}"}
    found: dict[str, Any] = {"ok": not missing, "version": version}
    if missing:
        found["error"] = (
            f"cluster {name} denies {', '.join(missing)}: apply infra/k8s/rbac.yaml and bind it "
            "to Poolkeeper's identity (docs/deploy.md)"
        )
    return found


def _pool(services: Any, pool: Pool) -> dict[str, Any]:
    try:
        state = services.scale_sets.read(pool.vmss_id)
    except Exception as error:  # noqa: BLE001 - the failure is the check's answer
        return {
            "ok": False,
            "cluster": pool.cluster,
            "error": f"scale set {pool.vmss_id} not readable: {_short(error)}",
        }
    owner = capacity_owner(state.tags)
    found: dict[str, Any] = {
        "ok": owner is None,
        "cluster": pool.cluster,
        "capacity": state.capacity,
        "instances": len(state.instances),
    }
    if owner:
        found["error"] = (
            f"scale set {pool.vmss_name} is managed by {owner}; Poolkeeper refuses capacity "
            "writes to it: leave the pool out of its configuration"
        )
    return found


def _permission(verb: str, resource: str, group: str, sub: str) -> str:
    name = f"{resource}/{sub}" if sub else resource
    return f"{verb} {name}" + (f" ({group})" if group else "")


def _short(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 400 else text[:397] + "..."
