"""The operating system inside an instance: what is on its disk, and what its running boot holds.

Pure data and rules, no clock and no I/O: the world decides when a guest boots or goes down,
`shell.run` reads and changes the state through scripts. Two halves, as on a real machine:

- `Disk`: what survives a reboot and travels with the OS disk into snapshots and image versions
  (installed packages with versions, kernels as `linux-image-<kernel>` packages, files such as
  `/etc/machine-id` and `/etc/hostname`). The world keeps one per OS disk id.
- `Guest`: the running boot (up or down, boot id, running kernel, the tmpfs under `/run`, which
  `/var/run` points to and which a reboot empties, so the reboot-required sentinel goes).

`Repo` is the package archive as it is at some moment: the base image's versions and the updates
published by then. Package versions are derived, not stored per update: an update with
`packages: N` updates the first N names of `Repo.names` (the image's named packages first, then
generated ones), and a package covered by k published updates has its base version with the last
number raised by k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

KERNEL_PACKAGE = "linux-image-"
SENTINEL = "/run/reboot-required"
SENTINEL_PACKAGES = "/run/reboot-required.pkgs"
MACHINE_ID = "/etc/machine-id"
HOSTNAME = "/etc/hostname"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
CLOUD_INSTANCE_ID = "/var/lib/cloud/data/instance-id"
WAAGENT_PROVISIONED = "/var/lib/waagent/provisioned"
# Package names an update covers after the image's named ones (then `libupdate<N>`).
EXTRA_PACKAGES = (
    "libssl3t64",
    "openssl",
    "libc6",
    "libc-bin",
    "systemd",
    "libsystemd0",
    "udev",
    "curl",
    "libcurl4t64",
    "tzdata",
    "sudo",
    "openssh-server",
    "python3.12",
    "libpython3.12-minimal",
    "apparmor",
    "snapd",
    "vim-common",
    "git",
)
EXTRA_VERSION = "1.0-1ubuntu0.1"


class BaseOs(Protocol):
    """What `scenario.BaseOs` gives (kept structural so this module imports no scenario)."""

    name: str
    release: str
    codename: str
    kernel: str
    packages: dict[str, str]


class Update(Protocol):
    """What `scenario.OsUpdate` gives."""

    date: datetime
    kernel: str | None
    packages: int
    security: bool
    breaks: bool


def kernel_key(kernel: str) -> tuple[int, ...]:
    """Order kernels as apt does for `6.8.0-1015-azure` style names: by their numbers."""
    return tuple(int(n) for n in re.findall(r"\d+", kernel))


def kernel_version(kernel: str) -> str:
    """The package version of a kernel image: `6.8.0-1017-azure` -> `6.8.0-1017.1`."""
    return f"{kernel.rsplit('-', 1)[0]}.1"


def bump(version: str, times: int) -> str:
    """`3.0.13-0ubuntu3.4` raised twice -> `3.0.13-0ubuntu3.6` (the last number grows)."""
    if not times:
        return version
    match = re.search(r"(\d+)(\D*)$", version)
    if match is None:
        return f"{version}.{times}"
    return f"{version[: match.start(1)]}{int(match[1]) + times}{match[2]}"


def resolve(path: str) -> str:
    """`/var/run` is a symlink to `/run`; repeated and trailing slashes do not matter."""
    path = re.sub(r"/+", "/", path)
    if path != "/":
        path = path.rstrip("/")
    if path == "/var/run" or path.startswith("/var/run/"):
        path = path[len("/var") :]
    return path


@dataclass
class Disk:
    """What is on an OS disk: packages (name -> version) and files (absolute path -> text)."""

    packages: dict[str, str]
    files: dict[str, str]

    def kernels(self) -> list[str]:
        """Installed kernels, oldest first."""
        found = [
            p.removeprefix(KERNEL_PACKAGE) for p in self.packages if p.startswith(KERNEL_PACKAGE)
        ]
        return sorted(found, key=kernel_key)

    def machine_id(self) -> str:
        """The id in `/etc/machine-id`; "" when empty, missing or `uninitialized` (all three
        make systemd generate one at boot)."""
        found = self.files.get(MACHINE_ID, "").strip()
        return "" if found == "uninitialized" else found

    def copy(self) -> Disk:
        """An independent copy (a snapshot, an image version, a disk made from one)."""
        return Disk(dict(self.packages), dict(self.files))


@dataclass
class Guest:
    """The running OS of an instance; `state` is `down`, `up` or `hung` (a boot that never
    got anywhere)."""

    state: str = "down"
    boot_id: str = ""
    kernel: str = ""  # the running kernel (kept while down: the last one that ran)
    hostname: str = ""
    run: dict[str, str] = field(default_factory=dict)  # tmpfs files under /run
    boots: int = 0
    never_ready: bool = False  # this boot's kubelet never posts Ready (a bad kernel, a fault)

    @property
    def up(self) -> bool:
        return self.state == "up"

    @property
    def reboot_required(self) -> bool:
        return SENTINEL in self.run


@dataclass(frozen=True)
class Repo:
    """The archive at one moment: the image's base versions and the updates published by then."""

    base: BaseOs
    published: tuple[Update, ...]  # by date
    names: tuple[str, ...]  # the names updates cover, in order

    def newest(self) -> dict[str, tuple[str, bool]]:
        """Package -> (newest version, whether its newest update is a security one)."""
        counts: dict[str, int] = {}
        security: dict[str, bool] = {}
        for update in self.published:
            for name in self.names[: update.packages]:
                counts[name] = counts.get(name, 0) + 1
                security[name] = update.security
        base = base_packages(self.base, self.names)
        return {n: (bump(base[n], k), security[n]) for n, k in counts.items()}

    def kernel(self) -> Update | None:
        """The update that published the newest kernel, if any."""
        with_kernel = [u for u in self.published if u.kernel]
        return max(with_kernel, key=lambda u: kernel_key(u.kernel or ""), default=None)

    def breaks(self, kernel: str) -> bool:
        """Whether booting this kernel leaves the node never Ready."""
        return any(u.kernel == kernel and u.breaks for u in self.published)


