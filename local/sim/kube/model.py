"""The simulated cluster: Kubernetes objects driven by the world and its clock, and the API
operations (get, list, patch, replace, delete, evict) with the API server's rules.

Not thread-safe, like the world: use it from the event loop that serves the world.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import random
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from local.sim.kube import controllers, nodes, patch, scope
from local.sim.kube.faults import Faults
from local.sim.kube.objects import (
    BY_RESOURCE,
    KINDS,
    Kind,
    Obj,
    controller_of,
    is_mirror,
    key_of,
    pod_ready,
    terminal,
    terminating,
    ts,
)
from local.sim.kube.selectors import label_selector_matches, selector_is_empty
from local.sim.kube.workloads import Workloads, parse_workloads
from local.sim.world import World


class ApiError(Exception):
    """An error the API server answers with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(kind: Kind, name: str, **extra: Any) -> Obj:
    details: Obj = {"name": name}
    if kind.group:
        details["group"] = kind.group
    return details | {"kind": kind.resource} | extra


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))


def conflict(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.qualified} "{name}": {why}',
        _details(kind, name),
    )


def invalid(kind: Kind, name: str, field: str, why: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{kind.kind} "{name}" is invalid: {field}: {why}',
        _details(
            kind, name, causes=[{"reason": "FieldValueInvalid", "message": why, "field": field}]
        ),
    )


def success(kind: Kind, name: str, uid: str, code: int = 200) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": _details(kind, name, uid=uid),
        "code": code,
    }


