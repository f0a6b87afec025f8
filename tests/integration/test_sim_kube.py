"""The simulated Kubernetes API through the real `kubernetes` client, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from local.sim.kube import Clusters, write_kubeconfig
from local.sim.kube.serve import Served, serve_in_thread, standalone_app, world_from
from local.sim.world import ScaleSet, World
from tests.simulator import SUBSCRIPTION, Simulator, scale_set, scenario

pytestmark = pytest.mark.integration

WORKERS = "aks-workers-11111111-vmss"
BATCH = "aks-batch-22222222-vmss"


def node(n: int, prefix: str = WORKERS) -> str:
    return f"{prefix}00000{n}"


def web(replicas: int, **extra: Any) -> dict[str, Any]:
    selector = {"elastisys.io/node-group": "workers"}
    return {"name": "web", "replicas": replicas, "node_selector": selector} | extra


class Kube:
    """A world served by the simulated API server, with real clients for it."""

    def __init__(self, served: Served, holder: dict[str, Any], kubeconfig: Path) -> None:
        self.served, self.holder, self.url = served, holder, served.url
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.policy = client.PolicyV1Api(api)

    @property
    def world(self) -> World:
        return self.holder["world"]

    def advance(self, seconds: float) -> None:
        self.served.call(lambda: self.world.clock.advance(seconds))

    def scale_set(self, name: str = WORKERS) -> ScaleSet:
        return next(s for s in self.world.scale_sets.values() if s.name == name)

    def act(self, action: str, ids: list[str]) -> None:
        self.served.call(
            lambda: self.world.instance_action(
                self.scale_set(), action, ids, fault=None, operation=action
            )
        )

    def delete_instances(self, ids: list[str]) -> None:
        self.served.call(
            lambda: self.world.delete_instances(
                self.scale_set(), ids, force=False, fault=None, operation="DeleteInstances"
            )
        )

    def web_pods(self) -> list[Any]:
        return self.core.list_namespaced_pod("default", label_selector="app=web").items

    def evict(self, name: str, namespace: str = "default") -> Any:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        return self.core.create_namespaced_pod_eviction(name, namespace, body)

    def admin(self, view: str) -> Any:
        return requests.get(f"{self.url}/_sim/kube/{view}", timeout=10).json()

    def fault(self, **fault: Any) -> list[dict[str, Any]]:
        """Inject a fault through the admin API; every fault, as the API lists them."""
        answer = requests.post(f"{self.url}/_sim/kube/faults", json=fault, timeout=10)
        assert answer.status_code == 201, answer.text
        return answer.json()["faults"]

    def now(self) -> datetime:
        return self.served.call(lambda: self.world.now())


def _data(workloads: dict[str, Any], *scale_sets: dict[str, Any]) -> dict[str, Any]:
    # A clock that barely moves by itself: the tests move it.
    return scenario(*scale_sets, speed=0.001) | {"workloads": workloads}


@pytest.fixture
def start_kube(tmp_path: Path) -> Iterator[Callable[..., Kube]]:
    """Serve a world built from workloads and scale sets; every server is stopped after."""
    with ExitStack() as stack:

        def start(workloads: dict[str, Any], *scale_sets: dict[str, Any]) -> Kube:
            holder: dict[str, Any] = {}
            clusters = Clusters(lambda: holder["world"], lambda _: holder["workloads"])

            def make() -> Any:
                holder["world"], holder["workloads"] = world_from(_data(workloads, *scale_sets))
                clusters()  # the cluster exists from the start, as a real one would
                return standalone_app(lambda: holder["world"], clusters)

            served = stack.enter_context(serve_in_thread(make))
            kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{served.url[-5:]}", served.url)
            return Kube(served, holder, kubeconfig)

        yield start


def test_the_client_lists_nodes_with_provider_ids_and_labels(start_kube) -> None:
    kube = start_kube({}, scale_set(WORKERS, 2), scale_set(BATCH, 1, zones=[]))
    nodes = kube.core.list_node().items
    assert [n.metadata.name for n in nodes] == [node(0, BATCH), node(0), node(1)]
    worker = nodes[2]
    assert worker.spec.provider_id == (
        f"azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/mc_rg-test_aks-test_westeurope/"
        f"providers/Microsoft.Compute/virtualMachineScaleSets/{WORKERS}/virtualMachines/1"
    )
    assert worker.metadata.labels["elastisys.io/node-group"] == "workers"
    assert worker.metadata.labels["topology.kubernetes.io/zone"] == "westeurope-2"
    assert nodes[0].metadata.labels["topology.kubernetes.io/zone"] == "0"
    assert worker.status.allocatable["pods"] == "110"
    ready = next(c for c in worker.status.conditions if c.type == "Ready")
    assert ready.status == "True" and ready.last_transition_time is not None
    assert kube.core.read_node(node(0)).metadata.uid == nodes[1].metadata.uid


def test_the_client_cordons_and_labels_a_node_and_the_lifecycle_taint_follows(start_kube) -> None:
    kube = start_kube({})
    patched = kube.core.patch_node(node(0), {"spec": {"unschedulable": True}})
    assert patched.spec.unschedulable is True
    taints = kube.core.read_node(node(0)).spec.taints
    assert [(t.key, t.effect) for t in taints] == [
        ("node.kubernetes.io/unschedulable", "NoSchedule")
    ]
    kube.core.patch_node(node(0), [{"op": "add", "path": "/metadata/labels/team", "value": "a"}])
    kube.core.patch_node(node(0), {"metadata": {"annotations": {"drain": "now"}}})
    kube.advance(120)
    after = kube.core.read_node(node(0))
    assert (after.metadata.labels["team"], after.metadata.annotations["drain"]) == ("a", "now")
    kube.core.patch_node(node(0), {"spec": {"unschedulable": None}})
    uncordoned = kube.core.read_node(node(0))
    assert not uncordoned.spec.unschedulable and not uncordoned.spec.taints


def test_pods_are_listed_by_node_with_a_field_selector_and_in_pages(start_kube) -> None:
    kube = start_kube(
        {"deployments": [web(4)], "daemonsets": [{"name": "kube-proxy"}]}, scale_set(WORKERS, 3)
    )
    on_node = kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node(0)}")
    assert on_node.items and all(p.spec.node_name == node(0) for p in on_node.items)
    assert {p.metadata.namespace for p in on_node.items} == {"default", "kube-system"}
    running = kube.core.list_namespaced_pod(
        "default", field_selector=f"spec.nodeName={node(0)},status.phase!=Succeeded"
    )
    assert {p.metadata.name for p in running.items} == {
        p.metadata.name for p in on_node.items if p.metadata.namespace == "default"
    }
    names, token, pages = [], None, 0
    while True:
        page = kube.core.list_pod_for_all_namespaces(limit=3, _continue=token)
        names += [f"{p.metadata.namespace}/{p.metadata.name}" for p in page.items]
        pages, token = pages + 1, page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(names)
    assert pages == 3 and len(names) == 7 and names == sorted(names)
    with pytest.raises(ApiException) as bad:
        kube.core.list_pod_for_all_namespaces(field_selector="spec.colour=red")
    assert bad.value.status == 400


def test_an_eviction_blocked_by_a_budget_is_429_and_succeeds_once_a_replacement_is_ready(
    start_kube,
) -> None:
    kube = start_kube({"deployments": [web(3, pdb={"min_available": 2})]})
    first, second, _ = sorted(p.metadata.name for p in kube.web_pods())
    kube.evict(first)
    gone = kube.core.read_namespaced_pod(first, "default")
    assert gone.metadata.deletion_timestamp is not None and gone.status.phase == "Running"
    assert (
        kube.policy.read_namespaced_pod_disruption_budget(
            "web", "default"
        ).status.disruptions_allowed
        == 0
    )
    with pytest.raises(ApiException) as blocked:
        kube.evict(second)
    assert blocked.value.status == 429
    status = json.loads(blocked.value.body)
    assert (status["kind"], status["reason"]) == ("Status", "TooManyRequests")
    assert [c["reason"] for c in status["details"]["causes"]] == ["DisruptionBudget"]
    kube.advance(10)  # the replacement is created (2 s) and Running and Ready (5 s)
    ready = [p for p in kube.web_pods() if not p.metadata.deletion_timestamp]
    assert len(ready) == 3 and all(p.status.phase == "Running" for p in ready)
    budget = kube.policy.read_namespaced_pod_disruption_budget("web", "default").status
    assert (budget.current_healthy, budget.desired_healthy, budget.disruptions_allowed) == (3, 2, 1)
    kube.evict(second)
    log = kube.admin("evictions")["evictions"]
    assert [(e["pod"], e["outcome"]) for e in log] == [
        (first, "evicted"),
        (second, "blocked"),
        (second, "evicted"),
    ]


def test_an_eviction_matching_two_budgets_is_500(start_kube) -> None:
    kube = start_kube(
        {
            "deployments": [web(3, pdb={"max_unavailable": 1})],
            "pdbs": [{"name": "extra", "selector": {"app": "web"}, "min_available": 1}],
        }
    )
    name = kube.web_pods()[0].metadata.name
    with pytest.raises(ApiException) as error:
        kube.evict(name)
    assert error.value.status == 500
    assert json.loads(error.value.body)["reason"] == "InternalError"
    assert kube.core.read_namespaced_pod(name, "default").metadata.deletion_timestamp is None


def test_evicting_a_pod_that_is_not_running_deletes_it_without_a_budget(start_kube) -> None:
    kube = start_kube(
        {
            "pods": [{"name": "done", "phase": "Succeeded", "labels": {"app": "job"}}],
            "pdbs": [{"name": "job", "selector": {"app": "job"}, "min_available": 1}],
        }
    )
    assert kube.core.read_namespaced_pod("done", "default").status.phase == "Succeeded"
    kube.evict("done")
    with pytest.raises(ApiException) as gone:
        kube.core.read_namespaced_pod("done", "default")
    assert gone.value.status == 404
    assert json.loads(gone.value.body)["details"] == {"name": "done", "kind": "pods"}
    with pytest.raises(ApiException) as again:
        kube.evict("done")
    assert again.value.status == 404


def test_nodes_go_not_ready_when_powered_off_and_disappear_after_delete(start_kube) -> None:
    kube = start_kube({"deployments": [web(3)]})
    kube.act("powerOff", ["1"])
    kube.advance(31)
    off = kube.core.read_node(node(1))
    assert next(c for c in off.status.conditions if c.type == "Ready").status == "False"
    assert {(t.key, t.effect) for t in off.spec.taints} >= {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.cloudprovider.kubernetes.io/shutdown", "NoSchedule"),
    }
    kube.delete_instances(["1"])
    kube.advance(61)
    assert [n.metadata.name for n in kube.core.list_node().items] == [node(0), node(2)]
    with pytest.raises(ApiException) as gone:
        kube.core.read_node(node(1))
    assert gone.value.status == 404
    kube.advance(10)
    pods = kube.web_pods()
    assert len(pods) == 3 and {p.spec.node_name for p in pods} <= {node(0), node(2)}


def test_owners_budgets_and_namespaces_are_served(start_kube) -> None:
    kube = start_kube(
        {
            "deployments": [web(2, pdb={"max_unavailable": "50%"})],
            "daemonsets": [{"name": "kube-proxy"}],
        }
    )
    pod = kube.web_pods()[0]
    (owner,) = pod.metadata.owner_references
    replica_set = kube.apps.read_namespaced_replica_set(owner.name, "default")
    assert replica_set.metadata.uid == owner.uid and replica_set.status.ready_replicas == 2
    assert replica_set.metadata.owner_references[0].kind == "Deployment"
    deployment = kube.apps.read_namespaced_deployment("web", "default")
    assert deployment.status.available_replicas == 2
    daemon = kube.apps.read_namespaced_daemon_set("kube-proxy", "kube-system")
    assert (daemon.status.desired_number_scheduled, daemon.status.number_ready) == (3, 3)
    assert len(kube.apps.list_daemon_set_for_all_namespaces().items) == 1
    assert len(kube.apps.list_replica_set_for_all_namespaces().items) == 1
    budgets = kube.policy.list_pod_disruption_budget_for_all_namespaces().items
    assert [(b.metadata.name, b.status.disruptions_allowed) for b in budgets] == [("web", 1)]
    assert kube.policy.list_namespaced_pod_disruption_budget("kube-system").items == []
    names = {n.metadata.name for n in kube.core.list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_delete_honours_uid_preconditions_and_grace_periods(start_kube) -> None:
    kube = start_kube({"deployments": [web(2)]})
    name = kube.web_pods()[0].metadata.name
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
    with pytest.raises(ApiException) as conflict:
        kube.core.delete_namespaced_pod(name, "default", body=stale)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    kube.core.delete_namespaced_pod(name, "default", grace_period_seconds=5)
    terminating = kube.core.read_namespaced_pod(name, "default")
    assert terminating.metadata.deletion_grace_period_seconds == 5
    kube.advance(6)
    with pytest.raises(ApiException) as gone:
        kube.core.read_namespaced_pod(name, "default")
    assert gone.value.status == 404


def test_discovery_version_and_unknown_paths(start_kube) -> None:
    kube = start_kube({})
    version = requests.get(f"{kube.url}/version", timeout=10).json()
    assert (version["major"], version["minor"]) == ("1", "31")
    core = requests.get(f"{kube.url}/api/v1", timeout=10).json()
    eviction = next(r for r in core["resources"] if r["name"] == "pods/eviction")
    assert (eviction["group"], eviction["version"], eviction["kind"]) == (
        "policy",
        "v1",
        "Eviction",
    )
    groups = requests.get(f"{kube.url}/apis", timeout=10).json()
    assert [g["name"] for g in groups["groups"]] == ["apps", "policy"]
    assert requests.get(f"{kube.url}/apis/batch/v1", timeout=10).status_code == 404
    denied = requests.delete(
        f"{kube.url}/apis/apps/v1/namespaces/default/deployments/x", timeout=10
    )
    assert (denied.status_code, denied.json()["reason"]) == (405, "MethodNotAllowed")


def test_the_cluster_follows_a_replaced_world(start_kube) -> None:
    kube = start_kube({"deployments": [web(1)]}, scale_set(WORKERS, 2))
    assert len(kube.core.list_node().items) == 2
    replacement = world_from(_data({}, scale_set(BATCH, 4)))
    kube.served.call(lambda: kube.holder.update(world=replacement[0], workloads=replacement[1]))
    assert [n.metadata.name for n in kube.core.list_node().items] == [
        node(n, BATCH) for n in range(4)
    ]
    assert kube.admin("pods")["unscheduled"] == []


# -- injected faults ------------------------------------------------------------------------------


def _status(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)


def test_a_5xx_fault_on_node_patches_answers_the_api_servers_status_and_counts(start_kube) -> None:
    kube = start_kube({"deployments": [web(2)]})
    kube.fault(verbs=["patch"], resources=["nodes"], status=503, count=3)
    for _ in range(3):
        with pytest.raises(ApiException) as refused:
            kube.core.patch_node(node(0), {"spec": {"unschedulable": True}})
        assert refused.value.status == 503
        assert _status(refused.value) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "the server is currently unable to handle the request",
            "reason": "ServiceUnavailable",
            "code": 503,
        }
        assert not kube.core.read_node(node(0)).spec.unschedulable  # reads are not faulted
    assert len(kube.core.list_namespaced_pod("default").items) == 2
    kube.core.patch_node(node(0), {"spec": {"unschedulable": True}})  # its uses are spent
    assert kube.core.read_node(node(0)).spec.unschedulable
    (listed,) = kube.admin("faults")["faults"]
    assert (listed["fired"], listed["remaining"], listed["status"]) == (3, 0, 503)
    log = kube.admin("requests")["calls"]
    assert [c["status"] for c in log if c["fault"]] == [503, 503, 503]


def test_a_500_on_evictions_only_leaves_other_writes_and_names_alone(start_kube) -> None:
    kube = start_kube({"deployments": [web(3)]})
    pods = sorted(p.metadata.name for p in kube.web_pods())
    kube.fault(resources=["pods/eviction"], names=[pods[0]], status=500)
    with pytest.raises(ApiException) as failed:
        kube.evict(pods[0])
    status = _status(failed.value)
    assert (failed.value.status, status["reason"]) == (500, "InternalError")
    assert status["details"]["causes"] == [{"message": status["message"]}]
    kube.evict(pods[1])  # another name
    kube.core.patch_node(node(0), {"metadata": {"labels": {"team": "a"}}})  # another resource
    kube.core.delete_namespaced_pod(pods[0], "default")  # "pods" is not "pods/eviction"
    assert kube.admin("faults")["faults"][0]["fired"] == 1


def test_a_timeout_fault_holds_the_request_past_the_clients_timeout(start_kube) -> None:
    kube = start_kube({})
    kube.fault(verbs=["get"], resources=["nodes"], kind="timeout", seconds=2)
    # The client gives up first, on every one of its retries (urllib3's ReadTimeoutError).
    with pytest.raises(Exception, match=r"(?i)timed out"):
        kube.core.read_node(node(0), _request_timeout=0.5)
    # A patient client gets the API server's own timeout once the hold ends.
    held = requests.get(f"{kube.url}/api/v1/nodes/{node(0)}", timeout=30)
    assert (held.status_code, held.json()["reason"]) == (504, "Timeout")
    assert kube.admin("faults")["faults"][0]["fired"] >= 2
    assert kube.core.list_node().items  # lists are not held


def test_a_timeout_on_a_write_that_lands_loses_only_the_answer(start_kube) -> None:
    kube = start_kube({})
    kube.fault(verbs=["patch"], kind="timeout", seconds=0, applied=True, count=1)
    with pytest.raises(ApiException) as lost:
        kube.core.patch_node(node(1), {"spec": {"unschedulable": True}})
    assert (lost.value.status, _status(lost.value)["reason"]) == (504, "Timeout")
    assert kube.core.read_node(node(1)).spec.unschedulable  # it took effect all the same


def test_a_conflict_fault_answers_writes_409_as_the_api_server_does(start_kube) -> None:
    kube = start_kube({})
    kube.fault(kind="conflict", resources=["nodes"], count=1)
    before = kube.core.read_node(node(0)).metadata.resource_version
    with pytest.raises(ApiException) as conflict:
        kube.core.patch_node(node(0), {"metadata": {"labels": {"team": "a"}}})
    status = _status(conflict.value)
    assert (conflict.value.status, status["reason"]) == (409, "Conflict")
    assert status["details"] == {"name": node(0), "kind": "nodes"}
    assert status["message"].startswith(f'Operation cannot be fulfilled on nodes "{node(0)}"')
    assert kube.core.read_node(node(0)).metadata.resource_version == before  # nothing written
    refused = requests.post(
        f"{kube.url}/_sim/kube/faults", json={"kind": "conflict", "verbs": ["get"]}, timeout=10
    )
    assert refused.status_code == 400 and "writes only" in refused.json()["error"]


def test_an_outage_window_in_simulated_time_refuses_every_request_inside_it(start_kube) -> None:
    kube = start_kube({"deployments": [web(1)]})
    start = kube.now() + timedelta(minutes=1)
    kube.fault(**{"from": start.isoformat(), "until": (start + timedelta(minutes=2)).isoformat()})
    assert kube.core.list_node().items  # before the window
    kube.advance(60)
    for call in (kube.core.list_node, lambda: kube.core.read_node(node(0)), kube.web_pods):
        with pytest.raises(ApiException) as down:
            call()
        assert down.value.status == 503
    kube.advance(120)
    assert kube.core.list_node().items and kube.web_pods()  # after it
    assert kube.admin("faults")["faults"][0]["fired"] == 3


def test_faults_are_refused_when_malformed_and_cleared_by_delete(start_kube) -> None:
    kube = start_kube({})
    for bad in (
        {"resources": ["nodez"]},
        {"verbs": ["fly"]},
        {"kind": "error", "applied": True},
        {"kind": "timeout", "seconds": 301},
        {"status": 200},
        {"from": "2026-11-02T09:00:00Z", "until": "2026-11-02T08:00:00Z"},
        {"match": "("},
        {"colour": "red"},
    ):
        answer = requests.post(f"{kube.url}/_sim/kube/faults", json=bad, timeout=10)
        assert answer.status_code == 400, (bad, answer.text)
    kube.fault(resources=["nodes"])
    requests.delete(f"{kube.url}/_sim/kube/faults", timeout=10).raise_for_status()
    assert kube.admin("faults")["faults"] == [] and kube.core.list_node().items


def test_hostile_bodies_get_400_from_the_api_and_its_admin(start_kube) -> None:
    kube = start_kube({})
    for raw in (b"[" * 5000 + b"]" * 5000, b'{"spec": "\xff"}'):
        patched = requests.patch(
            f"{kube.url}/api/v1/nodes/{node(0)}",
            data=raw,
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=10,
        )
        assert (patched.status_code, patched.json()["reason"]) == (400, "BadRequest")
        for path in ("faults", "cloud-node-manager"):
            answer = requests.post(f"{kube.url}/_sim/kube/{path}", data=raw, timeout=10)
            assert answer.status_code == 400, (path, answer.text)
        clock = requests.post(f"{kube.url}/_sim/clock", data=raw, timeout=10)
        assert clock.status_code == 400


def test_a_new_scenario_starts_without_kube_faults(sim: Simulator) -> None:
    sim.post("kube/faults", {"resources": ["nodes"], "status": 500})
    assert len(requests.get(f"{sim.admin}/kube/faults", timeout=10).json()["faults"]) == 1
    sim.load(scenario())
    assert requests.get(f"{sim.admin}/kube/faults", timeout=10).json()["faults"] == []
    assert sim.kube().nodes()  # and the API answers again
