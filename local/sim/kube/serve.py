"""Serving the simulated API server on its own: in a background thread (tests) or as
`python -m local.sim.kube --scenario FILE [--port N] [--kubeconfig PATH]`.

The standalone entry builds a world from the scenario (its `workloads` section included), serves
the API at `/`, the admin views at `/_sim/kube/` and `POST /_sim/clock` (`advance_seconds`,
`speed`), and prints one JSON line: `kube`, `admin`, `kubeconfig`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from local.sim import bodies
from local.sim.clock import SimClock
from local.sim.kube.admin import admin_app
from local.sim.kube.api import KubeApi
from local.sim.kube.kubeconfig import write_kubeconfig
from local.sim.kube.model import Cluster, Clusters
from local.sim.scenario import ScenarioError, parse_scenario
from local.sim.world import World

T = TypeVar("T")


def world_from(data: dict[str, Any], *, source: str = "scenario") -> tuple[World, Any]:
    """A world from a scenario dict, and its `workloads` section (kept apart from the scenario
    until the scenario schema has it)."""
    data = dict(data)
    workloads = data.pop("workloads", None)
    scenario = parse_scenario(data, source=source)
    return World(scenario, SimClock(scenario.clock.start, scenario.clock.speed)), workloads


@dataclass
class Served:
    """A server running in a background thread's event loop."""

    url: str
    loop: asyncio.AbstractEventLoop

    def call(self, action: Callable[[], T], timeout: float = 30) -> T:
        """Run `action` on the server's loop (the world is not thread-safe); return its result."""

        async def run() -> T:
            return action()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@contextmanager
def serve_in_thread(
    make_app: Callable[[], web.Application], host: str = "127.0.0.1", port: int = 0
) -> Iterator[Served]:
    """Serve the app built by `make_app` (called on the server's loop); always stopped after."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kube-sim", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        return await _start(make_app(), host, port)

    try:
        runner, bound = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield Served(f"http://{host}:{bound}", loop)
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def standalone_app(
    get_world: Callable[[], World], current: Callable[[], Cluster]
) -> web.Application:
    """The API at `/`, the admin views at `/_sim/kube/`, and `POST /_sim/clock`."""

    async def clock(request: web.Request) -> web.Response:
        world = get_world()
        if request.method == "POST":
            try:
                data = bodies.obj(await bodies.json_body(request), "body")
                if "advance_seconds" in data:
                    world.clock.advance(float(data["advance_seconds"]))
                if "speed" in data:
                    world.clock.set_speed(float(data["speed"]))
            except (ValueError, TypeError) as error:
                return web.json_response(
                    {"error": f'body must be like {{"advance_seconds": 600}}: {error}'}, status=400
                )
        current().sync()
        return web.json_response({"now": world.now().isoformat(), "speed": world.clock.speed})

    admin = web.Application()
    admin.router.add_get("/clock", clock)
    admin.router.add_post("/clock", clock)
    admin.add_subapp("/kube/", admin_app(current))
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.add_subapp("/_sim/", admin)
    app.router.add_route("*", "/{tail:.*}", KubeApi(current).handle)  # after /_sim/: a catch-all
    return app


async def _serve(scenario_path: Path, port: int, kubeconfig: Path) -> None:
    world, workloads = world_from(json.loads(scenario_path.read_text()), source=str(scenario_path))
    current = Clusters(lambda: world, lambda _: workloads)
    current()  # built now: bad workloads fail at start, and pods are as old as the scenario
    runner, bound = await _start(standalone_app(lambda: world, current), "127.0.0.1", port)
    url = f"http://127.0.0.1:{bound}"
    write_kubeconfig(kubeconfig, url)
    print(
        json.dumps({"kube": url, "admin": f"{url}/_sim/kube", "kubeconfig": str(kubeconfig)}),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.sim.kube", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=Path, help="where to write it (default: temp)")
    args = parser.parse_args(argv)
    kubeconfig = args.kubeconfig or Path(tempfile.mkdtemp(prefix="poolkeeper-kube-")) / "config"
    try:
        asyncio.run(_serve(args.scenario, args.port, kubeconfig))
    except (ScenarioError, OSError, ValueError) as error:
        print(f"kube simulator: {error}", file=sys.stderr)
        return 2
    return 0