NODES, PODS = BY_RESOURCE["nodes"], BY_RESOURCE["pods"]
PDBS = BY_RESOURCE["poddisruptionbudgets"]
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class Cluster:
    """Kubernetes objects of one world. Every API request calls `sync()` first.

    `scale_sets` names the scale sets whose instances are its nodes (None: every one)."""

    def __init__(
        self,
        world: World,
        workloads: Workloads | dict[str, Any] | None = None,
        scale_sets: Collection[str] | None = None,
    ) -> None:
        self.world = world
        self.scale_sets = None if scale_sets is None else frozenset(s.lower() for s in scale_sets)
        self.spec = parse_workloads(workloads)
        self.store: dict[str, dict[tuple[str, str], Obj]] = {k.resource: {} for k in KINDS}
        self.evictions: list[Obj] = []
        self.requests: list[Obj] = []  # the API calls served (method, path, query, status, times)
        self.faults = Faults()  # injected through the admin API; a new world starts without
        # controller state that Kubernetes keeps in memory, not in objects
        self.starting: dict[str, datetime] = {}  # pod uid -> when its containers are Ready
        self.booted: dict[str, str] = {}  # pod uid -> node bootID its containers started in
        self.deleting: dict[str, datetime] = {}  # pod uid -> end of its grace period
        self.replacing: dict[str, datetime] = {}  # controller key -> when it creates replacements
        self.completes: set[str] = set()  # uids of pods that run to completion
        self.start_overrides: dict[str, float] = {}  # pod or controller uid -> start seconds
        self.unregistered: dict[str, datetime] = {}  # node deleted by a client -> when
        # Off (an admin call): Nodes of deleted VMs stay, as when the cloud node manager is down.
        self.cloud_node_manager = True
        # Each instance removal: its node as it was at that moment (cordon, pods left on it).
        self.removals: list[Obj] = []
        world.removal_observers.append(self._note_removal)
        self._rv = 0
        self._rng = random.Random(world.scenario.seed)
        self._cidrs = itertools.count()
        self._wakeups: list[datetime] = []
        self._bootstrapping = True
        # The workloads exist from the scenario's start, however late the cluster is first asked.
        world.settle()
        self.at = min(world.now(), world.scenario.clock.start)
        nodes.observe(self)
        controllers.install(self, self.spec)
        controllers.reconcile(self)
        self._bootstrapping = False
        # Every world event is seen at its own time (a reboot between two requests shows as
        # NotReady then Ready, stamped when it happened, however often clients poll).
        world.observers.append(self._catch_up)
        self.sync()

    # -- time -----------------------------------------------------------------------------------

    def sync(self) -> None:
        """Catch up with the world: settle it (each event is observed as it happens), then
        replay due wake-ups in order and observe the instances now."""
        self.world.settle()
        self._catch_up()

    def _catch_up(self) -> None:
        """Run the loops up to the world's "now" (an event's time while one is applied)."""
        now = self.world.now()
        while self._wakeups and self._wakeups[0] <= now:
            due = heapq.heappop(self._wakeups)
            if due > self.at:
                self.at = due
                controllers.reconcile(self)
        self.at = max(self.at, now)
        nodes.observe(self)
        controllers.reconcile(self)

    def has(self, scale_set: Any) -> bool:
        """Whether the instances of this scale set are nodes of this cluster."""
        return self.scale_sets is None or scale_set.name.lower() in self.scale_sets

    def _note_removal(self, scale_set: Any, instance: Any) -> None:
        """Record the node of an instance that goes for good, as it is at that moment: was it
        cordoned, and which pods a drain would have had to move were still on it (a pod whose
        grace period has ended by now counts as gone, whether or not the loop caught up), and how
        many active instances the scale set keeps. Only its own scale sets' instances."""
        if not self.has(scale_set):
            return
        name = instance.computer_name
        node = self.store["nodes"].get(("", name))
        now = self.world.now()
        left = [
            f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            for pod in self.objects("pods")
            if pod["spec"].get("nodeName") == name
            and _workload(pod)
            and not (
                pod["metadata"]["uid"] in self.deleting
                and self.deleting[pod["metadata"]["uid"]] <= now
            )
        ]
        self.removals.append(
            {
                "time": now.isoformat(),
                "scale_set": scale_set.name,
                "instance": str(instance.instance_id),
                "node": name if node is not None else None,
                "unschedulable": bool(node and node["spec"].get("unschedulable")),
                "pods": left,
                # Instances of the scale set that stay, neither going nor failed: no pool may
                # be taken below its minimum by a delete, wherever that delete lands.
                "active_after": sum(
                    other is not instance and other.provisioning not in ("Deleting", "Failed")
                    for other in scale_set.instances.values()
                ),
            }
        )

    def wake(self, due: datetime) -> None:
        """Run the control loops again at `due` (simulated time)."""
        if due > self.at and due not in self._wakeups:
            heapq.heappush(self._wakeups, due)

    def wake_in(self, seconds: float) -> None:
        self.wake(self.at + timedelta(seconds=seconds))

    def start_delay(self, pod: Obj) -> float:
        if self._bootstrapping:
            return 0.0
        owner = controller_of(pod)
        for uid in (pod["metadata"]["uid"], owner["uid"] if owner else ""):
            if uid in self.start_overrides:
                return self.start_overrides[uid]
        return self.spec.start_seconds

    def replace_delay(self) -> float:
        return 0.0 if self._bootstrapping else self.spec.replace_seconds

    # -- the store ------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def new_uid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def next_pod_cidr(self) -> int:
        return next(self._cidrs) % 256

    def generate_name(self, resource: str, namespace: str, prefix: str) -> str:
        while True:
            name = prefix + "".join(self._rng.choice(NAME_ALPHABET) for _ in range(5))
            if (namespace, name) not in self.store[resource]:
                return name

    def touch(self, obj: Obj) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def add(self, resource: str, obj: Obj) -> Obj:
        metadata = obj["metadata"]
        metadata.setdefault("uid", self.new_uid())
        metadata.setdefault("creationTimestamp", ts(self.at))
        self.touch(obj)
        self.store[resource][key_of(obj)] = obj
        return obj

    def remove(self, resource: str, key: tuple[str, str]) -> Obj | None:
        obj = self.store[resource].pop(key, None)
        if obj is not None:
            self._rv += 1
            uid = obj["metadata"]["uid"]
            for table in (self.starting, self.booted, self.deleting, self.start_overrides):
                table.pop(uid, None)
            self.completes.discard(uid)
        return obj

    def pods_on(self, node: str) -> list[Obj]:
        return [p for p in self.store["pods"].values() if p["spec"].get("nodeName") == node]

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        found = self.store[resource].get((namespace, name))
        if found is None:
            raise not_found(BY_RESOURCE[resource], name)
        return found

    def objects(self, resource: str, namespace: str | None = None) -> list[Obj]:
        """Objects in key order (namespace, name), as etcd lists them."""
        items = self.store[resource]
        keys = sorted(k for k in items if namespace is None or k[0] == namespace)
        return [items[k] for k in keys]

    # -- pod deletion ---------------------------------------------------------------------------

    def terminate(self, pod: Obj, grace: int | None) -> None:
        """Delete a pod gracefully: `deletionTimestamp` now + grace; gone once the kubelet is done.

        Unbound and finished pods go at once, as does a grace period of 0 (a forced delete)."""
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        if not pod["spec"].get("nodeName") or terminal(pod):
            grace = 0
        uid = pod["metadata"]["uid"]
        if grace <= 0:
            self.remove("pods", key_of(pod))
            return
        due = self.at + timedelta(seconds=grace)
        if uid in self.deleting and self.deleting[uid] <= due:
            return
        self.deleting[uid] = due
        pod["metadata"]["deletionTimestamp"] = ts(due)
        pod["metadata"]["deletionGracePeriodSeconds"] = grace
        self.touch(pod)
        self.wake(due)

    # -- API operations (callers sync first) --------------------------------------------------

    def _check_preconditions(self, kind: Kind, obj: Obj, options: Obj) -> None:
        wanted = options.get("preconditions") or {}
        metadata = obj["metadata"]
        if wanted.get("uid") and wanted["uid"] != metadata["uid"]:
            raise conflict(
                kind,
                metadata["name"],
                f"Precondition failed: UID in precondition: {wanted['uid']}, "
                f"UID in object meta: {metadata['uid']}",
            )
        if (
            wanted.get("resourceVersion")
            and wanted["resourceVersion"] != metadata["resourceVersion"]
        ):
            raise conflict(
                kind,
                metadata["name"],
                f"Precondition failed: ResourceVersion in precondition: "
                f"{wanted['resourceVersion']}, ResourceVersion in object meta: "
                f"{metadata['resourceVersion']}",
            )

    def _validated_node(self, old: Obj, new: Any) -> Obj:
        name = old["metadata"]["name"]
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise invalid(NODES, name, "metadata", "Required value")
        metadata = new["metadata"]
        if metadata.get("name", name) != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({metadata.get('name')}) does not match the name on "
                f"the URL ({name})",
            )
        if metadata.get("uid", old["metadata"]["uid"]) != old["metadata"]["uid"]:
            raise invalid(NODES, name, "metadata.uid", "field is immutable")
        version = metadata.get("resourceVersion")
        if version and version != old["metadata"]["resourceVersion"]:
            raise conflict(
                NODES,
                name,
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
            )
        for field in ("labels", "annotations"):
            values = metadata.get(field)
            if values is None:
                continue
            if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()
            ):
                raise invalid(NODES, name, f"metadata.{field}", "must map strings to strings")
        spec = new.get("spec")
        if spec is None:
            spec = new["spec"] = {}
        if not isinstance(spec, dict):
            raise invalid(NODES, name, "spec", "must be an object")
        if not isinstance(spec.get("unschedulable", False), bool):
            raise invalid(NODES, name, "spec.unschedulable", "must be a boolean")
        if spec.get("providerID", old["spec"].get("providerID")) != old["spec"].get("providerID"):
            raise invalid(NODES, name, "spec.providerID", "node updates may not change providerID")
        for taint in spec.get("taints") or []:
            if not isinstance(taint, dict) or not taint.get("key"):
                raise invalid(NODES, name, "spec.taints", "each taint needs a key")
            if taint.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise invalid(
                    NODES,
                    name,
                    "spec.taints.effect",
                    f'Unsupported value: "{taint.get("effect")}": supported values: '
                    '"NoSchedule", "PreferNoSchedule", "NoExecute"',
                )
        if not spec.get("unschedulable"):
            spec.pop("unschedulable", None)
        # Immutable or owned elsewhere: identity, creation, and the kubelet's status.
        new["kind"], new["apiVersion"] = "Node", "v1"
        for field in ("uid", "creationTimestamp", "resourceVersion"):
            metadata[field] = old["metadata"][field]
        metadata["name"] = name
        new["status"] = copy.deepcopy(old["status"])
        return new

    def patch_node(self, name: str, content_type: str, body: Any, dry_run: bool = False) -> Obj:
        node = self.get("nodes", "", name)
        try:
            patched = patch.apply(content_type, node, body)
        except patch.PatchError as error:
            reason = {400: "BadRequest", 415: "UnsupportedMediaType"}.get(error.status, "Invalid")
            raise ApiError(error.status, reason, str(error)) from None
        return self._store_node(node, self._validated_node(node, patched), dry_run)

    def replace_node(self, name: str, body: Any, dry_run: bool = False) -> Obj:
        node = self.get("nodes", "", name)
        if isinstance(body, dict) and body.get("kind") not in (None, "Node"):
            raise ApiError(400, "BadRequest", f"expected a Node, got {body.get('kind')}")
        return self._store_node(node, self._validated_node(node, copy.deepcopy(body)), dry_run)

    def _store_node(self, old: Obj, new: Obj, dry_run: bool) -> Obj:
        if dry_run or new == old:
            return copy.deepcopy(new)
        self.store["nodes"][key_of(old)] = new
        self.touch(new)
        answer = copy.deepcopy(new)  # the lifecycle controller reacts after the write
        controllers.reconcile(self)
        return answer

    def delete_node(self, name: str, options: Obj, dry_run: bool = False) -> Obj:
        node = self.get("nodes", "", name)
        self._check_preconditions(NODES, node, options)
        uid = node["metadata"]["uid"]
        if not dry_run:
            self.remove("nodes", ("", name))
            self.unregistered[name] = self.at
            controllers.reconcile(self)
        return success(NODES, name, uid)

    def delete_pod(self, namespace: str, name: str, options: Obj, dry_run: bool = False) -> Obj:
        pod = self.get("pods", namespace, name)
        self._check_preconditions(PODS, pod, options)
        grace = options.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or grace < 0):
            raise invalid(PODS, name, "gracePeriodSeconds", "must be a non-negative integer")
        if dry_run:
            return copy.deepcopy(pod)
        self.terminate(pod, grace)
        answer = copy.deepcopy(pod)
        controllers.reconcile(self)
        return answer

    def budgets_for(self, pod: Obj) -> list[Obj]:
        """The PDBs the eviction subresource applies (an empty selector matches nothing here)."""
        labels = pod["metadata"].get("labels") or {}
        return [
            pdb
            for pdb in self.objects("poddisruptionbudgets", pod["metadata"]["namespace"])
            if not selector_is_empty(pdb["spec"].get("selector"))
            and label_selector_matches(pdb["spec"]["selector"], labels)
        ]

    def evict(self, namespace: str, name: str, body: Any, dry_run: bool = False) -> Obj:
        """POST pods/eviction: the API server's checks, in its order."""
        if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
            raise ApiError(400, "BadRequest", "the body must be a policy/v1 Eviction")
        if body.get("apiVersion") not in (None, "policy/v1", "policy/v1beta1"):
            raise ApiError(
                400, "BadRequest", f"unsupported Eviction version {body.get('apiVersion')}"
            )
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
        if meta.get("namespace", namespace) != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        options = body.get("deleteOptions") or {}
        try:
            pod = self.get("pods", namespace, name)
            self._check_preconditions(PODS, pod, options)
        except ApiError as error:
            self._log(namespace, name, None, "rejected", error.code, error.message)
            raise
        node = pod["spec"].get("nodeName")
        grace = options.get("gracePeriodSeconds")
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed", "Pending") or terminating(pod):
            if not dry_run:
                self.terminate(pod, grace)
                controllers.reconcile(self)
            self._log(namespace, name, node, "deleted", 201, f"pod was {phase}; no budget check")
            return success(PODS, name, pod["metadata"]["uid"], 201)
        matching = self.budgets_for(pod)
        if len(matching) > 1:
            message = (
                "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                "does not support."
            )
            self._log(
                namespace,
                name,
                node,
                "rejected",
                500,
                message,
                [b["metadata"]["name"] for b in matching],
            )
            raise ApiError(
                500,
                "InternalError",
                f"Internal error occurred: {message}",
                {"causes": [{"message": message}]},
            )
        budget = matching[0] if matching else None
        names = [budget["metadata"]["name"]] if budget else []
        if budget is not None and not self._unhealthy_may_go(pod, budget):
            self._check_budget(budget, namespace, name, node)
        if not dry_run:
            self.terminate(pod, grace)
            controllers.reconcile(self)  # the budget counts the terminating pod at once
        self._log(namespace, name, node, "evicted", 201, "evicted", names)
        return success(PODS, name, pod["metadata"]["uid"], 201)

    def _unhealthy_may_go(self, pod: Obj, budget: Obj) -> bool:
        """A pod that is not Ready may go without using the budget (IfHealthyBudget/AlwaysAllow)."""
        if pod_ready(pod):
            return False
        status = budget.get("status") or {}
        if budget["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return True
        desired = int(status.get("desiredHealthy", 0))
        return int(status.get("currentHealthy", 0)) >= desired > 0

    def _check_budget(self, budget: Obj, namespace: str, name: str, node: str | None) -> None:
        status = budget.get("status") or {}
        pdb = budget["metadata"]["name"]
        cause: str | None = None
        if int(status.get("observedGeneration", 0)) < int(budget["metadata"].get("generation", 1)):
            cause = f"The disruption budget {pdb} is still being processed by the server."
        elif int(status.get("disruptionsAllowed", 0)) < 0:
            message = (
                f'poddisruptionbudgets.policy "{pdb}" is forbidden: '
                "pdb disruptions allowed is negative"
            )
            self._log(namespace, name, node, "rejected", 403, message, [pdb])
            raise ApiError(403, "Forbidden", message, _details(PDBS, pdb))
        elif int(status.get("disruptionsAllowed", 0)) == 0:
            cause = (
                f"The disruption budget {pdb} needs {status.get('desiredHealthy', 0)} healthy "
                f"pods and has {status.get('currentHealthy', 0)} currently"
            )
        if cause is None:
            return
        message = "Cannot evict pod as it would violate the pod's disruption budget."
        self._log(namespace, name, node, "blocked", 429, cause, [pdb])
        raise ApiError(
            429,
            "TooManyRequests",
            message,
            {"causes": [{"reason": "DisruptionBudget", "message": cause}]},
        )

    def _log(
        self,
        namespace: str,
        name: str,
        node: str | None,
        outcome: str,
        code: int,
        message: str,
        budgets: list[str] | None = None,
    ) -> None:
        self.evictions.append(
            {
                "at": ts(self.at),
                "namespace": namespace,
                "pod": name,
                "node": node,
                "outcome": outcome,
                "code": code,
                "budgets": budgets or [],
                "message": message,
            }
        )

    # -- derived views --------------------------------------------------------------------------

    def namespaces_used(self) -> set[str]:
        return {key[0] for key in self.store["namespaces"]}

    def describe_pod(self, pod: Obj) -> Obj:
        owner = controller_of(pod)
        return {
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
            "phase": pod["status"].get("phase"),
            "ready": pod_ready(pod),
            "terminating": terminating(pod),
            "mirror": is_mirror(pod),
            "owner": f"{owner['kind']}/{owner['name']}" if owner else None,
        }


def _workload(pod: Obj) -> bool:
    """A pod a drain must move: not a DaemonSet's, not a static pod's mirror, not finished."""
    owners = pod["metadata"].get("ownerReferences") or []
    daemon = any(o.get("kind") == "DaemonSet" for o in owners)
    mirror = "kubernetes.io/config.mirror" in (pod["metadata"].get("annotations") or {})
    done = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    return not (daemon or mirror or done)


class Clusters:
    """The cluster of whichever world is current: built anew when the world is replaced.

    Without `name`: every scale set's instances are nodes, and `workloads_for(world)` gives the
    workloads (default: `world.scenario.workloads` if the scenario has that field, else none).
    With `name`: the scenario's cluster of that name, its scale sets and workloads (`scope`)."""

    def __init__(
        self,
        get_world: Callable[[], World],
        workloads_for: Callable[[World], Workloads | dict[str, Any] | None] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._get_world = get_world
        self.name = name
        self._workloads_for = workloads_for or (
            lambda world: getattr(world.scenario, "workloads", None)
        )
        self._cluster: Cluster | None = None

    def _build(self, world: World) -> Cluster:
        if self.name is None:
            return Cluster(world, self._workloads_for(world))
        spec = scope.cluster_spec(world.scenario, self.name)
        members = [s.name for s in scope.members(world.scenario, spec)]
        return Cluster(world, scope.workloads_of(world.scenario, spec), members)

    def __call__(self) -> Cluster:
        world = self._get_world()
        if self._cluster is None or self._cluster.world is not world:
            self._cluster = self._build(world)
        return self._cluster
