"""The Kubernetes API view of the simulated world: nodes derived from the world's instances,
workloads with simplified controllers, a scheduler, PodDisruptionBudgets and the eviction API,
served for the real `kubernetes` client and a real kubectl.

A scenario without `clusters` has one cluster of every scale set, served over plain HTTP with no
authentication: every client may do everything that is served. With `clusters` (below), each
listed cluster is served over TLS on a port of its own, with its own CA and auth mode (`access`,
`endpoint`). There is no watch; lists are not snapshots at a resourceVersion (paging continues
after the last key of the previous page, over the current state). Faults (errors, held requests,
conflicts, outage windows) are injected through `/_sim/kube/faults`: see `faults.py`.

Wiring (one world at a time; the cluster follows a replaced world)::

    clusters = Clusters(lambda: sim.world)                   # world.scenario.workloads by default
    kube = kube_app(clusters)                                # aiohttp app, mount at "/"
    admin.add_subapp("/_sim/kube/", admin_app(clusters))     # views, faults, cloud-node-manager
    write_kubeconfig(path, "http://127.0.0.1:PORT")
    # one of the scenario's clusters:
    endpoint = Endpoint(name, auth, state_dir, lambda: sim.world, issuer.issue)
    kube_app(endpoint.clusters, endpoint.access)             # served with endpoint.ssl_context()

Several clusters (`clusters` in the scenario; `auth` is required)::

    "clusters": [
      {"name": "capz-prod",                       // a DNS label
       "scale_sets": ["capz-prod-md-0"],          // their instances are its nodes (names, any case)
       "auth": {"mode": "token"}                  // or "client_certificate", "none",
                                                  // or "entra" with "audience": "<app id>"
       "workloads": {...}}                        // optional, the schema below
    ]

- Membership: a scale set is in one cluster at most; with `clusters`, a scale set in none has no
  nodes anywhere. A cluster's workloads are its own `workloads`, or else the top-level
  `workloads` entries that fit its nodes (the rule is in `scope.py`: node selectors against its
  scale sets' node labels; an empty selector fits every cluster that has a scale set).
- Serving: TLS always, a fresh CA per cluster (made at start under the state directory) and a
  server certificate for 127.0.0.1 and localhost. Auth (`access.py`): `token`, a
  ServiceAccount-style bearer token made at start (user
  `system:serviceaccount:kube-system:poolkeeper`); `client_certificate`, a client certificate
  signed by the cluster's CA, CN and O `poolkeeper` (a certificate of another CA fails the TLS
  handshake); `entra`, a JWT from the simulator's identity endpoint whose `aud` is the audience
  (what `ManagedIdentityCredential().get_token("<app id>/.default")` gets; user = its `oid`);
  `none`, anyone (`system:anonymous`). A request without valid credentials, whatever its path,
  gets the API server's 401 Status (`"message":"Unauthorized","reason":"Unauthorized"`); a token
  of another cluster is just invalid. Everything is allowed unless an admin denied it: then 403
  with the Forbidden Status naming user, verb, resource and scope. `POST
  /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` answers from the same rules (every
  cluster serves it; the plain one allows everything and lists no new group in discovery).
- Published (`server.py`'s info line, `clusters`): per cluster `server`, `ca_cert` (path),
  `ca_pem`, `auth`, `kubeconfig` (path, `<state dir>/kubeconfig-<name>`: server, CA data and the
  credential; an entra cluster's holds a static identity-endpoint token valid 30 days, as
  kubectl here runs no exec plugin), `token` (token mode), `client_cert_pem` (certificate and
  key PEM), `audience` (entra), `secrets` (the Key Vault secrets holding the credential,
  `<name>-token` / `<name>-client-certificate`, `<name>-kubeconfig`, `<name>-ca`: see
  local/sim/keyvault.py). `kube`/`kubeconfig` are then the first cluster's.
- Admin (`/_sim/kube/clusters` lists them; per cluster under `/_sim/kube/clusters/<name>/`): the
  views and faults of `/_sim/kube/` (pods, pdbs, evictions, requests, removals, faults,
  cloud-node-manager), and `GET access`, `POST deny` / `POST allow` with a rule like
  `{"verb": "create", "resource": "pods", "subresource": "eviction"}` (also `group`,
  `namespace`; a field left out matches all), `DELETE deny` (allow all again), `POST hang`
  (`{"seconds": N}` optional: every API request of that cluster is held until `DELETE hang` or
  N wall seconds). `/_sim/kube/` itself is the first cluster's.
- Clusters, ports and credentials are fixed when the simulator starts: a loaded scenario must
  list the same names with the same auth (scale sets and workloads may change); loading resets
  denials, hangs and faults.

Each request (API or admin view) first `sync()`s: the world settles, the cluster replays its own
due wake-ups in order (pod starts, graceful terminations, replacements, taint evictions), then
re-derives the nodes from the instances at the world's now.

Nodes: an instance is a node once it has booted (`booted_at` set, not `Creating`); name = computer
name; Ready while the VM is running and not being deleted, else NotReady (with the lifecycle
controller's `node.kubernetes.io/not-ready` NoSchedule/NoExecute taints; pods tolerate the latter
for 300 s and are then deleted); `node.cloudprovider.kubernetes.io/shutdown:NoSchedule` while
stopped or deallocated; gone when the instance is gone (its pods with it). Cordoning sets
`spec.unschedulable`; the lifecycle controller then adds `node.kubernetes.io/unschedulable`.
A Node deleted by a client is registered again by its kubelet 10 s later if the VM runs.

The scenario's `workloads` section (every key optional; names are DNS labels)::

    "workloads": {
      "start_seconds": 5,        // a bound pod becomes Running and Ready this long after binding
      "replace_seconds": 2,      // a controller creates a replacement this long after a pod went
      "deployments": [{
        "name": "web", "namespace": "default", "replicas": 6,
        "labels": {"app": "web"},                              // default {"app": <name>}
        "requests": {"cpu": "250m", "memory": "256Mi"},        // default 100m / 128Mi
        "node_selector": {"elastisys.io/node-group": "workers"},
        "tolerations": [],                                     // Kubernetes tolerations, verbatim
        "termination_grace_seconds": 30,
        "empty_dir": false,                                    // an emptyDir volume "scratch"
        "start_seconds": null,                                 // per-workload override
        "image": "registry.k8s.io/pause:3.10",
        "pdb": {"name": "web", "min_available": 2}             // or "max_unavailable": "25%";
      }],                                                      // "unhealthy_pod_eviction_policy"
      "daemonsets": [{"name": "kube-proxy", "namespace": "kube-system", ...}],
      "static_pods": [{"name": "node-exporter", ...}],          // mirror pod <name>-<node> per node
      "pods": [{"name": "debug", "node": "aks-...-vmss000001", "phase": "Running"}],
                                          // "Succeeded": a completed pod; no "node": scheduled
      "pdbs": [{"name": "extra", "namespace": "default", "selector": {"app": "web"},
                "max_unavailable": 1}],                         // standalone budgets
      "config_maps": [{"name": "cluster-autoscaler-status", "namespace": "kube-system",
                       "data": {"status": "..."}}]              // served read-only
    }

Deployments own one ReplicaSet `<name>-<hash>` whose pods are `<rs>-<5 chars>`; DaemonSet pods
tolerate unschedulable and not-ready nodes; every pod's template fields above apply to all kinds.
At the scenario's start everything is already scheduled and Running.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.sim.kube.admin import (
        admin_app,
        eviction_log,
        pdb_status,
        pods_by_node,
        request_log,
    )
    from local.sim.kube.api import kube_app
    from local.sim.kube.kubeconfig import write_kubeconfig
    from local.sim.kube.model import ApiError, Cluster, Clusters
    from local.sim.kube.workloads import Workloads, parse_workloads

# Imported on first use, so that `local.sim.scenario` can import `local.sim.kube.workloads`
# without pulling in the world (which imports the scenario).
_PUBLIC = {
    "admin_app": "admin",
    "eviction_log": "admin",
    "pdb_status": "admin",
    "pods_by_node": "admin",
    "request_log": "admin",
    "kube_app": "api",
    "write_kubeconfig": "kubeconfig",
    "ApiError": "model",
    "Cluster": "model",
    "Clusters": "model",
    "Workloads": "workloads",
    "parse_workloads": "workloads",
}
__all__ = [
    "ApiError",
    "Cluster",
    "Clusters",
    "Workloads",
    "admin_app",
    "eviction_log",
    "kube_app",
    "parse_workloads",
    "pdb_status",
    "pods_by_node",
    "request_log",
    "write_kubeconfig",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