def repo(base: BaseOs, updates: list[Update], now: datetime) -> Repo:
    """The archive as `apt-get update` would see it at `now`."""
    ordered = sorted(updates, key=lambda u: u.date)
    return Repo(base, tuple(u for u in ordered if u.date <= now), package_names(base, updates))


def package_names(base: BaseOs, updates: list[Update]) -> tuple[str, ...]:
    """The image's named packages, then generated ones, as many as the largest update needs."""
    names = list(base.packages)
    wanted = max((u.packages for u in updates), default=0)
    extras = [n for n in EXTRA_PACKAGES if n not in base.packages]
    number = 1
    while len(names) < wanted:
        if extras:
            names.append(extras.pop(0))
        else:
            names.append(f"libupdate{number}")
            number += 1
    return tuple(names)


def base_packages(base: BaseOs, names: tuple[str, ...]) -> dict[str, str]:
    return {n: base.packages.get(n, EXTRA_VERSION) for n in names}


def base_disk(base: BaseOs, names: tuple[str, ...], vm_id: str) -> Disk:
    """A disk made from the base (marketplace) image: generalized, so `/etc/machine-id` is
    empty until first boot; cloud-init's and the agent's per-instance files carry `vm_id`."""
    packages = base_packages(base, names)
    packages[KERNEL_PACKAGE + base.kernel] = kernel_version(base.kernel)
    files = {
        MACHINE_ID: "",
        "/etc/os-release": (
            f'PRETTY_NAME="{base.name}"\nNAME="Ubuntu"\nVERSION_ID="{base.release}"\n'
            f"VERSION_CODENAME={base.codename}\nID=ubuntu\n"
        ),
        "/var/lib/waagent/history/2026-01-01-00-00-00.zip": "",
        "/var/lib/waagent/events/1.tld": "",
        WAAGENT_PROVISIONED: f"{vm_id}\n",
        "/var/log/journal/system.journal": "",
    } | cloud_init_files(vm_id)
    return Disk(packages, files)


