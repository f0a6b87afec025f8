"""The control loops, simplified: kubelet (pod start, readiness, mirror pods), pod garbage
collection, taint-based eviction, DaemonSet, Deployment/ReplicaSet and disruption (PDB status).

Each is a function of the cluster at `cluster.at`; delays are due times plus a wake-up, so a jump
of the clock replays them in order.
"""

from __future__ import annotations

import copy
import hashlib
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from local.sim.kube import nodes, quantity, scheduler
from local.sim.kube.objects import (
    DAEMON_TOLERATIONS,
    DEFAULT_TOLERATIONS,
    MIRROR_ANNOTATION,
    Obj,
    controller_of,
    node_ready,
    owner_ref,
    parse_ts,
    pod_ready,
    set_condition,
    stable_hash,
    terminal,
    terminating,
    tolerates,
    toleration_for,
    ts,
)
from local.sim.kube.selectors import label_selector_matches
from local.sim.kube.workloads import Budget, PodTemplate, Workloads

if TYPE_CHECKING:
    from local.sim.kube.model import Cluster

SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


# -- building objects -----------------------------------------------------------------------------


def pod_spec(template: PodTemplate, container: str) -> Obj:
    requests = {
        "cpu": quantity.format_millicores(quantity.millicores(template.requests.cpu)),
        "memory": quantity.format_bytes(quantity.bytes_of(template.requests.memory)),
    }
    box: Obj = {
        "name": container,
        "image": template.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": requests},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    spec: Obj = {
        "containers": [box],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": template.termination_grace_seconds,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
        "priority": 0,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    if template.node_selector:
        spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        spec["tolerations"] = copy.deepcopy(template.tolerations)
    if template.empty_dir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        box["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    return spec


def new_pod(
    cluster: Cluster,
    *,
    namespace: str,
    spec: Obj,
    labels: dict[str, str],
    name: str | None = None,
    generate_name: str | None = None,
    owner: Obj | None = None,
    annotations: dict[str, str] | None = None,
    node: str | None = None,
) -> Obj:
    """Create a pod as the API server admits it (default tolerations added)."""
    spec = copy.deepcopy(spec)
    tolerations = spec.setdefault("tolerations", [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] for t in tolerations):
            tolerations.append(dict(default))
    metadata: Obj = {"namespace": namespace, "labels": dict(labels)}
    if generate_name:
        metadata["generateName"] = generate_name
        name = cluster.generate_name("pods", namespace, generate_name)
    metadata["name"] = name
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    pod: Obj = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }
    if node is not None:
        spec["nodeName"] = node
        set_condition(pod, "PodScheduled", "True", cluster.at)
    cluster.add("pods", pod)
    return pod


def _budget(cluster: Cluster, name: str, namespace: str, labels: dict[str, str], b: Budget) -> None:
    spec: Obj = {"selector": {"matchLabels": dict(labels)}}
    if b.min_available is not None:
        spec["minAvailable"] = b.min_available
    if b.max_unavailable is not None:
        spec["maxUnavailable"] = b.max_unavailable
    if b.unhealthy_pod_eviction_policy:
        spec["unhealthyPodEvictionPolicy"] = b.unhealthy_pod_eviction_policy
    cluster.add(
        "poddisruptionbudgets",
        {
            "kind": "PodDisruptionBudget",
            "apiVersion": "policy/v1",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": spec,
            "status": {
                "observedGeneration": 0,
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0,
            },
        },
    )


def install(cluster: Cluster, workloads: Workloads) -> None:
    """Create the scenario's namespaces, controllers, budgets and bare pods."""
    used = {
        *SYSTEM_NAMESPACES,
        *(w.namespace for w in workloads.deployments),
        *(w.namespace for w in workloads.daemonsets),
        *(w.namespace for w in workloads.static_pods),
        *(w.namespace for w in workloads.pods),
        *(w.namespace for w in workloads.pdbs),
        *(w.namespace for w in workloads.config_maps),
    }
    for namespace in sorted(used):
        cluster.add(
            "namespaces",
            {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": namespace,
                    "labels": {"kubernetes.io/metadata.name": namespace},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )
    for found in workloads.config_maps:
        cluster.add(
            "configmaps",
            {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"name": found.name, "namespace": found.namespace},
                "data": dict(found.data),
            },
        )
    for deployment in workloads.deployments:
        _install_deployment(cluster, deployment)
    for daemon in workloads.daemonsets:
        labels = daemon.labels or {"app": daemon.name}
        spec = pod_spec(daemon, daemon.name)
        spec["tolerations"] = [*spec.get("tolerations", []), *copy.deepcopy(DAEMON_TOLERATIONS)]
        created = cluster.add(
            "daemonsets",
            {
                "kind": "DaemonSet",
                "apiVersion": "apps/v1",
                "metadata": {
                    "name": daemon.name,
                    "namespace": daemon.namespace,
                    "generation": 1,
                    "labels": dict(labels),
                    "annotations": {
                        "deprecated.daemonset.template.generation": "1",
                        **daemon.annotations,
                    },
                },
                "spec": {
                    "selector": {"matchLabels": dict(labels)},
                    "template": {"metadata": {"labels": dict(labels)}, "spec": spec},
                    "updateStrategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
                    },
                    "revisionHistoryLimit": 10,
                },
                "status": {
                    "currentNumberScheduled": 0,
                    "desiredNumberScheduled": 0,
                    "numberMisscheduled": 0,
                    "numberReady": 0,
                },
            },
        )
        if daemon.start_seconds is not None:
            cluster.start_overrides[created["metadata"]["uid"]] = daemon.start_seconds
    for bare in workloads.pods:
        spec = pod_spec(bare, bare.name)
        if bare.node:
            spec.setdefault("nodeSelector", {})["kubernetes.io/hostname"] = bare.node
        if bare.phase == "Succeeded":
            spec["restartPolicy"] = "Never"
        pod = new_pod(
            cluster,
            namespace=bare.namespace,
            spec=spec,
            labels=bare.labels or {"app": bare.name},
            name=bare.name,
        )
        if bare.phase == "Succeeded":
            cluster.completes.add(pod["metadata"]["uid"])
        if bare.start_seconds is not None:
            cluster.start_overrides[pod["metadata"]["uid"]] = bare.start_seconds
    for budget in workloads.pdbs:
        _budget(cluster, budget.name, budget.namespace, budget.selector, budget)


