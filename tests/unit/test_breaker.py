"""A cluster's breaker (shared.decide.breaker) and the gate that puts it around every call to the
cluster (shared.adapters.connections.Gate)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.connections import Gate
from shared.adapters.kube import ClusterUnavailable
from shared.decide.breaker import (
    FAILURES_TO_OPEN,
    OPEN_SECONDS,
    Breaker,
    admit,
    after_failure,
    after_success,
    retry_in,
)


def test_the_breaker_opens_at_the_third_failure_in_a_row_and_not_before() -> None:
    breaker = Breaker()
    for n in range(FAILURES_TO_OPEN - 1):
        breaker = after_failure(breaker, float(n), "ReadTimeoutError")
        assert not breaker.open and admit(breaker, float(n))[0]
    breaker = after_failure(breaker, 10.0, "ReadTimeoutError: read timed out")
    assert breaker.open and breaker.last_error == "ReadTimeoutError: read timed out"
    assert admit(breaker, 10.0 + OPEN_SECONDS - 1) == (False, breaker)
    assert retry_in(breaker, 20.0) == pytest.approx(OPEN_SECONDS - 10)


def test_an_answer_between_failures_starts_the_count_again() -> None:
    breaker = after_failure(after_failure(Breaker(), 0, "x"), 1, "x")
    breaker = after_success(breaker)
    assert breaker == Breaker()
    assert not after_failure(after_failure(breaker, 2, "x"), 3, "x").open


def test_after_the_open_time_one_trial_goes_and_the_rest_still_wait() -> None:
    opened = Breaker(failures=3, opened_at=0.0, last_error="refused")
    go, trial = admit(opened, OPEN_SECONDS)
    assert go and trial.trial_since == OPEN_SECONDS
    assert admit(trial, OPEN_SECONDS + 1)[0] is False  # the trial's answer is not in yet
    assert after_success(trial) == Breaker()
    reopened = after_failure(trial, OPEN_SECONDS + 2, "refused again")
    assert reopened.open and reopened.opened_at == OPEN_SECONDS + 2
    assert reopened.trial_since is None
    # A trial that never reports back does not keep the cluster shut for ever.
    assert admit(trial, 2 * OPEN_SECONDS)[0]


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 5)), max_size=40))
def test_while_open_no_call_goes_until_its_time_is_up(events: list[tuple[bool, float]]) -> None:
    """Any run of answers and failures: an open breaker admits nothing before opened_at +
    OPEN_SECONDS, and a closed one admits every call."""
    breaker, now = Breaker(), 0.0
    for failed, step in events:
        now += step
        go, admitted = admit(breaker, now)
        if breaker.opened_at is None:
            assert go
        elif now < breaker.opened_at + OPEN_SECONDS:
            assert not go
        if go:
            breaker = after_failure(admitted, now, "x") if failed else after_success(admitted)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Refused(Exception):
    pass


class _Answered(Exception):
    status = 404


def test_the_gate_holds_calls_back_without_sending_and_records_open_and_closed() -> None:
    clock, sent, changes = _Clock(), [], []

    def send(answer: Any) -> Any:
        sent.append(answer)
        if isinstance(answer, Exception):
            raise answer
        return answer

    gate = Gate("capz", lambda cluster, b: changes.append((cluster, b.open)), clock=clock)
    with pytest.raises(_Answered):
        gate.call(send, _Answered())  # a 404 is the client's, raised as it was
    for n in range(FAILURES_TO_OPEN):
        with pytest.raises(ClusterUnavailable, match="connection refused") as failed:
            gate.call(send, _Refused("connection refused"))
        assert isinstance(failed.value.__cause__, _Refused)  # a job waits it out from the first
        assert ("breaker open" in str(failed.value)) == (n == FAILURES_TO_OPEN - 1)
    assert changes == [("capz", True)]
    with pytest.raises(ClusterUnavailable) as held:
        gate.call(send, "never sent")
    assert "never sent" not in sent
    assert held.value.cluster == "capz" and "connection refused" in held.value.last_error
    assert held.value.retry_in == pytest.approx(OPEN_SECONDS)

    clock.now += OPEN_SECONDS
    assert gate.call(send, "trial") == "trial"
    assert changes == [("capz", True), ("capz", False)]
    assert gate.breaker == Breaker()


class _Response:
    def __init__(self, status: int) -> None:
        self.status, self.reason, self.reads = status, "Service Unavailable", 0

    def read(self) -> bytes:
        self.reads += 1
        return b"{}"


def test_a_5xx_answer_counts_as_a_failure_and_is_read_inside_the_gate() -> None:
    gate = Gate("capz", clock=_Clock())

    def send(method: str, url: str, answer: _Response) -> _Response:
        return answer

    eviction = "https://capz/api/v1/namespaces/web/pods/web-0/eviction"
    for _ in range(FAILURES_TO_OPEN):
        # The eviction API's 500 (two budgets) is an answer about the pod, not an outage.
        assert gate.call(send, "POST", eviction, _Response(500)).status == 500
    assert gate.breaker == Breaker()
    for _ in range(FAILURES_TO_OPEN):
        answer = gate.call(send, "GET", "https://capz/api/v1/nodes", _Response(503))
        assert answer.status == 503 and answer.reads == 1  # the client raises its ApiException
    assert gate.breaker.open and gate.breaker.last_error == "HTTP 503 Service Unavailable"
