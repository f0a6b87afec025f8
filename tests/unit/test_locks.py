"""The dependency locks: what a deploy installs is what the suite ran with, every file hashed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, how many hashes follow its pin), from a pip-compile output."""
    found: dict[str, tuple[str, int]] = {}
    current = ""
    for line in path.read_text().splitlines():
        pin = PIN.match(line)
        if pin:
            current = _canonical(pin[1])
            found[current] = (pin[2], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def _pins(path: Path) -> dict[str, str]:
    """The top-level pins of a .in file."""
    return {
        _canonical(pin[1]): pin[2]
        for line in path.read_text().splitlines()
        if (pin := PIN.match(line.strip()))
    }


def test_every_locked_package_carries_its_hashes() -> None:
    for name in ("requirements.txt", "requirements-dev.txt"):
        locked = _locked(ROOT / name)
        assert len(locked) > 40, name
        unhashed = sorted(package for package, (_, hashes) in locked.items() if hashes == 0)
        assert unhashed == [], f"{name}: no hash for {unhashed}; run `make lock`"


def test_the_tested_tree_holds_the_deployed_tree_at_the_same_versions() -> None:
    runtime = {k: v for k, (v, _) in _locked(ROOT / "requirements.txt").items()}
    dev = {k: v for k, (v, _) in _locked(ROOT / "requirements-dev.txt").items()}
    differs = {k: (v, dev.get(k)) for k, v in runtime.items() if dev.get(k) != v}
    assert differs == {}, "requirements-dev.txt must hold requirements.txt's pins: `make lock`"


def test_the_locks_are_compiled_from_the_pins_people_edit() -> None:
    # A pin changed in a .in file without `make lock` would leave the lock on the old version.
    for source, lock in (
        ("requirements.in", "requirements.txt"),
        ("requirements-dev.in", "requirements-dev.txt"),
    ):
        locked = {k: v for k, (v, _) in _locked(ROOT / lock).items()}
        stale = {
            name: (version, locked.get(name))
            for name, version in _pins(ROOT / source).items()
            if locked.get(name) != version
        }
        assert stale == {}, f"{lock} is not compiled from {source}: run `make lock`"
