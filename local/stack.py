"""`python -m local.stack`: Azurite and the local Functions host, started together.

Prints one JSON line with the endpoints once everything answers; SIGTERM or Ctrl-C stops it all.
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
from pathlib import Path

from local.azurite import ROOT, Azurite
from local.procs import free_port, stop_group, wait_until


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _host_settings(storage: str, function_key: str, master_key: str) -> dict[str, str]:
    settings = dict(os.environ)
    settings.update(
        {
            "AzureWebJobsStorage": storage,
            "POOLKEEPER_LOCAL_FUNCTION_KEYS": function_key,
            "POOLKEEPER_LOCAL_MASTER_KEY": master_key,
        }
    )
    if not settings.get("POOLKEEPER_POOLS") and not settings.get("POOLKEEPER_POOLS_FILE"):
        settings["POOLKEEPER_POOLS_FILE"] = str(ROOT / "pools.example.json")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=0, help="local host HTTP port (default: a free one)"
    )
    parser.add_argument(
        "--logs", type=Path, help="folder for the processes' logs (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="poolkeeper-stack-"))
    logs.mkdir(parents=True, exist_ok=True)

    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    port = args.port or free_port()
    function_key = os.environ.get("POOLKEEPER_LOCAL_FUNCTION_KEYS") or secrets.token_urlsafe(24)
    master_key = os.environ.get("POOLKEEPER_LOCAL_MASTER_KEY") or secrets.token_urlsafe(24)
    host: subprocess.Popen[bytes] | None = None
    with Azurite(log=logs / "azurite.log") as azurite:
        try:
            with open(logs / "host.log", "ab") as host_log:
                host = subprocess.Popen(
                    [sys.executable, "-m", "local.host", "--root", str(ROOT), "--port", str(port)],
                    cwd=ROOT,
                    env=_host_settings(azurite.connection_string, function_key, master_key),
                    stdout=host_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            base = f"http://127.0.0.1:{port}"
            wait_until(
                lambda: stopping or _answers(f"{base}/admin/host/ping"),
                timeout=60,
                what=f"local host (log: {logs / 'host.log'})",
                process=host,
            )
            if not stopping:
                print(
                    json.dumps(
                        {
                            "host": base,
                            "storage": azurite.connection_string,
                            "function_key": function_key,
                            "master_key": master_key,
                            "logs": str(logs),
                        }
                    ),
                    flush=True,
                )
                print(
                    f"Poolkeeper is up: {base}/api/health (logs in {logs}); Ctrl-C stops it",
                    file=sys.stderr,
                    flush=True,
                )
            while not stopping and host.poll() is None:
                time.sleep(0.2)
            if host.poll() is not None and not stopping:
                print(
                    f"local host exited with code {host.returncode}; see {logs / 'host.log'}",
                    file=sys.stderr,
                )
                return 1
        finally:
            if host is not None:
                stop_group(host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
