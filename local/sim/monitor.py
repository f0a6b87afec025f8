"""Azure Monitor: metrics batch and Log Analytics query (being written)."""

from aiohttp import web

from local.sim.world import World


async def metrics_batch(request: web.Request, world: World) -> web.Response:
    return web.json_response({"error": {"code": "NotImplemented"}}, status=501)


async def logs_query(request: web.Request, world: World) -> web.Response:
    return web.json_response({"error": {"code": "NotImplemented"}}, status=501)
