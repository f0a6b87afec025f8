"""A small bash for run commands: interprets a script against an instance's `Disk` and `Guest`.

Pure: `run(script, disk, guest, repo)` reads and changes the given state and returns what the
script printed and its exit code; no clock, no I/O. It knows simple commands, `;`, `&&`, `||`,
comments, line continuations, `set -e` (with bash's rule that a failing command inside an
`&&`/`||` list ends the script only when it is the list's last), `export`/assignments and `exit`.
A command it does not know exits 127 with bash's message, as a typo would on Ubuntu; a construct
it does not simulate (pipes, redirections, `$…` expansion, command substitution, `if`/`for`/
`while`/`case`, subshells, background jobs) exits 2 saying so, so its limits differ from a typo.

Builtins here: `true`, `false`, `:`, `echo`, `test`/`[`, `set`, `export`, `exit`, `sleep` (adds
to `Outcome.seconds`), `cd`; the other commands are in `commands`. A command given as
`/usr/bin/x` (or `/bin`, `/sbin`, `/usr/sbin`) is `x`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from local.sim.commands import COMMANDS
from local.sim.guest import Disk, Guest, Repo
from local.sim.shellstate import (
    BIN_DIRS,
    NOT_FOUND,
    NOT_SIMULATED,
    Exit,
    Outcome,
    Shell,
    not_simulated,
)

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
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def run(script: str, disk: Disk, guest: Guest, repo: Repo) -> Outcome:
    """Interpret `script` (the run command's lines joined by newlines) as bash would."""
    shell = Shell(disk, guest, repo)
    try:
        _script(shell, script)
        code = shell.status
    except Exit as stop:
        code = stop.code
    return Outcome(
        code, "".join(shell.out), "".join(shell.err), shell.power, shell.seconds, shell.power_delay
    )


def _script(shell: Shell, script: str) -> None:
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


def _line(shell: Shell, text: str) -> None:
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return
    if "<<" in stripped:
        not_simulated(shell, "here-document")
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
        raise Exit(NOT_SIMULATED) from None
    for original in originals:  # expansions, unless single-quoted
        if original.startswith("'"):
            continue
        if "`" in original or "$(" in original:
            not_simulated(shell, "command substitution")
        if "$" in original:
            not_simulated(shell, "parameter expansion ($…)")
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


def _and_or(shell: Shell, tokens: list[str]) -> None:
    commands: list[tuple[str, list[str]]] = [("", [])]
    for token in tokens:
        if token in ("&&", "||"):
            commands.append((token, []))
        elif token and all(c in "();<>|&" for c in token):
            what = {"|": "pipeline", "&": "background job", "(": "subshell", ")": "subshell"}
            not_simulated(shell, what.get(token, f"redirection or operator '{token}'"))
        else:
            commands[-1][1].append(token)
    if any(not words for _, words in commands):
        shell.bash_error(f"syntax error near unexpected token `{tokens[-1]}'")
        raise Exit(NOT_SIMULATED)
    ran_last = False
    for index, (operator, words) in enumerate(commands):
        if operator == "&&" and shell.status != 0:
            continue
        if operator == "||" and shell.status == 0:
            continue
        shell.status = _command(shell, words)
        ran_last = index == len(commands) - 1
    if shell.errexit and shell.status != 0 and ran_last:
        raise Exit(shell.status)


def _command(shell: Shell, words: list[str]) -> int:
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
        not_simulated(shell, f"'{name}'")
    if name.startswith("/"):
        base = next((name[len(d) :] for d in BIN_DIRS if name.startswith(d)), None)
        if base is None or "/" in base or base not in TABLE:
            shell.bash_error(f"{name}: No such file or directory")
            return NOT_FOUND
        name = base
    handler = TABLE.get(name)
    if handler is None:
        shell.bash_error(f"{name}: command not found")
        return NOT_FOUND
    return handler(shell, words[1:])


def _true(shell: Shell, args: list[str]) -> int:
    return 0


def _false(shell: Shell, args: list[str]) -> int:
    return 1


def _echo(shell: Shell, args: list[str]) -> int:
    newline = True
    while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
        newline = newline and "n" not in args[0]
        args = args[1:]
    shell.say(" ".join(args) + ("\n" if newline else ""))
    return 0


def _set(shell: Shell, args: list[str]) -> int:
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


def _export(shell: Shell, args: list[str]) -> int:
    for arg in args:
        if arg.startswith("-"):
            continue
        name, _, value = arg.partition("=")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            shell.bash_error(f"export: `{arg}': not a valid identifier")
            return 1
        shell.env[name] = value if "=" in arg else shell.env.get(name, "")
    return 0


def _exit(shell: Shell, args: list[str]) -> int:
    if not args:
        raise Exit(shell.status)
    if not re.match(r"^-?\d+$", args[0]):
        shell.bash_error(f"exit: {args[0]}: numeric argument required")
        raise Exit(2)
    raise Exit(int(args[0]) % 256)


def _sleep(shell: Shell, args: list[str]) -> int:
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


def _cd(shell: Shell, args: list[str]) -> int:
    if args and not shell.is_dir(args[0]):
        shell.bash_error(f"cd: {args[0]}: No such file or directory")
        return 1
    return 0


def _test(shell: Shell, args: list[str], name: str = "test") -> int:
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


def _bracket(shell: Shell, args: list[str]) -> int:
    if not args or args[-1] != "]":
        shell.bash_error("[: missing `]'")
        return 2
    return _test(shell, args[:-1], "[")


BUILTINS: dict[str, Callable[[Shell, list[str]], int]] = {
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
}
TABLE = BUILTINS | COMMANDS
