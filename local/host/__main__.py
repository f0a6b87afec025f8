"""`python -m local.host [--root DIR] [--port N]`: run function_app.py like the Functions host.

Start-up mistakes (host.json, settings, bindings, schedules) stop it with one clear message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from local.host.config import (
    HostConfigError,
    apply_local_settings,
    load_host_config,
    resolve_setting_refs,
)
from local.host.easyauth import load_easy_auth
from local.host.functions import load_functions
from local.host.http import build_app, describe
from local.host.queues import QueueListener
from local.host.schedule import parse_schedule
from local.host.timers import TimerRunner
from shared.adapters.storage import StorageAccount, StorageConfigError
from shared.clock import ClockError, clock_from_settings

log = logging.getLogger("Host")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.host", description=__doc__)
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="script root (host.json, function_app.py)"
    )
    parser.add_argument(
        "--port",
        type=int,
        help="HTTP port (default: local.settings.json Host.LocalHttpPort or 7071)",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    return parser.parse_args(argv)


def _local_port(root: Path) -> int:
    path = root / "local.settings.json"
    if not path.exists():
        return 7071
    try:
        return int(json.loads(path.read_text()).get("Host", {}).get("LocalHttpPort", 7071))
    except (ValueError, TypeError, AttributeError) as error:
        raise HostConfigError(f"{path}: Host.LocalHttpPort is unreadable ({error})") from error


RESTART_DELAY = 5.0


async def supervise(runner: Any) -> None:
    """Keep a trigger runner going: a crash is logged and the runner restarted, as the host
    keeps serving HTTP when one listener fails."""
    while True:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "Trigger runner for 'Functions.%s' failed; restarting in %.0f s",
                runner.function.name,
                RESTART_DELAY,
            )
            await asyncio.sleep(RESTART_DELAY)


async def serve(root: Path, port: int, bind: str) -> int:
    """Load everything, fail fast on mistakes, then run HTTP, timers and queues until signalled."""
    apply_local_settings(root, os.environ)
    settings = dict(os.environ)
    config = load_host_config(root, settings)
    easy_auth = load_easy_auth(settings)
    functions = load_functions(root, settings)
    clock = clock_from_settings(settings)
    runners: list[Any] = []
    for function in functions:
        if function.disabled or function.kind == "http":
            continue
        if function.kind == "timer":
            where = f"timer {function.name!r} schedule"
            expression = resolve_setting_refs(function.trigger.schedule, settings, where=where)
            runners.append(
                TimerRunner(
                    function,
                    parse_schedule(expression, function=function.name),
                    clock=clock,
                    account=StorageAccount.from_settings(settings),
                    host_id=config.host_id,
                    timeout=config.function_timeout,
                )
            )
        else:
            where = f"queue trigger {function.name!r} queueName"
            queue_name = resolve_setting_refs(function.trigger.queue_name, settings, where=where)
            connection = function.trigger.connection or "AzureWebJobsStorage"
            runners.append(
                QueueListener(
                    function,
                    queue_name,
                    account=StorageAccount.from_settings(settings, connection),
                    options=config.queues,
                    timeout=config.function_timeout,
                    lease_seconds=config.queue_lease_seconds,
                )
            )

    app = build_app(config, functions, easy_auth)
    web_runner = web.AppRunner(app, access_log=None)
    await web_runner.setup()
    try:
        await web.TCPSite(web_runner, bind, port).start()
    except OSError as error:
        await web_runner.cleanup()
        raise HostConfigError(f"cannot listen on {bind}:{port}: {error.strerror}") from error
    base_url = f"http://{bind}:{port}"
    print(describe(config, base_url, functions), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(supervise(runner)) for runner in runners]
    await stop.wait()
    log.info("Stopping the host")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await web_runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(
        level=os.environ.get("LOCAL_HOST_LOG_LEVEL", "INFO"),
        format="[%(asctime)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The Azure SDKs log every HTTP request at INFO; that drowns the host's own lines.
    logging.getLogger("azure").setLevel(logging.WARNING)
    root = args.root.resolve()
    try:
        return asyncio.run(serve(root, args.port or _local_port(root), args.bind))
    except (HostConfigError, StorageConfigError, ClockError) as error:
        print(f"local host: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
