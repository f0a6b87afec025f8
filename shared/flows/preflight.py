"""GET /api/preflight: does this deployment give Poolkeeper what its pools need? Per cluster: the
API server reachable with the configured credential, and every Kubernetes permission Poolkeeper
uses (SelfSubjectAccessReview); per resource group: the identity's Azure actions there (ARM's
permissions list against infra/main.bicep's roles); per pool: its scale set readable, the
identity's actions on it, who else writes its capacity, and its image gallery. Read-only, so
it runs in observe mode, which is when it is meant to run."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any

from shared.adapters.access import Access
from shared.adapters.checks import Checks
from shared.adapters.image_operations import sub_rg
from shared.adapters.images import Images
from shared.adapters.scaleset import PermanentAzureError
from shared.adapters.usage import PoolRef, UsageUnavailable, usage_source_from_settings
from shared.config import ConfigError, Pool
from shared.decide.owners import AUTOSCALER_STATUS, autoscaler_groups, capacity_owner
from shared.decide.permissions import (
    DISK_ACTIONS,
    GALLERY_ACTIONS,
    IDENTITY_ACTIONS,
    REFERENCE_ACTIONS,
    RUN_COMMAND_ACTIONS,
    SCALE_SET_ACTIONS,
    SNAPSHOT_ACTIONS,
    missing_actions,
)
from shared.flows.image.plan import pool_gallery, snapshot_group

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
    pools = {
        pool.name: _pool(services, pool, clusters.get(pool.cluster))
        for pool in services.config.pools
    }
    with Access.from_settings(services.settings) as access:  # one client per subscription
        for pool in services.config.pools:
            check = pools[pool.name]
            check["permissions"] = _scale_set_access(access, pool, check.get("identities", []))
            if not check["permissions"]["ok"] and check["ok"]:
                check["ok"], check["error"] = False, check["permissions"]["error"]
        scopes = _scopes(services, access)
    usage = _usage(services, pools)
    ok = usage["ok"] and all(
        check["ok"] for found in (clusters, pools, scopes) for check in found.values()
    )
    for name, check in (clusters | scopes).items():
        if not check["ok"]:
            log.warning("Preflight: %s: %s", name, check.get("error") or check)
    report = {
        "ok": ok,
        "at": services.clock.now().isoformat(),
        "mode": services.mode.value,
        "clusters": clusters,
        "resource_groups": scopes,
        "usage": usage,
        "pools": pools,
    }
    try:
        Checks(services.tables).put_preflight(report)  # the status page shows the last one
    except Exception as error:  # noqa: BLE001 - the answer stands without its copy
        log.warning("Preflight: report not kept for the status page: %s", error)
    return report


USAGE_WINDOW = timedelta(minutes=15)


def _usage(services: Any, pools: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The usage source answers for the pools whose scale set was read (its last 15 minutes);
    a pool it has no data for yet is noted, not failed (a pool just created has none)."""
    try:
        source = usage_source_from_settings(services.settings)
    except ConfigError as error:
        return {"ok": False, "error": str(error)}
    refs = [
        PoolRef(pool.name, pool.vmss_id, pool.node_group, pools[pool.name]["instances"])
        for pool in services.config.pools
        if "instances" in pools.get(pool.name, {})
    ]
    now = services.clock.now()
    try:
        found = source.node_usage(refs, now - USAGE_WINDOW, now) if refs else {}
    except UsageUnavailable as error:
        return {"ok": False, "source": source.name, "error": f"{error} (code {error.code})"}
    except Exception as error:  # noqa: BLE001 - the failure is the check's answer
        return {"ok": False, "source": source.name, "error": _short(error)}
    finally:
        source.close()
    return {
        "ok": True,
        "source": source.name,
        "coverage": {name: usage.coverage.value for name, usage in sorted(found.items())},
    }


