"""The shell scripts Poolkeeper runs on nodes are real bash for Ubuntu: shellcheck-clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "shared" / "scripts").glob("*.sh"))


def _shellcheck() -> str:
    """Debian's shellcheck, installed on first use (as `make test` does for kubectl)."""
    found = shutil.which("shellcheck")
    if found:
        return found
    for step in (["apt-get", "update"], ["apt-get", "install", "-y", "shellcheck"]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"shellcheck is missing and {' '.join(step)} failed:\n{done.stderr}")
    found = shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is still missing after installing it")
    return found


def test_there_are_scripts_to_check() -> None:
    assert {p.name for p in SCRIPTS} >= {"patch_check.sh", "patch_install.sh", "image_clean.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_shellcheck(script: Path) -> None:
    done = subprocess.run(
        [_shellcheck(), "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_flows_name_scripts_that_exist() -> None:
    from shared.flows.image.donor import CLEAN_SCRIPT
    from shared.flows.patch.operations import INSTALL_SCRIPT
    from shared.flows.patch.rollout import CHECK_SCRIPT

    assert all(p.is_file() for p in (CLEAN_SCRIPT, INSTALL_SCRIPT, CHECK_SCRIPT))
