"""Shared fixtures: Azurite and local-host processes on free ports, always stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import settings

from local.azurite import ROOT, Azurite
from local.procs import free_port, stop_group, wait_until
from tests.simulator import Simulator, running_simulator, scenario

FIXTURES = Path(__file__).parent / "fixtures"
# Signs the bearer tokens the emulated Easy Auth accepts (local.host.easyauth).
AUTH_KEY = "test-auth-key-of-thirty-two-bytes!"

# Hypothesis's 200 ms deadline per example is a wall-time assertion: on a loaded machine (parallel
# workers, two suites at once) a plain example takes longer. Loaded before any test module, so
# every @settings inherits it.
settings.register_profile("poolkeeper", deadline=None)
settings.load_profile("poolkeeper")

DEFAULT_HOST_JSON: dict[str, Any] = {
    "version": "2.0",
    "extensions": {
        "queues": {
            "maxPollingInterval": "00:00:00.5",
            "visibilityTimeout": "00:00:00",
            "maxDequeueCount": 5,
            "messageEncoding": "none",
        }
    },
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        default=None,
        metavar="DIR",
        help="also write the browser tests' screenshots here (make screenshots: docs/img)",
    )


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Any, str], Path]:
    """Take a full-page screenshot of a Playwright page into the test's temp dir (a test run
    never writes the tree); with --screenshots DIR, also publish it there as `name`."""
    option = request.config.getoption("screenshots")
    publish = request.config.invocation_params.dir / option if option else None

    def take(page: Any, name: str) -> Path:
        path = tmp_path / name
        page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes().startswith(b"\x89PNG"), f"{path} is no PNG"
        if publish is not None:
            publish.mkdir(parents=True, exist_ok=True)
            # Written beside it, then renamed: a reader never sees half a picture.
            partial = publish / f".{name}-{uuid.uuid4().hex}"
            shutil.copyfile(path, partial)
            os.replace(partial, publish / name)
        return path

    return take


@pytest.fixture(scope="session", autouse=True)
def _sdk_imports() -> None:
    """The SDKs the adapters import on first use, imported once per worker before any simulated
    clock runs: on a loaded machine a cold import took 10 wall seconds inside a job's first step,
    100 simulated minutes at 600x, and a test's deadlines passed before its job got going."""
    import azure.data.tables
    import azure.identity
    import azure.mgmt.compute
    import azure.monitor.query
    import azure.monitor.querymetrics
    import azure.storage.blob
    import azure.storage.queue  # noqa: F401
    import kubernetes.client
    import kubernetes.config  # noqa: F401


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with Azurite(log=log) as running:
        yield running
        process = running._process
        if process is not None and process.poll() is not None:
            # It died under this worker's tests: say so, with its last words, at the end.
            tail = log.read_text(errors="replace")[-3000:]
            warnings.warn(
                f"the session's Azurite exited early (code {process.returncode}); its log "
                f"{log} ends:\n{tail}",
                stacklevel=1,
            )


@dataclass
class RunningHost:
    url: str
    root: Path
    function_key: str
    master_key: str
    process: subprocess.Popen[bytes]
    log: Path

    def records(self) -> list[dict[str, Any]]:
        path = self.root / "records.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def wait_for_records(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.records()
            if predicate(records):
                return records
            time.sleep(0.1)
        log = self.log.read_text()
        raise AssertionError(f"records never matched; have {self.records()}\n{log}")


def _ping(url: str) -> bool:
    try:
        return requests.get(f"{url}/admin/host/ping", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[Callable[..., RunningHost]]:
    """Start `python -m local.host` on a script root; every host started is stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        app: Path | None = None,
        *,
        settings: dict[str, str] | None = None,
        host_json: dict[str, Any] | None = None,
        wait: bool = True,
    ) -> RunningHost:
        root = tmp_path / f"root{len(started)}"
        root.mkdir()
        if app is None:
            shutil.copy(FIXTURES / "hostapp" / "function_app.py", root / "function_app.py")
        else:
            shutil.copy(app, root / "function_app.py")
        (root / "host.json").write_text(json.dumps(host_json or DEFAULT_HOST_JSON))
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("POOLKEEPER_", "AzureWebJobs"))
        }
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "RECORD_FILE": str(root / "records.jsonl"),
                "POOLKEEPER_LOCAL_FUNCTION_KEYS": "test-function-key",
                "POOLKEEPER_LOCAL_MASTER_KEY": "test-master-key",
                "POOLKEEPER_LOCAL_AUTH_KEY": AUTH_KEY,
            }
        )
        env.update(settings or {})
        log = root / "host.log"
        for attempt in range(3):
            # A port that was free a moment ago may be taken by another suite on this machine
            # before the host binds it: the host then exits at once, and gets another port.
            port = free_port()
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "local.host", "--root", str(root), "--port", str(port)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started.append(process)
            url = f"http://127.0.0.1:{port}"
            if not wait:
                break
            try:
                wait_until(
                    lambda url=url: _ping(url), timeout=30, what="local host", process=process
                )
                break
            except RuntimeError as error:  # it exited
                if attempt == 2 or "already in use" not in log.read_text():
                    raise AssertionError(f"{error}\n{log.read_text()}") from error
            except TimeoutError as error:
                raise AssertionError(f"{error}\n{log.read_text()}") from error
        return RunningHost(url, root, "test-function-key", "test-master-key", process, log)

    yield start
    for process in started:
        stop_group(process)


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator process for the session; tests load their own scenario into it."""
    with running_simulator(tmp_path_factory.mktemp("sim")) as running:
        yield running


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    """The session simulator reset to the default scenario, with no faults or throttling."""
    simulator.load(scenario())
    return simulator