def _scopes(services: Any, access: Access) -> dict[str, dict[str, Any]]:
    """Each resource group the pools use: the Azure actions Poolkeeper needs there that the
    identity lacks. In a pool's group: what its scale set's model references, and the donor's
    disk; in its snapshot group: snapshots; in its gallery's: the gallery role. Image actions
    are required for pools with automatic image jobs; for the others a lack is reported, and
    image jobs would fail.
    The scale sets' own actions are each pool's check (`_scale_set_access`)."""
    needed: dict[tuple[str, str], dict[str, Any]] = {}
    for pool in services.config.pools:
        node = needed.setdefault(_scope_of(pool.vmss_id), {"actions": {}, "pools": set()})
        node["actions"].update(dict.fromkeys(REFERENCE_ACTIONS, True))
        snapshots = (pool.subscription_id.lower(), snapshot_group(pool).lower())
        for group, actions in (
            (_scope_of(pool.vmss_id), DISK_ACTIONS),
            (snapshots, SNAPSHOT_ACTIONS),
            (_scope_of(pool_gallery(pool)), GALLERY_ACTIONS),
        ):
            scope = needed.setdefault(group, {"actions": {}, "pools": set()})
            for action in actions:
                scope["actions"][action] = scope["actions"].get(action) or pool.image.automatic
            scope["pools"].add(pool.name)
    return {
        f"{subscription}/{group}": _scope(access, subscription, group, need)
        for (subscription, group), need in sorted(needed.items())
    }


def _scale_set_access(access: Access, pool: Pool, identities: list[str]) -> dict[str, Any]:
    """What the identity lacks on the pool's scale set (roles assigned there or above), and on
    each user-assigned identity its model carries (a model write assigns it again). Run command
    is required where patches or images are automatic; elsewhere a lack is reported, and patch
    and image jobs submitted by hand would fail."""
    needs_run_command = pool.patch.automatic or pool.image.automatic
    try:
        missing = missing_actions(
            [*SCALE_SET_ACTIONS, *RUN_COMMAND_ACTIONS], access.resource_permissions(pool.vmss_id)
        )
    except Exception as error:  # noqa: BLE001 - the failure is the check's answer
        return {
            "ok": False,
            "error": f"permissions on {pool.vmss_id} not readable: {_short(error)}",
        }
    required = [a for a in missing if a not in RUN_COMMAND_ACTIONS or needs_run_command]
    unassignable, unread = _unassignable(access, identities)
    found: dict[str, Any] = {
        "ok": not required and not unassignable and not unread,
        "missing": missing,
    }
    errors = []
    if required:
        errors.append(
            f"the identity lacks {len(required)} action(s) on scale set {pool.vmss_name}: "
            f"{', '.join(required)}; assign infra/main.bicep's scale set roles there "
            "(docs/deploy.md)"
        )
    if unassignable:
        found["identities"] = unassignable
        errors.append(
            f"scale set {pool.vmss_name} carries {len(unassignable)} user-assigned "
            f"identity(ies) Poolkeeper's identity may not assign, so every write to it would "
            f"fail: {'; '.join(unassignable)}; name them in POOLKEEPER_SCALE_SET_IDENTITIES "
            "(scaleSetIdentities) and provision again (docs/deploy.md)"
        )
    if unread:
        errors.append(f"permissions on {'; '.join(unread)} not readable: cannot tell")
    if errors:
        found["error"] = "; and ".join(errors)
    elif missing:
        found["warning"] = (
            f"patch and image jobs would fail on {pool.vmss_name}: "
            f"the identity lacks {', '.join(missing)}"
        )
    return found


def _unassignable(access: Access, identities: list[str]) -> tuple[list[str], list[str]]:
    """The identities (resource ids) the identity may not assign, and those whose permissions
    could not be read (with why): undetermined, not a lack."""
    lacking, unread = [], []
    for each in identities:
        try:
            if missing_actions(IDENTITY_ACTIONS, access.resource_permissions(each)):
                lacking.append(each)
        except Exception as error:  # noqa: BLE001 - the failure is the check's answer
            unread.append(f"{each} ({_short(error)[:200]})")
    return lacking, unread


def _scope_of(resource_id: str) -> tuple[str, str]:
    subscription, group = sub_rg(resource_id)
    return subscription.lower(), group.lower()


