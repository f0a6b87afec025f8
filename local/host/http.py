"""The HTTP front door: `/<routePrefix>/<route>` with auth levels and keys, plus the admin API.

Keys come in the `x-functions-key` header or the `code` query parameter. As in Azure, a failed
key check is 401 with an empty body and a method outside `methods` is 404. With Easy Auth on
(local/host/easyauth.py) it runs first, as App Service runs it in front of the Functions host.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from aiohttp import web
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from local.host.config import HostConfig, HostConfigError
from local.host.easyauth import PRINCIPAL_HEADERS, EasyAuth, principal_headers
from local.host.functions import HostedFunction
from local.host.routes import Route, compile_route
from shared.logs import escaped

log = logging.getLogger("Host.Http")


@dataclass(frozen=True)
class HttpFunction:
    function: HostedFunction
    route: Route
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # "anonymous", "function" or "admin"


def http_functions(functions: Iterable[HostedFunction]) -> list[HttpFunction]:
    """Compile each HTTP function's route; literal routes are tried before parameterised ones."""
    compiled = []
    for hosted in functions:
        if hosted.kind != "http":
            continue
        trigger = hosted.trigger
        methods = (
            frozenset(str(getattr(m, "value", m)).upper() for m in trigger.methods or ()) or None
        )
        level = str(getattr(trigger.auth_level, "value", trigger.auth_level) or "function").lower()
        try:
            route = compile_route(trigger.route or hosted.name)
        except ValueError as error:
            raise HostConfigError(f"function {hosted.name!r}: {error}") from error
        compiled.append(HttpFunction(hosted, route, methods, level))
    return sorted(compiled, key=lambda f: (f.route.template.count("{"), -len(f.route.template)))


def _key_of(request: web.Request) -> str:
    return request.headers.get("x-functions-key") or request.query.get("code", "")


def _matches(given: str, keys: Iterable[str]) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and a key like "é" must be a 401, not a 500.
    return bool(given) and any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def authorised(level: str, request: web.Request, config: HostConfig) -> bool:
    """Admin needs the master key; function accepts a host function key or the master key."""
    if level == "anonymous":
        return True
    given = _key_of(request)
    if level == "admin":
        return _matches(given, [config.master_key])
    return _matches(given, [config.master_key, *config.function_keys])


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def _to_response(result: Any) -> web.Response:
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers)
        content_type = result.mimetype + (f"; charset={result.charset}" if result.charset else "")
        headers.setdefault("Content-Type", content_type)
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    if result is None:
        return web.Response(status=204)
    return web.Response(status=200, text=str(result))


def _signed_in(
    easy_auth: EasyAuth | None, request: web.Request, path: str
) -> dict[str, str] | web.Response:
    """The request's headers as the app gets them behind Easy Auth, or Easy Auth's 401."""
    headers = dict(request.headers)
    if easy_auth is None:
        return headers
    headers = {k: v for k, v in headers.items() if k.lower() not in PRINCIPAL_HEADERS}
    if easy_auth.excluded(path):
        return headers
    cross_site = request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site" or (
        "Origin" in request.headers
        and urlsplit(request.headers["Origin"]).netloc != request.headers.get("Host")
    )
    who = easy_auth.identify(request.headers.get("Authorization"), cross_site=cross_site)
    if isinstance(who, str) or who is None:
        reason = who or (
            "a cross-site request gets no session"
            if cross_site
            else "no one is signed in (POOLKEEPER_LOCAL_SIGNED_IN is empty)"
        )
        log.info("Easy Auth: 401 for %s %s: %s", request.method, escaped(path), reason)
        challenge = 'Bearer realm="poolkeeper-local"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})
    return headers | principal_headers(who)


def build_app(
    config: HostConfig, functions: list[HostedFunction], easy_auth: EasyAuth | None = None
) -> web.Application:
    """The aiohttp application serving the function routes and the admin endpoints."""
    routes = http_functions(functions)
    by_name = {f.name.lower(): f for f in functions}
    prefix = f"/{config.route_prefix}" if config.route_prefix else ""
    background: set[asyncio.Task[Any]] = set()

    async def ping(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def status(request: web.Request) -> web.Response:
        if not authorised("admin", request, config):
            return web.Response(status=401)
        return _json(
            200,
            {
                "id": config.host_id,
                "state": "Running",
                "functions": [
                    {"name": f.name, "trigger": f.kind, "disabled": f.disabled} for f in functions
                ],
            },
        )

    async def run_function(request: web.Request) -> web.Response:
        # The host's "run a non-HTTP function now" endpoint: 202, the invocation runs on.
        if not authorised("admin", request, config):
            return web.Response(status=401)
        hosted = by_name.get(request.match_info["name"].lower())
        if hosted is None or hosted.kind == "http":
            return _json(
                404, {"error": f"no timer or queue function named {request.match_info['name']!r}"}
            )
        try:
            data = await request.json()
            given = data["input"]
        except (ValueError, KeyError, TypeError):
            return _json(400, {"error": 'body must be JSON like {"input": "<message or empty>"}'})
        value: Any = (
            TimerRequest(past_due=False)
            if hosted.kind == "timer"
            else QueueMessage(id="admin", body=str(given).encode(), dequeue_count=1)
        )
        task = asyncio.create_task(
            hosted.invoke(
                value, reason="Manually run via admin API", timeout=config.function_timeout
            )
        )
        background.add(task)
        task.add_done_callback(lambda done: (background.discard(done), done.exception()))
        return web.Response(status=202)

    async def dispatch(request: web.Request) -> web.Response:
        path = request.path
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return web.Response(status=404)
        remainder = path[len(prefix) :]
        for candidate in routes:
            params = candidate.route.match(remainder)
            if params is None or (candidate.methods and request.method not in candidate.methods):
                continue
            if candidate.function.disabled:
                return web.Response(status=404)
            headers = _signed_in(easy_auth, request, path)
            if isinstance(headers, web.Response):
                return headers
            if not authorised(candidate.auth_level, request, config):
                return web.Response(status=401)
            body = await request.read()
            http_request = func.HttpRequest(
                request.method,
                str(request.url),
                headers=headers,
                params=dict(request.query),
                route_params=params,
                body=body,
            )
            try:
                result = await candidate.function.invoke(
                    http_request,
                    reason="This function was programmatically called via the host APIs.",
                    timeout=config.function_timeout,
                )
            except Exception:  # noqa: BLE001 - logged by invoke; the host answers 500
                return web.Response(status=500)
            return _to_response(result)
        return web.Response(status=404)

    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.router.add_get("/admin/host/ping", ping)
    app.router.add_get("/admin/host/status", status)
    app.router.add_post("/admin/functions/{name}", run_function)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def describe(config: HostConfig, base_url: str, functions: list[HostedFunction]) -> str:
    """The start-up listing of functions and their URLs, like Core Tools prints."""
    lines = ["Functions:"]
    for f in functions:
        if f.kind == "http":
            route = f.trigger.route or f.name
            methods = ",".join(str(getattr(m, "value", m)) for m in f.trigger.methods or ()) or "*"
            lines.append(f"  {f.name}: [{methods}] {base_url}/{config.route_prefix}/{route}")
        else:
            lines.append(f"  {f.name}: {f.kind}Trigger" + (" (disabled)" if f.disabled else ""))
    return "\n".join(lines) + "\n" + json.dumps({"host": base_url})
