"""The file `make run` writes for the Azure CLI (local/az_env.py): `az` is the project's CLI
whenever it is there, also when `make az` ran after the stack started."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from local import az_env

SIM = {
    "arm": "https://127.0.0.1:1",
    "ca_cert": "/tmp/ca.pem",
    "identity_endpoint": "http://127.0.0.1:2/msi/token",
    "identity_header": "secret",
}


def test_az_is_the_projects_cli_even_when_installed_after_the_file_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / ".venv-az" / "bin" / "az"
    monkeypatch.setattr(az_env, "VENV_AZ", own)
    env_file = tmp_path / "az.env"
    env_file.write_text(az_env.env_file(SIM, tmp_path))  # the CLI not installed yet
    own.parent.mkdir(parents=True)
    own.write_text('#!/bin/sh\necho "project az $*"\n')
    own.chmod(0o755)  # `make az` now
    ran = subprocess.run(
        ["bash", "-c", f". {env_file} && az version && echo $AZURE_CONFIG_DIR"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.splitlines() == ["project az version", str(tmp_path / "azure")]