def _install_deployment(cluster: Cluster, deployment: Any) -> None:
    labels = deployment.labels or {"app": deployment.name}
    spec = pod_spec(deployment, deployment.name)
    template_hash = stable_hash(deployment.namespace, deployment.name, spec)
    owner = cluster.add(
        "deployments",
        {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": deployment.name,
                "namespace": deployment.namespace,
                "generation": 1,
                "labels": dict(labels),
                "annotations": {"deployment.kubernetes.io/revision": "1"},
            },
            "spec": {
                "replicas": deployment.replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": copy.deepcopy(spec)},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        },
    )
    rs_labels = labels | {"pod-template-hash": template_hash}
    rs = cluster.add(
        "replicasets",
        {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": f"{deployment.name}-{template_hash}",
                "namespace": deployment.namespace,
                "generation": 1,
                "labels": dict(rs_labels),
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(deployment.replicas),
                    "deployment.kubernetes.io/max-replicas": str(
                        deployment.replicas + math.ceil(deployment.replicas * 0.25)
                    ),
                    "deployment.kubernetes.io/revision": "1",
                },
                "ownerReferences": [owner_ref(owner)],
            },
            "spec": {
                "replicas": deployment.replicas,
                "selector": {"matchLabels": dict(rs_labels)},
                "template": {"metadata": {"labels": dict(rs_labels)}, "spec": spec},
            },
            "status": {"replicas": 0},
        },
    )
    if deployment.start_seconds is not None:
        cluster.start_overrides[rs["metadata"]["uid"]] = deployment.start_seconds
    if deployment.pdb is not None:
        _budget(
            cluster,
            deployment.pdb.name or deployment.name,
            deployment.namespace,
            labels,
            deployment.pdb,
        )


# -- kubelet and node-level loops -----------------------------------------------------------------


def _pod_ip(pod: Obj, node: Obj) -> str:
    cidr = str(node["spec"].get("podCIDR", "10.244.0.0/24"))
    number = int(hashlib.blake2b(pod["metadata"]["uid"].encode(), digest_size=4).hexdigest(), 16)
    return cidr.rsplit(".", 1)[0] + f".{number % 250 + 4}"


def _container_id(pod: Obj, seed: str) -> str:
    return hashlib.sha256(f"{pod['metadata']['uid']}/{seed}".encode()).hexdigest()


