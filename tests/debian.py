"""Tools from Debian's packages that tests run (promtool, chromium, kubectl, shellcheck): installed
on first use with apt-get, so a clean machine's `make test` has them. A test whose tool cannot be
installed fails with apt's answer; it never skips."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# One install at a time on this machine: the suite's parallel workers (and another suite running
# at the same time) would otherwise meet on apt's locks, and `apt-get update` does not wait.
LOCK = Path(tempfile.gettempdir()) / "poolkeeper-tests-apt.lock"


def tool(binary: str, package: str) -> str:
    """The path of `binary`, installing Debian's `package` first when it is not on PATH."""
    found = shutil.which(binary)
    if found:
        return found
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        found = shutil.which(binary)  # installed by whoever held the lock before
        if found:
            return found
        _install(binary, package)
    found = shutil.which(binary)
    if not found:
        pytest.fail(f"{binary} is still missing after installing {package}")
    return found


def _install(binary: str, package: str) -> None:
    # DPkg::Lock::Timeout: apt itself (unattended upgrades, another user) may hold its locks.
    steps = [
        ["apt-get", "update", "-o", "DPkg::Lock::Timeout=300"],
        ["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=300", package],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"{binary} is missing and {' '.join(step)} failed:\n{done.stderr}")
