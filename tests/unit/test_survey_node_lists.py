"""The reconcile survey's node lists (shared.flows.reconcile._node_lists): a cluster's list that
came in while the survey worked on another cluster's pools is taken, not timed out."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from shared.flows import reconcile


class _Kube:
    def __init__(self, answered: threading.Event, *, until: threading.Event | None = None) -> None:
        self._answered, self._until = answered, until

    def nodes(self) -> list[Any]:
        if self._until is not None:
            self._until.wait(60)  # no answer until the test lets it go
        self._answered.set()
        return []


def _services(kubes: dict[str, _Kube]) -> Any:
    return SimpleNamespace(connections=SimpleNamespace(kube=lambda name: kubes[name]))


def test_a_list_that_came_in_while_the_survey_worked_counts_as_an_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconcile, "NODE_LIST_WAIT_SECONDS", 0.5)
    answered = {name: threading.Event() for name in ("a", "b")}
    release = threading.Event()
    kubes = {name: _Kube(event) for name, event in answered.items()}
    kubes["hung"] = _Kube(threading.Event(), until=release)
    found = []
    try:
        for name, not_ready, error in reconcile._node_lists(_services(kubes), ["a", "b", "hung"]):
            found.append((name, not_ready, error))
            # Working on this cluster's pools takes longer than the whole wait.
            assert all(event.wait(5) for event in answered.values())
            time.sleep(0.6)
    finally:
        release.set()
    assert sorted(found[:2]) == [("a", set(), None), ("b", set(), None)]
    assert found[2] == ("hung", set(), "no answer within 0 s")
