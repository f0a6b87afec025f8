"""The commands the simulator's shell knows besides bash's builtins, each over the instance's
state as `shellstate.Shell` shows it: files (`cat`, `touch`, `rm`, `cp`, `truncate`), the
system (`uname`, `hostname`, `sync`), packages (`apt-get`, `unattended-upgrade`,
`dpkg-query -W`), power (`systemctl`, `reboot`, `poweroff`, `halt`, `shutdown`, `systemd-run`),
and image clean-up (`cloud-init clean`, `journalctl --rotate/--vacuum-*`). An option a command
does not simulate ends the script with exit 2, saying so.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from local.sim.guest import (
    KERNEL_PACKAGE,
    MACHINE_ID,
    Plan,
    install,
    kernel_version,
    plan,
    resolve,
)
from local.sim.shellstate import BIN_DIRS, Exit, Shell, not_simulated, split_options

ARCHIVE = "Ubuntu:{release}/{codename}"


def _cat(shell: Shell, args: list[str]) -> int:
    code = 0
    for path in [a for a in args if a != "--"]:
        if path.startswith("-") and path != "-":
            continue  # -A, -n and friends: shown as they are
        if path == "-":
            continue  # stdin is empty under run command
        text = shell.read(path)
        if text is None:
            if shell.is_dir(path):
                shell.fail(f"cat: {path}: Is a directory\n")
            else:
                shell.fail(f"cat: {path}: No such file or directory\n")
            code = 1
            continue
        shell.say(text)
    return code


def _touch(shell: Shell, args: list[str]) -> int:
    for path in [a for a in args if not a.startswith("-")]:
        if shell.read(path) is None and not shell.is_dir(path):
            shell.write(path, "")
    return 0


def _rm(shell: Shell, args: list[str]) -> int:
    flags, operands = split_options(args)
    force = "f" in flags or "--force" in flags
    recursive = bool({"r", "R", "--recursive"} & flags)
    if not operands and not force:
        shell.fail("rm: missing operand\n")
        return 1
    code = 0
    for operand in operands:
        for path in shell.glob(operand):
            if shell.is_dir(path):
                if not recursive:
                    shell.fail(f"rm: cannot remove '{path}': Is a directory\n")
                    code = 1
                    continue
                prefix = resolve(path).rstrip("/") + "/"
                for found in [p for p in shell.paths() if p.startswith(prefix)]:
                    shell.delete(found)
            elif shell.is_file(path):
                shell.delete(path)
            elif not force:
                shell.fail(f"rm: cannot remove '{path}': No such file or directory\n")
                code = 1
    return code


def _cp(shell: Shell, args: list[str]) -> int:
    _, operands = split_options(args)
    if len(operands) != 2:
        shell.fail(
            "cp: missing destination file operand\n" if operands else "cp: missing file operand\n"
        )
        return 1
    source, target = operands
    text = shell.read(source)
    if text is None:
        shell.fail(f"cp: cannot stat '{source}': No such file or directory\n")
        return 1
    if shell.is_dir(target):
        target = resolve(target).rstrip("/") + "/" + resolve(source).rsplit("/", 1)[-1]
    shell.write(target, text)
    return 0


def _uname(shell: Shell, args: list[str]) -> int:
    guest = shell.guest
    fields = {
        "s": "Linux",
        "n": guest.hostname,
        "r": guest.kernel,
        "v": "#17-Ubuntu SMP",
        "m": "x86_64",
    }
    flags, _ = split_options(args)
    if "a" in flags or "--all" in flags:
        shell.say(" ".join([*fields.values(), "x86_64 x86_64 GNU/Linux"]) + "\n")
        return 0
    wanted = [k for k in "snrvm" if k in flags] or ["s"]
    shell.say(" ".join(fields[k] for k in wanted) + "\n")
    return 0


def _hostname(shell: Shell, args: list[str]) -> int:
    shell.say(f"{shell.guest.hostname}\n")
    return 0


def _dpkg_query(shell: Shell, args: list[str]) -> int:
    flags, names = split_options(args)
    if "W" not in flags and "--show" not in flags:
        not_simulated(shell, "dpkg-query without -W")
    packages = shell.disk.packages
    code = 0
    for name in names or sorted(packages):
        if name in packages:
            shell.say(f"{name}\t{packages[name]}\n")
        else:
            shell.fail(f"dpkg-query: no packages found matching {name}\n")
            code = 1
    return code


def _origin(shell: Shell, security: bool) -> str:
    base = shell.repo.base
    archive = ARCHIVE.format(release=base.release, codename=base.codename)
    pockets = f"{archive}-updates" + (f", {archive}-security" if security else "")
    return f"{pockets} [amd64]"


def _summary(work: Plan) -> str:
    new = 1 if work.kernel else 0
    return (
        f"{len(work.upgrades)} upgraded, {new} newly installed, 0 to remove and 0 not upgraded.\n"
    )


def _apt_get(shell: Shell, args: list[str]) -> int:
    quiet, simulate, yes = 0, False, False
    operation: str | None = None
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "-o":
            index += 1  # its value
        elif arg.startswith("-o") or arg.startswith("--option"):
            continue
        elif arg in ("-q", "--quiet"):
            quiet += 1
        elif arg == "-qq":
            quiet += 2
        elif arg in ("-s", "--simulate", "--dry-run", "--just-print", "--no-act", "--recon"):
            simulate = True
        elif arg in ("-y", "--yes", "--assume-yes"):
            yes = True
        elif arg.startswith("-"):
            flags = set(arg[1:])
            quiet += arg.count("q")
            simulate = simulate or "s" in flags
            yes = yes or "y" in flags
        elif operation is None:
            operation = arg
    if operation == "update":
        if quiet < 2:
            base = shell.repo.base
            shell.say(
                f"Hit:1 http://azure.archive.ubuntu.com/ubuntu {base.codename} InRelease\n"
                f"Get:2 http://azure.archive.ubuntu.com/ubuntu {base.codename}-updates InRelease\n"
                "Reading package lists...\n"
            )
        return 0
    if operation not in ("upgrade", "dist-upgrade", "full-upgrade"):
        shell.fail(
            f"E: Invalid operation {operation}\n" if operation else "E: No operation given\n"
        )
        return 100
    work = plan(shell.disk, shell.repo)
    if operation == "upgrade" and work.kernel:  # upgrade never installs a new package
        work = Plan(work.upgrades, None)
    if quiet < 2:
        shell.say(
            "Reading package lists...\nBuilding dependency tree...\nReading state information...\n"
            "Calculating upgrade...\n"
        )
    if simulate:
        for name, old, new, security in work.upgrades:
            shell.say(f"Inst {name} [{old}] ({new} {_origin(shell, security)})\n")
        if work.kernel and work.kernel.kernel:
            version = KERNEL_PACKAGE + work.kernel.kernel
            shell.say(
                f"Inst {version} ({_kernel_version(work)} {_origin(shell, work.kernel.security)})\n"
            )
        shell.say(_summary(work))
        return 0
    shell.say(_summary(work))
    if not work.count:
        return 0
    if not yes:
        shell.say("Do you want to continue? [Y/n] Abort.\n")
        return 1
    for name, _, new, _ in work.upgrades:
        shell.say(f"Setting up {name} ({new}) ...\n")
    if work.kernel and work.kernel.kernel:
        shell.say(
            f"Setting up {KERNEL_PACKAGE}{work.kernel.kernel} ({_kernel_version(work)}) ...\n"
        )
    install(shell.disk, shell.guest, work)
    return 0


def _kernel_version(work: Plan) -> str:
    return kernel_version(work.kernel.kernel if work.kernel and work.kernel.kernel else "")


def _unattended_upgrade(shell: Shell, args: list[str]) -> int:
    """Ubuntu's unattended-upgrade with its default origins: security updates only, quietly
    (it logs to /var/log/unattended-upgrades, not to stdout)."""
    work = plan(shell.disk, shell.repo)
    security = [u for u in work.upgrades if u[3]]
    kernel = work.kernel if work.kernel and work.kernel.security else None
    if "--dry-run" not in args:
        install(shell.disk, shell.guest, Plan(security, kernel))
    return 0


def _power(shell: Shell, what: str) -> int:
    shell.power, shell.power_delay = what, 0.0
    raise Exit(0)


def _systemctl(shell: Shell, args: list[str]) -> int:
    _, words = split_options(args)
    verb = words[0] if words else "list-units"
    if verb == "reboot":
        return _power(shell, "reboot")
    if verb in ("poweroff", "halt"):
        return _power(shell, "poweroff")
    if verb in ("start", "stop", "restart", "reload", "enable", "disable", "daemon-reload"):
        return 0
    if verb == "is-active":
        shell.say("active\n" * max(1, len(words) - 1))
        return 0
    shell.fail(f"Unknown command verb '{verb}'.\n")
    return 1


def _reboot(shell: Shell, args: list[str]) -> int:
    return _power(shell, "reboot")


def _poweroff(shell: Shell, args: list[str]) -> int:
    return _power(shell, "poweroff")


def _shutdown(shell: Shell, args: list[str]) -> int:
    flags, _ = split_options(args)
    if "c" in flags:
        return 0
    return _power(shell, "reboot" if "r" in flags or "--reboot" in flags else "poweroff")


def _power_of(shell: Shell, command: list[str]) -> str | None:
    """What a command line does to the machine, if it is a power command."""
    name = next((command[0][len(d) :] for d in BIN_DIRS if command[0].startswith(d)), command[0])
    flags, words = split_options(command[1:])
    if name in ("poweroff", "halt"):
        return "poweroff"
    if name == "reboot":
        return "reboot"
    if name == "shutdown" and "c" not in flags:
        return "reboot" if "r" in flags or "--reboot" in flags else "poweroff"
    if name == "systemctl" and words and words[0] in ("poweroff", "halt", "reboot"):
        return "reboot" if words[0] == "reboot" else "poweroff"
    return None


def _time_span(text: str) -> float | None:
    """A systemd time span such as `5`, `5s`, `2min`, `1h` in seconds."""
    match = re.match(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?$", text)
    if match is None:
        return None
    return (
        float(match[1])
        * {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[match[2] or ""]
    )


OPTION_VALUES = ("--unit=", "--description=", "--timer-property=", "--property=")


def _systemd_run(shell: Shell, args: list[str]) -> int:
    """A transient unit: here only a power command, now or `--on-active` later. It runs after
    the script has answered, so the script goes on."""
    delay: float | None = 0.0
    quiet = False
    index = 0
    while index < len(args) and args[index].startswith("-"):
        arg = args[index]
        index += 1
        if arg.startswith("--on-active="):
            delay = _time_span(arg.split("=", 1)[1])
        elif arg == "--on-active" and index < len(args):
            delay, index = _time_span(args[index]), index + 1
        elif arg in ("--quiet", "-q"):
            quiet = True
        elif arg in ("--no-block", "--collect", "-G") or arg.startswith(OPTION_VALUES):
            continue
        elif arg in ("--unit", "-u", "--description", "--timer-property", "--property", "-p"):
            index += 1
        else:
            not_simulated(shell, f"systemd-run {arg}")
    command = args[index:]
    if delay is None:
        shell.fail("Failed to parse timer value\n")
        return 1
    if not command:
        shell.fail("systemd-run: Command line to execute required.\n")
        return 1
    power = _power_of(shell, command)
    if power is None:
        not_simulated(shell, "systemd-run of a command other than a power-off or reboot")
    shell.power, shell.power_delay = power, delay
    if not quiet:
        units = "Running timer as unit: run-u1.timer\nWill run service as unit: run-u1.service\n"
        shell.fail(units if delay else "Running as unit: run-u1.service\n")
    return 0


def _truncate(shell: Shell, args: list[str]) -> int:
    """`truncate -s 0 FILE...` (other sizes are not simulated: files hold text here)."""
    size: str | None = None
    create = True
    files: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg in ("-s", "--size") and index < len(args):
            size, index = args[index], index + 1
        elif arg.startswith("--size="):
            size = arg.split("=", 1)[1]
        elif arg.startswith("-s") and len(arg) > 2:
            size = arg[2:]
        elif arg in ("-c", "--no-create"):
            create = False
        elif arg.startswith("-"):
            not_simulated(shell, f"truncate {arg}")
        else:
            files.append(arg)
    if size is None:
        shell.fail("truncate: you must specify either '--size' or '--reference'\n")
        return 1
    if size != "0":
        not_simulated(shell, f"truncate to size {size}")
    if not files:
        shell.fail("truncate: missing file operand\n")
        return 1
    code = 0
    for path in files:
        parent = resolve(path).rsplit("/", 1)[0] or "/"
        if shell.is_dir(path):
            shell.fail(f"truncate: cannot open '{path}' for writing: Is a directory\n")
            code = 1
        elif shell.is_file(path) or (create and shell.is_dir(parent)):
            shell.write(path, "")
        elif create:
            shell.fail(f"truncate: cannot open '{path}' for writing: No such file or directory\n")
            code = 1
    return code


def _cloud_init(shell: Shell, args: list[str]) -> int:
    """`cloud-init clean [--logs] [--seed] [--machine-id] [--reboot]`: the next boot runs it as
    a new instance. Everything under /var/lib/cloud goes (the seed only with --seed)."""
    flags, words = split_options(args)
    if words[:1] != ["clean"] or len(words) > 1:
        not_simulated(shell, f"cloud-init {' '.join(words) or '(no subcommand)'}")
    known = {"l", "--logs", "s", "--seed", "r", "--reboot", "--machine-id"}
    if flags - known:
        not_simulated(shell, f"cloud-init clean {' '.join(sorted(flags - known))}")
    seed = bool({"s", "--seed"} & flags)
    for path in [p for p in shell.paths() if p.startswith("/var/lib/cloud/")]:
        if seed or not path.startswith("/var/lib/cloud/seed/"):
            shell.delete(path)
    if {"l", "--logs"} & flags:
        for log in ("/var/log/cloud-init.log", "/var/log/cloud-init-output.log"):
            shell.delete(log)
    if "--machine-id" in flags:
        shell.write(MACHINE_ID, "uninitialized\n")
    if {"r", "--reboot"} & flags:
        return _power(shell, "reboot")
    return 0


def _journalctl(shell: Shell, args: list[str]) -> int:
    """`journalctl --rotate` (the active files become archived, new empty ones start) and
    `--vacuum-time=/--vacuum-size=/--vacuum-files=` (archived files go)."""
    rotate, vacuum = False, False
    for arg in args:
        if arg == "--rotate":
            rotate = True
        elif arg.startswith(("--vacuum-time=", "--vacuum-size=", "--vacuum-files=")):
            vacuum = True
        elif arg not in ("-q", "--quiet"):
            not_simulated(shell, f"journalctl {arg}")
    if not (rotate or vacuum):
        not_simulated(shell, "journalctl without --rotate or --vacuum-*")
    journal = [p for p in shell.paths() if p.startswith("/var/log/journal/")]
    if rotate:
        for path in [p for p in journal if "@" not in p]:
            shell.write(path.removesuffix(".journal") + "@rotated.journal", shell.read(path) or "")
            shell.write(path, "")
    if vacuum:
        for path in [p for p in shell.paths() if p.startswith("/var/log/journal/") and "@" in p]:
            shell.delete(path)
            shell.fail(f"Deleted archived journal {path} (0B).\n")
        shell.fail("Vacuuming done, freed 0B of archived journals from /var/log/journal.\n")
    return 0


def _sync(shell: Shell, args: list[str]) -> int:
    return 0  # the disk is written as the script goes


COMMANDS: dict[str, Callable[[Shell, list[str]], int]] = {
    "cat": _cat,
    "touch": _touch,
    "rm": _rm,
    "cp": _cp,
    "uname": _uname,
    "hostname": _hostname,
    "dpkg-query": _dpkg_query,
    "apt-get": _apt_get,
    "unattended-upgrade": _unattended_upgrade,
    "systemctl": _systemctl,
    "reboot": _reboot,
    "poweroff": _poweroff,
    "halt": _poweroff,
    "shutdown": _shutdown,
    "systemd-run": _systemd_run,
    "truncate": _truncate,
    "cloud-init": _cloud_init,
    "journalctl": _journalctl,
    "sync": _sync,
}
