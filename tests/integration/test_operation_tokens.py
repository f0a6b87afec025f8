"""Operation tokens kept in a job's state: used only with the ARM endpoint, never shown.

A token holds the status URLs of a long-running operation; the job polls them later with the
identity's bearer token. Anyone who can write the job tables could point them elsewhere."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from shared.adapters.ledger import FINAL, HIDDEN_TOKEN
from tests.simulator import Simulator, retargeted_token
from tests.truth_support import UPDATE, make_world

pytestmark = pytest.mark.integration

VMSS = "aks-tokens-31415926-vmss"


def test_a_job_whose_stored_token_was_changed_fails_naming_it_and_sends_nothing_there(
    sim: Simulator, azurite: Any
) -> None:
    world = make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=3,
        min_nodes=1,
        max_nodes=6,
        replicas=3,
        max_unavailable=1,
        latencies={"create": 24 * 3600},  # the capacity write stays in progress
    )
    job_id = world.send("scale", {"delta": 1})
    # Its first poll found the write in progress; the next waits in the queue until delivered.
    record = world.drive("scale", job_id, lambda r: r.step == "await_write" or r.status in FINAL)
    assert record.step == "await_write", record
    token = record.state["token"]
    assert record.public()["state"]["token"] == HIDDEN_TOKEN  # never shown by the API

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    origin = f"https://127.0.0.1:{listener.getsockname()[1]}"
    world.tables.update_job(record, state=record.state | {"token": retargeted_token(token, origin)})
    with listener:
        ended = world.drive("scale", job_id)
        with pytest.raises(TimeoutError):
            listener.accept()  # the poll never connected there
    assert ended.status == "failed"
    assert ended.error is not None and origin in ended.error
    assert "operation token" in ended.error and "ARM endpoint" in ended.error
    assert ended.steps[-1]["step"] == "await_write"  # at once: no retries of the same poll
    # The write itself was sent once, to Azure.
    assert sum(c["operation"] == UPDATE for c in sim.calls()["calls"]) == 1
