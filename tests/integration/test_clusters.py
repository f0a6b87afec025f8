"""Pools in three clusters from one runner: each cluster over TLS with its own CA and a different
auth mode (a ServiceAccount token and a client certificate from Key Vault, an Entra token from the
managed identity); scale, drain and patch jobs act on the right cluster's nodes, and a cluster
that hangs holds up neither the others' jobs nor the reconcile survey."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shared.adapters.checks import Checks
from shared.adapters.kube import ClusterUnavailable
from shared.adapters.ledger import FINAL
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.decide.breaker import FAILURES_TO_OPEN
from shared.decide.permissions import IDENTITY_ACTIONS, RUN_COMMAND_ACTIONS, SCALE_SET_ACTIONS
from shared.flows.dashboard import page
from shared.flows.jobs import Services, handle
from shared.flows.preflight import preflight
from shared.flows.reconcile import survey
from tests.jobs_support import Pump, job, settings_for
from tests.simulator import (
    RG,
    SUBSCRIPTION,
    Simulator,
    cluster,
    running_simulator,
    scale_set,
    scenario,
)

pytestmark = pytest.mark.integration

APP_ID = "0f3a7c2e-5b1d-4e8f-9a6c-3d2b1e0f4a5c"
CLUSTERS = {"capz": "token", "kubeadm": "client_certificate", "engine": "entra"}
OS = {"name": "Ubuntu 24.04.1 LTS", "kernel": "6.8.0-1015-azure", "packages": {"openssl": "3"}}
UPDATES = [{"date": "2026-11-01T06:00:00Z", "kernel": "6.8.0-1017-azure", "packages": 3}]


def _vmss(name: str) -> str:
    return f"{name}-md-0"


def _scenario() -> dict[str, Any]:
    return scenario(
        *(scale_set(_vmss(name), 3, node_group=name) for name in CLUSTERS),
        clusters=[
            cluster(
                name, _vmss(name), mode=mode, **({"audience": APP_ID} if mode == "entra" else {})
            )
            for name, mode in CLUSTERS.items()
        ],
        workloads={
            "daemonsets": [{"name": "kube-proxy"}],
            "deployments": [
                {
                    "name": f"web-{name}",
                    "replicas": 3,
                    "node_selector": {"elastisys.io/node-group": name},
                    "termination_grace_seconds": 5,
                    "pdb": {"max_unavailable": 1},
                }
                for name in CLUSTERS
            ],
        },
        os=OS,
        os_updates=UPDATES,
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    state = tmp_path_factory.mktemp("fleet")
    (state / "scenario.json").write_text(json.dumps(_scenario()))
    with running_simulator(state, state / "scenario.json") as running:
        yield running


def _clusters(sim: Simulator) -> list[dict[str, Any]]:
    """The configuration's clusters: the CA inline for one, from Key Vault for the others."""
    found = []
    for name, mode in CLUSTERS.items():
        published = sim.cluster(name)
        auth: dict[str, Any] = {
            "token": {"mode": "token", "secret": f"{name}-token"},
            "client_certificate": {
                "mode": "client_certificate",
                "secret": f"{name}-client-certificate",
            },
            "entra": {"mode": "entra", "application_id": APP_ID},
        }[mode]
        ca = {"pem": published["ca_pem"]} if mode == "token" else {"secret": f"{name}-ca"}
        found.append({"name": name, "server": published["server"], "ca": ca, "auth": auth})
    return found


def _services(sim: Simulator, azurite: Any, clusters: list[dict[str, Any]]) -> Services:
    suffix = uuid.uuid4().hex[:6]  # fresh pool records for each test
    pools = [
        {
            "name": f"{name}-{suffix}",
            "cluster": name,
            "vmss_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{_vmss(name)}",
            "node_group": name,
            "min_nodes": 1,
            "max_nodes": 6,
            "patch": {"soak_minutes": 1, "ready_timeout_minutes": 10},
        }
        for name in CLUSTERS
    ]
    settings = settings_for(sim, azurite.connection_string, pools)
    del settings["POOLKEEPER_KUBECONFIG"]  # no default cluster: every pool names its own
    settings["POOLKEEPER_POOLS"] = json.dumps({"pools": pools, "clusters": clusters})
    settings["POOLKEEPER_KEY_VAULT_URL"] = sim.info["key_vault"]["url"]
    settings["POOLKEEPER_METRICS_ENDPOINT"] = sim.info["metrics"]
    return Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )


@pytest.fixture
def fleet(sim: Simulator, azurite: Any) -> Pump:
    """A fresh world (and fresh queues, tables and secret cache) for each test."""
    sim.load(_scenario())
    return Pump(_services(sim, azurite, _clusters(sim)))


def _nodes(sim: Simulator, name: str) -> dict[str, dict[str, Any]]:
    url = f"{sim.admin}/kube/clusters/{name}/pods"
    return requests.get(url, timeout=10).json()["nodes"]


def _pool(pump: Pump, cluster: str) -> str:
    return next(p.name for p in pump.services.config.pools_of(cluster))


def _run(pump: Pump, kind: str, cluster: str, params: dict[str, Any] | None = None) -> Any:
    """Run a job on the pool of `cluster` until it ends."""
    message = job(kind, _pool(pump, cluster), params)
    pump.send(kind, message)
    return pump.run(kind, message["id"], timeout=240)


def test_scale_drain_and_patch_jobs_act_on_each_pools_own_cluster(
    sim: Simulator, fleet: Pump
) -> None:
    sim.advance(2 * 3600)  # usage history for the patch's headroom check
    before = {name: _nodes(sim, name) for name in CLUSTERS}
    assert all(len(nodes) == 3 for nodes in before.values()), before

    record = _run(fleet, "scale", "capz", {"delta": -1})
    assert record.status == "done", (record.error, record.outcome)
    (gone,) = record.outcome["deleted"]
    assert len(_nodes(sim, "capz")) == 2

    victim = sorted(before["kubeadm"])[0]
    record = _run(fleet, "drain", "kubeadm", {"node": victim})
    assert record.status == "done", (record.error, record.outcome)
    drained = _nodes(sim, "kubeadm")[victim]
    assert drained["unschedulable"] and not [p for p in drained["pods"] if "web" in p]

    record = _run(fleet, "patch", "engine")
    assert record.status == "done", (record.error, record.outcome)
    kernels = {
        i["computer_name"]: i["os"]["running_kernel"]
        for i in sim.scale_set_state(_vmss("engine"))["instances"]
    }
    assert set(kernels.values()) == {UPDATES[0]["kernel"]}, kernels

    # Each job touched its own cluster only: the others' nodes are as they were.
    after = {name: _nodes(sim, name) for name in CLUSTERS}
    assert not any(n["unschedulable"] for n in after["capz"].values())
    assert [n for n, v in after["kubeadm"].items() if v["unschedulable"]] == [victim]
    assert set(after["engine"]) == set(before["engine"])
    assert not any(n["unschedulable"] for n in after["engine"].values())
    requests_seen = {
        name: requests.get(f"{sim.admin}/kube/clusters/{name}/requests", timeout=10).json()
        for name in CLUSTERS
    }
    assert all(requests_seen.values()), "every cluster was asked"
    assert gone


def test_a_hung_cluster_holds_up_neither_the_others_jobs_nor_the_survey(
    sim: Simulator, fleet: Pump
) -> None:
    sim.hang("capz")  # held until released: nothing below can finish by waiting it out
    try:
        record = _run(fleet, "scale", "kubeadm", {"delta": -1})
        assert record.status == "done", (record.error, record.outcome)
        assert len(_nodes(sim, "kubeadm")) == 2
        enqueued = survey(fleet.services)  # reads every cluster's nodes side by side
        # The pools never read are enqueued, the hung cluster's too (by its counts alone);
        # kubeadm's was read in full by its scale job just now.
        assert sorted(j.split("-")[1] for j in enqueued) == ["capz", "engine"], enqueued
        # A job of a healthy cluster runs through, straight to the runner (the queue's capz job
        # would take a worker until its reads time out, as it would in Azure).
        message = job("reconcile", _pool(fleet, "engine"))
        handle(fleet.services, fleet.queue("reconcile"), json.dumps(message))
        record = fleet.services.tables.job(message["id"])
        assert record is not None and record.status == "done", record
    finally:
        sim.release("capz")


