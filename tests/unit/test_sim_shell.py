"""The simulator's shell: Poolkeeper's real scripts and bash's rules, against a guest's state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from local.sim import guest
from local.sim.scenario import BaseOs, OsUpdate
from local.sim.shell import run

SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "scripts"
NOW = datetime(2026, 11, 10, tzinfo=UTC)
UPDATES = [
    OsUpdate(date=datetime(2026, 11, 3, tzinfo=UTC), packages=2, security=True),
    OsUpdate(date=datetime(2026, 11, 5, tzinfo=UTC), kernel="6.8.0-1017-azure", packages=3),
    OsUpdate(date=datetime(2026, 12, 1, tzinfo=UTC), kernel="6.8.0-1019-azure", packages=9),
]


def machine(now: datetime = NOW) -> tuple[guest.Disk, guest.Guest, guest.Repo]:
    base = BaseOs()
    names = guest.package_names(base, list(UPDATES))
    disk = guest.base_disk(base, names, "vm-1")
    running = guest.Guest()
    guest.boot(disk, running, boot_id="boot-1", hostname="aks-workers-vmss000001", machine_id="m1")
    return disk, running, guest.repo(base, list(UPDATES), now)


def sh(script: str, now: datetime = NOW) -> tuple[int, str, str]:
    outcome = run(script, *machine(now))
    return outcome.exit, outcome.stdout, outcome.stderr


def test_patch_check_reports_kernel_boot_sentinel_and_the_pending_updates_in_apt_format() -> None:
    disk, running, repo = machine()
    outcome = run((SCRIPTS / "patch_check.sh").read_text(), disk, running, repo)
    assert outcome.exit == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0] == "== upgrades"  # the long list first: Azure keeps the output's last 4 KB
    assert lines[-7:] == [
        "== kernel",
        "6.8.0-1015-azure",
        "== boot",
        "boot-1",
        "== reboot",
        "not-required",
        "== done",
    ]
    assert (
        "Inst containerd [1.7.12-0ubuntu4.1] (1.7.12-0ubuntu4.3 Ubuntu:24.04/noble-updates [amd64])"
        in lines
    )
    assert (
        "Inst openssl [3.0.13-0ubuntu3.4] (3.0.13-0ubuntu3.5 Ubuntu:24.04/noble-updates [amd64])"
        in lines
    )
    kernel = "Inst linux-image-6.8.0-1017-azure (6.8.0-1017.1 Ubuntu:24.04/noble-updates [amd64])"
    assert kernel in lines, "the kernel of the update not yet published (1019) is not seen"
    summary = lines.index("3 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.")
    assert lines[summary - 1].startswith("Inst ")
    assert disk.packages["containerd"] == "1.7.12-0ubuntu4.1", "-s changes nothing"


def test_security_updates_name_the_security_pocket() -> None:
    _, out, _ = sh("apt-get -s -q dist-upgrade", now=datetime(2026, 11, 4, tzinfo=UTC))
    assert (
        "Inst containerd [1.7.12-0ubuntu4.1] (1.7.12-0ubuntu4.2 Ubuntu:24.04/noble-updates, "
        "Ubuntu:24.04/noble-security [amd64])"
    ) in out.splitlines()
    assert out.endswith("2 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")


def test_patch_install_installs_everything_published_and_sets_the_sentinel() -> None:
    disk, running, repo = machine()
    outcome = run((SCRIPTS / "patch_install.sh").read_text(), disk, running, repo)
    assert outcome.exit == 0, outcome.stderr
    assert "Setting up linux-image-6.8.0-1017-azure (6.8.0-1017.1) ..." in outcome.stdout
    assert "Setting up openssl (3.0.13-0ubuntu3.5) ..." in outcome.stdout
    assert outcome.stdout.endswith("== reboot\nrequired\n== done\n")
    assert disk.kernels() == ["6.8.0-1015-azure", "6.8.0-1017-azure"]
    assert running.kernel == "6.8.0-1015-azure", "the new kernel runs only after a reboot"
    assert running.run["/run/reboot-required.pkgs"] == "linux-image-6.8.0-1017-azure\n"
    again = run("apt-get -s -q dist-upgrade", disk, running, repo)
    assert again.stdout.endswith("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")
    guest.shut_down(running)
    guest.boot(disk, running, boot_id="boot-2", hostname="h", machine_id="other")
    assert running.kernel == "6.8.0-1017-azure" and not running.reboot_required
    assert disk.machine_id() == "m1", "a machine-id on disk survives reboots"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("true", (0, "", "")),
        ("false", (1, "", "")),
        ("exit 3", (3, "", "")),
        ("echo a; exit 300", (44, "a\n", "")),
        ('echo "a  b" c', (0, "a  b c\n", "")),
        ("echo -n x", (0, "x", "")),
        ("uname -r", (0, "6.8.0-1015-azure\n", "")),
        ("hostname", (0, "aks-workers-vmss000001\n", "")),
        ("cat /etc/hostname /etc/machine-id", (0, "aks-workers-vmss000001\nm1\n", "")),
        ("cat /proc/sys/kernel/random/boot_id", (0, "boot-1\n", "")),
        ("cat /nope; echo after", (0, "after\n", "cat: /nope: No such file or directory\n")),
        ("set -e\ncat /nope\necho never", (1, "", "cat: /nope: No such file or directory\n")),
        ("set -eu\nfalse || echo rescued", (0, "rescued\n", "")),
        ("set -e\nfalse && echo no\necho yes", (0, "yes\n", "")),
        ("set -e\ntrue && false\necho no", (1, "", "")),
        (
            "[ -f /var/run/reboot-required ] && echo required || echo not-required",
            (0, "not-required\n", ""),
        ),
        ("test -f /etc/machine-id && echo yes", (0, "yes\n", "")),
        ("[ -d /var/lib/cloud ] && echo dir", (0, "dir\n", "")),
        ("[ -f /etc ]", (1, "", "")),
        ("[ a = a ]", (0, "", "")),
        ("[ -f /x", (2, "", "bash: line 1: [: missing `]'\n")),
        ("# only a comment\n\n#!/bin/bash", (0, "", "")),
        ("export DEBIAN_FRONTEND=noninteractive; X=1", (0, "", "")),
        ("echo one \\\n  two", (0, "one two\n", "")),
        ("apt-get -qq update", (0, "", "")),
        ("apt-get frobnicate", (100, "", "E: Invalid operation frobnicate\n")),
        ("/usr/bin/true", (0, "", "")),
        ("sleep 5", (0, "", "")),
    ],
)
def test_bash_rules(script: str, expected: tuple[int, str, str]) -> None:
    assert sh(script) == expected


def test_an_unknown_command_is_bash_127_with_its_line() -> None:
    assert sh("echo a\nfrobnicate --now\necho b") == (
        0,
        "a\nb\n",
        "bash: line 2: frobnicate: command not found\n",
    )
    code, _, err = sh("set -e\nfoo")
    assert (code, err) == (127, "bash: line 2: foo: command not found\n")
    assert sh("/opt/x")[0] == 127


@pytest.mark.parametrize(
    "script",
    [
        "cat /etc/hostname | wc -l",
        "echo $(uname -r)",
        "echo `uname -r`",
        "echo $HOME",
        "echo x > /tmp/f",
        "if true; then echo y; fi",
        "for a in 1 2; do echo $a; done",
        "(echo sub)",
        "sleep 1 &",
        "cat <<EOF",
    ],
)
def test_constructs_not_simulated_exit_2_and_say_so(script: str) -> None:
    code, out, err = sh(f"echo before\n{script}\necho after")
    assert code == 2 and out == "before\n"
    assert err.startswith("bash: line 2: ") and "not simulated" in err


def test_single_quotes_keep_a_dollar_literal() -> None:
    assert sh("echo '$HOME'") == (0, "$HOME\n", "")


def test_without_yes_apt_aborts_and_changes_nothing() -> None:
    disk, running, repo = machine()
    outcome = run("apt-get dist-upgrade", disk, running, repo)
    assert outcome.exit == 1 and outcome.stdout.endswith("Abort.\n")
    assert len(disk.kernels()) == 1


def test_unattended_upgrade_installs_packages_whose_newest_update_is_security_only() -> None:
    disk, running, repo = machine()
    assert run("unattended-upgrade", disk, running, repo).exit == 0
    assert disk.packages["containerd"] == "1.7.12-0ubuntu4.1", (
        "its newest update is no security one"
    )
    disk, running, repo = machine(datetime(2026, 11, 4, tzinfo=UTC))
    assert run("unattended-upgrade", disk, running, repo).exit == 0
    assert disk.packages["containerd"] == "1.7.12-0ubuntu4.2"
    assert len(disk.kernels()) == 1 and not running.reboot_required


def test_image_cleanup_then_poweroff() -> None:
    disk, running, repo = machine()
    script = (
        "rm -rf /etc/hostname /var/lib/cloud/data/* /var/lib/cloud/instance "
        "/var/lib/cloud/instances/* /var/lib/waagent/history/* /var/log/journal/*\n"
        "cp /dev/null /etc/machine-id\n"
        "systemctl poweroff --force\n"
        "echo never"
    )
    outcome = run(script, disk, running, repo)
    assert (outcome.exit, outcome.stdout, outcome.power) == (0, "", "poweroff")
    assert disk.files["/etc/machine-id"] == ""
    assert "/etc/hostname" not in disk.files
    cloud = [p for p in disk.files if p.startswith("/var/lib/cloud/")]
    assert cloud == ["/var/lib/cloud/seed/azure/ovf-env.xml"], "Kamino keeps the seed"
    assert not any(p.startswith("/var/lib/waagent/history/") for p in disk.files)
    assert "/var/lib/waagent/events/1.tld" in disk.files


def test_rm_without_force_or_recursion_fails_like_rm() -> None:
    assert sh("rm /nope") == (1, "", "rm: cannot remove '/nope': No such file or directory\n")
    assert sh("rm /var/lib/cloud") == (
        1,
        "",
        "rm: cannot remove '/var/lib/cloud': Is a directory\n",
    )
    assert sh("rm -f /nope")[0] == 0
    assert sh("cp /nope /x") == (1, "", "cp: cannot stat '/nope': No such file or directory\n")


def test_reboot_ends_the_script() -> None:
    outcome = run("echo a; systemctl reboot; echo b", *machine())
    assert (outcome.stdout, outcome.power) == ("a\n", "reboot")
    assert run("sleep 30; sleep 1m", *machine()).seconds == 90


def test_image_clean_empties_the_identity_and_powers_off_after_answering() -> None:
    disk, running, repo = machine()
    assert disk.machine_id() == "m1" and "/var/lib/waagent/provisioned" in disk.files
    outcome = run((SCRIPTS / "image_clean.sh").read_text(), disk, running, repo)
    assert (outcome.exit, outcome.power, outcome.power_delay) == (0, "poweroff", 5)
    assert outcome.stdout.endswith("== poweroff\n== done\n"), "the script goes on after systemd-run"
    assert outcome.stderr.endswith(
        "Vacuuming done, freed 0B of archived journals from /var/log/journal.\n"
    )
    assert disk.files["/etc/machine-id"] == "", "emptied, not deleted"
    assert sorted(disk.files) == [
        "/etc/machine-id",
        "/etc/os-release",
        "/var/log/journal/system.journal",
    ]
    assert disk.kernels() == ["6.8.0-1015-azure"] and running.up, "up until the power-off"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("truncate -s 0 /etc/machine-id; cat /etc/machine-id", (0, "", "")),
        ("truncate -s 0 /etc/new-file && echo made", (0, "made\n", "")),
        ("truncate -c -s 0 /etc/nothing; [ -f /etc/nothing ] || echo absent", (0, "absent\n", "")),
        (
            "truncate /etc/machine-id",
            (1, "", "truncate: you must specify either '--size' or '--reference'\n"),
        ),
        ("cloud-init clean --machine-id; cat /etc/machine-id", (0, "uninitialized\n", "")),
        (
            "cloud-init clean; [ -f /var/lib/cloud/seed/azure/ovf-env.xml ] && echo seed",
            (0, "seed\n", ""),
        ),
        (
            "systemd-run --on-active=1min /sbin/reboot; echo on",
            (
                0,
                "on\n",
                "Running timer as unit: run-u1.timer\nWill run service as unit: run-u1.service\n",
            ),
        ),
        ("systemd-run --on-active=soon poweroff", (1, "", "Failed to parse timer value\n")),
    ],
)
def test_image_commands(script: str, expected: tuple[int, str, str]) -> None:
    assert sh(script) == expected


@pytest.mark.parametrize(
    "script",
    [
        "truncate -s 10 /etc/machine-id",
        "systemd-run /usr/bin/apt-get -y dist-upgrade",
        "cloud-init status --wait",
        "cloud-init clean --configs all",
        "journalctl -u kubelet",
    ],
)
def test_image_commands_say_what_they_do_not_simulate(script: str) -> None:
    code, _, err = sh(script)
    assert code == 2 and "not simulated" in err
