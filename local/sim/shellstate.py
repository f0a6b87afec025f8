"""What a script run by the simulator's shell sees and changes: the instance's file system (its
disk, `/run` from the running guest, a few kernel files), its output and exit status, and what
it asked of the machine (a reboot or power-off, now or later). Shared by the interpreter
(`shell`) and the commands (`commands`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from local.sim.guest import BOOT_ID, Disk, Guest, Repo, resolve

NOT_SIMULATED = 2  # exit code of a construct or option the shell does not simulate
NOT_FOUND = 127
BIN_DIRS = ("/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/")
KNOWN_DIRS = {
    "/",
    "/etc",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/log/journal",
    "/var/tmp",
    "/var/lib/cloud",
    "/var/lib/cloud/instances",
    "/var/lib/cloud/data",
    "/var/lib/waagent",
    "/var/lib/waagent/history",
    "/var/lib/waagent/events",
    "/var/lib/dbus",
    "/var/lib/cloud/seed",
    "/run",
    "/tmp",
    "/proc",
    "/dev",
    "/root",
    "/home",
}


@dataclass
class Outcome:
    """What a script did: exit code, output, and whether it took the machine down."""

    exit: int
    stdout: str
    stderr: str
    power: str | None = None  # None, "reboot" or "poweroff"
    seconds: float = 0.0  # simulated time the script's `sleep`s took
    power_delay: float = 0.0  # a power action scheduled (systemd-run) this long after the answer


class Exit(Exception):
    """The script ends here with `code` (`exit`, `set -e`, a power command, a limit)."""

    def __init__(self, code: int) -> None:
        self.code = code


@dataclass
class Shell:
    """One script's run: the machine it runs on, its output, its variables and status."""

    disk: Disk
    guest: Guest
    repo: Repo
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    errexit: bool = False
    status: int = 0
    line: int = 0
    power: str | None = None
    seconds: float = 0.0
    power_delay: float = 0.0

    # -- the file system: the disk, /run from the guest, and a few kernel files ----------------

    def read(self, path: str) -> str | None:
        path = resolve(path)
        if path == BOOT_ID:
            return f"{self.guest.boot_id}\n"
        if path == "/dev/null":
            return ""
        if path.startswith("/run/"):
            return self.guest.run.get(path)
        return self.disk.files.get(path)

    def write(self, path: str, text: str) -> None:
        path = resolve(path)
        (self.guest.run if path.startswith("/run/") else self.disk.files)[path] = text

    def delete(self, path: str) -> None:
        path = resolve(path)
        (self.guest.run if path.startswith("/run/") else self.disk.files).pop(path, None)

    def paths(self) -> list[str]:
        return [*self.disk.files, *self.guest.run]

    def is_dir(self, path: str) -> bool:
        path = resolve(path)
        if path in KNOWN_DIRS:
            return True
        prefix = path + "/"
        return any(p.startswith(prefix) for p in self.paths())

    def is_file(self, path: str) -> bool:
        return self.read(path) is not None

    def glob(self, pattern: str) -> list[str]:
        """Bash's pathname expansion (`*`, `?` within one path component); no match keeps the
        word as it is."""
        pattern = resolve(pattern)
        if not any(c in pattern for c in "*?["):
            return [pattern]
        regex = re.compile(
            "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern)
            + "$"
        )
        entries: set[str] = set()
        for path in self.paths():
            parts = path.split("/")
            for end in range(2, len(parts) + 1):
                entries.add("/".join(parts[:end]))
        found = sorted(e for e in entries if regex.match(e))
        return found or [pattern]

    # -- output ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.append(text)

    def fail(self, text: str) -> None:
        self.err.append(text)

    def bash_error(self, text: str) -> None:
        self.err.append(f"bash: line {self.line}: {text}\n")


def not_simulated(shell: Shell, what: str) -> None:
    """End the script with exit 2, saying which construct or option is not simulated."""
    shell.bash_error(
        f"{what}: not simulated (the Azure simulator interprets simple commands, ';', '&&', "
        "'||' and 'set -e' only; see docs/local-stack.md)"
    )
    raise Exit(NOT_SIMULATED)


def split_options(args: list[str]) -> tuple[set[str], list[str]]:
    """Options and operands: `-rf` gives `r` and `f`, `--force` stays whole."""
    flags: set[str] = set()
    rest: list[str] = []
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            flags.add(arg)
        elif arg.startswith("-") and len(arg) > 1:
            flags.update(arg[1:])
        else:
            rest.append(arg)
    return flags, rest