def start(cluster: Cluster, pod: Obj, node: Obj) -> None:
    """The kubelet started the pod's containers and they passed readiness."""
    status = pod["status"]
    at = ts(cluster.at)
    restarts = 0
    previous = {c["name"]: c for c in status.get("containerStatuses") or []}
    host = next(
        (a["address"] for a in node["status"].get("addresses", []) if a["type"] == "InternalIP"),
        "",
    )
    ip = status.get("podIP") or _pod_ip(pod, node)
    status.update(
        phase="Running", hostIP=host, hostIPs=[{"ip": host}], podIP=ip, podIPs=[{"ip": ip}]
    )
    status.setdefault("startTime", at)
    boxes = []
    for container in pod["spec"]["containers"]:
        before = previous.get(container["name"])
        restarts = before["restartCount"] + 1 if before else 0
        digest = _container_id(pod, f"{container['name']}/{restarts}")
        box: Obj = {
            "name": container["name"],
            "image": container["image"],
            "imageID": f"{container['image'].split(':')[0]}@sha256:{digest[::-1]}",
            "containerID": f"containerd://{digest}",
            "ready": True,
            "started": True,
            "restartCount": restarts,
            "state": {"running": {"startedAt": at}},
        }
        if before:
            box["lastState"] = {
                "terminated": {
                    "exitCode": 255,
                    "reason": "Unknown",
                    "startedAt": (before["state"].get("running") or {}).get("startedAt", at),
                    "finishedAt": at,
                }
            }
        boxes.append(box)
    status["containerStatuses"] = boxes
    for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"):
        set_condition(pod, kind, "True", cluster.at)
    cluster.touch(pod)


def complete(cluster: Cluster, pod: Obj, node: Obj) -> None:
    """A pod whose containers ran to completion (exit 0)."""
    start(cluster, pod, node)
    status = pod["status"]
    status["phase"] = "Succeeded"
    for box in status["containerStatuses"]:
        started = box["state"]["running"]["startedAt"]
        box.update(ready=False, started=False)
        box["state"] = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": started,
                "finishedAt": ts(cluster.at),
            }
        }
    set_condition(pod, "PodReadyToStartContainers", "False", cluster.at)
    set_condition(pod, "Ready", "False", cluster.at, "PodCompleted")
    set_condition(pod, "ContainersReady", "False", cluster.at, "PodCompleted")
    cluster.touch(pod)


def _not_ready(cluster: Cluster, pod: Obj) -> None:
    changed = set_condition(pod, "Ready", "False", cluster.at)
    changed |= set_condition(pod, "ContainersReady", "False", cluster.at)
    for box in pod["status"].get("containerStatuses") or []:
        changed |= box.get("ready") is not False
        box["ready"] = False
    if changed:
        cluster.touch(pod)


def mirror_pods(cluster: Cluster) -> None:
    """The kubelet of every Ready node keeps a mirror pod for each static pod that applies."""
    for node in cluster.store["nodes"].values():
        if not node_ready(node):
            continue
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        for static in cluster.spec.static_pods:
            if any(labels.get(k) != v for k, v in static.node_selector.items()):
                continue
            if (static.namespace, f"{static.name}-{name}") in cluster.store["pods"]:
                continue
            config = stable_hash(name, static.name, length=32)
            spec = pod_spec(static, static.name)
            spec["tolerations"] = [{"operator": "Exists", "effect": "NoExecute"}]
            spec["priorityClassName"] = "system-node-critical"
            mirror = new_pod(
                cluster,
                namespace=static.namespace,
                spec=spec,
                labels=static.labels or {"component": static.name, "tier": "node"},
                name=f"{static.name}-{name}",
                owner={
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": name,
                    "uid": node["metadata"]["uid"],
                    "controller": True,
                },
                annotations={
                    "kubernetes.io/config.hash": config,
                    MIRROR_ANNOTATION: config,
                    "kubernetes.io/config.seen": ts(cluster.at),
                    "kubernetes.io/config.source": "file",
                },
                node=name,
            )
            if static.start_seconds is not None:
                cluster.start_overrides[mirror["metadata"]["uid"]] = static.start_seconds


