"""The simulator's admin view of the cluster (JSON-able dicts), for `/_sim/kube/...`."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from local.sim.bodies import BodyError, json_body
from local.sim.kube.access import Access, Rule
from local.sim.kube.controllers import budget_pods
from local.sim.kube.faults import KubeFault
from local.sim.kube.model import Cluster
from local.sim.kube.objects import Obj, node_ready


def pods_by_node(cluster: Cluster) -> Obj:
    """Every node (Ready, cordoned, taints) with its pods; unbound pods under `unscheduled`."""
    cluster.sync()
    nodes: dict[str, Obj] = {}
    for node in cluster.objects("nodes"):
        nodes[node["metadata"]["name"]] = {
            "ready": node_ready(node),
            "unschedulable": bool(node["spec"].get("unschedulable")),
            "taints": [f"{t['key']}:{t['effect']}" for t in node["spec"].get("taints") or []],
            "node_group": (node["metadata"].get("labels") or {}).get("elastisys.io/node-group"),
            "pods": [],
        }
    unscheduled: list[Obj] = []
    for pod in cluster.objects("pods"):
        entry = cluster.describe_pod(pod)
        node = pod["spec"].get("nodeName")
        if node in nodes:
            nodes[node]["pods"].append(entry)
        else:
            unscheduled.append(entry)
    return {"now": cluster.at.isoformat(), "nodes": nodes, "unscheduled": unscheduled}


def pdb_status(cluster: Cluster) -> Obj:
    cluster.sync()
    budgets = []
    for pdb in cluster.objects("poddisruptionbudgets"):
        status = pdb.get("status") or {}
        budgets.append(
            {
                "namespace": pdb["metadata"]["namespace"],
                "name": pdb["metadata"]["name"],
                "min_available": pdb["spec"].get("minAvailable"),
                "max_unavailable": pdb["spec"].get("maxUnavailable"),
                "disruptions_allowed": status.get("disruptionsAllowed", 0),
                "current_healthy": status.get("currentHealthy", 0),
                "desired_healthy": status.get("desiredHealthy", 0),
                "expected_pods": status.get("expectedPods", 0),
                "pods": [p["metadata"]["name"] for p in budget_pods(cluster, pdb)],
            }
        )
    return {"now": cluster.at.isoformat(), "pdbs": budgets}


def eviction_log(cluster: Cluster) -> Obj:
    """Every eviction request: outcome `evicted`, `deleted` (not running: no budget check),
    `blocked` (429 DisruptionBudget) or `rejected` (404, 409, 500 several budgets, ...)."""
    return {"evictions": list(cluster.evictions)}


def removal_log(cluster: Cluster) -> Obj:
    """Every instance that went for good, with its node as it was then (cordoned? pods left?)."""
    cluster.sync()
    return {"removals": list(cluster.removals)}


def request_log(cluster: Cluster) -> Obj:
    counters: dict[str, int] = {}
    for call in cluster.requests:
        key = f"{call['method']} {call['status']}"
        counters[key] = counters.get(key, 0) + 1
    return {"counters": counters, "total": len(cluster.requests), "calls": list(cluster.requests)}


def admin_app(current: Callable[[], Cluster]) -> web.Application:
    """GET /pods, /pdbs, /evictions, /requests, /removals, POST /cloud-node-manager, and
    GET/POST/DELETE /faults (mount with `app.add_subapp("/_sim/kube", ...)`)."""
    views: dict[str, Callable[[Cluster], Obj]] = {
        "/pods": pods_by_node,
        "/pdbs": pdb_status,
        "/evictions": eviction_log,
        "/requests": request_log,
        "/removals": removal_log,
    }
    app = web.Application()
    for path, view in views.items():

        async def handler(_: web.Request, view: Callable[[Cluster], Obj] = view) -> web.Response:
            return web.json_response(view(current()))

        app.router.add_get(path, handler)

    async def cloud_node_manager(request: web.Request) -> web.Response:
        """POST {"running": false}: Nodes of deleted VMs stay (a node without an instance)."""
        try:
            body = await json_body(request)
        except BodyError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("running"), bool):
            return web.json_response({"error": 'body must be {"running": true|false}'}, status=400)
        cluster = current()
        cluster.sync()
        cluster.cloud_node_manager = body["running"]
        return web.json_response({"running": cluster.cloud_node_manager})

    async def list_faults(_: web.Request) -> web.Response:
        return web.json_response({"faults": current().faults.view()})

    async def add_fault(request: web.Request) -> web.Response:
        """POST a fault (see `faults.KubeFault`); 201 with every fault."""
        try:
            fault = KubeFault.model_validate(await json_body(request))
        except ValueError as error:  # a BodyError or pydantic's ValidationError
            return web.json_response({"error": f"invalid fault: {error}"}, status=400)
        cluster = current()
        cluster.faults.add(fault)
        return web.json_response({"faults": cluster.faults.view()}, status=201)

    async def clear_faults(_: web.Request) -> web.Response:
        current().faults.clear()
        return web.json_response({"faults": []})

    app.router.add_post("/cloud-node-manager", cloud_node_manager)
    app.router.add_get("/faults", list_faults)
    app.router.add_post("/faults", add_fault)
    app.router.add_delete("/faults", clear_faults)
    return app


def cluster_admin_app(current: Callable[[], Cluster], access: Access) -> web.Application:
    """`admin_app` for one of the scenario's clusters, plus its permissions and hang:
    GET /access; POST /deny and POST /allow with a rule (`access.Rule`: verb, resource,
    subresource, group, namespace), DELETE /deny (allow everything again); POST /hang
    (`{"seconds": N}` optional: it ends by itself after N wall seconds), DELETE /hang."""
    app = admin_app(current)

    async def view(_: web.Request) -> web.Response:
        return web.json_response(access.view())

    async def change(request: web.Request) -> web.Response:
        try:
            rule = Rule.model_validate(await json_body(request))
        except ValueError as error:  # a BodyError or pydantic's ValidationError
            return web.json_response({"error": f"invalid rule: {error}"}, status=400)
        if request.path.endswith("/deny"):
            access.deny(rule)
            return web.json_response(access.view(), status=201)
        access.allow(rule)
        return web.json_response(access.view())

    async def allow_all(_: web.Request) -> web.Response:
        access.denied.clear()
        return web.json_response(access.view())

    async def hang(request: web.Request) -> web.Response:
        try:
            body = await json_body(request) if request.can_read_body else None
        except BodyError:
            body = []
        body = {} if body is None else body
        seconds = body.get("seconds") if isinstance(body, dict) else "?"
        if isinstance(seconds, bool) or not (
            seconds is None or (isinstance(seconds, int | float) and seconds > 0)
        ):
            return web.json_response(
                {"error": 'body must be {} or {"seconds": N} (N > 0, wall seconds)'}, status=400
            )
        access.hang(None if seconds is None else float(seconds))
        return web.json_response(access.view(), status=201)

    async def release(_: web.Request) -> web.Response:
        access.release()
        return web.json_response(access.view())

    app.router.add_get("/access", view)
    app.router.add_post("/deny", change)
    app.router.add_post("/allow", change)
    app.router.add_delete("/deny", allow_all)
    app.router.add_post("/hang", hang)
    app.router.add_delete("/hang", release)
    return app