def cloud_init_files(vm_id: str) -> dict[str, str]:
    """What cloud-init writes when it first runs on a VM: its per-instance state, the Azure
    seed it read, its logs."""
    return {
        CLOUD_INSTANCE_ID: f"{vm_id}\n",
        "/var/lib/cloud/instance": f"/var/lib/cloud/instances/{vm_id}\n",
        f"/var/lib/cloud/instances/{vm_id}/obj.pkl": "",
        "/var/lib/cloud/seed/azure/ovf-env.xml": "",
        "/var/log/cloud-init.log": f"new instance {vm_id}\n",
        "/var/log/cloud-init-output.log": "",
    }


def boot(
    disk: Disk, guest: Guest, *, boot_id: str, hostname: str, machine_id: str, vm_id: str = ""
) -> None:
    """Boot the newest installed kernel. `/run` starts empty; systemd writes a fresh machine-id
    when `/etc/machine-id` is empty or missing (one that is present, e.g. copied from another
    VM's disk, is kept); cloud-init sets the hostname to the VM's computer name (Azure gives it
    at every boot). On a VM it has not seen (`vm_id` differs from the disk's cloud-init
    instance id: a disk made from another VM's image) cloud-init runs as a new instance and the
    Azure agent provisions again, so their per-instance state names this VM."""
    kernels = disk.kernels()
    guest.kernel = kernels[-1] if kernels else guest.kernel
    guest.state, guest.boot_id, guest.hostname = "up", boot_id, hostname
    guest.run = {}
    guest.boots += 1
    guest.never_ready = False
    disk.files[HOSTNAME] = f"{hostname}\n"
    if not disk.machine_id():
        disk.files[MACHINE_ID] = f"{machine_id}\n"
    if vm_id and disk.files.get(CLOUD_INSTANCE_ID, "").strip() != vm_id:
        disk.files.update(cloud_init_files(vm_id))
    if vm_id:
        disk.files[WAAGENT_PROVISIONED] = f"{vm_id}\n"


def hang(guest: Guest) -> None:
    """The guest never gets past its boot: nothing runs, no agent, no kubelet."""
    guest.state = "hung"
    guest.run = {}


def shut_down(guest: Guest) -> None:
    """The guest stops: nothing runs, `/run` is gone (boot id and kernel stay as last seen)."""
    guest.state = "down"
    guest.run = {}


@dataclass(frozen=True)
class Plan:
    """What `apt-get dist-upgrade` would do: (package, old, new, security) and a new kernel."""

    upgrades: list[tuple[str, str, str, bool]]
    kernel: Update | None

    @property
    def count(self) -> int:
        return len(self.upgrades) + (1 if self.kernel else 0)


def plan(disk: Disk, archive: Repo) -> Plan:
    upgrades = [
        (name, disk.packages[name], version, security)
        for name, (version, security) in archive.newest().items()
        if name in disk.packages and disk.packages[name] != version
    ]
    newest = archive.kernel()
    kernel = None
    if newest is not None and newest.kernel and KERNEL_PACKAGE + newest.kernel not in disk.packages:
        kernel = newest
    return Plan(upgrades, kernel)


def install(disk: Disk, guest: Guest, work: Plan) -> None:
    """Apply a plan; a new kernel makes update-notifier write the reboot-required sentinel."""
    for name, _, version, _ in work.upgrades:
        disk.packages[name] = version
    if work.kernel and work.kernel.kernel:
        package = KERNEL_PACKAGE + work.kernel.kernel
        disk.packages[package] = kernel_version(work.kernel.kernel)
        guest.run[SENTINEL] = "*** System restart required ***\n"
        listed = guest.run.get(SENTINEL_PACKAGES, "")
        guest.run[SENTINEL_PACKAGES] = listed + f"{package}\n"
