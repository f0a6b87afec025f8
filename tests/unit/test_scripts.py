"""The shell scripts Poolkeeper runs on nodes are real bash for Ubuntu: shellcheck-clean."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.debian import tool

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "shared" / "scripts").glob("*.sh"))


def test_there_are_scripts_to_check() -> None:
    assert {p.name for p in SCRIPTS} >= {"patch_check.sh", "patch_install.sh", "image_clean.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_shellcheck(script: Path) -> None:
    done = subprocess.run(
        [tool("shellcheck", "shellcheck"), "--shell=bash", "--severity=style", str(script)],
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
