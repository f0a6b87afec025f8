"""Several clusters in one simulated world, without HTTP servers: the scenario's `clusters`, which
nodes and workloads each gets, who may call it (401/403 bodies, reviews), and what a loaded
scenario may change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from local.sim.identity import TokenIssuer
from local.sim.kube.access import SERVICE_ACCOUNT, Access, Rule, User, review
from local.sim.kube.model import ApiError, Clusters
from local.sim.kube.requestinfo import request_info
from local.sim.kube.scope import cluster_spec, workloads_of
from local.sim.scenario import ScenarioError, parse_scenario
from local.sim.server import Simulator
from local.sim.world import World
from tests.simulator import KUBE_UNAUTHORIZED, cluster, scale_set, scenario

PROD, DEV, SPARE = "capz-prod-md-0", "capz-dev-md-0", "capz-spare-md-0"
APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"


def three(**extra: Any) -> dict[str, Any]:
    return scenario(
        scale_set(PROD, 2, node_group="prod"),
        scale_set(DEV, 1, node_group="dev"),
        scale_set(SPARE, 1, node_group="spare"),
        clusters=[cluster("prod", PROD), cluster("dev", DEV, mode="client_certificate")],
        **extra,
    )


def world_of(data: dict[str, Any]) -> World:
    from local.sim.clock import SimClock

    parsed = parse_scenario(data, source="test")
    return World(parsed, SimClock(parsed.clock.start, parsed.clock.speed))


# -- the scenario -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clusters", "problem"),
    [
        ([], "list at least one cluster"),
        ([cluster("a", "nope")], "no scale set 'nope'"),
        ([cluster("a", PROD), cluster("b", PROD.upper())], "belongs to one cluster at most"),
        ([cluster("a", PROD), cluster("a", DEV)], "'a' is listed twice"),
        ([cluster("Not_A_Label", PROD)], "clusters.0.name"),
        ([cluster("a", PROD, mode="entra")], "mode entra takes an audience"),
        ([cluster("a", PROD, mode="token", audience=APP_ID)], "mode entra takes an audience"),
        ([cluster("a", PROD, mode="password")], "clusters.0.auth.mode"),
        ([cluster("a", PROD) | {"extra": 1}], "clusters.0.extra"),
    ],
)
def test_a_bad_clusters_section_is_refused_with_its_reason(
    clusters: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(ScenarioError, match=problem):
        parse_scenario(three() | {"clusters": clusters}, source="test")


def test_without_clusters_the_one_cluster_has_every_scale_set() -> None:
    world = world_of(three() | {"clusters": None})
    names = {n["metadata"]["name"] for n in Clusters(lambda: world)().objects("nodes")}
    assert len(names) == 4


def test_each_cluster_has_the_nodes_of_its_scale_sets_and_a_spare_one_is_in_none() -> None:
    world = world_of(three())
    prod, dev = Clusters(lambda: world, name="prod")(), Clusters(lambda: world, name="dev")()
    prod_nodes = sorted(n["metadata"]["name"] for n in prod.objects("nodes"))
    dev_nodes = sorted(n["metadata"]["name"] for n in dev.objects("nodes"))
    assert prod_nodes == [f"{PROD}-vmss000000", f"{PROD}-vmss000001"]
    assert dev_nodes == [f"{DEV}-vmss000000"]
    # Addresses stay unique across clusters (the scale set's place in the world counts).
    addresses = [
        a["address"]
        for node in (*prod.objects("nodes"), *dev.objects("nodes"))
        for a in node["status"]["addresses"]
        if a["type"] == "InternalIP"
    ]
    assert len(set(addresses)) == 3


def test_an_instance_removed_is_recorded_only_by_its_own_cluster() -> None:
    world = world_of(three())
    prod, dev = Clusters(lambda: world, name="prod")(), Clusters(lambda: world, name="dev")()
    scale = next(s for s in world.scale_sets.values() if s.name == PROD)
    world.delete_instances(scale, ["0"], force=True, fault=None, operation="DeleteInstances")
    world.clock.advance(600)
    prod.sync()
    dev.sync()
    assert [r["scale_set"] for r in prod.removals] == [PROD]
    assert dev.removals == []


def test_top_level_workloads_go_where_their_node_selector_fits() -> None:
    workloads = {
        "deployments": [
            {"name": "api", "replicas": 2, "node_selector": {"elastisys.io/node-group": "prod"}},
            {"name": "anywhere", "replicas": 1},
        ],
        "daemonsets": [{"name": "agent", "node_selector": {"kubernetes.io/os": "linux"}}],
        "static_pods": [{"name": "exporter", "node_selector": {"elastisys.io/node-group": "dev"}}],
        "pods": [
            {"name": "pinned", "node": f"{DEV}-vmss000000"},
            {"name": "loose", "node_selector": {"elastisys.io/node-group": "spare"}},
        ],
        "pdbs": [
            {"name": "api-extra", "selector": {"app": "api"}, "max_unavailable": 1},
            {"name": "orphan", "selector": {"app": "gone"}, "max_unavailable": 1},
        ],
    }
    parsed = parse_scenario(three(workloads=workloads), source="test")
    prod = workloads_of(parsed, cluster_spec(parsed, "prod"))
    dev = workloads_of(parsed, cluster_spec(parsed, "dev"))
    assert [d.name for d in prod.deployments] == ["api", "anywhere"]
    assert [d.name for d in dev.deployments] == ["anywhere"]
    assert [d.name for d in prod.daemonsets] == [d.name for d in dev.daemonsets] == ["agent"]
    assert ([s.name for s in prod.static_pods], [s.name for s in dev.static_pods]) == (
        [],
        ["exporter"],
    )
    assert ([p.name for p in prod.pods], [p.name for p in dev.pods]) == ([], ["pinned"])
    assert ([b.name for b in prod.pdbs], [b.name for b in dev.pdbs]) == (["api-extra"], [])


def test_a_cluster_with_its_own_workloads_runs_only_those() -> None:
    own = {"deployments": [{"name": "mine", "replicas": 1}]}
    data = three(workloads={"deployments": [{"name": "shared", "replicas": 1}]})
    data["clusters"][1]["workloads"] = own
    world = world_of(data)
    dev = Clusters(lambda: world, name="dev")()
    assert [d["metadata"]["name"] for d in dev.objects("deployments")] == ["mine"]
    prod = Clusters(lambda: world, name="prod")()
    assert [d["metadata"]["name"] for d in prod.objects("deployments")] == ["shared"]


# -- who may call -------------------------------------------------------------------------------


def request(headers: dict[str, str] | None = None, path: str = "/api/v1/nodes") -> Any:
    return make_mocked_request("GET", path, headers=headers or {})


def test_token_mode_knows_only_its_own_token() -> None:
    access = Access("token", token="the-token")
    info = request_info("GET", "/api/v1/nodes", {})
    user = access.check(request({"Authorization": "Bearer the-token"}), info)
    assert user.name == SERVICE_ACCOUNT
    for headers in ({}, {"Authorization": "Bearer other"}, {"Authorization": "the-token"}):
        with pytest.raises(ApiError) as refused:
            access.check(request(headers), info)
        assert refused.value.status() == KUBE_UNAUTHORIZED


def test_entra_mode_takes_identity_tokens_for_its_audience_only() -> None:
    issuer = TokenIssuer("tenant")
    access = Access("entra", audience=APP_ID)
    info = request_info("GET", "/version", {})
    for audience in (APP_ID, f"api://{APP_ID}"):
        token = issuer.issue(audience)[0]
        user = access.check(request({"Authorization": f"Bearer {token}"}), info)
        assert user.name == issuer.principal
    for token in (
        issuer.issue("https://management.azure.com/")[0],
        issuer.issue("another-app")[0],
        issuer.issue(APP_ID, lifetime=-10)[0],
    ):
        with pytest.raises(ApiError, match="Unauthorized"):
            access.check(request({"Authorization": f"Bearer {token}"}), info)


def test_client_certificate_mode_needs_a_certificate() -> None:
    access = Access("client_certificate")
    with pytest.raises(ApiError, match="Unauthorized"):
        access.check(request(), request_info("GET", "/api", {}))


def test_a_denied_permission_is_the_api_servers_forbidden_status() -> None:
    access = Access("none")
    access.deny(Rule(verb="create", resource="pods", subresource="eviction"))
    access.deny(Rule(verb="list", resource="nodes"))
    evict = request_info("POST", "/api/v1/namespaces/default/pods/web-1/eviction", {})
    with pytest.raises(ApiError) as refused:
        access.check(request(), evict)
    assert refused.value.code == 403
    assert refused.value.status()["message"] == (
        'pods "web-1" is forbidden: User "system:anonymous" cannot create resource '
        '"pods/eviction" in API group "" in the namespace "default"'
    )
    assert refused.value.status()["details"] == {"name": "web-1", "kind": "pods"}
    with pytest.raises(ApiError) as listing:
        access.check(request(), request_info("GET", "/api/v1/nodes", {}))
    assert listing.value.message == (
        'nodes is forbidden: User "system:anonymous" cannot list resource "nodes" in API group '
        '"" at the cluster scope'
    )
    # Neither covers the pod itself, another verb, nor discovery.
    for method, path in (
        ("DELETE", "/api/v1/namespaces/default/pods/web-1"),
        ("GET", "/api/v1/nodes/n1"),
        ("GET", "/apis"),
    ):
        assert access.check(request(), request_info(method, path, {})).name == "system:anonymous"
    access.allow(Rule(verb="list", resource="nodes"))
    assert access.check(request(), request_info("GET", "/api/v1/nodes", {}))


def test_a_review_answers_from_the_same_rules() -> None:
    access = Access("token", token="t")
    access.deny(Rule(verb="patch", resource="nodes"))
    user = User(SERVICE_ACCOUNT, ())

    def ask(**attributes: str) -> dict[str, Any]:
        body = {"spec": {"resourceAttributes": attributes}}
        return review(access, user, body)

    denied = ask(verb="patch", resource="nodes")
    assert denied["status"] == {"allowed": False}
    assert denied["spec"] == {"resourceAttributes": {"verb": "patch", "resource": "nodes"}}
    allowed = ask(verb="create", resource="pods", subresource="eviction", namespace="default")
    assert allowed["status"]["allowed"] is True
    assert "ServiceAccount" in allowed["status"]["reason"]
    assert ask(verb="*", resource="nodes")["status"]["allowed"] is False
    assert review(
        access, user, {"spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}}}
    )["status"]["allowed"]
    with pytest.raises(ApiError) as invalid:
        review(access, user, {"spec": {}})
    assert invalid.value.code == 422


# -- the simulator: fixed clusters, credentials in the vault ------------------------------------


def test_a_loaded_scenario_keeps_the_clusters_the_simulator_started_with(tmp_path: Path) -> None:
    sim = Simulator(parse_scenario(three(), source="test"), tmp_path)
    assert sorted(sim.endpoints) == ["dev", "prod"]
    assert (tmp_path / "clusters" / "prod" / "ca.pem").read_text().startswith("-----BEGIN")
    sim.endpoints["prod"].access.deny(Rule(verb="list"))
    reloaded = three()
    reloaded["clusters"][0]["scale_sets"] = [PROD, SPARE]  # membership may change
    sim.load(parse_scenario(reloaded, source="test"))
    assert sim.endpoints["prod"].access.denied == []
    nodes = sim.endpoints["prod"].clusters().objects("nodes")
    assert len(nodes) == 3
    for changed in (
        three() | {"clusters": None},
        three() | {"clusters": [cluster("prod", PROD)]},
        three() | {"clusters": [cluster("prod", PROD), cluster("dev", DEV)]},
    ):
        with pytest.raises(ScenarioError, match="clusters it started with"):
            sim.load(parse_scenario(changed, source="test"))


def test_served_clusters_put_their_credentials_in_the_vault(tmp_path: Path) -> None:
    data = three(key_vault={"secrets": {"prod-ca": "the scenario's own"}})
    sim = Simulator(parse_scenario(data, source="test"), tmp_path)
    for name, endpoint in sim.endpoints.items():
        endpoint.served(f"https://127.0.0.1:{4000 + len(name)}")
    stored = sim.store_credentials()
    assert stored == {
        "prod": ["prod-kubeconfig", "prod-token"],
        "dev": ["dev-kubeconfig", "dev-ca", "dev-client-certificate"],
    }
    secrets = sim.vault.secrets
    assert secrets["prod-ca"][1][-1].value == "the scenario's own"
    assert secrets["prod-token"][1][-1].value == sim.endpoints["prod"].token
    pem = secrets["dev-client-certificate"][1][-1].value
    assert "BEGIN CERTIFICATE" in pem and "PRIVATE KEY" in pem