def test_a_hung_cluster_is_held_back_after_three_failed_calls_and_shown_on_the_page(
    sim: Simulator, azurite: Any, fleet: Pump
) -> None:
    clusters = _clusters(sim)
    next(c for c in clusters if c["name"] == "capz")["request_timeout_seconds"] = 1
    services = _services(sim, azurite, clusters)
    sim.hang("capz")
    try:
        kube = services.connections.kube("capz")
        for _ in range(FAILURES_TO_OPEN - 1):
            with pytest.raises(ClusterUnavailable, match="no answer; calls go on"):
                kube.nodes()  # the client's own timeout, as an error jobs wait out
        with pytest.raises(ClusterUnavailable, match="breaker open"):
            kube.nodes()  # the third: the breaker opens
        with pytest.raises(ClusterUnavailable, match="cluster capz is not answering"):
            kube.nodes()  # at once: the gate sends nothing

        # The hung cluster's job waits it out as a temporary error; the others' run through.
        pump = Pump(services)
        victim = sorted(_nodes(sim, "kubeadm"))[0].replace("kubeadm", "capz")
        waiting = job("drain", _pool(pump, "capz"), {"node": victim})
        handle(services, pump.queue("drain"), json.dumps(waiting))
        record = services.tables.job(waiting["id"])
        assert record is not None and record.status not in FINAL, record
        assert "ClusterUnavailable" in json.dumps(record.state), record.state
        healthy = job("reconcile", _pool(pump, "engine"))
        handle(services, pump.queue("reconcile"), json.dumps(healthy))
        done = services.tables.job(healthy["id"])
        assert done is not None and done.status == "done", done

        survey(services)
        states = Checks(services.tables).cluster_states()
        assert states["capz"]["answering"] is False and states["capz"]["open"] is True
        assert states.get("engine", {"answering": True})["answering"] is True
        html = page(services, None, viewer=None, accept="text/html").body
        assert 'data-cluster-down="capz"' in html and "breaker open" in html
        assert 'data-cluster-down="engine"' not in html
    finally:
        sim.release("capz")


def test_a_wrong_token_is_refused_and_reported_naming_the_cluster(
    sim: Simulator, fleet: Pump
) -> None:
    sim.set_secret("capz-token", "not-the-token")
    record = _run(fleet, "reconcile", "capz")
    assert record.status == "done", (record.error, record.outcome)
    status = fleet.services.tables.pool_status(_pool(fleet, "capz"))
    assert status is not None
    assert "cluster capz not readable" in json.dumps(status), status
    assert "Unauthorized" in json.dumps(status), status
    # The other clusters are read as before.
    assert _run(fleet, "reconcile", "kubeadm").status == "done"
    kubeadm = fleet.services.tables.pool_status(_pool(fleet, "kubeadm"))
    assert kubeadm is not None and "not readable" not in json.dumps(kubeadm)


def test_preflight_passes_and_names_the_cluster_of_a_wrong_token_ca_or_permission(
    sim: Simulator, azurite: Any, fleet: Pump
) -> None:
    report = preflight(fleet.services)
    assert report["ok"], report
    assert set(report["clusters"]) == set(CLUSTERS)
    assert all(p["ok"] and p["instances"] == 3 for p in report["pools"].values()), report

    sim.set_secret("capz-token", "not-the-token")
    clusters = _clusters(sim)
    kubeadm = next(c for c in clusters if c["name"] == "kubeadm")
    kubeadm["ca"] = {"pem": sim.cluster("capz")["ca_pem"]}  # another cluster's CA
    sim.deny("engine", verb="create", resource="pods", subresource="eviction")
    report = preflight(_services(sim, azurite, clusters))
    assert not report["ok"]
    found = report["clusters"]
    assert "cluster capz not reachable or not authenticated" in found["capz"]["error"]
    assert "Unauthorized" in found["capz"]["error"]
    assert "cluster kubeadm not reachable" in found["kubeadm"]["error"]
    assert "CERTIFICATE_VERIFY_FAILED" in found["kubeadm"]["error"], found["kubeadm"]
    assert found["engine"]["error"].startswith("cluster engine denies create pods/eviction:")


