"""The simulated cluster without HTTP: nodes from the world, controllers, scheduler, evictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.sim.clock import SimClock
from local.sim.kube.model import ApiError, Cluster, Clusters
from local.sim.kube.objects import node_ready, pod_ready, ts
from local.sim.scenario import parse_scenario
from local.sim.world import World

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
SUB = "6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64"
WORKERS = "aks-workers-11111111-vmss"
BATCH = "aks-batch-22222222-vmss"
SMP = "application/strategic-merge-patch+json"


class StoppedClock(SimClock):
    """A simulator clock that moves only when told to."""

    def __init__(self) -> None:
        super().__init__(T0, 1)
        self.at = T0

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at


def vmss(name: str, capacity: int, group: str, **extra: Any) -> dict[str, Any]:
    return {
        "resource_group": "MC_rg-Test_aks-test_westeurope",
        "name": name,
        "capacity": capacity,
        "node_group": group,
        "zones": ["1", "2", "3"],
    } | extra


class Sim:
    """A world and its cluster on a stopped clock."""

    def __init__(self, workloads: dict[str, Any], *scale_sets: dict[str, Any]) -> None:
        data = {
            "subscription": SUB,
            "clock": {"start": T0.isoformat()},
            "scale_sets": list(scale_sets) or [vmss(WORKERS, 3, "workers")],
        }
        self.clock = StoppedClock()
        self.world = World(parse_scenario(data, source="test"), self.clock)
        self.cluster = Cluster(self.world, workloads)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.cluster.sync()

    def scale_set(self, name: str = WORKERS) -> Any:
        return next(s for s in self.world.scale_sets.values() if s.name == name)

    def act(self, action: str, ids: list[str], name: str = WORKERS) -> None:
        self.world.instance_action(
            self.scale_set(name),
            action,
            ids,
            fault=None,
            operation=f"VirtualMachineScaleSetVMs_{action}",
        )
        self.cluster.sync()

    def delete(self, ids: list[str], name: str = WORKERS) -> None:
        self.world.delete_instances(
            self.scale_set(name),
            ids,
            force=False,
            fault=None,
            operation="VirtualMachineScaleSets_DeleteInstances",
        )
        self.cluster.sync()

    def node(self, name: str) -> dict[str, Any]:
        return self.cluster.get("nodes", "", name)

    def node_names(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.cluster.objects("nodes")]

    def pods(self, prefix: str = "", namespace: str = "default") -> list[dict[str, Any]]:
        return [
            p
            for p in self.cluster.objects("pods", namespace)
            if p["metadata"]["name"].startswith(prefix)
        ]

    def pods_on(self, node: str, prefix: str = "") -> list[dict[str, Any]]:
        return [p for p in self.cluster.pods_on(node) if p["metadata"]["name"].startswith(prefix)]

    def pdb(self, name: str) -> dict[str, Any]:
        return self.cluster.get("poddisruptionbudgets", "default", name)["status"]


def node(n: int, prefix: str = WORKERS) -> str:
    return f"{prefix}00000{n}"


def web(replicas: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "replicas": replicas,
        "node_selector": {"elastisys.io/node-group": "workers"},
    } | extra


# -- nodes from instances --------------------------------------------------------------------------


def test_nodes_are_the_booted_instances_with_aks_provider_ids_labels_and_capacity() -> None:
    sim = Sim({})
    assert sim.node_names() == [node(0), node(1), node(2)]
    first = sim.node(node(1))
    assert first["spec"]["providerID"] == (
        f"azure:///subscriptions/{SUB}/resourceGroups/mc_rg-test_aks-test_westeurope/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{WORKERS}/virtualMachines/1"
    )
    labels = first["metadata"]["labels"]
    assert labels["elastisys.io/node-group"] == "workers"
    assert labels["kubernetes.azure.com/agentpool"] == "workers"
    assert labels["topology.kubernetes.io/zone"] == "westeurope-2"
    assert labels["node.kubernetes.io/instance-type"] == "Standard_D4s_v5"
    assert labels["kubernetes.io/hostname"] == node(1)
    assert labels["kubernetes.io/os"] == "linux"
    status = first["status"]
    assert status["capacity"] | {} == status["capacity"]
    assert (
        status["capacity"]["cpu"],
        status["capacity"]["memory"],
        status["capacity"]["pods"],
    ) == (
        "4",
        f"{16 * 1024 * 1024}Ki",
        "110",
    )
    assert status["allocatable"]["cpu"] == "3860m"
    assert node_ready(first)
    assert first["metadata"]["creationTimestamp"] == ts(T0)


def test_a_new_instance_becomes_a_node_once_it_has_booted() -> None:
    sim = Sim({})
    sim.world.update_scale_set(
        sim.scale_set(),
        capacity=4,
        image=None,
        tags=None,
        fault=None,
        operation="VirtualMachineScaleSets_Update",
    )
    sim.advance(60)
    assert node(3) not in sim.node_names(), "still Creating"
    sim.advance(60)
    created = sim.node(node(3))
    assert node_ready(created)
    booted = sim.scale_set().instances[3].booted_at
    assert created["metadata"]["creationTimestamp"] == ts(booted)
    ready = next(c for c in created["status"]["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == ts(booted)


def test_power_off_makes_the_node_not_ready_and_its_pods_are_evicted_after_five_minutes() -> None:
    sim = Sim({"deployments": [web(3)]})
    victim = node(0)
    (pod,) = sim.pods_on(victim, "web")
    sim.advance(10)
    sim.act("powerOff", ["0"])
    ready = next(c for c in sim.node(victim)["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == (
        "False",
        ts(T0 + timedelta(seconds=10)),
    )
    taints = {(t["key"], t["effect"]) for t in sim.node(victim)["spec"]["taints"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in taints
    assert not pod_ready(sim.cluster.get("pods", "default", pod["metadata"]["name"]))
    sim.advance(60)  # stopped by now: the cloud provider's shutdown taint
    taints = {(t["key"], t["effect"]) for t in sim.node(victim)["spec"]["taints"]}
    assert ("node.cloudprovider.kubernetes.io/shutdown", "NoSchedule") in taints
    sim.advance(250)  # 310 s NotReady: past the pods' 300 s toleration
    stuck = sim.cluster.get("pods", "default", pod["metadata"]["name"])
    assert stuck["metadata"]["deletionTimestamp"], "the taint manager deleted it"
    sim.advance(60)
    assert sim.cluster.store["pods"].get(("default", pod["metadata"]["name"])), (
        "no kubelet to confirm: it stays Terminating"
    )
    running = [p for p in sim.pods("web") if pod_ready(p)]
    assert len(running) == 3 and all(p["spec"]["nodeName"] != victim for p in running)
    sim.act("start", ["0"])
    sim.advance(60)
    assert node_ready(sim.node(victim))
    assert ("default", pod["metadata"]["name"]) not in sim.cluster.store["pods"]


def test_a_deleted_instance_takes_its_node_and_pods_and_they_are_replaced_elsewhere() -> None:
    sim = Sim({"deployments": [web(3)], "daemonsets": [{"name": "kube-proxy"}]})
    sim.delete(["2"])
    assert not node_ready(sim.node(node(2))), "NotReady while the VM is being deleted"
    sim.advance(61)
    assert sim.node_names() == [node(0), node(1)]
    assert sim.pods_on(node(2)) == []
    sim.advance(10)
    pods = sim.pods("web")
    assert len(pods) == 3 and all(pod_ready(p) for p in pods)
    assert len(sim.cluster.objects("pods", "kube-system")) == 2


def test_a_restart_makes_the_node_not_ready_then_ready_and_restarts_its_containers() -> None:
    sim = Sim({"deployments": [web(3)]})
    scale_set = sim.scale_set()
    reboot = sim.world.reboot_seconds(scale_set, scale_set.instances[1])
    assert 60 <= reboot <= 120, "the default reboot latency, fixed per instance by the seed"
    sim.act("restart", ["1"])
    assert not node_ready(sim.node(node(1)))
    sim.advance(reboot - 1)
    assert not node_ready(sim.node(node(1)))
    sim.advance(1)
    assert node_ready(sim.node(node(1)))
    (pod,) = sim.pods_on(node(1), "web")
    assert not pod_ready(pod), "containers start again after the start delay"
    sim.advance(5)
    (pod,) = sim.pods_on(node(1), "web")
    assert pod_ready(pod)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1


# -- Kubernetes-owned node state -------------------------------------------------------------------


def test_cordon_persists_and_the_lifecycle_controller_then_adds_the_unschedulable_taint() -> None:
    sim = Sim({})
    answer = sim.cluster.patch_node(node(0), SMP, {"spec": {"unschedulable": True}})
    assert answer["spec"]["unschedulable"] is True
    assert "taints" not in answer["spec"], "the taint comes from a controller, after the write"
    sim.cluster.patch_node(
        node(0),
        "application/merge-patch+json",
        {
            "metadata": {
                "labels": {"team": "ops", "kubernetes.io/os": "windows"},
                "annotations": {"a": "b"},
            }
        },
    )
    sim.advance(30)
    cordoned = sim.node(node(0))
    assert cordoned["spec"]["taints"] == [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ]
    assert cordoned["metadata"]["labels"]["team"] == "ops"
    assert cordoned["metadata"]["labels"]["kubernetes.io/os"] == "linux", "the kubelet's own label"
    assert cordoned["metadata"]["annotations"]["a"] == "b"
    sim.cluster.patch_node(node(0), SMP, {"spec": {"unschedulable": None}})
    sim.advance(1)
    assert "unschedulable" not in sim.node(node(0))["spec"]
    assert "taints" not in sim.node(node(0))["spec"]


@pytest.mark.parametrize(
    ("content_type", "body", "code", "reason"),
    [
        (SMP, {"spec": {"unschedulable": "yes"}}, 422, "Invalid"),
        (SMP, {"metadata": {"labels": {"a": 1}}}, 422, "Invalid"),
        (SMP, {"metadata": {"resourceVersion": "1"}}, 409, "Conflict"),
        (SMP, {"metadata": {"name": "other"}}, 400, "BadRequest"),
        (SMP, {"spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}}, 422, "Invalid"),
        (
            "application/json-patch+json",
            [{"op": "test", "path": "/spec/x", "value": 1}],
            422,
            "Invalid",
        ),
        ("text/plain", {}, 415, "UnsupportedMediaType"),
    ],
)
def test_bad_node_patches_are_refused_and_change_nothing(
    content_type: str, body: Any, code: int, reason: str
) -> None:
    sim = Sim({})
    sim.cluster.patch_node(node(0), SMP, {"metadata": {"labels": {"x": "y"}}})
    before = sim.node(node(0))["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as raised:
        sim.cluster.patch_node(node(0), content_type, body)
    assert (raised.value.code, raised.value.reason) == (code, reason)
    assert sim.node(node(0))["metadata"]["resourceVersion"] == before


def test_a_node_deleted_by_a_client_is_registered_again_by_its_kubelet() -> None:
    sim = Sim({"deployments": [web(3)]})
    old = sim.node(node(0))
    sim.cluster.patch_node(node(0), SMP, {"metadata": {"labels": {"team": "ops"}}})
    status = sim.cluster.delete_node(node(0), {})
    assert (status["status"], status["details"]["uid"]) == ("Success", old["metadata"]["uid"])
    assert node(0) not in sim.node_names()
    assert sim.pods_on(node(0)) == []
    sim.advance(11)
    again = sim.node(node(0))
    assert again["metadata"]["uid"] != old["metadata"]["uid"]
    assert "team" not in again["metadata"]["labels"]


# -- workloads -------------------------------------------------------------------------------------


def test_the_scheduler_respects_node_selectors_requests_and_cordoned_nodes() -> None:
    sim = Sim(
        {
            "deployments": [
                web(4, requests={"cpu": "1", "memory": "1Gi"}),
                {
                    "name": "jobs",
                    "replicas": 2,
                    "node_selector": {"elastisys.io/node-group": "batch"},
                },
                {"name": "huge", "replicas": 1, "requests": {"cpu": "5"}},
            ]
        },
        vmss(WORKERS, 2, "workers"),
        vmss(BATCH, 1, "batch", sku="Standard_D2s_v5"),
    )
    assert {p["spec"]["nodeName"] for p in sim.pods("jobs")} == {node(0, BATCH)}
    assert sorted(len(sim.pods_on(node(n), "web")) for n in (0, 1)) == [2, 2], "spread"
    (huge,) = sim.pods("huge")
    assert huge["status"]["phase"] == "Pending" and not huge["spec"].get("nodeName")
    scheduled = next(c for c in huge["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["reason"] == "Unschedulable"
    assert scheduled["message"] == "0/3 nodes are available: 3 Insufficient cpu."
    sim.cluster.patch_node(node(1), SMP, {"spec": {"unschedulable": True}})
    for pod in sim.pods_on(node(1), "web"):
        sim.cluster.delete_pod("default", pod["metadata"]["name"], {})
    sim.advance(60)
    bound = [
        p["spec"].get("nodeName")
        for p in sim.pods("web")
        if not p["metadata"].get("deletionTimestamp")
    ]
    assert sorted(bound, key=str) == [None, node(0), node(0), node(0)], "4 x 1 cpu > 3.86 cpu"


def test_a_deleted_pod_terminates_after_its_grace_period_and_is_replaced_after_a_delay() -> None:
    sim = Sim({"deployments": [web(2, termination_grace_seconds=20)], "start_seconds": 5})
    name = sim.pods("web")[0]["metadata"]["name"]
    answer = sim.cluster.delete_pod("default", name, {})
    assert answer["metadata"]["deletionTimestamp"] == ts(T0 + timedelta(seconds=20))
    assert answer["status"]["phase"] == "Running"
    originals = {p["metadata"]["name"] for p in sim.pods("web")}
    sim.advance(1)
    assert len(sim.pods("web")) == 2, "the replacement waits for the controller's delay"
    sim.advance(1)
    fresh = [p for p in sim.pods("web") if p["metadata"]["name"] not in originals]
    assert len(fresh) == 1 and fresh[0]["status"]["phase"] == "Pending"
    assert fresh[0]["spec"]["nodeName"], "bound at once"
    sim.advance(5)
    assert pod_ready(sim.cluster.get("pods", "default", fresh[0]["metadata"]["name"]))
    sim.advance(12)
    assert ("default", name) in sim.cluster.store["pods"]
    sim.advance(1)
    assert ("default", name) not in sim.cluster.store["pods"]


def test_a_shorter_second_delete_and_a_zero_grace_period_end_sooner() -> None:
    sim = Sim({"deployments": [web(2)]})
    first, second = (p["metadata"]["name"] for p in sim.pods("web"))
    sim.cluster.delete_pod("default", first, {})
    again = sim.cluster.delete_pod("default", first, {"gracePeriodSeconds": 5})
    assert again["metadata"]["deletionTimestamp"] == ts(T0 + timedelta(seconds=5))
    sim.cluster.delete_pod("default", second, {"gracePeriodSeconds": 0})
    assert ("default", second) not in sim.cluster.store["pods"]


def test_daemonsets_run_one_pod_per_matching_node_including_cordoned_and_new_ones() -> None:
    sim = Sim(
        {
            "daemonsets": [
                {"name": "agent", "node_selector": {"elastisys.io/node-group": "workers"}}
            ]
        },
        vmss(WORKERS, 2, "workers"),
        vmss(BATCH, 1, "batch"),
    )
    pods = sim.cluster.objects("pods", "kube-system")
    assert sorted(p["spec"]["nodeName"] for p in pods) == [node(0), node(1)]
    assert {t["key"] for t in pods[0]["spec"]["tolerations"]} >= {
        "node.kubernetes.io/unschedulable"
    }
    sim.cluster.patch_node(node(0), SMP, {"spec": {"unschedulable": True}})
    (pod,) = sim.pods_on(node(0))
    sim.cluster.delete_pod("kube-system", pod["metadata"]["name"], {"gracePeriodSeconds": 0})
    sim.world.update_scale_set(
        sim.scale_set(),
        capacity=3,
        image=None,
        tags=None,
        fault=None,
        operation="VirtualMachineScaleSets_Update",
    )
    sim.advance(100)  # booted, and the controller's replacement delay passed
    sim.advance(10)
    assert sorted(p["spec"]["nodeName"] for p in sim.cluster.objects("pods", "kube-system")) == [
        node(0),
        node(1),
        node(2),
    ]
    status = sim.cluster.get("daemonsets", "kube-system", "agent")["status"]
    assert (status["desiredNumberScheduled"], status["numberReady"]) == (3, 3)
    assert status["currentNumberScheduled"] == 3


def test_mirror_pods_are_owned_by_their_node_and_come_back_when_deleted() -> None:
    sim = Sim({"static_pods": [{"name": "etcd"}]})
    mirror = sim.cluster.get("pods", "kube-system", f"etcd-{node(0)}")
    assert "kubernetes.io/config.mirror" in mirror["metadata"]["annotations"]
    assert mirror["metadata"]["ownerReferences"][0] | {"uid": ""} == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": node(0),
        "uid": "",
        "controller": True,
    }
    sim.cluster.delete_pod("kube-system", f"etcd-{node(0)}", {"gracePeriodSeconds": 0})
    sim.advance(10)
    assert (
        sim.cluster.get("pods", "kube-system", f"etcd-{node(0)}")["metadata"]["uid"]
        != mirror["metadata"]["uid"]
    )


# -- budgets and eviction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "replicas", "desired", "allowed"),
    [
        ({"min_available": 2}, 3, 2, 1),
        ({"min_available": "50%"}, 3, 2, 1),
        ({"max_unavailable": 1}, 4, 3, 1),
        ({"max_unavailable": "25%"}, 8, 6, 2),
        ({"max_unavailable": "10%"}, 3, 2, 1),
        ({"min_available": "100%"}, 3, 3, 0),
    ],
)
def test_budget_status_follows_the_api_rounding(
    budget: dict[str, Any], replicas: int, desired: int, allowed: int
) -> None:
    sim = Sim(
        {"deployments": [web(replicas, pdb=budget)]},
        vmss(WORKERS, 4, "workers", sku="Standard_D16s_v5"),
    )
    status = sim.pdb("web")
    assert (status["desiredHealthy"], status["disruptionsAllowed"]) == (desired, allowed)
    assert (status["currentHealthy"], status["expectedPods"]) == (replicas, replicas)


def test_a_percentage_budget_over_pods_without_a_controller_allows_no_disruption() -> None:
    sim = Sim(
        {
            "pods": [{"name": "solo", "labels": {"app": "solo"}}],
            "pdbs": [{"name": "solo", "selector": {"app": "solo"}, "max_unavailable": "50%"}],
        }
    )
    status = sim.pdb("solo")
    assert status["disruptionsAllowed"] == 0
    condition = next(c for c in status["conditions"] if c["type"] == "DisruptionAllowed")
    assert (condition["status"], condition["reason"]) == ("False", "SyncFailed")


def test_eviction_blocked_by_a_budget_succeeds_once_a_replacement_is_ready() -> None:
    sim = Sim({"deployments": [web(3, pdb={"min_available": 2})]})
    first, second, _ = (p["metadata"]["name"] for p in sim.pods("web"))
    assert sim.cluster.evict("default", first, {})["status"] == "Success"
    assert sim.pdb("web")["disruptionsAllowed"] == 0, "counted at once"
    with pytest.raises(ApiError) as raised:
        sim.cluster.evict("default", second, {"apiVersion": "policy/v1beta1", "kind": "Eviction"})
    status = raised.value.status()
    assert (status["code"], status["reason"]) == (429, "TooManyRequests")
    assert status["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
        }
    ]
    sim.advance(2 + 5)  # replacement created, then Running and Ready
    assert sim.pdb("web")["disruptionsAllowed"] == 1
    assert sim.cluster.evict("default", second, {})["status"] == "Success"
    outcomes = [(e["pod"], e["outcome"], e["code"]) for e in sim.cluster.evictions]
    assert outcomes == [(first, "evicted", 201), (second, "blocked", 429), (second, "evicted", 201)]


def test_eviction_with_two_matching_budgets_is_an_internal_error() -> None:
    sim = Sim(
        {
            "deployments": [web(3, pdb={"min_available": 1})],
            "pdbs": [{"name": "extra", "selector": {"app": "web"}, "max_unavailable": 1}],
        }
    )
    name = sim.pods("web")[0]["metadata"]["name"]
    with pytest.raises(ApiError) as raised:
        sim.cluster.evict("default", name, {})
    assert (raised.value.code, raised.value.reason) == (500, "InternalError")
    assert "more than one PodDisruptionBudget" in raised.value.message
    assert not sim.cluster.get("pods", "default", name)["metadata"].get("deletionTimestamp")


def test_evicting_a_pod_that_is_not_running_deletes_it_without_a_budget_check() -> None:
    sim = Sim(
        {
            "pods": [
                {"name": "done", "phase": "Succeeded", "labels": {"app": "x"}},
                {"name": "waiting", "requests": {"cpu": "64"}, "labels": {"app": "x"}},
            ],
            "pdbs": [{"name": "all-x", "selector": {"app": "x"}, "min_available": 5}],
        }
    )
    assert sim.cluster.get("pods", "default", "done")["status"]["phase"] == "Succeeded"
    assert sim.cluster.get("pods", "default", "waiting")["status"]["phase"] == "Pending"
    for name in ("done", "waiting"):
        assert sim.cluster.evict("default", name, {})["status"] == "Success"
        assert ("default", name) not in sim.cluster.store["pods"], "gone at once"


def test_evicting_a_gone_pod_is_404_and_a_stale_uid_is_409() -> None:
    sim = Sim({"deployments": [web(2)]})
    with pytest.raises(ApiError) as gone:
        sim.cluster.evict("default", "nope", {})
    assert (gone.value.code, gone.value.status()["details"]) == (
        404,
        {"name": "nope", "kind": "pods"},
    )
    name = sim.pods("web")[0]["metadata"]["name"]
    with pytest.raises(ApiError) as stale:
        sim.cluster.evict("default", name, {"deleteOptions": {"preconditions": {"uid": "other"}}})
    assert (
        stale.value.code == 409
        and "Precondition failed: UID in precondition: other" in stale.value.message
    )


# -- identity of the cluster -----------------------------------------------------------------------


def test_the_cluster_follows_a_replaced_world() -> None:
    holder = Sim({"deployments": [web(1)]})
    clusters = Clusters(lambda: holder.world, lambda world: {"deployments": [web(1)]})
    first = clusters()
    assert clusters() is first
    holder.world = Sim({}).world
    assert clusters() is not first and clusters().world is holder.world


def test_resource_versions_change_with_the_object_only() -> None:
    sim = Sim({"deployments": [web(2)]})
    before = {
        n["metadata"]["name"]: n["metadata"]["resourceVersion"]
        for n in sim.cluster.objects("nodes")
    }
    sim.advance(600)
    assert {
        n["metadata"]["name"]: n["metadata"]["resourceVersion"]
        for n in sim.cluster.objects("nodes")
    } == before
    sim.cluster.patch_node(node(0), SMP, {"metadata": {"labels": {"x": "y"}}})
    assert int(sim.node(node(0))["metadata"]["resourceVersion"]) > int(before[node(0)])
    assert int(sim.cluster.resource_version) >= int(
        sim.node(node(0))["metadata"]["resourceVersion"]
    )


def test_a_cluster_first_asked_after_a_power_off_still_has_that_node_not_ready() -> None:
    sim = Sim({})
    sim.world.instance_action(sim.scale_set(), "powerOff", ["2"], fault=None, operation="PowerOff")
    sim.clock.advance(60)
    late = Cluster(sim.world, {})
    assert [n["metadata"]["name"] for n in late.objects("nodes")] == [node(0), node(1), node(2)]
    assert not node_ready(late.get("nodes", "", node(2)))


def test_replacing_a_node_needs_its_current_resource_version() -> None:
    sim = Sim({})
    current = sim.node(node(0))
    edited = {**current, "metadata": {**current["metadata"], "labels": {"only": "this"}}}
    stale = {**edited, "metadata": {**edited["metadata"], "resourceVersion": "99999"}}
    with pytest.raises(ApiError) as raised:
        sim.cluster.replace_node(node(0), stale)
    assert raised.value.code == 409
    assert "the object has been modified" in raised.value.message
    replaced = sim.cluster.replace_node(node(0), edited)
    assert replaced["metadata"]["labels"] == {"only": "this"}
    assert replaced["status"] == current["status"], "status belongs to the kubelet"
    sim.advance(1)
    assert sim.node(node(0))["metadata"]["labels"]["kubernetes.io/hostname"] == node(0)


def test_dry_runs_check_but_change_nothing() -> None:
    sim = Sim({"deployments": [web(2, pdb={"min_available": 1})]})
    name = sim.pods("web")[0]["metadata"]["name"]
    before = sim.cluster.resource_version
    sim.cluster.evict("default", name, {}, dry_run=True)
    sim.cluster.delete_pod("default", name, {}, dry_run=True)
    assert sim.cluster.patch_node(node(0), SMP, {"spec": {"unschedulable": True}}, dry_run=True)[
        "spec"
    ]["unschedulable"]
    assert sim.cluster.resource_version == before
    assert not sim.cluster.get("pods", "default", name)["metadata"].get("deletionTimestamp")
    assert "unschedulable" not in sim.node(node(0))["spec"]
