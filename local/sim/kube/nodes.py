"""Nodes derived from the world's instances: what the kubelet registers and reports, what the cloud
node manager removes, and the taints the node lifecycle controller keeps.

Kubernetes-owned state (labels and annotations set by clients, `spec.unschedulable`, client
taints) lives on the stored Node and survives re-derivation; only the kubelet's own labels,
`spec.providerID` and `status` are rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from local.sim.kube.objects import (
    KUBELET_VERSION,
    NODE_GROUP_LABEL,
    NOT_READY_TAINT,
    SHUTDOWN_TAINT,
    UNSCHEDULABLE_TAINT,
    Obj,
    condition,
    node_ready,
    parse_ts,
    set_condition,
    ts,
)
from local.sim.scenario import VM_SIZES, ScaleSetSpec
from local.sim.world import Instance, ScaleSet, kubelet_ready

if TYPE_CHECKING:
    from local.sim.kube.model import Cluster

MAX_PODS = 110
REREGISTER_SECONDS = (
    10.0  # a running kubelet re-creates its Node this long after a client deleted it
)
_AKS_CPU_RESERVED = {1: 60, 2: 100, 4: 140, 8: 180, 16: 260, 32: 420, 64: 740}


@dataclass(frozen=True)
class Seen:
    """An instance that is a node: booted at least once and not being created."""

    scale_set: ScaleSet
    instance: Instance
    index: int  # the scale set's position in the world, for stable addresses


def seen_nodes(cluster: Cluster) -> dict[str, Seen]:
    found: dict[str, Seen] = {}
    for index, scale_set in enumerate(cluster.world.scale_sets.values()):
        if not cluster.has(scale_set):
            continue
        for instance in scale_set.instances.values():
            if instance.booted_at is not None and instance.provisioning != "Creating":
                found[instance.computer_name] = Seen(scale_set, instance, index)
    return found


def is_up(instance: Instance) -> bool:
    """The kubelet runs and posts Ready: the guest is up and its kubelet is not broken."""
    return kubelet_ready(instance)


def resources(sku: str) -> tuple[Obj, Obj]:
    """capacity and allocatable of a VM size, with AKS's kube-reserved CPU and memory."""
    cores, gib = VM_SIZES[sku]
    kib = gib * 1024 * 1024
    reserved_cpu = _AKS_CPU_RESERVED.get(cores, 60 + 20 * cores)
    reserved_mib = min(20 * MAX_PODS + 50, gib * 1024 // 4) + 100  # kube-reserved + eviction
    capacity = {
        "cpu": str(cores),
        "ephemeral-storage": "129886128Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": f"{kib}Ki",
        "pods": str(MAX_PODS),
    }
    allocatable = capacity | {
        "cpu": f"{cores * 1000 - reserved_cpu}m",
        "ephemeral-storage": "119703055367",
        "memory": f"{kib - reserved_mib * 1024}Ki",
    }
    return capacity, allocatable


def provider_id(seen: Seen) -> str:
    scale_set = seen.scale_set
    return (
        f"azure:///subscriptions/{scale_set.subscription}/resourceGroups/"
        f"{scale_set.resource_group.lower()}/providers/Microsoft.Compute/virtualMachineScaleSets/"
        f"{scale_set.name}/virtualMachines/{seen.instance.instance_id}"
    )


def internal_ip(seen: Seen) -> str:
    number = seen.instance.instance_id
    return f"10.{224 + seen.index % 32}.{number // 250}.{number % 250 + 4}"


def template_labels(spec: ScaleSetSpec, location: str) -> dict[str, str]:
    """The labels every node of a scale set gets when it registers (all but its hostname and
    zone): what a workload's node selector is matched against to place it in a cluster."""
    return {
        NODE_GROUP_LABEL: spec.node_group,
        "kubernetes.azure.com/agentpool": spec.agent_pool or spec.node_group,
        "kubernetes.azure.com/mode": "user",
        "kubernetes.azure.com/role": "agent",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": spec.sku,
        "topology.kubernetes.io/region": location,
    }


def kubelet_labels(cluster: Cluster, seen: Seen) -> dict[str, str]:
    """Labels the kubelet sets on every status sync (clients cannot keep other values)."""
    zone = seen.instance.zone
    location = cluster.world.scenario.location
    return {
        "kubernetes.io/hostname": seen.instance.computer_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": seen.scale_set.spec.sku,
        "topology.kubernetes.io/region": location,
        "topology.kubernetes.io/zone": f"{location}-{zone}" if zone else "0",
    }


def register(cluster: Cluster, seen: Seen) -> Obj:
    """The Node a kubelet creates when it first starts (labels from its `--node-labels`)."""
    spec = seen.scale_set.spec
    name = seen.instance.computer_name
    created = seen.instance.booted_at or cluster.at
    labels = {
        NODE_GROUP_LABEL: spec.node_group,
        "kubernetes.azure.com/agentpool": spec.agent_pool or spec.node_group,
        "kubernetes.azure.com/mode": "user",
        "kubernetes.azure.com/role": "agent",
        **kubelet_labels(cluster, seen),
    }
    cidr = f"10.244.{cluster.next_pod_cidr()}.0/24"
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": cluster.new_uid(),
            "creationTimestamp": ts(created),
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"providerID": provider_id(seen), "podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {},
    }


