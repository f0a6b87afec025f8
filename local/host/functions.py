"""Loads `function_app.py` from the script root and indexes its functions by trigger.

Only the bindings Poolkeeper uses are run (HTTP, timer, queue); anything else stops the host
with a message rather than being silently ignored.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import logging
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

from local.host.config import HostConfigError

log = logging.getLogger("Host.Function")

TRIGGERS = {"httpTrigger": "http", "timerTrigger": "timer", "queueTrigger": "queue"}
HTTP_THREADS = 16


@functools.cache
def _http_threads() -> ThreadPoolExecutor:
    """The threads HTTP invocations run on, apart from the triggers' (asyncio's default pool).

    Here the host's own queue polls and the timer and queue invocations run in this process, so
    while storage hangs they hold the default pool's few threads for minutes, and a request would
    wait for a thread instead of getting the function's own quick 503. In Azure the host polls
    and keeps its timer locks outside the worker and starts no trigger it cannot lock or fetch.
    """
    return ThreadPoolExecutor(max_workers=HTTP_THREADS, thread_name_prefix="http")


@dataclass(frozen=True)
class HostedFunction:
    name: str
    kind: str  # "http", "timer" or "queue"
    trigger: Any  # the decorator's trigger object (HttpTrigger, TimerTrigger, QueueTrigger)
    user_function: Callable[..., Any]
    disabled: bool

    async def _call(self, value: Any) -> Any:
        kwargs = {self.trigger.name: value}
        if inspect.iscoroutinefunction(self.user_function):
            return await self.user_function(**kwargs)
        if self.kind == "http":
            call = functools.partial(self.user_function, **kwargs)
            context = contextvars.copy_context()  # as asyncio.to_thread passes it on
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(_http_threads(), context.run, call)
        return await asyncio.to_thread(self.user_function, **kwargs)

    async def invoke(self, value: Any, *, reason: str, timeout: float | None) -> Any:
        """Run one invocation with the host's log lines; raise what the function raised."""
        invocation = uuid.uuid4()
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", self.name, reason, invocation)
        started = time.monotonic()
        outcome = "Failed"
        try:
            # A sync function's thread cannot be killed; on timeout the invocation counts as
            # failed (as in Azure) while the thread finishes on its own.
            result = await asyncio.wait_for(self._call(value), timeout)
            outcome = "Succeeded"
            return result
        except TimeoutError:
            log.error(
                "Timeout value of %s s exceeded by function 'Functions.%s'", timeout, self.name
            )
            raise
        except Exception:
            log.exception("Executed 'Functions.%s' failed (Id=%s)", self.name, invocation)
            raise
        finally:
            elapsed = (time.monotonic() - started) * 1000
            log.info(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms)",
                self.name,
                outcome,
                invocation,
                elapsed,
            )


def _find_app(module: Any) -> func.FunctionRegister:
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) != 1:
        raise HostConfigError(
            f"{module.__file__}: expected one FunctionApp at module level, found {len(apps)}"
        )
    return apps[0]


def _hosted(function: Any, settings: dict[str, str]) -> HostedFunction:
    name = function.get_function_name()
    trigger = function.get_trigger()
    kind = TRIGGERS.get(trigger.type) if trigger else None
    if kind is None:
        raise HostConfigError(
            f"function {name!r}: trigger {getattr(trigger, 'type', None)!r} is not run by the "
            f"local host (it runs {', '.join(TRIGGERS)})"
        )
    for binding in function.get_bindings():
        if binding is trigger or (kind == "http" and binding.type == "http"):
            continue
        raise HostConfigError(
            f"function {name!r}: binding {binding.type!r} ({binding.name}) "
            "is not run by the local host"
        )
    user_function = function.get_user_function()
    unbound = [p for p in inspect.signature(user_function).parameters if p != trigger.name]
    if unbound:
        raise HostConfigError(f"function {name!r}: parameters {unbound} have no binding")
    # The host's documented switch: app setting AzureWebJobs.<name>.Disabled = true.
    disabled = settings.get(f"AzureWebJobs.{name}.Disabled", "").lower() in ("true", "1")
    return HostedFunction(name, kind, trigger, user_function, disabled)


def load_functions(root: Path, settings: dict[str, str]) -> list[HostedFunction]:
    """Import `function_app` from `root` and return its functions as the host will run them."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("function_app")
    return [_hosted(function, settings) for function in _find_app(module).get_functions()]