def test_preflight_names_the_azure_actions_the_identity_lacks_in_a_group_and_on_a_scale_set(
    sim: Simulator, fleet: Pump
) -> None:
    report = preflight(fleet.services)
    (scope,) = report["resource_groups"]
    assert scope == f"{SUBSCRIPTION}/{RG}".lower()
    assert report["resource_groups"][scope] == {
        "ok": True,
        "pools": sorted(p.name for p in fleet.services.config.pools),
        "missing": [],
    }
    assert all(p["permissions"] == {"ok": True, "missing": []} for p in report["pools"].values())
    gallery = report["pools"][_pool(fleet, "capz")]["gallery"]
    assert gallery["ok"] and gallery["note"].startswith("absent"), gallery

    # As infra/main.bicep assigns them: references, snapshots and the gallery at the group, the
    # scale set roles at each scale set. Here capz's has both, engine's lacks run command and
    # kubeadm's has nothing of its own.
    versions = "Microsoft.Compute/galleries/images/versions/write"
    group = {
        "actions": [
            "Microsoft.Network/*",
            "Microsoft.ManagedIdentity/*",
            "Microsoft.Compute/disks/read",
            "Microsoft.Compute/snapshots/*",
            "Microsoft.Compute/galleries/*",
            "Microsoft.Compute/locations/operations/read",
        ],
        "not_actions": [versions],
    }

    def scale_set(name: str) -> str:
        return (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{_vmss(name)}"
        )

    sim.load(
        _scenario()
        | {
            "permissions": {
                RG: [group],
                scale_set("capz"): [{"actions": [*SCALE_SET_ACTIONS, *RUN_COMMAND_ACTIONS]}],
                scale_set("engine"): [{"actions": list(SCALE_SET_ACTIONS)}],
            }
        }
    )
    report = preflight(fleet.services)
    assert not report["ok"]
    found = report["resource_groups"][scope]
    assert found["ok"] and found["missing"] == [versions], found  # no automatic images
    assert "image jobs would fail" in found["warning"]
    pools = report["pools"]
    assert pools[_pool(fleet, "capz")]["permissions"] == {"ok": True, "missing": []}
    engine = pools[_pool(fleet, "engine")]
    # Without automatic patches or images, run command is a warning: jobs by hand would fail.
    assert engine["ok"] and engine["permissions"]["missing"] == list(RUN_COMMAND_ACTIONS)
    assert engine["permissions"]["warning"] == (
        f"patch and image jobs would fail on {_vmss('engine')}: the identity lacks "
        f"{RUN_COMMAND_ACTIONS[0]}"
    )
    kubeadm = pools[_pool(fleet, "kubeadm")]
    # Inherited from the group: only the operation status read.
    operations = "Microsoft.Compute/locations/operations/read"
    lacking = [a for a in SCALE_SET_ACTIONS if a != operations]
    assert not kubeadm["ok"]
    assert kubeadm["permissions"]["missing"] == [*lacking, *RUN_COMMAND_ACTIONS]
    assert kubeadm["error"].startswith(
        f"the identity lacks {len(lacking)} action(s) on scale set {_vmss('kubeadm')}: "
    )
    assert RUN_COMMAND_ACTIONS[0] not in kubeadm["error"]
    # The status page shows the last preflight, failures first, and the warning.
    html = page(fleet.services, None, viewer=None, accept="text/html").body
    table = html[html.index('<table class="preflight">') :]
    assert 'data-field="preflight">checks failed' in html
    assert f"the identity lacks {len(lacking)} action(s) on scale set {_vmss('kubeadm')}" in table
    assert f"patch and image jobs would fail on {_vmss('engine')}" in table