def _scope(access: Access, subscription: str, group: str, need: dict[str, Any]) -> dict[str, Any]:
    """One resource group's check: the needed actions the identity lacks there."""
    pools = sorted(need["pools"])
    try:
        missing = missing_actions(list(need["actions"]), access.permissions(subscription, group))
    except Exception as error:  # noqa: BLE001 - the failure is the check's answer
        unread = f"permissions in resource group {group} not readable: {_short(error)}"
        required = any(need["actions"].values())
        return {"ok": not required, "pools": pools, "error" if required else "warning": unread}
    required = [a for a in missing if need["actions"][a]]
    found: dict[str, Any] = {"ok": not required, "pools": pools, "missing": missing}
    if required:
        found["error"] = (
            f"the identity lacks {len(required)} action(s) in resource group {group}: "
            f"{', '.join(required)}; assign infra/main.bicep's roles there (docs/deploy.md)"
        )
    elif missing:
        found["warning"] = (
            f"image jobs would fail in resource group {group}: the identity lacks "
            f"{', '.join(missing)}"
        )
    return found


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
    found["autoscaler"] = _autoscaler(kube)
    if missing:
        found["error"] = (
            f"cluster {name} denies {', '.join(missing)}: apply infra/k8s/rbac.yaml and bind it "
            "to Poolkeeper's identity (docs/deploy.md)"
        )
    return found


def _autoscaler(kube: Any) -> dict[str, Any]:
    """The scale sets cluster-autoscaler's status ConfigMap names (it scales them too)."""
    try:
        data = kube.config_map(*AUTOSCALER_STATUS)
    except Exception as error:  # noqa: BLE001 - a check that cannot run says so
        return {
            "groups": [],
            "note": f"cluster-autoscaler's status not readable ({_short(error)[:120]}): apply "
            "infra/k8s/rbac.yaml to have preflight detect it",
        }
    if data is None:
        return {"groups": [], "note": "no cluster-autoscaler status ConfigMap"}
    return {"groups": sorted(autoscaler_groups(data.get("status", "")))}


def _pool(services: Any, pool: Pool, cluster: dict[str, Any] | None = None) -> dict[str, Any]:
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
        "gallery": _gallery(services, pool),
        "identities": list(state.identities),
    }
    scaled = pool.vmss_name.lower() in ((cluster or {}).get("autoscaler") or {}).get("groups", [])
    if owner:
        found["error"] = (
            f"scale set {pool.vmss_name} is managed by {owner}; Poolkeeper refuses capacity "
            "writes to it: leave the pool out of its configuration"
        )
    elif scaled:
        found["ok"], found["error"] = (
            False,
            f"cluster-autoscaler in cluster {pool.cluster} also sizes {pool.vmss_name} (its "
            "status ConfigMap names it): one owner per scale set: take it out of "
            "cluster-autoscaler's --nodes or auto-discovery, or the pool out of Poolkeeper's "
            "configuration (docs/clusters.md)",
        )
    elif pool.image.automatic and not found["gallery"]["ok"]:
        found["ok"], found["error"] = False, found["gallery"]["error"]
    return found


def _gallery(services: Any, pool: Pool) -> dict[str, Any]:
    """The pool's image gallery readable (absent is fine: the first image job creates it)."""
    gallery = pool_gallery(pool)
    try:
        exists = Images(services.scale_sets).exists("gallery", gallery)
    except PermanentAzureError as error:
        return {"ok": False, "id": gallery, "error": f"gallery {gallery} not readable: {error}"}
    except Exception as error:  # noqa: BLE001 - the failure is the check's answer
        return {"ok": False, "id": gallery, "error": f"gallery {gallery}: {_short(error)}"}
    note = "exists" if exists else "absent: the first image job creates it"
    return {"ok": True, "id": gallery, "note": note}


def _permission(verb: str, resource: str, group: str, sub: str) -> str:
    name = f"{resource}/{sub}" if sub else resource
    return f"{verb} {name}" + (f" ({group})" if group else "")


def _short(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 400 else text[:397] + "..."
