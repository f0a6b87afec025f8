"""Quoted input cannot forge a log line."""

from __future__ import annotations

import logging

import pytest

from shared import logs
from shared.logs import escaped, quote_safely


def test_control_characters_are_escaped_and_tabs_and_unicode_kept() -> None:
    assert escaped("cpu\nP1 FIRING forged\r\x1b[31m") == "cpu\\nP1 FIRING forged\\r\\x1b[31m"
    assert escaped("a\tb é ü") == "a\tb é ü"
    assert escaped("line\u2028sep") == "line\\u2028sep"


def test_a_poolkeeper_record_quoting_a_newline_stays_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_installed", False)
    before = logging.getLogRecordFactory()
    try:
        quote_safely()
        quote_safely()  # twice: still one layer
        with caplog.at_level(logging.INFO):
            logging.getLogger("poolkeeper.alerts").info(
                "Alert %s for pool %s", "NodeHigh\nINFO poolkeeper.jobs forged", ValueError("x\ny")
            )
            logging.getLogger("other").info("kept %s", "as\nis")
    finally:
        logging.setLogRecordFactory(before)  # the rest of this worker's tests log as before
    ours, theirs = caplog.records
    assert ours.getMessage() == "Alert NodeHigh\\nINFO poolkeeper.jobs forged for pool x\\ny"
    assert theirs.getMessage() == "kept as\nis"  # other libraries' records are theirs
