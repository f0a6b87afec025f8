"""A small bash for run commands: interprets a script against an instance's `Disk` and `Guest`.

Pure: `run(script, disk, guest, repo)` reads and changes the given state and returns what the
script printed and its exit code; no clock, no I/O. It knows simple commands, `;`, `&&`, `||`,
comments, line continuations, `set -e` (with bash's rule that a failing command inside an
`&&`/`||` list ends the script only when it is the list's last), `export`/assignments and `exit`.
A command it does not know exits 127 with bash's message, as a typo would on Ubuntu; a construct
it does not simulate (pipes, redirections, `$…` expansion, command substitution, `if`/`for`/
`while`/`case`, subshells, background jobs) exits 2 saying so, so its limits differ from a typo.

Commands: `true`, `false`, `:`, `echo`, `cat`, `test`/`[`, `uname`, `hostname`, `set`, `export`,
`exit`, `sleep` (adds to `Outcome.seconds`), `cd`, `touch`, `rm`, `cp`, `apt-get` (`update`,
`upgrade`, `dist-upgrade`/`full-upgrade`, with `-s`, `-y`, `-q`/`-qq`, `-o`), `unattended-upgrade`
(security updates only), `dpkg-query -W`, `systemctl` (`reboot`, `poweroff`, `halt`, unit verbs),
`reboot`, `poweroff`, `shutdown`. A command given as `/usr/bin/x` (or `/bin`, `/sbin`,
`/usr/sbin`) is `x`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from local.sim.guest import (
    BOOT_ID,
    KERNEL_PACKAGE,
    MACHINE_ID,
    Disk,
    Guest,
    Plan,
    Repo,
    install,
    kernel_version,
    plan,
    resolve,
)

NOT_SIMULATED = 2
NOT_FOUND = 127
BIN_DIRS = ("/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/")
KEYWORDS = {
    "if",
    "then",
    "else",
    "elif",
    "fi",
    "for",
    "while",
    "until",
    "do",
    "done",
    "case",
    "esac",
    "function",
    "select",
    "{",
    "}",
    "[[",
    "]]",
    "!",
    "time",
    "coproc",
}
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
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
ARCHIVE = "Ubuntu:{release}/{codename}"


@dataclass
class Outcome:
    """What a script did: exit code, output, and whether it took the machine down."""

    exit: int
    stdout: str
    stderr: str
    power: str | None = None  # None, "reboot" or "poweroff"
    seconds: float = 0.0  # simulated time the script's `sleep`s took
    power_delay: float = 0.0  # a power action scheduled (systemd-run) this long after the answer


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@dataclass
class _Shell:
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


def run(script: str, disk: Disk, guest: Guest, repo: Repo) -> Outcome:
    """Interpret `script` (the run command's lines joined by newlines) as bash would."""
    shell = _Shell(disk, guest, repo)
    try:
        _script(shell, script)
        code = shell.status
    except _Exit as stop:
        code = stop.code
    return Outcome(
        code, "".join(shell.out), "".join(shell.err), shell.power, shell.seconds, shell.power_delay
    )


def _script(shell: _Shell, script: str) -> None:
    lines = script.replace("\r\n", "\n").split("\n")
    number = 0
    while number < len(lines):
        first = number + 1
        text = lines[number]
        number += 1
        while text.endswith("\\") and number < len(lines):  # a line continuation
            text = text[:-1] + lines[number]
            number += 1
        shell.line = first
        _line(shell, text)


def _not_simulated(shell: _Shell, what: str) -> None:
    shell.bash_error(
        f"{what}: not simulated (the Azure simulator interprets simple commands, ';', '&&', "
        "'||' and 'set -e' only; see docs/local-stack.md)"
    )
    raise _Exit(NOT_SIMULATED)


def _line(shell: _Shell, text: str) -> None:
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return
    if "<<" in stripped:
        _not_simulated(shell, "here-document")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    raw = shlex.shlex(text, posix=False, punctuation_chars=True)
    raw.whitespace_split = True
    raw.commenters = "#"
    try:
        tokens = list(lexer)
        originals = list(raw)
    except ValueError:
        shell.bash_error("unexpected EOF while looking for matching quote")
        raise _Exit(NOT_SIMULATED) from None
    for original in originals:  # expansions, unless single-quoted
        if original.startswith("'"):
            continue
        if "`" in original or "$(" in original:
            _not_simulated(shell, "command substitution")
        if "$" in original:
            _not_simulated(shell, "parameter expansion ($…)")
    for statement in _split(tokens, {";"}):
        if statement:
            _and_or(shell, statement)


def _split(tokens: list[str], separators: set[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token in separators:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _and_or(shell: _Shell, tokens: list[str]) -> None:
    commands: list[tuple[str, list[str]]] = [("", [])]
    for token in tokens:
        if token in ("&&", "||"):
            commands.append((token, []))
        elif token and all(c in "();<>|&" for c in token):
            what = {"|": "pipeline", "&": "background job", "(": "subshell", ")": "subshell"}
            _not_simulated(shell, what.get(token, f"redirection or operator '{token}'"))
        else:
            commands[-1][1].append(token)
    if any(not words for _, words in commands):
        shell.bash_error(f"syntax error near unexpected token `{tokens[-1]}'")
        raise _Exit(NOT_SIMULATED)
    ran_last = False
    for index, (operator, words) in enumerate(commands):
        if operator == "&&" and shell.status != 0:
            continue
        if operator == "||" and shell.status == 0:
            continue
        shell.status = _command(shell, words)
        ran_last = index == len(commands) - 1
    if shell.errexit and shell.status != 0 and ran_last:
        raise _Exit(shell.status)


def _command(shell: _Shell, words: list[str]) -> int:
    assignments: list[str] = []
    while words and ASSIGNMENT.match(words[0]):
        assignments.append(words[0])
        words = words[1:]
    if not words:
        for assignment in assignments:
            name, value = assignment.split("=", 1)
            shell.env[name] = value
        return 0
    name = words[0]
    if name in KEYWORDS:
        _not_simulated(shell, f"'{name}'")
    if name.startswith("/"):
        base = next((name[len(d) :] for d in BIN_DIRS if name.startswith(d)), None)
        if base is None or "/" in base or base not in COMMANDS:
            shell.bash_error(f"{name}: No such file or directory")
            return NOT_FOUND
        name = base
    handler = COMMANDS.get(name)
    if handler is None:
        shell.bash_error(f"{name}: command not found")
        return NOT_FOUND
    return handler(shell, words[1:])


# -- builtins -----------------------------------------------------------------------------------


def _true(shell: _Shell, args: list[str]) -> int:
    return 0


def _false(shell: _Shell, args: list[str]) -> int:
    return 1


def _echo(shell: _Shell, args: list[str]) -> int:
    newline = True
    while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
        newline = newline and "n" not in args[0]
        args = args[1:]
    shell.say(" ".join(args) + ("\n" if newline else ""))
    return 0


def _set(shell: _Shell, args: list[str]) -> int:
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-o", "+o") and index + 1 < len(args):
            if args[index + 1] == "errexit":
                shell.errexit = arg == "-o"
            index += 2
            continue
        if arg.startswith("-") and "e" in arg:
            shell.errexit = True
        elif arg.startswith("+") and "e" in arg:
            shell.errexit = False
        index += 1
    return 0


def _export(shell: _Shell, args: list[str]) -> int:
    for arg in args:
        if arg.startswith("-"):
            continue
        name, _, value = arg.partition("=")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            shell.bash_error(f"export: `{arg}': not a valid identifier")
            return 1
        shell.env[name] = value if "=" in arg else shell.env.get(name, "")
    return 0


def _exit(shell: _Shell, args: list[str]) -> int:
    if not args:
        raise _Exit(shell.status)
    if not re.match(r"^-?\d+$", args[0]):
        shell.bash_error(f"exit: {args[0]}: numeric argument required")
        raise _Exit(2)
    raise _Exit(int(args[0]) % 256)


def _sleep(shell: _Shell, args: list[str]) -> int:
    total = 0.0
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for arg in args:
        match = re.match(r"^(\d+(?:\.\d+)?)([smhd]?)$", arg)
        if match is None:
            shell.fail(f"sleep: invalid time interval '{arg}'\n")
            return 1
        total += float(match[1]) * units[match[2]]
    if not args:
        shell.fail("sleep: missing operand\n")
        return 1
    shell.seconds += total
    return 0


def _cd(shell: _Shell, args: list[str]) -> int:
    if args and not shell.is_dir(args[0]):
        shell.bash_error(f"cd: {args[0]}: No such file or directory")
        return 1
    return 0


def _test(shell: _Shell, args: list[str], name: str = "test") -> int:
    if args and args[0] == "!":
        result = _test(shell, args[1:], name)
        return result if result > 1 else 1 - result
    if not args:
        return 1
    if len(args) == 1:
        return 0 if args[0] else 1
    if len(args) == 2:
        op, value = args
        checks: dict[str, Callable[[str], bool]] = {
            "-f": lambda p: shell.is_file(p) and not shell.is_dir(p),
            "-e": lambda p: shell.is_file(p) or shell.is_dir(p),
            "-d": shell.is_dir,
            "-s": lambda p: bool(shell.read(p)),
            "-r": lambda p: shell.is_file(p) or shell.is_dir(p),
            "-w": lambda p: shell.is_file(p) or shell.is_dir(p),
            "-n": lambda v: bool(v),
            "-z": lambda v: not v,
        }
        if op not in checks:
            shell.bash_error(f"{name}: {op}: unary operator expected")
            return 2
        return 0 if checks[op](value) else 1
    if len(args) == 3:
        left, op, right = args
        if op in ("=", "=="):
            return 0 if left == right else 1
        if op == "!=":
            return 0 if left != right else 1
        numeric = {
            "-eq": lambda a, b: a == b,
            "-ne": lambda a, b: a != b,
            "-lt": lambda a, b: a < b,
            "-le": lambda a, b: a <= b,
            "-gt": lambda a, b: a > b,
            "-ge": lambda a, b: a >= b,
        }
        if op in numeric:
            for value in (left, right):
                if not re.match(r"^-?\d+$", value):
                    shell.bash_error(f"{name}: {value}: integer expression expected")
                    return 2
            return 0 if numeric[op](int(left), int(right)) else 1
        shell.bash_error(f"{name}: {op}: binary operator expected")
        return 2
    shell.bash_error(f"{name}: too many arguments")
    return 2


def _bracket(shell: _Shell, args: list[str]) -> int:
    if not args or args[-1] != "]":
        shell.bash_error("[: missing `]'")
        return 2
    return _test(shell, args[:-1], "[")


def _cat(shell: _Shell, args: list[str]) -> int:
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


def _touch(shell: _Shell, args: list[str]) -> int:
    for path in [a for a in args if not a.startswith("-")]:
        if shell.read(path) is None and not shell.is_dir(path):
            shell.write(path, "")
    return 0


def _flags(args: list[str]) -> tuple[set[str], list[str]]:
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


def _rm(shell: _Shell, args: list[str]) -> int:
    flags, operands = _flags(args)
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


def _cp(shell: _Shell, args: list[str]) -> int:
    _, operands = _flags(args)
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


def _uname(shell: _Shell, args: list[str]) -> int:
    guest = shell.guest
    fields = {
        "s": "Linux",
        "n": guest.hostname,
        "r": guest.kernel,
        "v": "#17-Ubuntu SMP",
        "m": "x86_64",
    }
    flags, _ = _flags(args)
    if "a" in flags or "--all" in flags:
        shell.say(" ".join([*fields.values(), "x86_64 x86_64 GNU/Linux"]) + "\n")
        return 0
    wanted = [k for k in "snrvm" if k in flags] or ["s"]
    shell.say(" ".join(fields[k] for k in wanted) + "\n")
    return 0


def _hostname(shell: _Shell, args: list[str]) -> int:
    shell.say(f"{shell.guest.hostname}\n")
    return 0


def _dpkg_query(shell: _Shell, args: list[str]) -> int:
    flags, names = _flags(args)
    if "W" not in flags and "--show" not in flags:
        _not_simulated(shell, "dpkg-query without -W")
    packages = shell.disk.packages
    code = 0
    for name in names or sorted(packages):
        if name in packages:
            shell.say(f"{name}\t{packages[name]}\n")
        else:
            shell.fail(f"dpkg-query: no packages found matching {name}\n")
            code = 1
    return code


# -- apt ----------------------------------------------------------------------------------------


def _origin(shell: _Shell, security: bool) -> str:
    base = shell.repo.base
    archive = ARCHIVE.format(release=base.release, codename=base.codename)
    pockets = f"{archive}-updates" + (f", {archive}-security" if security else "")
    return f"{pockets} [amd64]"


def _summary(work: Plan) -> str:
    new = 1 if work.kernel else 0
    return (
        f"{len(work.upgrades)} upgraded, {new} newly installed, 0 to remove and 0 not upgraded.\n"
    )


def _apt_get(shell: _Shell, args: list[str]) -> int:
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


def _unattended_upgrade(shell: _Shell, args: list[str]) -> int:
    """Ubuntu's unattended-upgrade with its default origins: security updates only, quietly
    (it logs to /var/log/unattended-upgrades, not to stdout)."""
    work = plan(shell.disk, shell.repo)
    security = [u for u in work.upgrades if u[3]]
    kernel = work.kernel if work.kernel and work.kernel.security else None
    if "--dry-run" not in args:
        install(shell.disk, shell.guest, Plan(security, kernel))
    return 0


# -- power ----------------------------------------------------------------------------------------


def _power(shell: _Shell, what: str) -> int:
    shell.power, shell.power_delay = what, 0.0
    raise _Exit(0)


def _systemctl(shell: _Shell, args: list[str]) -> int:
    _, words = _flags(args)
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


def _reboot(shell: _Shell, args: list[str]) -> int:
    return _power(shell, "reboot")


def _poweroff(shell: _Shell, args: list[str]) -> int:
    return _power(shell, "poweroff")


def _shutdown(shell: _Shell, args: list[str]) -> int:
    flags, _ = _flags(args)
    if "c" in flags:
        return 0
    return _power(shell, "reboot" if "r" in flags or "--reboot" in flags else "poweroff")


def _power_of(shell: _Shell, command: list[str]) -> str | None:
    """What a command line does to the machine, if it is a power command."""
    name = next((command[0][len(d) :] for d in BIN_DIRS if command[0].startswith(d)), command[0])
    flags, words = _flags(command[1:])
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


def _systemd_run(shell: _Shell, args: list[str]) -> int:
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
            _not_simulated(shell, f"systemd-run {arg}")
    command = args[index:]
    if delay is None:
        shell.fail("Failed to parse timer value\n")
        return 1
    if not command:
        shell.fail("systemd-run: Command line to execute required.\n")
        return 1
    power = _power_of(shell, command)
    if power is None:
        _not_simulated(shell, "systemd-run of a command other than a power-off or reboot")
    shell.power, shell.power_delay = power, delay
    if not quiet:
        units = "Running timer as unit: run-u1.timer\nWill run service as unit: run-u1.service\n"
        shell.fail(units if delay else "Running as unit: run-u1.service\n")
    return 0


def _truncate(shell: _Shell, args: list[str]) -> int:
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
            _not_simulated(shell, f"truncate {arg}")
        else:
            files.append(arg)
    if size is None:
        shell.fail("truncate: you must specify either '--size' or '--reference'\n")
        return 1
    if size != "0":
        _not_simulated(shell, f"truncate to size {size}")
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


def _cloud_init(shell: _Shell, args: list[str]) -> int:
    """`cloud-init clean [--logs] [--seed] [--machine-id] [--reboot]`: the next boot runs it as
    a new instance. Everything under /var/lib/cloud goes (the seed only with --seed)."""
    flags, words = _flags(args)
    if words[:1] != ["clean"] or len(words) > 1:
        _not_simulated(shell, f"cloud-init {' '.join(words) or '(no subcommand)'}")
    known = {"l", "--logs", "s", "--seed", "r", "--reboot", "--machine-id"}
    if flags - known:
        _not_simulated(shell, f"cloud-init clean {' '.join(sorted(flags - known))}")
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


def _journalctl(shell: _Shell, args: list[str]) -> int:
    """`journalctl --rotate` (the active files become archived, new empty ones start) and
    `--vacuum-time=/--vacuum-size=/--vacuum-files=` (archived files go)."""
    rotate, vacuum = False, False
    for arg in args:
        if arg == "--rotate":
            rotate = True
        elif arg.startswith(("--vacuum-time=", "--vacuum-size=", "--vacuum-files=")):
            vacuum = True
        elif arg not in ("-q", "--quiet"):
            _not_simulated(shell, f"journalctl {arg}")
    if not (rotate or vacuum):
        _not_simulated(shell, "journalctl without --rotate or --vacuum-*")
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


COMMANDS: dict[str, Callable[[_Shell, list[str]], int]] = {
    "true": _true,
    ":": _true,
    "false": _false,
    "echo": _echo,
    "set": _set,
    "export": _export,
    "exit": _exit,
    "sleep": _sleep,
    "cd": _cd,
    "test": _test,
    "[": _bracket,
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
    "sync": _true,
}