def refresh(cluster: Cluster, node: Obj, seen: Seen) -> bool:
    """Rewrite what the kubelet and cloud provider own; leave the rest alone. True if changed.

    `nodeInfo` comes from the guest: boot id, running kernel, `/etc/machine-id` (a kubelet
    reads it at start, so it changes only with a boot), the image's OS name."""
    instance = seen.instance
    guest = instance.guest
    previous_info = node["status"].get("nodeInfo") or {}
    machine_id = previous_info.get("machineID", "")
    if guest.up or not machine_id:
        disk = cluster.world.disk_of(seen.scale_set, instance)
        machine_id = disk.machine_id()
    at = cluster.at
    metadata, spec, status = node["metadata"], node["spec"], node["status"]
    capacity, allocatable = resources(seen.scale_set.spec.sku)
    derived: dict[str, Any] = {
        "capacity": capacity,
        "allocatable": allocatable,
        "addresses": [
            {"type": "InternalIP", "address": internal_ip(seen)},
            {"type": "Hostname", "address": instance.computer_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": instance.vm_id,
            "bootID": guest.boot_id,
            "kernelVersion": guest.kernel,
            "osImage": cluster.world.scenario.os.name,
            "containerRuntimeVersion": "containerd://1.7.25-1",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }
    changed = False
    labels = metadata.setdefault("labels", {})
    for key, value in kubelet_labels(cluster, seen).items():
        if labels.get(key) != value:
            labels[key], changed = value, True
    if spec.get("providerID") != provider_id(seen):
        spec["providerID"], changed = provider_id(seen), True
    for key, value in derived.items():
        if status.get(key) != value:
            status[key], changed = value, True
    up = is_up(instance)
    if up != node_ready(node) or not status.get("conditions"):
        since = at
        if up and instance.booted_at is not None:
            # Ready since the kubelet came back, unless we saw the node NotReady after that.
            previous = condition(node, "Ready")
            floor = parse_ts(previous["lastTransitionTime"]) if previous else instance.booted_at
            since = max(instance.booted_at, floor)
        _conditions(node, since, up, instance)
        changed = True
    shutdown = instance.power in ("stopped", "deallocated")
    return _set_taint(node, SHUTDOWN_TAINT, "NoSchedule", shutdown, at) or changed


def _conditions(node: Obj, at: datetime, ready: bool, instance: Instance) -> None:
    for kind, reason, message in (
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ):
        set_condition(node, kind, "False", at, reason, message, heartbeat=True)
    if ready:
        set_condition(
            node,
            "Ready",
            "True",
            at,
            "KubeletReady",
            "kubelet is posting ready status",
            heartbeat=True,
        )
    else:
        set_condition(
            node,
            "Ready",
            "False",
            at,
            "KubeletNotReady",
            f"Kubelet stopped posting node status (VM {instance.provisioning.lower()}, "
            f"power state {instance.power}, guest {instance.guest.state}).",
            heartbeat=True,
        )


def _set_taint(node: Obj, key: str, effect: str, wanted: bool, at: datetime) -> bool:
    taints: list[Obj] = node["spec"].get("taints") or []
    present = [t for t in taints if t.get("key") == key and t.get("effect") == effect]
    if wanted == bool(present):
        return False
    if wanted:
        taint: Obj = {"key": key, "effect": effect}
        if effect == "NoExecute":
            taint["timeAdded"] = ts(at)
        taints = [*taints, taint]
    else:
        taints = [t for t in taints if t not in present]
    if taints:
        node["spec"]["taints"] = taints
    else:
        node["spec"].pop("taints", None)
    return True


def observe(cluster: Cluster) -> None:
    """Bring the Node objects in line with the world's instances (at `cluster.at`)."""
    seen = seen_nodes(cluster)
    nodes = cluster.store["nodes"]
    for key in [k for k in nodes if k[1] not in seen]:
        # The cloud node manager deletes Nodes of deleted VMs; while it is down (an admin call)
        # they stay, and their kubelet, gone with the VM, no longer posts status.
        if cluster.cloud_node_manager:
            cluster.remove("nodes", key)
        elif set_condition(
            nodes[key],
            "Ready",
            "Unknown",
            cluster.at,
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        ):
            cluster.touch(nodes[key])
    for name in [n for n in cluster.unregistered if n not in seen]:
        del cluster.unregistered[name]
    for name, found in seen.items():
        node = nodes.get(("", name))
        if node is None:
            since = cluster.unregistered.get(name)
            if since is not None:  # deleted by a client: back when its kubelet runs again
                if not is_up(found.instance):
                    continue
                if (cluster.at - since).total_seconds() < REREGISTER_SECONDS:
                    cluster.wake_in(REREGISTER_SECONDS - (cluster.at - since).total_seconds())
                    continue
                del cluster.unregistered[name]
            node = register(cluster, found)
            refresh(cluster, node, found)
            cluster.add("nodes", node)
            continue
        if refresh(cluster, node, found):
            cluster.touch(node)


def lifecycle(cluster: Cluster) -> None:
    """The node lifecycle controller's taints: unschedulable, and not-ready (both effects)."""
    for node in cluster.store["nodes"].values():
        ready = node_ready(node)
        changed = _set_taint(
            node,
            UNSCHEDULABLE_TAINT,
            "NoSchedule",
            bool(node["spec"].get("unschedulable")),
            cluster.at,
        )
        changed |= _set_taint(node, NOT_READY_TAINT, "NoSchedule", not ready, cluster.at)
        changed |= _set_taint(node, NOT_READY_TAINT, "NoExecute", not ready, cluster.at)
        if changed:
            cluster.touch(node)


def boot_of(cluster: Cluster, node: Obj) -> str:
    return str(node["status"].get("nodeInfo", {}).get("bootID", ""))