def kubelet(cluster: Cluster) -> None:
    """Start bound pods after the start delay, mark pods of NotReady nodes not ready, restart
    pods whose node rebooted, and finish graceful terminations."""
    node_objects = cluster.store["nodes"]
    for key, pod in list(cluster.store["pods"].items()):
        node = node_objects.get(("", pod["spec"].get("nodeName", "")))
        if node is None:
            continue
        uid = pod["metadata"]["uid"]
        if not node_ready(node):
            cluster.starting.pop(uid, None)
            if not terminal(pod) and pod_ready(pod):
                _not_ready(cluster, pod)
            continue
        if terminating(pod):
            due = cluster.deleting.get(uid)
            if due is not None and due <= cluster.at:
                cluster.remove("pods", key)
            continue
        if terminal(pod):
            continue
        boot = nodes.boot_of(cluster, node)
        if pod_ready(pod) and cluster.booted.get(uid) == boot:
            continue
        if pod_ready(pod):  # the node rebooted since the containers started
            _not_ready(cluster, pod)
        due = cluster.starting.get(uid)
        if due is None:
            due = cluster.at + timedelta(seconds=cluster.start_delay(pod))
            cluster.starting[uid] = due
        if due > cluster.at:
            cluster.wake(due)
            continue
        del cluster.starting[uid]
        cluster.booted[uid] = boot
        if uid in cluster.completes:
            complete(cluster, pod, node)
        else:
            start(cluster, pod, node)


def pod_gc(cluster: Cluster) -> None:
    """Pods bound to a Node that no longer exists are removed (PodGC force-deletes them)."""
    names = {key[1] for key in cluster.store["nodes"]}
    for key, pod in list(cluster.store["pods"].items()):
        node = pod["spec"].get("nodeName")
        if node and node not in names:
            cluster.remove("pods", key)


