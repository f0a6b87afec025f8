"""Health: is the app configured, and do the storage services it runs on answer?

Called by the `health` HTTP function; answers what an on-call engineer checks first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared import __version__
from shared.adapters.storage import StorageAccount, StorageConfigError, probe_services
from shared.clock import CLOCK_FILE_SETTING, clock_from_settings
from shared.config import ConfigError, load_config
from shared.config.mode import mode_from_settings

log = logging.getLogger("poolkeeper.health")


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    body: dict[str, Any]


def _config_check(settings: Mapping[str, str]) -> dict[str, Any]:
    try:
        config = load_config(settings)
    except ConfigError as error:
        return {"ok": False, "error": str(error)}
    return {
        "ok": True,
        "pools": [pool.name for pool in config.pools],
        "mode": mode_from_settings(settings).value,
    }


def _storage_check(settings: Mapping[str, str]) -> dict[str, Any]:
    try:
        account = StorageAccount.from_settings(settings)
    except StorageConfigError as error:
        return {"error": str(error)}
    return {
        status.service: {"ok": status.ok, "endpoint": status.endpoint}
        | ({"error": status.error} if status.error else {})
        for status in probe_services(account)
    }


def _clock_check(settings: Mapping[str, str]) -> dict[str, Any]:
    source = settings.get(CLOCK_FILE_SETTING)
    try:
        now = clock_from_settings(settings).now()
    except ValueError as error:
        return {"ok": False, "source": source, "error": str(error)}
    return {"ok": True, "now": now.isoformat(), "source": source or "system"}


def health_report(settings: Mapping[str, str]) -> HealthReport:
    """Check configuration, clock and the queue, table and blob services; name what failed.

    The answer is anonymous, so it names the failing parts only; the details (endpoints,
    configuration problems, error text) go to the log, once, for the on-call engineer.
    """
    config = _config_check(settings)
    storage = _storage_check(settings)
    clock = _clock_check(settings)
    summary: list[str] = [] if config["ok"] else ["configuration is invalid"]
    details: list[str] = [] if config["ok"] else [config["error"]]
    if not clock["ok"]:
        summary.append("the clock file is unreadable")
        details.append(clock["error"])
    if "error" in storage:
        summary.append("storage is not configured")
        details.append(storage["error"])
    else:
        for name, check in storage.items():
            if not check["ok"]:
                summary.append(f"storage {name} service does not answer")
                details.append(f"storage {name} service at {check['endpoint']}: {check['error']}")
    body: dict[str, Any] = {
        "status": "unhealthy" if summary else "healthy",
        "version": __version__,
        "config": {"ok": config["ok"]}
        | ({"pools": len(config["pools"]), "mode": config["mode"]} if config["ok"] else {}),
        "clock": {"ok": clock["ok"]}
        | (
            {"now": clock["now"], "source": "system" if clock["source"] == "system" else "file"}
            if clock["ok"]
            else {}
        ),
        "storage": (
            {name: {"ok": check["ok"]} for name, check in storage.items()}
            if "error" not in storage
            else {}
        ),
    }
    if summary:
        body["error"] = "; ".join(summary) + " (details in the log)"
        log.error("Health check failed: %s", " | ".join(details))
    return HealthReport(ok=not summary, body=body)


HEALTH_CACHE_SECONDS = 10.0  # the anonymous route answers from this: it cannot be made to probe


class HealthCache:
    """The last health report, reused for `ttl` wall seconds: a flood of anonymous requests
    costs one configuration load and three storage probes per `ttl`, not one per request."""

    def __init__(
        self,
        ttl: float = HEALTH_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        compute: Callable[[Mapping[str, str]], HealthReport] = health_report,
    ) -> None:
        self._ttl, self._monotonic, self._compute = ttl, monotonic, compute
        self._lock = threading.Lock()
        self._last: tuple[float, HealthReport] | None = None

    def report(self, settings: Mapping[str, str]) -> HealthReport:
        """The cached report while it is younger than `ttl`, else a fresh one (made once, however
        many requests wait for it)."""
        with self._lock:
            if self._last is not None and self._monotonic() - self._last[0] < self._ttl:
                return self._last[1]
            fresh = self._compute(settings)
            self._last = (self._monotonic(), fresh)
            return fresh
