"""Child-process plumbing for the offline stack: free ports, readiness waits, clean stops.

Used by `local.azurite`, `local.stack` and the test fixtures.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `ready` until it holds; fail early with the exit code if `process` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        time.sleep(0.05)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f} s")


def stop_group(process: subprocess.Popen[bytes], grace: float = 5.0) -> bool:
    """SIGTERM the process group started with `start_new_session=True`; SIGKILL if it lingers.
    True when it had to be killed."""
    if process.poll() is not None:
        return False
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
        return True
    except ProcessLookupError:
        pass
    return False