def taint_eviction(cluster: Cluster) -> None:
    """Pods on a node with NoExecute taints they don't tolerate (long enough) are deleted."""
    for node in cluster.store["nodes"].values():
        taints = [t for t in node["spec"].get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            continue
        for pod in cluster.pods_on(node["metadata"]["name"]):
            if terminating(pod) or terminal(pod):
                continue
            tolerations = pod["spec"].get("tolerations") or []
            due = None
            forever = True
            for taint in taints:
                toleration = toleration_for(tolerations, taint)
                if toleration is None:
                    due, forever = cluster.at, False
                    break
                seconds = toleration.get("tolerationSeconds")
                if seconds is None:
                    continue
                added = parse_ts(taint["timeAdded"]) if taint.get("timeAdded") else cluster.at
                until = added + timedelta(seconds=max(0, seconds))
                due = until if due is None else min(due, until)
                forever = False
            if forever or due is None:
                continue
            if due <= cluster.at:
                cluster.terminate(pod, None)
            else:
                cluster.wake(due)


# -- workload controllers -------------------------------------------------------------------------


def _by_owner(cluster: Cluster) -> dict[str, list[Obj]]:
    """Pods by the uid of their controller."""
    found: dict[str, list[Obj]] = {}
    for pod in cluster.store["pods"].values():
        ref = controller_of(pod)
        if ref is not None:
            found.setdefault(ref["uid"], []).append(pod)
    return found


def _due(cluster: Cluster, key: str) -> bool:
    """True once a controller's replacement delay for `key` has passed (starting it if needed)."""
    due = cluster.replacing.get(key)
    if due is None:
        due = cluster.at + timedelta(seconds=cluster.replace_delay())
        cluster.replacing[key] = due
    if due > cluster.at:
        cluster.wake(due)
        return False
    del cluster.replacing[key]
    return True


def _update_status(cluster: Cluster, obj: Obj, status: Obj) -> None:
    if obj.get("status") != status:
        obj["status"] = status
        cluster.touch(obj)


def replicasets(cluster: Cluster) -> None:
    by_owner = _by_owner(cluster)
    for rs in list(cluster.store["replicasets"].values()):
        uid = rs["metadata"]["uid"]
        owned = by_owner.get(uid, [])
        active = [p for p in owned if not terminating(p) and not terminal(p)]
        wanted = int(rs["spec"].get("replicas", 1))
        if len(active) < wanted:
            if _due(cluster, uid):
                template = rs["spec"]["template"]
                for _ in range(wanted - len(active)):
                    active.append(
                        new_pod(
                            cluster,
                            namespace=rs["metadata"]["namespace"],
                            spec=template["spec"],
                            labels=template["metadata"].get("labels") or {},
                            generate_name=f"{rs['metadata']['name']}-",
                            owner=owner_ref(rs),
                        )
                    )
        else:
            cluster.replacing.pop(uid, None)
            surplus = sorted(
                active,
                key=lambda p: (
                    bool(p["spec"].get("nodeName")),
                    pod_ready(p),
                    p["metadata"]["creationTimestamp"],
                ),
            )[: len(active) - wanted]
            for pod in surplus:
                cluster.terminate(pod, None)
                active.remove(pod)
        ready = sum(1 for p in active if pod_ready(p))
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": len(active),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if not ready:
            del status["readyReplicas"], status["availableReplicas"]
        _update_status(cluster, rs, status)


def deployments(cluster: Cluster) -> None:
    by_owner = {
        ref["uid"]: rs
        for rs in cluster.store["replicasets"].values()
        if (ref := controller_of(rs)) is not None
    }
    for deployment in cluster.store["deployments"].values():
        rs = by_owner.get(deployment["metadata"]["uid"])
        rs_status = rs["status"] if rs else {}
        wanted = int(deployment["spec"].get("replicas", 1))
        available = int(rs_status.get("availableReplicas", 0))
        max_unavailable = math.floor(wanted * 0.25)
        at = cluster.at
        status: Obj = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": int(rs_status.get("replicas", 0)),
            "updatedReplicas": int(rs_status.get("replicas", 0)),
            "readyReplicas": int(rs_status.get("readyReplicas", 0)),
            "availableReplicas": available,
            "conditions": copy.deepcopy(deployment.get("status", {}).get("conditions", [])),
        }
        if wanted - available > 0:
            status["unavailableReplicas"] = wanted - available
        for key in ("readyReplicas", "availableReplicas"):
            if not status[key]:
                del status[key]
        shadow = {"status": status}
        if available >= wanted - max_unavailable:
            set_condition(
                shadow,
                "Available",
                "True",
                at,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            set_condition(
                shadow,
                "Available",
                "False",
                at,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        rs_name = rs["metadata"]["name"] if rs else deployment["metadata"]["name"]
        set_condition(
            shadow,
            "Progressing",
            "True",
            at,
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rs_name}" has successfully progressed.',
        )
        for item in status["conditions"]:
            item.setdefault("lastUpdateTime", item["lastTransitionTime"])
        _update_status(cluster, deployment, status)


def _daemon_fits(daemon: Obj, node: Obj, effects: tuple[str, ...]) -> bool:
    spec = daemon["spec"]["template"]["spec"]
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    tolerations = spec.get("tolerations") or []
    return all(
        tolerates(tolerations, t)
        for t in node["spec"].get("taints") or []
        if t.get("effect") in effects
    )


def daemonsets(cluster: Cluster) -> None:
    by_owner = _by_owner(cluster)
    for daemon in cluster.store["daemonsets"].values():
        uid = daemon["metadata"]["uid"]
        by_node: dict[str, list[Obj]] = {}
        for pod in by_owner.get(uid, []):
            if not terminating(pod) and not terminal(pod):
                by_node.setdefault(pod["spec"].get("nodeName", ""), []).append(pod)
        desired = scheduled = misscheduled = ready = 0
        for node in cluster.store["nodes"].values():
            name = node["metadata"]["name"]
            here = by_node.pop(name, [])
            should_run = _daemon_fits(daemon, node, ("NoSchedule", "NoExecute"))
            may_stay = _daemon_fits(daemon, node, ("NoExecute",))
            if should_run:
                desired += 1
            if here and not may_stay:
                for pod in here:
                    cluster.terminate(pod, None)
                continue
            if here:
                scheduled += 1 if should_run else 0
                misscheduled += 0 if should_run else 1
                ready += sum(1 for p in here[:1] if pod_ready(p))
                cluster.replacing.pop(f"{uid}/{name}", None)
            elif should_run and _due(cluster, f"{uid}/{name}"):
                template = daemon["spec"]["template"]
                spec = copy.deepcopy(template["spec"])
                spec["affinity"] = {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {"key": "metadata.name", "operator": "In", "values": [name]}
                                    ]
                                }
                            ]
                        }
                    }
                }
                new_pod(
                    cluster,
                    namespace=daemon["metadata"]["namespace"],
                    spec=spec,
                    labels=(template["metadata"].get("labels") or {})
                    | {
                        "controller-revision-hash": stable_hash(uid, length=10),
                        "pod-template-generation": "1",
                    },
                    generate_name=f"{daemon['metadata']['name']}-",
                    owner=owner_ref(daemon),
                    node=name,
                )
                scheduled += 1
        _update_status(
            cluster,
            daemon,
            {
                "currentNumberScheduled": scheduled,
                "desiredNumberScheduled": desired,
                "numberMisscheduled": misscheduled,
                "numberReady": ready,
                "numberAvailable": ready,
                "updatedNumberScheduled": scheduled,
                "observedGeneration": daemon["metadata"].get("generation", 1),
                **({"numberUnavailable": desired - ready} if desired > ready else {}),
            },
        )


