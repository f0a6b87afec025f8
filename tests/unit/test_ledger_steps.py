"""The ledger's step list: repeated waits fold into one entry, so a long retry keeps a row small."""

from __future__ import annotations

from typing import Any

from shared.flows.jobs import _with_entry


def _entry(step: str, result: str, at: str, reason: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"step": step, "at": at, "result": result}
    if reason is not None:
        entry |= {"reason": reason, "wait_seconds": 30.0}
    return entry


def test_a_retry_cycle_folds_into_its_first_wait_with_a_count() -> None:
    steps: list[dict[str, Any]] = []
    for minute in range(40):
        steps = _with_entry(steps, _entry("plan", "next", f"t{minute}a"))
        steps = _with_entry(steps, _entry("plan", "wait", f"t{minute}b", reason="500 Internal"))
    assert steps == [
        _entry("plan", "next", "t0a"),
        _entry("plan", "wait", "t0b", reason="500 Internal") | {"repeats": 40, "last_at": "t39b"},
    ]


def test_a_wait_for_another_reason_or_step_is_kept_apart() -> None:
    steps = [_entry("drain", "wait", "t1", reason="pods terminating")]
    steps = _with_entry(steps, _entry("drain", "wait", "t2", reason="held by its budget"))
    steps = _with_entry(steps, _entry("delete", "wait", "t3", reason="held by its budget"))
    steps = _with_entry(steps, _entry("delete", "done", "t4"))
    assert [(s["step"], s["at"]) for s in steps] == [
        ("drain", "t1"),
        ("drain", "t2"),
        ("delete", "t3"),
        ("delete", "t4"),
    ]


def test_a_folded_wait_is_no_longer_marked_enqueued() -> None:
    # The mark says the continuation of that wait is on the queue; the new one is not yet.
    first = _entry("plan", "wait", "t1", reason="500") | {"enqueued": True}
    steps = _with_entry([first], _entry("plan", "wait", "t2", reason="500"))
    assert "enqueued" not in steps[-1] and steps[-1]["repeats"] == 2