def test_preflight_names_an_identity_a_scale_set_carries_that_poolkeeper_may_not_assign(
    sim: Simulator, fleet: Pump
) -> None:
    # Every write to capz's scale set carries its kubelet identity again: ARM refuses the write
    # unless Poolkeeper may assign that identity (infra/main.bicep scaleSetIdentities).
    kubelet = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-identities/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/capz-kubelet"
    )
    world = _scenario()
    capz = next(s for s in world["scale_sets"] if s["name"] == _vmss("capz"))
    capz["identities"] = [kubelet]
    read_only = [{"actions": ["Microsoft.ManagedIdentity/userAssignedIdentities/read"]}]
    sim.load(world | {"permissions": {"rg-identities": read_only}})
    report = preflight(fleet.services)
    assert not report["ok"]
    found = report["pools"][_pool(fleet, "capz")]
    assert found["identities"] == [kubelet.lower()]
    assert not found["ok"] and found["permissions"]["identities"] == [kubelet.lower()]
    assert found["error"].startswith(
        f"scale set {_vmss('capz')} carries 1 user-assigned identity(ies) Poolkeeper's identity "
        f"may not assign, so every write to it would fail: {kubelet.lower()};"
    )
    assert "POOLKEEPER_SCALE_SET_IDENTITIES" in found["error"]
    assert all(p["ok"] for name, p in report["pools"].items() if name != _pool(fleet, "capz"))

    # Assigned at the identity (as identity-access.bicep does): the check passes.
    granted = {kubelet: [{"actions": list(IDENTITY_ACTIONS)}]}
    sim.load(world | {"permissions": {"rg-identities": read_only} | granted})
    report = preflight(fleet.services)
    assert report["pools"][_pool(fleet, "capz")]["permissions"] == {"ok": True, "missing": []}
    assert report["ok"], report


def test_preflight_names_a_pools_scale_set_that_cluster_autoscaler_also_sizes(
    sim: Simulator, fleet: Pump
) -> None:
    # cluster-autoscaler 1.28's readable status; it names capz's scale set as a node group.
    status = (
        "Cluster-autoscaler status at 2026-11-02 08:00:00.000 +0000 UTC:\n"
        "Cluster-wide:\n  Health:      Healthy (ready=3 unready=0 notStarted=0)\n"
        f"NodeGroups:\n  Name:        {_vmss('capz')}\n  Health:      Healthy (ready=3)\n"
    )
    world = _scenario()
    world["workloads"]["config_maps"] = [
        {"name": "cluster-autoscaler-status", "data": {"status": status}}
    ]
    sim.load(world)
    report = preflight(fleet.services)
    assert not report["ok"]
    capz = report["pools"][_pool(fleet, "capz")]
    assert capz["error"].startswith(
        f"cluster-autoscaler in cluster capz also sizes {_vmss('capz')}"
    ), capz
    assert report["clusters"]["capz"]["autoscaler"] == {"groups": [_vmss("capz").lower()]}
    assert report["pools"][_pool(fleet, "engine")]["ok"]  # its cluster's status names capz's


def test_preflight_asks_the_usage_source_for_the_pools_and_names_a_missing_setting(
    sim: Simulator, azurite: Any, fleet: Pump
) -> None:
    report = preflight(fleet.services)
    usage = report["usage"]
    assert usage["ok"] and usage["source"] == "platform", usage
    assert set(usage["coverage"]) == {p.name for p in fleet.services.config.pools}

    services = _services(sim, azurite, _clusters(sim))
    del services.settings["POOLKEEPER_METRICS_ENDPOINT"]
    report = preflight(services)
    assert not report["ok"]
    assert not report["usage"]["ok"]
    assert "POOLKEEPER_METRICS_ENDPOINT is not set" in report["usage"]["error"]