# -- disruption controller ------------------------------------------------------------------------


def budget_pods(cluster: Cluster, pdb: Obj) -> list[Obj]:
    namespace = pdb["metadata"]["namespace"]
    selector = pdb["spec"].get("selector")
    return [
        p
        for p in cluster.store["pods"].values()
        if p["metadata"]["namespace"] == namespace
        and label_selector_matches(selector, p["metadata"].get("labels") or {})
    ]


def _scaled(value: int | str, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = int(value.rstrip("%")) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def _expected_scale(cluster: Cluster, pods: list[Obj]) -> int:
    """The sum of the scale of every controller of the pods (Deployment over its ReplicaSet)."""
    scales: dict[str, int] = {}
    for pod in pods:
        ref = controller_of(pod)
        if ref is None:
            raise LookupError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
        namespace = pod["metadata"]["namespace"]
        if ref["kind"] == "ReplicaSet":
            rs = cluster.store["replicasets"].get((namespace, ref["name"]))
            if rs is None:
                raise LookupError(f'replicasets.apps "{ref["name"]}" not found')
            parent = controller_of(rs)
            deployment = (
                cluster.store["deployments"].get((namespace, parent["name"]))
                if parent and parent["kind"] == "Deployment"
                else None
            )
            owner = deployment or rs
            scales[owner["metadata"]["uid"]] = int(owner["spec"].get("replicas", 1))
        else:
            raise LookupError(f"{ref['kind']} {ref['name']} has no scale subresource")
    return sum(scales.values())


def budgets(cluster: Cluster) -> None:
    for pdb in cluster.store["poddisruptionbudgets"].values():
        spec = pdb["spec"]
        pods = budget_pods(cluster, pdb)
        status = copy.deepcopy(pdb.get("status") or {})
        status["observedGeneration"] = pdb["metadata"].get("generation", 1)
        try:
            if spec.get("maxUnavailable") is not None:
                expected = _expected_scale(cluster, pods)
                desired = max(0, expected - _scaled(spec["maxUnavailable"], expected, True))
            elif isinstance(spec.get("minAvailable"), int):
                expected, desired = len(pods), spec["minAvailable"]
            else:
                expected = _expected_scale(cluster, pods)
                desired = _scaled(spec.get("minAvailable", 0), expected, True)
        except LookupError as error:
            status["disruptionsAllowed"] = 0
            set_condition(
                {"status": status},
                "DisruptionAllowed",
                "False",
                cluster.at,
                "SyncFailed",
                str(error),
            )
            _update_status(cluster, pdb, _as_meta_conditions(status))
            continue
        healthy = sum(1 for p in pods if not terminating(p) and pod_ready(p))
        allowed = max(0, healthy - desired)
        status.update(
            disruptionsAllowed=allowed,
            currentHealthy=healthy,
            desiredHealthy=desired,
            expectedPods=expected,
        )
        if allowed:
            set_condition(
                {"status": status}, "DisruptionAllowed", "True", cluster.at, "SufficientPods"
            )
        else:
            set_condition(
                {"status": status}, "DisruptionAllowed", "False", cluster.at, "InsufficientPods"
            )
        _update_status(cluster, pdb, _as_meta_conditions(status))


def _as_meta_conditions(status: Obj) -> Obj:
    """PDB conditions are metav1.Condition: reason and message are required, with a generation."""
    for item in status.get("conditions") or []:
        item.setdefault("message", "")
        item["observedGeneration"] = status["observedGeneration"]
    return status


def reconcile(cluster: Cluster) -> None:
    """One pass of every loop, in an order that lets a pass settle: nodes, cleanup, controllers,
    scheduler, kubelet, then the statuses that count the result."""
    nodes.lifecycle(cluster)
    pod_gc(cluster)
    taint_eviction(cluster)
    mirror_pods(cluster)
    daemonsets(cluster)
    replicasets(cluster)
    scheduler.schedule(cluster)
    kubelet(cluster)
    replicasets(cluster)
    deployments(cluster)
    daemonsets(cluster)
    budgets(cluster)
