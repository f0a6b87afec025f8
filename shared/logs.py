"""Poolkeeper's log records carry no control characters from what they quote: an alert name, a
job id or an error text with a newline in it cannot forge a log line. Installed once, for the
`poolkeeper` loggers only, by `quote_safely()` (function_app.py calls it when it loads)."""

from __future__ import annotations

import logging
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u0085\u2028\u2029]")
_installed = False


def escaped(text: str) -> str:
    """`text` with every control character (a tab excepted) written as an escape, e.g. \\n."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _clean(value: Any) -> Any:
    return escaped(str(value)) if isinstance(value, str | BaseException) else value


def quote_safely() -> None:
    """Escape control characters in the arguments of every `poolkeeper.*` log record (the
    message templates are Poolkeeper's own). Idempotent."""
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name.startswith("poolkeeper") and record.args:
            if isinstance(record.args, dict):
                record.args = {k: _clean(v) for k, v in record.args.items()}
            else:
                record.args = tuple(_clean(a) for a in record.args)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
