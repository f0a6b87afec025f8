"""`python -m local.stack --scenario FILE`: Azurite, the Azure simulator and the local Functions
host, wired together and started in that order.

Prints one JSON line with every endpoint once all answer; SIGTERM or Ctrl-C stops all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from local import az_env
from local.azurite import ROOT, Azurite
from local.procs import free_port, stop_group, wait_until

DEFAULT_SCENARIO = ROOT / "local" / "scenarios" / "small.json"
# The app settings function_app.py's bindings name (%SETTING%), with the documented defaults.
APP_DEFAULTS = {
    "POOLKEEPER_SCALE_QUEUE": "scale-jobs",
    "POOLKEEPER_DRAIN_QUEUE": "drain-jobs",
    "POOLKEEPER_RECONCILE_QUEUE": "reconcile-jobs",
    "POOLKEEPER_PATCH_QUEUE": "patch-jobs",
    "POOLKEEPER_IMAGE_QUEUE": "image-jobs",
    "POOLKEEPER_WEBHOOK_QUEUE": "notify-webhook",
    "RECONCILE_SCHEDULE": "0 */5 * * * *",
    "PATCH_SCHEDULE": "0 */15 * * * *",
    "IMAGE_SCHEDULE": "0 42 0 * * *",
    "CAPACITY_SCHEDULE": "0 */5 * * * *",
    "DOWNSCALE_SCHEDULE": "0 0 6 * * MON",
    "PRUNE_SCHEDULE": "0 17 3 * * *",
    # Easy Auth, emulated by the local host (local/host/easyauth.py): every request without a
    # token is signed in as this operator, as a browser with a session would be; it may send
    # alerts too (the demo's and the tests' Azure Monitor and Alertmanager).
    "WEBSITE_AUTH_ENABLED": "True",
    "POOLKEEPER_LOCAL_SIGNED_IN": json.dumps(
        {
            "name": "operator@localhost",
            "id": "local-operator",
            "roles": ["Poolkeeper.Operator", "Poolkeeper.AlertSender"],
        }
    ),
}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _start(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


class StackError(RuntimeError):
    """A part of the stack did not start; the message says which and where its log is."""


def _simulator(
    scenario: Path, logs: Path, running: ExitStack, stopping: Callable[[], bool]
) -> dict[str, Any]:
    """Start `python -m local.sim` (stopped with the stack) and read its endpoint line."""
    line_file = logs / "sim.json"
    line_file.unlink(missing_ok=True)
    with open(line_file, "wb") as out, open(logs / "sim.log", "ab") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.sim",
                "--scenario",
                str(scenario),
                "--state-dir",
                str(logs / "sim"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    running.callback(stop_group, process)
    _wait(
        lambda: stopping() or line_file.stat().st_size > 0,
        30,
        f"Azure simulator (log: {logs / 'sim.log'})",
        process,
    )
    if stopping():
        return {}
    try:
        return json.loads(line_file.read_text().splitlines()[0]) | {"process": process}
    except (ValueError, IndexError) as error:
        raise StackError(
            f"Azure simulator printed no endpoint line (log: {logs / 'sim.log'})"
        ) from error


def _wait(
    ready: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes]
) -> None:
    try:
        wait_until(ready, timeout=timeout, what=what, process=process)
    except (RuntimeError, TimeoutError) as error:
        raise StackError(str(error)) from error


def _pools_file(scenario: Path, logs: Path) -> Path:
    """The scenario's Poolkeeper configuration, written where the product reads it."""
    try:
        pools = json.loads(scenario.read_text()).get("pools")
    except (OSError, ValueError, AttributeError) as error:
        raise StackError(f"scenario {scenario} cannot be read: {error}") from error
    if not pools:
        raise StackError(f"scenario {scenario} has no 'pools' section for Poolkeeper")
    path = logs / "pools.json"
    path.write_text(json.dumps(pools, indent=2))
    return path


