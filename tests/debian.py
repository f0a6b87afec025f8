"""Tools from Debian's packages that tests run (promtool; kubectl and shellcheck could share it):
installed on first use with apt-get, so a clean machine's `make test` has them. A test whose tool
cannot be installed fails with apt's answer; it never skips."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def tool(binary: str, package: str) -> str:
    """The path of `binary`, installing Debian's `package` first when it is not on PATH."""
    found = shutil.which(binary)
    if found:
        return found
    # Another suite running at the same time may hold apt's lock for a while: wait for it.
    steps = [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=300", package],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"{binary} is missing and {' '.join(step)} failed:\n{done.stderr}")
    found = shutil.which(binary)
    if not found:
        pytest.fail(f"{binary} is still missing after installing {package}")
    return found
