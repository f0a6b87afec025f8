"""`python -m local.az_env LOG_DIR`: how to point the Azure CLI at a running local stack's (or
`python -m local.sim --state-dir`'s) simulator.

Prints the exports and the one command that registers the simulator as a cloud (found through its
`/metadata/endpoints`) and logs in with its managed identity, so `eval "$(python -m local.az_env
DIR)"` does both. `local.stack` writes the exports to `<log dir>/az.env` and prints the line to
use; tests/integration/test_az_cli.py logs in the same way.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.azurite import ROOT

# The name the CLI knows the simulator by (the simulator's metadata calls itself the same).
CLOUD = "PoolkeeperSimulator"
# `make az` (and `make test`) installs the CLI here; an `az` on PATH is used otherwise.
VENV_AZ = ROOT / ".venv-az" / "bin" / "az"


def az_binary() -> str:
    """The Azure CLI to run: the project's own, else the one on PATH."""
    return str(VENV_AZ) if VENV_AZ.exists() else "az"


def environment(sim: Mapping[str, Any], config_dir: Path) -> dict[str, str]:
    """The variables the CLI needs: a config dir of its own (never ~/.azure, whose clouds and
    logins are the user's), the simulator's CA and its managed-identity endpoint."""
    return {
        "AZURE_CONFIG_DIR": str(config_dir),
        "REQUESTS_CA_BUNDLE": str(sim["ca_cert"]),
        "IDENTITY_ENDPOINT": str(sim["identity_endpoint"]),
        "IDENTITY_HEADER": str(sim["identity_header"]),
        # Nothing leaves the machine: telemetry would be sent to Azure.
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
    }


def login_commands(sim: Mapping[str, Any]) -> list[list[str]]:
    """The CLI's arguments to register the simulator as a cloud from its metadata endpoint, make
    it the active cloud, and log in with the managed identity."""
    return [
        ["cloud", "register", "--name", CLOUD, "--endpoint-resource-manager", sim["arm"]],
        ["cloud", "set", "--name", CLOUD],
        ["login", "--identity", "--output", "none"],
    ]


def login_line(sim: Mapping[str, Any]) -> str:
    """`login_commands` as one shell line."""
    return " && ".join(shlex.join(["az", *args]) for args in login_commands(sim))


def env_file(sim: Mapping[str, Any], log_dir: Path) -> str:
    """The exports, as a file to source; `az` is the project's CLI where `make az` put it,
    looked for when `az` runs (so a `make az` after the stack started counts), else PATH's."""
    exports = environment(sim, log_dir / "azure")
    lines = [f"export {key}={shlex.quote(value)}" for key, value in exports.items()]
    # A function, not PATH: .venv-az/bin would shadow python and pip.
    own = shlex.quote(str(VENV_AZ))
    lines.append(f'az() {{ if [ -x {own} ]; then {own} "$@"; else command az "$@"; fi; }}')
    return "\n".join(lines) + "\n"


def write(sim: Mapping[str, Any], log_dir: Path) -> Path:
    """Write `<log_dir>/az.env` for this simulator; returns its path."""
    path = log_dir / "az.env"
    path.write_text(env_file(sim, log_dir))
    return path


def instructions(sim: Mapping[str, Any], log_dir: Path) -> str:
    """What a user types, in a shell of its own (REQUESTS_CA_BUNDLE trusts only the simulator)."""
    path = write(sim, log_dir)
    line = f"Azure CLI, in a shell of its own: . {shlex.quote(str(path))} && {login_line(sim)}"
    if az_binary() == "az" and shutil.which("az") is None:
        line += "  (no Azure CLI found: `make az` installs it)"
    return line


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    log_dir = Path(args[0]).resolve()
    # local.stack keeps the simulator's endpoint line in sim.json; local.sim alone has its
    # state dir, where the same line is not written, so the stack's log dir is the one to give.
    line = log_dir / "sim.json"
    try:
        sim = json.loads(line.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError) as error:
        print(
            f"az_env: no simulator endpoint line in {line} ({error}); give the log dir of a "
            "running `make run` / `python -m local.stack --logs DIR`",
            file=sys.stderr,
        )
        return 2
    print(env_file(sim, log_dir), end="")
    print(login_line(sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
