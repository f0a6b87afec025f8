"""Unit tests for local/host/config.py: host.json, local.settings.json and the front-door keys,
with the host's documented defaults and a helpful message for every mistake."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.host.config import (
    HostConfigError,
    QueueOptions,
    apply_local_settings,
    load_host_config,
    parse_timespan,
)

# --- parse_timespan ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:30", 30),
        ("00:05:00", 300),
        ("01:00:00", 3600),
        ("1.02:03:04", 93784),
        ("00:00:00.5", 0.5),
        ("00:00:01.25", 1.25),
        ("00:00:00", 0),
        ("9:00:00", 32400),
        (" 00:00:30 ", 30),
    ],
)
def test_parse_timespan_gives_seconds(text: str, seconds: float) -> None:
    assert parse_timespan(text, field="functionTimeout") == seconds


@pytest.mark.parametrize(
    "text",
    ["30", "00:30", "", "abc", "00:00:3", "-00:00:30", "1.00:00", "00:00:30s", "1 00:00:00", 30],
    ids=[
        "bare-number",
        "two-parts",
        "empty",
        "words",
        "one-digit-seconds",
        "negative",
        "days-without-time",
        "unit-suffix",
        "space-for-dot",
        "not-a-string",
    ],
)
def test_parse_timespan_rejects_bad_text_naming_the_field(text: Any) -> None:
    with pytest.raises(HostConfigError, match="expected a TimeSpan like 00:00:30") as raised:
        parse_timespan(text, field="extensions.queues.maxPollingInterval")
    assert "extensions.queues.maxPollingInterval" in str(raised.value)
    assert repr(text) in str(raised.value)


# --- load_host_config -------------------------------------------------------------------------


def root_with(tmp_path: Path, host_json: dict[str, Any] | str) -> Path:
    text = host_json if isinstance(host_json, str) else json.dumps(host_json)
    (tmp_path / "host.json").write_text(text)
    return tmp_path


def queues(**section: Any) -> dict[str, Any]:
    return {"version": "2.0", "extensions": {"queues": section}}


def test_load_host_config_defaults_when_extensions_are_absent(tmp_path: Path) -> None:
    config = load_host_config(root_with(tmp_path, {"version": "2.0"}), {})
    assert config.root == tmp_path
    assert config.route_prefix == "api"
    assert config.function_timeout is None
    assert config.host_id == "poolkeeper-local"
    assert config.queues == QueueOptions(
        batch_size=16,
        max_polling_interval=60.0,
        visibility_timeout=0.0,
        max_dequeue_count=5,
        message_encoding="base64",
    )


def test_load_host_config_reads_custom_values(tmp_path: Path) -> None:
    host_json = {
        "version": "2.0",
        "functionTimeout": "00:10:00",
        "extensions": {
            "http": {"routePrefix": "/v1/"},
            "queues": {
                "batchSize": 32,
                "maxPollingInterval": "00:00:02",
                "visibilityTimeout": "00:00:30",
                "maxDequeueCount": 3,
                "messageEncoding": "None",
            },
        },
    }
    config = load_host_config(
        root_with(tmp_path, host_json), {"AzureFunctionsWebHost__hostid": "pk-test"}
    )
    assert config.route_prefix == "v1"
    assert config.function_timeout == 600
    assert config.host_id == "pk-test"
    assert config.queues == QueueOptions(
        batch_size=32,
        max_polling_interval=2.0,
        visibility_timeout=30.0,
        max_dequeue_count=3,
        message_encoding="none",
    )


@pytest.mark.parametrize(
    ("host_json", "prefix"),
    [
        ({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}}, ""),
        ({"version": "2.0", "extensions": {"http": {}}}, "api"),
    ],
    ids=["empty-prefix", "http-without-prefix"],
)
def test_load_host_config_route_prefix(
    tmp_path: Path, host_json: dict[str, Any], prefix: str
) -> None:
    assert load_host_config(root_with(tmp_path, host_json), {}).route_prefix == prefix


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [("-1", None), ("00:05:00", 300.0), ("1.00:00:00", 86400.0)],
    ids=["unlimited", "five-minutes", "one-day"],
)
def test_load_host_config_function_timeout(
    tmp_path: Path, timeout: str, expected: float | None
) -> None:
    root = root_with(tmp_path, {"version": "2.0", "functionTimeout": timeout})
    assert load_host_config(root, {}).function_timeout == expected


@pytest.mark.parametrize(
    ("host_json", "message"),
    [
        pytest.param(
            queues(messageEncoding="utf8"),
            "extensions.queues.messageEncoding: base64 or none, got 'utf8'",
            id="message-encoding",
        ),
        pytest.param(
            queues(batchSize=0), "extensions.queues.batchSize: 1 to 32, got 0", id="batch-size-0"
        ),
        pytest.param(
            queues(batchSize=33),
            "extensions.queues.batchSize: 1 to 32, got 33",
            id="batch-size-33",
        ),
        pytest.param(
            queues(maxDequeueCount=0),
            "extensions.queues.maxDequeueCount: at least 1, got 0",
            id="max-dequeue-count-0",
        ),
        pytest.param(
            queues(maxPollingInterval="2s"),
            "extensions.queues.maxPollingInterval: expected a TimeSpan like 00:00:30, got '2s'",
            id="max-polling-interval",
        ),
        pytest.param(
            queues(visibilityTimeout="30"),
            "extensions.queues.visibilityTimeout: expected a TimeSpan like 00:00:30, got '30'",
            id="visibility-timeout",
        ),
        pytest.param(
            {"version": "2.0", "functionTimeout": "10 minutes"},
            "functionTimeout: expected a TimeSpan",
            id="function-timeout",
        ),
        pytest.param({"version": "1.0"}, '"version" must be "2.0"', id="version-1"),
        pytest.param({"version": 2.0}, '"version" must be "2.0"', id="version-number"),
        pytest.param({}, '"version" must be "2.0"', id="version-missing"),
        pytest.param("{not json", "not valid JSON", id="invalid-json"),
        pytest.param("", "not valid JSON", id="empty-file"),
    ],
)
def test_load_host_config_rejects_mistakes_with_a_helpful_message(
    tmp_path: Path, host_json: dict[str, Any] | str, message: str
) -> None:
    with pytest.raises(HostConfigError, match=re.escape(message)):
        load_host_config(root_with(tmp_path, host_json), {})


@pytest.mark.parametrize(
    "host_json",
    [
        pytest.param(queues(batchSize="abc"), id="batch-size-not-a-number"),
        pytest.param(queues(maxDequeueCount="five"), id="max-dequeue-count-not-a-number"),
        pytest.param({"version": "2.0", "extensions": None}, id="extensions-null"),
        pytest.param([], id="top-level-list"),
    ],
)
def test_load_host_config_rejects_wrongly_typed_values_with_host_config_error(
    tmp_path: Path, host_json: Any
) -> None:
    with pytest.raises(HostConfigError, match=re.escape("host.json")):
        load_host_config(root_with(tmp_path, json.dumps(host_json)), {})


def test_load_host_config_rejects_a_missing_host_json(tmp_path: Path) -> None:
    expected = f"{tmp_path / 'host.json'} is missing: the script root needs a host.json"
    with pytest.raises(HostConfigError, match=re.escape(expected)):
        load_host_config(tmp_path, {})


def test_load_host_config_invalid_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(HostConfigError, match=re.escape(f"{tmp_path / 'host.json'}: not valid")):
        load_host_config(root_with(tmp_path, "{not json"), {})


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "keys"),
    [
        ("one", ("one",)),
        ("one,two", ("one", "two")),
        (" one , two ,, three ,", ("one", "two", "three")),
    ],
    ids=["single", "pair", "spaces-and-blanks"],
)
def test_keys_come_from_settings_when_set(
    tmp_path: Path, setting: str, keys: tuple[str, ...]
) -> None:
    settings = {
        "POOLKEEPER_LOCAL_MASTER_KEY": "master-secret",
        "POOLKEEPER_LOCAL_FUNCTION_KEYS": setting,
    }
    config = load_host_config(root_with(tmp_path, {"version": "2.0"}), settings)
    assert config.master_key == "master-secret"
    assert config.function_keys == keys


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"POOLKEEPER_LOCAL_MASTER_KEY": "", "POOLKEEPER_LOCAL_FUNCTION_KEYS": ""},
        {"POOLKEEPER_LOCAL_FUNCTION_KEYS": " , ,"},
    ],
    ids=["unset", "blank", "only-separators"],
)
def test_keys_are_generated_when_not_set_and_differ_between_runs(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    root = root_with(tmp_path, {"version": "2.0"})
    first = load_host_config(root, settings)
    second = load_host_config(root, settings)
    assert len(first.master_key) >= 32
    assert len(first.function_keys) == 1
    assert len(first.function_keys[0]) >= 32
    assert first.master_key != first.function_keys[0]
    assert first.master_key != second.master_key
    assert first.function_keys != second.function_keys


# --- apply_local_settings ---------------------------------------------------------------------


def write_local_settings(root: Path, data: dict[str, Any] | str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    (root / "local.settings.json").write_text(text)


def test_apply_local_settings_copies_values_into_environ(tmp_path: Path) -> None:
    write_local_settings(
        tmp_path,
        {
            "IsEncrypted": False,
            "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", "POOLS": "gpu", "RETRIES": 3},
        },
    )
    environ = {"PATH": "/usr/bin"}
    apply_local_settings(tmp_path, environ)
    assert environ == {
        "PATH": "/usr/bin",
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "POOLS": "gpu",
        "RETRIES": "3",
    }


def test_apply_local_settings_already_set_variable_wins(tmp_path: Path) -> None:
    write_local_settings(tmp_path, {"Values": {"POOLS": "from-file", "OTHER": "file"}})
    environ = {"POOLS": "from-environment"}
    apply_local_settings(tmp_path, environ)
    assert environ == {"POOLS": "from-environment", "OTHER": "file"}


def test_apply_local_settings_without_values_changes_nothing(tmp_path: Path) -> None:
    write_local_settings(tmp_path, {"IsEncrypted": False})
    environ = {"A": "1"}
    apply_local_settings(tmp_path, environ)
    assert environ == {"A": "1"}


def test_apply_local_settings_missing_file_is_a_no_op(tmp_path: Path) -> None:
    environ = {"A": "1"}
    apply_local_settings(tmp_path, environ)
    assert environ == {"A": "1"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            {"IsEncrypted": True, "Values": {"A": "x"}},
            "IsEncrypted is true; the local host reads plain values only",
            id="encrypted",
        ),
        pytest.param("{not json", "not valid JSON", id="invalid-json"),
        pytest.param(
            {"Values": ["A=x"]}, "Values must be an object of string settings", id="values-list"
        ),
    ],
)
def test_apply_local_settings_rejects_bad_files_naming_the_file(
    tmp_path: Path, data: dict[str, Any] | str, message: str
) -> None:
    write_local_settings(tmp_path, data)
    environ: dict[str, str] = {}
    path = tmp_path / "local.settings.json"
    with pytest.raises(HostConfigError, match=re.escape(f"{path}: {message}")):
        apply_local_settings(tmp_path, environ)
    assert environ == {}
