"""Health: is the app configured, and do the storage services it runs on answer?

Called by the `health` HTTP function; answers what an on-call engineer checks first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared import __version__
from shared.adapters.storage import StorageAccount, StorageConfigError, probe_services
from shared.clock import CLOCK_FILE_SETTING, clock_from_settings
from shared.config import ConfigError, load_config


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    body: dict[str, Any]


def _config_check(settings: Mapping[str, str]) -> dict[str, Any]:
    try:
        config = load_config(settings)
    except ConfigError as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True, "pools": [pool.name for pool in config.pools]}


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
    """Check configuration and the queue, table and blob services; name whatever failed."""
    config = _config_check(settings)
    storage = _storage_check(settings)
    clock = _clock_check(settings)
    problems = [] if config["ok"] else ["configuration is invalid"]
    if not clock["ok"]:
        problems.append(clock["error"])
    if "error" in storage:
        problems.append(storage["error"])
    else:
        problems += [
            f"storage {name} service at {check['endpoint']} does not answer ({check['error']})"
            for name, check in storage.items()
            if not check["ok"]
        ]
    body: dict[str, Any] = {
        "status": "unhealthy" if problems else "healthy",
        "version": __version__,
        "config": config,
        "clock": clock,
        "storage": storage,
    }
    if problems:
        body["error"] = "; ".join(problems)
    return HealthReport(ok=not problems, body=body)
