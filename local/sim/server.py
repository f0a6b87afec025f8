"""`python -m local.sim --scenario FILE`: serves ARM, Azure Monitor and Key Vault secrets over
HTTPS (test CA) and the managed-identity endpoint and `/_sim/` admin API over HTTP, all on
loopback; the Kubernetes API over plain HTTP, or, with the scenario's `clusters`, each cluster
over TLS on a port of its own (local/sim/kube/__init__.py).

Prints one JSON line with the endpoints once listening (`info`); SIGTERM stops it. Its keys:
`arm`, `metrics`, `logs`, `admin`, `identity_endpoint`, `identity_header`, `ca_cert`, `kube`,
`kubeconfig`, `clock_file`, `subscription`, `tenant`; `key_vault` (`url`: the vault URL, the ARM
URL; `name`; `resource`: the token audience its challenge names, local/sim/keyvault.py); and
with `clusters`, `clusters`: {name: {`server`, `ca_cert`, `ca_pem`, `auth`, `kubeconfig`,
`token` (token mode), `client_cert_pem` (client_certificate mode: certificate and key PEM),
`audience` (entra), `secrets` (the Key Vault secrets holding its credential)}}, and `kube` and
`kubeconfig` are the first cluster's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from local.sim import arm, entra, keyvault, monitor, tenancy
from local.sim.bodies import json_body
from local.sim.clock import SimClock
from local.sim.guest import plan
from local.sim.identity import ARM_AUDIENCES, MONITOR_AUDIENCES, TokenIssuer, unauthorised
from local.sim.keyvault import Caller, Vault
from local.sim.kube import Clusters, kube_app, write_kubeconfig
from local.sim.kube import admin_app as kube_admin_app
from local.sim.kube.admin import cluster_admin_app
from local.sim.kube.endpoint import Endpoint
from local.sim.scenario import (
    Fault,
    Scenario,
    ScenarioError,
    Throttle,
    load_scenario,
    parse_scenario,
)
from local.sim.world import CallRecord, Instance, ScaleSet, World


class Simulator:
    """The running simulator: one world at a time, replaced when a scenario is loaded."""

    def __init__(self, scenario: Scenario, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.clock_file = state_dir / "clock.json"
        self.issuer = TokenIssuer(scenario.tenant)
        self.world = self._world(scenario)
        # The scenario's clusters, fixed for the process: their ports, CAs and credentials.
        self.endpoints = {
            spec.name: Endpoint(
                spec.name, spec.auth, state_dir, lambda: self.world, self.issuer.issue
            )
            for spec in scenario.clusters or []
        }
        # The cluster of `/_sim/kube/` and `info["kube"]`: the first listed, or every scale set's.
        self.clusters = (
            next(iter(self.endpoints.values())).clusters
            if self.endpoints
            else Clusters(lambda: self.world)
        )
        self.vault = Vault(scenario.key_vault, self.now)
        self._check_clusters()  # bad workloads fail at start-up, not at the first request

    def _world(self, scenario: Scenario) -> World:
        clock = SimClock(scenario.clock.start, scenario.clock.speed, publish_to=self.clock_file)
        return World(scenario, clock)

    def now(self) -> datetime:
        return self.world.now()

    def _check_clusters(self) -> None:
        self.clusters()
        for endpoint in self.endpoints.values():
            endpoint.clusters()

    def load(self, scenario: Scenario) -> None:
        """Replace the world. The clusters are fixed at start: the scenario must name the same
        ones with the same auth (their scale sets and workloads may change)."""
        have = [(e.name, e.auth) for e in self.endpoints.values()]
        if [(c.name, c.auth) for c in scenario.clusters or []] != have:
            listed = ", ".join(f"{name} ({auth.mode})" for name, auth in have) or "none"
            raise ScenarioError(
                f"the simulator serves the clusters it started with ({listed}): a loaded "
                "scenario must list the same names with the same auth"
            )
        self.world = self._world(scenario)
        self._check_clusters()
        for endpoint in self.endpoints.values():
            endpoint.access.reset()
        self.vault = Vault(scenario.key_vault, self.now)
        self.store_credentials()

    def store_credentials(self) -> dict[str, list[str]]:
        """Put each served cluster's credential into the vault (a secret the scenario defines
        stays as it is); the names stored, per cluster."""
        stored: dict[str, list[str]] = {}
        for endpoint in self.endpoints.values():
            if not endpoint.url:
                continue
            stored[endpoint.name] = [
                name
                for name, (value, content_type) in endpoint.secrets().items()
                if self.vault.add_default(name, value, content_type)
            ]
        return stored

    @staticmethod
    def record(world: World, operation: str, request: web.Request, status: int) -> None:
        """Log a call in the world that received it: an answer held past a reset (a timeout
        fault's sleep) must not show up among the next scenario's calls."""
        world.calls.append(
            CallRecord(
                operation=operation,
                method=request.method,
                path=request.path,
                status=status,
                sim_time=world.now().isoformat(),
                wall_time=time.time(),
                api_version=request.query.get("api-version", ""),
            )
        )

    # -- the Azure-facing HTTPS app ---------------------------------------------------------------

    async def azure(self, request: web.Request) -> web.Response:
        world = self.world
        world.settle()
        path = request.path
        monitor_audiences = MONITOR_AUDIENCES + tuple(a + "/" for a in MONITOR_AUDIENCES)
        if entra.serves(path):
            response = await entra.handle(request, world)
            self.record(world, "Entra_" + path.rsplit("/", 1)[-1], request, response.status)
            return response
        if keyvault.serves(path):
            scenario = world.scenario
            caller = Caller(
                scenario.subscription,
                scenario.tenant,
                scenario.location,
                request.headers.get("Authorization", ""),
            )
            response = keyvault.handle(request, self.vault, caller)
            self.record(world, keyvault.operation(request), request, response.status)
            return response
        if path.lower().endswith("/metrics:getbatch") and request.method == "POST":
            operation, handler = "MetricsBatch_Batch", monitor.metrics_batch
        elif path.lower().startswith("/v1/workspaces/") and path.lower().endswith("/query"):
            operation, handler = "Query_Execute", monitor.logs_query
        elif (route := tenancy.resolve(request.method, path)) is not None:
            response = await tenancy.handle(request, world, self.issuer, route)
            self.record(world, route.operation, request, response.status)
            return response
        else:
            resolved = arm.resolve(request.method, path)
            if resolved is None:
                response = web.json_response(
                    {
                        "error": {
                            "code": "NotFound",
                            "message": f"No simulated route for {request.method} {path}.",
                        }
                    },
                    status=404,
                )
                self.record(world, "Unknown", request, response.status)
                return response
            operation, route_handler, match = resolved
            authorization = request.headers.get("Authorization")
            if not self.issuer.valid(authorization, ARM_AUDIENCES):
                response = unauthorised(authorization, ARM_AUDIENCES)
            else:
                response = await arm.handle(request, world, operation, route_handler, match)
            self.record(world, operation, request, response.status)
            return response
        authorization = request.headers.get("Authorization")
        if not self.issuer.valid(authorization, monitor_audiences):
            response = unauthorised(authorization, monitor_audiences)
        else:
            response = await handler(request, world)
        self.record(world, operation, request, response.status)
        return response

    # -- the admin API -----------------------------------------------------------------------------

    async def load_scenario(self, request: web.Request) -> web.Response:
        try:
            data = await json_body(request)
        except ValueError:
            return _error(400, 'body must be a scenario JSON object, or {"path": FILE}')
        try:
            if isinstance(data, dict) and set(data) == {"path"}:
                scenario = load_scenario(Path(data["path"]))
            else:
                scenario = parse_scenario(data, source="POST /_sim/scenario")
            self.load(scenario)
        except (ScenarioError, ValueError) as error:
            return _error(400, str(error))
        return web.json_response(self.state())

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault.model_validate(await json_body(request))
        except ValueError as error:
            return _error(400, f"invalid fault: {error}")
        self.world.add_fault(fault)
        return web.json_response({"faults": self._faults()}, status=201)

    async def clear_faults(self, _: web.Request) -> web.Response:
        self.world.faults.clear()
        return web.json_response({"faults": []})

    async def list_faults(self, _: web.Request) -> web.Response:
        return web.json_response({"faults": self._faults()})

    def _faults(self) -> list[dict[str, Any]]:
        return [
            active.spec.model_dump(mode="json", exclude_none=True) | {"remaining": active.remaining}
            for active in self.world.faults
        ]

    async def set_throttling(self, request: web.Request) -> web.Response:
        try:
            data = await json_body(request)
            budgets = [Throttle.model_validate(item) for item in data]
        except (ValueError, TypeError) as error:
            return _error(400, f"body must be a list of throttle budgets: {error}")
        self.world.throttles = budgets
        return web.json_response([b.model_dump() for b in budgets])

    async def clock(self, request: web.Request) -> web.Response:
        world = self.world
        if request.method == "POST":
            try:
                data = await json_body(request)
                if "advance_seconds" in data:
                    world.clock.advance(float(data["advance_seconds"]))
                if "speed" in data:
                    world.clock.set_speed(float(data["speed"]))
            except (ValueError, TypeError, AttributeError) as error:
                return _error(
                    400, f'body must be like {{"advance_seconds": 600}} or {{"speed": 60}}: {error}'
                )
            world.settle()
        return web.json_response(
            {
                "now": world.now().isoformat(),
                "speed": world.clock.speed,
                "clock_file": str(self.clock_file),
            }
        )

    async def set_load(self, request: web.Request) -> web.Response:
        try:
            data = await json_body(request)
            scale_set = next(
                s
                for s in self.world.scale_sets.values()
                if s.name.lower() == str(data["scale_set"]).lower()
            )
            self.world.set_load(scale_set, data.get("cpu"), data.get("memory"))
        except (ValueError, KeyError, TypeError, StopIteration) as error:
            return _error(
                400, f'body must be like {{"scale_set": NAME, "cpu": 97, "memory": 50}}: {error!r}'
            )
        return web.json_response(
            {"steps": [s.model_dump(mode="json") for s in scale_set.spec.load.steps]}
        )

    def state(self) -> dict[str, Any]:
        world = self.world
        world.settle()
        return {
            "now": world.now().isoformat(),
            "speed": world.clock.speed,
            "subscription": world.scenario.subscription,
            "scale_sets": [
                {
                    "resource_group": s.resource_group,
                    "name": s.name,
                    "id": s.id,
                    "node_group": s.spec.node_group,
                    "capacity": s.capacity,
                    "etag": f'"{s.etag}"',
                    "model_image": s.image,
                    "instances": [
                        {
                            "instance_id": str(i.instance_id),
                            "computer_name": i.computer_name,
                            "zone": i.zone,
                            "provisioning_state": i.provisioning,
                            "power_state": i.power,
                            "image": i.image,
                            "image_version": i.source.version_id,
                            "latest_model_applied": i.model_version == s.model_version,
                            "os": os_view(world, s, i),
                        }
                        for i in sorted(s.instances.values(), key=lambda i: i.instance_id)
                    ],
                }
                for s in world.scale_sets.values()
            ],
            "history": world.history,
            "os_updates_published": len(world.repo().published),
            "run_commands": world.run_log,
            "resources": sorted(
                body["id"]
                for body in world.resources.values()
                if body["type"] != "Microsoft.Compute/disks"
            ),
        }

    async def get_state(self, _: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def get_calls(self, request: web.Request) -> web.Response:
        calls = self.world.calls
        counters: dict[str, int] = {}
        for call in calls:
            counters[call.operation] = counters.get(call.operation, 0) + 1
        body: dict[str, Any] = {"counters": counters, "total": len(calls)}
        if request.query.get("log", "true") != "false":
            body["calls"] = [call.__dict__ for call in calls]
        return web.json_response(body)

    async def get_held(self, _: web.Request) -> web.Response:
        """Requests that took effect and whose answer is held back (fault kind `held`)."""
        return web.json_response({"held": list(self.world.held.values())})

    async def clear_calls(self, _: web.Request) -> web.Response:
        self.world.calls.clear()
        return web.json_response({"total": 0})


def os_view(world: World, scale_set: ScaleSet, instance: Instance) -> dict[str, Any]:
    """The truth about an instance's OS, for tests: what runs, what is installed, what waits."""
    guest = instance.guest
    disk = world.disk_of(scale_set, instance)
    return {
        "guest": guest.state,
        "boot_id": guest.boot_id,
        "boots": guest.boots,
        "booted_at": instance.booted_at.isoformat() if instance.booted_at else None,
        "running_kernel": guest.kernel,
        "installed_kernels": disk.kernels(),
        "reboot_required": guest.reboot_required,
        "pending_updates": plan(disk, world.repo()).count,
        "machine_id": disk.machine_id(),
        "hostname": guest.hostname,
        "never_ready": guest.never_ready,
    }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def azure_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", sim.azure)
    return app


def admin_app(sim: Simulator) -> web.Application:
    app = web.Application()
    app.router.add_get("/msi/token", sim.issuer.token_endpoint)
    app.router.add_post("/_sim/scenario", sim.load_scenario)
    app.router.add_get("/_sim/faults", sim.list_faults)
    app.router.add_post("/_sim/faults", sim.add_fault)
    app.router.add_delete("/_sim/faults", sim.clear_faults)
    app.router.add_post("/_sim/throttling", sim.set_throttling)
    app.router.add_get("/_sim/clock", sim.clock)
    app.router.add_post("/_sim/clock", sim.clock)
    app.router.add_post("/_sim/load", sim.set_load)
    app.router.add_get("/_sim/state", sim.get_state)
    app.router.add_get("/_sim/calls", sim.get_calls)
    app.router.add_delete("/_sim/calls", sim.clear_calls)
    app.router.add_get("/_sim/held", sim.get_held)
    keyvault.add_admin_routes(app, lambda: sim.vault)

    async def list_clusters(_: web.Request) -> web.Response:
        return web.json_response(
            {
                name: {
                    "server": e.url,
                    "kubeconfig": str(e.kubeconfig),
                    "scale_sets": sorted(e.clusters().scale_sets or []),
                }
                | e.access.view()
                for name, e in sim.endpoints.items()
            }
        )

    app.router.add_get("/_sim/kube/clusters", list_clusters)
    for name, endpoint in sim.endpoints.items():
        app.add_subapp(
            f"/_sim/kube/clusters/{name}/", cluster_admin_app(endpoint.clusters, endpoint.access)
        )
    app.add_subapp("/_sim/kube/", kube_admin_app(sim.clusters))
    return app


def tls_context(state_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context signed by a fresh test CA; returns it and the CA file clients trust."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_path = state_dir / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_path))
    return context, ca_path


async def serve(
    scenario_path: Path, state_dir: Path, arm_port: int, admin_port: int, kube_port: int
) -> None:
    sim = Simulator(load_scenario(scenario_path), state_dir)
    context, ca_path = tls_context(state_dir)
    azure = web.AppRunner(azure_app(sim), access_log=None)
    admin = web.AppRunner(admin_app(sim), access_log=None)
    # Without clusters: one plain-HTTP API server of every scale set, as always.
    plain = None if sim.endpoints else web.AppRunner(kube_app(sim.clusters), access_log=None)
    served = {
        name: web.AppRunner(kube_app(e.clusters, e.access), access_log=None)
        for name, e in sim.endpoints.items()
    }
    runners = [azure, admin, *([plain] if plain else []), *served.values()]
    for runner in runners:
        await runner.setup()
    azure_site = web.TCPSite(azure, "127.0.0.1", arm_port, ssl_context=context)
    admin_site = web.TCPSite(admin, "127.0.0.1", admin_port)
    plain_site = None if plain is None else web.TCPSite(plain, "127.0.0.1", kube_port)
    cluster_sites = {
        name: web.TCPSite(runner, "127.0.0.1", 0, ssl_context=sim.endpoints[name].ssl_context())
        for name, runner in served.items()
    }
    for site in (azure_site, admin_site, *([plain_site] if plain_site else [])):
        await site.start()
    for site in cluster_sites.values():
        await site.start()
    arm_url = f"https://127.0.0.1:{_port(azure_site)}"
    admin_url = f"http://127.0.0.1:{_port(admin_site)}"
    for name, site in cluster_sites.items():
        sim.endpoints[name].served(f"https://127.0.0.1:{_port(site)}")
    stored = sim.store_credentials()
    clusters = {name: e.info() | {"secrets": stored[name]} for name, e in sim.endpoints.items()}
    if plain_site is not None:
        kube_url = f"http://127.0.0.1:{_port(plain_site)}"
        kubeconfig = state_dir / "kubeconfig"
        write_kubeconfig(kubeconfig, kube_url)
    else:
        first = next(iter(sim.endpoints.values()))
        kube_url, kubeconfig = first.url, first.kubeconfig
    info: dict[str, Any] = {
        "arm": arm_url,
        "metrics": arm_url,
        "logs": f"{arm_url}/v1",
        "admin": f"{admin_url}/_sim",
        "identity_endpoint": f"{admin_url}/msi/token",
        "identity_header": sim.issuer.header_secret,
        "ca_cert": str(ca_path),
        "kube": kube_url,
        "kubeconfig": str(kubeconfig),
        "clock_file": str(sim.clock_file),
        "subscription": sim.world.scenario.subscription,
        "tenant": sim.world.scenario.tenant,
        "key_vault": {
            "url": arm_url,
            "name": sim.world.scenario.key_vault.name,
            "resource": keyvault.resource_for(arm_url.removeprefix("https://")),
        },
    }
    if clusters:
        info["clusters"] = clusters
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for endpoint in sim.endpoints.values():
        endpoint.access.release()  # a held request is answered, not left to the shutdown timeout
    for runner in runners:
        await runner.cleanup()


def _port(site: web.TCPSite) -> int:
    return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.sim", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument(
        "--state-dir", type=Path, help="where the CA and clock file go (default: temp)"
    )
    parser.add_argument("--arm-port", type=int, default=0)
    parser.add_argument("--admin-port", type=int, default=0)
    parser.add_argument("--kube-port", type=int, default=0)
    args = parser.parse_args(argv)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="poolkeeper-sim-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(serve(args.scenario, state_dir, args.arm_port, args.admin_port, args.kube_port))
    except ScenarioError as error:
        print(f"simulator: {error}", file=sys.stderr)
        return 2
    return 0
