"""Host configuration: host.json, local.settings.json and the keys the HTTP front door accepts.

Read once at start-up by `local.host.__main__`; a mistake stops the host with a message.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MASTER_KEY_SETTING = "POOLKEEPER_LOCAL_MASTER_KEY"
FUNCTION_KEY_SETTING = "POOLKEEPER_LOCAL_FUNCTION_KEYS"

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
_SETTING_REF = re.compile(r"%([^%]+)%")


class HostConfigError(ValueError):
    """host.json, local.settings.json or a binding expression is wrong."""


def parse_timespan(text: str, *, field: str) -> float:
    """Seconds in a .NET TimeSpan string as host.json writes them ("00:00:30", "1.00:00:00")."""
    match = _TIMESPAN.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise HostConfigError(f"{field}: expected a TimeSpan like 00:00:30, got {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def resolve_setting_refs(text: str, settings: Mapping[str, str], *, where: str) -> str:
    """Replace `%NAME%` with the app setting NAME, as binding expressions do."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise HostConfigError(
                f"{where}: app setting {name!r} referenced as %{name}% is not set"
            )
        return settings[name]

    return _SETTING_REF.sub(lookup, text)


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's documented defaults."""

    batch_size: int = 16
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    root: Path
    route_prefix: str
    queues: QueueOptions
    function_timeout: float | None
    master_key: str
    function_keys: tuple[str, ...]
    host_id: str
    queue_lease_seconds: int = 600


def _section(data: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise HostConfigError(f"host.json {field}: must be a JSON object, got {data!r}")
    return data


def _integer(section: Mapping[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HostConfigError(
            f"host.json extensions.queues.{key}: must be a whole number, got {value!r}"
        )
    return value


def _queue_options(section: Mapping[str, Any]) -> QueueOptions:
    defaults = QueueOptions()
    encoding = str(section.get("messageEncoding", defaults.message_encoding)).lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError(
            f"host.json extensions.queues.messageEncoding: base64 or none, got {encoding!r}"
        )
    batch_size = _integer(section, "batchSize", defaults.batch_size)
    if not 1 <= batch_size <= 32:
        raise HostConfigError(f"host.json extensions.queues.batchSize: 1 to 32, got {batch_size}")
    max_dequeue = _integer(section, "maxDequeueCount", defaults.max_dequeue_count)
    if max_dequeue < 1:
        raise HostConfigError(
            f"host.json extensions.queues.maxDequeueCount: at least 1, got {max_dequeue}"
        )
    polling = section.get("maxPollingInterval")
    visibility = section.get("visibilityTimeout")
    return QueueOptions(
        batch_size=batch_size,
        max_polling_interval=(
            parse_timespan(polling, field="host.json extensions.queues.maxPollingInterval")
            if polling is not None
            else defaults.max_polling_interval
        ),
        visibility_timeout=(
            parse_timespan(visibility, field="host.json extensions.queues.visibilityTimeout")
            if visibility is not None
            else defaults.visibility_timeout
        ),
        max_dequeue_count=max_dequeue,
        message_encoding=encoding,
    )


def apply_local_settings(root: Path, environ: dict[str, str]) -> None:
    """Load local.settings.json `Values` into the environment; variables already set win."""
    path = root / "local.settings.json"
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise HostConfigError(f"{path}: not valid JSON ({error})") from error
    if data.get("IsEncrypted"):
        raise HostConfigError(
            f"{path}: IsEncrypted is true; the local host reads plain values only"
        )
    values = data.get("Values", {})
    if not isinstance(values, dict):
        raise HostConfigError(f"{path}: Values must be an object of string settings")
    for name, value in values.items():
        environ.setdefault(name, str(value))


LEASE_SETTING = "POOLKEEPER_LOCAL_QUEUE_LEASE_SECONDS"


def _lease_seconds(settings: Mapping[str, str]) -> int:
    """How long a fetched message stays invisible while it runs (the host's 10 minutes); tests
    that kill a worker shorten it to see the redelivery sooner."""
    raw = settings.get(LEASE_SETTING, "600")
    if not raw.isdigit() or not 1 <= int(raw) <= 3600:
        raise HostConfigError(f"{LEASE_SETTING}: whole seconds from 1 to 3600, got {raw!r}")
    return int(raw)


def load_host_config(root: Path, settings: Mapping[str, str]) -> HostConfig:
    """Read host.json under `root`; keys come from settings, or are generated for this run."""
    path = root / "host.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise HostConfigError(f"{path} is missing: the script root needs a host.json") from error
    except ValueError as error:
        raise HostConfigError(f"{path}: not valid JSON ({error})") from error
    data = _section(data, "(top level)")
    if data.get("version") != "2.0":
        raise HostConfigError(f'{path}: "version" must be "2.0"')
    extensions = _section(data.get("extensions", {}), "extensions")
    timeout = data.get("functionTimeout")
    function_keys = tuple(
        key.strip() for key in settings.get(FUNCTION_KEY_SETTING, "").split(",") if key.strip()
    )
    return HostConfig(
        root=root,
        route_prefix=str(
            _section(extensions.get("http", {}), "extensions.http").get("routePrefix", "api")
        ).strip("/"),
        queues=_queue_options(_section(extensions.get("queues", {}), "extensions.queues")),
        function_timeout=(
            parse_timespan(timeout, field="host.json functionTimeout")
            if timeout not in (None, "-1")
            else None
        ),
        master_key=settings.get(MASTER_KEY_SETTING) or secrets.token_urlsafe(32),
        function_keys=function_keys or (secrets.token_urlsafe(32),),
        host_id=settings.get("AzureFunctionsWebHost__hostid", "poolkeeper-local"),
        queue_lease_seconds=_lease_seconds(settings),
    )