def host_settings(
    storage: str,
    sim: dict[str, Any],
    pools: Path,
    function_key: str,
    master_key: str,
    auth_key: str = "",
) -> dict[str, str]:
    """The local host's environment: the product pointed at Azurite and the simulator."""
    settings = APP_DEFAULTS | {
        k: v for k, v in os.environ.items() if not k.startswith("POOLKEEPER_POOLS")
    }
    settings.update(
        {
            "AzureWebJobsStorage": storage,
            "POOLKEEPER_LOCAL_FUNCTION_KEYS": function_key,
            "POOLKEEPER_LOCAL_MASTER_KEY": master_key,
            # Signs the bearer tokens the emulated Easy Auth accepts (local.host.easyauth.mint).
            "POOLKEEPER_LOCAL_AUTH_KEY": auth_key,
            # The simulator's Entra ID, whose RS256 tokens (apps signing in with client
            # credentials: Alertmanager, Azure Monitor) the emulated Easy Auth checks.
            "POOLKEEPER_LOCAL_AUTH_ISSUER": f"{sim['arm']}/{sim['tenant']}/v2.0",
            "POOLKEEPER_POOLS_FILE": str(pools),
            # Blank counts as unset, and the environment wins over local.settings.json: a
            # POOLKEEPER_POOLS there must not clash with the scenario's pools.
            "POOLKEEPER_POOLS": "",
            "POOLKEEPER_CLOCK_FILE": sim["clock_file"],
            # The offline stack acts; `POOLKEEPER_MODE=observe make run` tries observe mode.
            "POOLKEEPER_MODE": os.environ.get("POOLKEEPER_MODE") or "act",
            "POOLKEEPER_ARM_ENDPOINT": sim["arm"],
            "POOLKEEPER_METRICS_ENDPOINT": sim["metrics"],
            "POOLKEEPER_LOGS_ENDPOINT": sim["logs"],
            "POOLKEEPER_CA_BUNDLE": sim["ca_cert"],
            "POOLKEEPER_KUBECONFIG": sim["kubeconfig"],
            "IDENTITY_ENDPOINT": sim["identity_endpoint"],
            "IDENTITY_HEADER": sim["identity_header"],
        }
    )
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__)
    parser.add_argument(
        "--scenario",
        type=Path,
        default=DEFAULT_SCENARIO,
        help="simulator scenario (default: local/scenarios/small.json)",
    )
    parser.add_argument("--port", type=int, default=0, help="local host port (default: a free one)")
    parser.add_argument("--logs", type=Path, help="folder for logs and state (default: a temp dir)")
    args = parser.parse_args(argv)
    logs = (args.logs or Path(tempfile.mkdtemp(prefix="poolkeeper-stack-"))).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    scenario = args.scenario.resolve()

    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    port = args.port or free_port()
    function_key = os.environ.get("POOLKEEPER_LOCAL_FUNCTION_KEYS") or secrets.token_urlsafe(24)
    master_key = os.environ.get("POOLKEEPER_LOCAL_MASTER_KEY") or secrets.token_urlsafe(24)
    auth_key = os.environ.get("POOLKEEPER_LOCAL_AUTH_KEY") or secrets.token_urlsafe(24)
    keys = (function_key, master_key, auth_key)
    try:
        return _run(scenario, logs, port, keys, lambda: stopping)
    except (StackError, OSError) as error:
        print(f"local stack: {error}", file=sys.stderr)
        return 1


def _run(
    scenario: Path,
    logs: Path,
    port: int,
    keys: tuple[str, str, str],
    stopping: Callable[[], bool],
) -> int:
    """Start the parts in order; whatever was started is stopped on every way out. `keys`: the
    function key, the master key and the Easy Auth token key."""
    function_key, master_key, auth_key = keys
    with ExitStack() as running:
        pools = _pools_file(scenario, logs)
        azurite = running.enter_context(Azurite(log=logs / "azurite.log"))
        sim = _simulator(scenario, logs, running, stopping)
        if stopping():
            return 0
        sim_process = sim.pop("process")
        host = _start(
            [sys.executable, "-m", "local.host", "--root", str(ROOT), "--port", str(port)],
            logs / "host.log",
            host_settings(
                azurite.connection_string, sim, pools, function_key, master_key, auth_key
            ),
        )
        running.callback(stop_group, host)
        base = f"http://127.0.0.1:{port}"
        _wait(
            lambda: stopping() or _answers(f"{base}/admin/host/ping"),
            60,
            f"local host (log: {logs / 'host.log'})",
            host,
        )
        if stopping():
            return 0
        print(
            json.dumps(
                {
                    "host": base,
                    "arm": sim["arm"],
                    "metrics": sim["metrics"],
                    "logs": sim["logs"],
                    "admin": sim["admin"],
                    "ca_cert": sim["ca_cert"],
                    "kube": sim["kube"],
                    "kubeconfig": sim["kubeconfig"],
                    "storage": azurite.connection_string,
                    "function_key": function_key,
                    "master_key": master_key,
                    "auth_key": auth_key,
                    "subscription": sim["subscription"],
                    "identity_endpoint": sim["identity_endpoint"],
                    "identity_header": sim["identity_header"],
                    "clock_file": sim["clock_file"],
                    "log_dir": str(logs),
                    # The vault beside ARM, and each of the scenario's clusters (server, CA,
                    # credential, kubeconfig): local/sim/server.py lists their keys.
                    "key_vault": sim.get("key_vault"),
                    **({"clusters": sim["clusters"]} if "clusters" in sim else {}),
                }
            ),
            flush=True,
        )
        print(
            f"Poolkeeper is up: {base}/api/health, simulator admin {sim['admin']}/state "
            f"(logs in {logs}); Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        print(az_env.instructions(sim, logs), file=sys.stderr, flush=True)
        while not stopping() and host.poll() is None and sim_process.poll() is None:
            time.sleep(0.2)
        if not stopping():
            which = "local host" if host.poll() is not None else "Azure simulator"
            raise StackError(f"{which} exited unexpectedly; see the logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
