"""Several workers on one pool: two local hosts sharing the queues, and a worker killed mid-job.

The hosts are real `python -m local.host` processes running the repository's `function_app.py`
against one Azurite, one Azure simulator and one pool configuration, as two instances of the
Function app would in Azure. The checks read the product's ledger and the simulator's own
records (its call log and its deletion history), never the product's opinion of itself alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from azure.storage.blob import BlobLeaseClient

from local.azurite import ROOT
from local.stack import APP_DEFAULTS
from shared.adapters.leases import CONTAINER
from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services, handle
from tests.jobs_support import job, settings_for
from tests.simulator import RG, SUBSCRIPTION, Simulator, scale_set, scenario

VMSS = "aks-apps-44444444-vmss"
VMSS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
    f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}"
)
UPDATE = "VirtualMachineScaleSets_Update"
DELETE = "VirtualMachineScaleSets_DeleteInstances"
WRITE_STEP = {UPDATE: "raise", DELETE: "delete"}  # the step that sends each write
FINAL = ("done", "failed")


@dataclass
class Pool:
    name: str
    settings: dict[str, str]
    services: Services


def _pool(sim: Simulator, azurite: Any, *, capacity: int, min_nodes: int, **extra: Any) -> Pool:
    """Load a world with one scale set and its workloads; a pool name of its own for this test
    (the pool table and the lease blob outlive a test)."""
    sim.load(
        scenario(
            scale_set(VMSS, capacity, zones=[]),
            workloads={
                "deployments": [
                    {
                        "name": "web",
                        "replicas": capacity,
                        "node_selector": {"elastisys.io/node-group": "apps"},
                        "termination_grace_seconds": 30,
                        "pdb": {"max_unavailable": 2},
                    }
                ],
                "daemonsets": [{"name": "kube-proxy"}],
            },
            **extra,
        )
    )
    name = f"apps-{uuid.uuid4().hex[:6]}"
    pools = [
        {
            "name": name,
            "vmss_id": VMSS_ID,
            "node_group": "apps",
            "min_nodes": min_nodes,
            "max_nodes": 12,
        }
    ]
    settings = APP_DEFAULTS | settings_for(sim, azurite.connection_string, pools)
    settings["AzureWebJobs.reconcile_timer.Disabled"] = "true"
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    requests.delete(f"{sim.admin}/calls", timeout=10)
    return Pool(name, settings, services)


def _submit(host: Any, pool: str, params: dict[str, Any]) -> str:
    response = requests.post(
        f"{host.url}/api/jobs",
        json=job("scale", pool, params),
        headers={"x-functions-key": host.function_key},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _wait_for(pool: Pool, ids: list[str], timeout: float) -> dict[str, Any]:
    """The ledger records of `ids` once every one is done or failed."""
    deadline = time.monotonic() + timeout
    records: dict[str, Any] = {}
    while time.monotonic() < deadline:
        records = {i: pool.services.tables.job(i) for i in ids}
        if all(r is not None and r.status in FINAL for r in records.values()):
            return records
        time.sleep(0.2)
    pending = {i: (r.status, r.step) if r else None for i, r in records.items()}
    raise AssertionError(f"jobs did not finish in {timeout}s: {pending}")


def _true_counts(sim: Simulator) -> dict[str, int]:
    """The simulator's instances counted by state, the way Azure would show them."""
    counts = {"live": 0, "creating": 0, "deleting": 0, "failed": 0}
    for i in sim.scale_set_state(VMSS)["instances"]:
        if i["provisioning_state"] == "Succeeded" and i["power_state"] == "running":
            counts["live"] += 1
        elif i["provisioning_state"] in ("Creating", "Deleting", "Failed"):
            counts[i["provisioning_state"].lower()] += 1
    return counts


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _held_windows(job_id: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stretches of product time in which the job certainly held the pool's lease.

    The runner takes the lease before a message's first step and keeps it while steps answer
    `Next`; a `Wait`, `Done` or `Fail` ends the invocation. So consecutive ledger entries linked by
    `next` ran under one lease, from the first entry's start to the last entry's start. (A `next`
    past the step budget also ends an invocation; treating it as one window only makes the check
    stricter.)
    """
    windows: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for entry in steps:
        at = _at(entry["at"])
        if current is None:
            current = {"job": job_id, "start": at, "end": at, "steps": []}
        current["end"] = at
        current["steps"].append(entry["step"])
        if entry["result"] != "next":
            windows.append(current)
            current = None
    if current is not None:
        windows.append(current)
    return windows


# -- two hosts, one pool ---------------------------------------------------------------------------


def test_two_hosts_on_one_pool_never_write_it_at_once_nor_delete_an_instance_twice(
    sim: Simulator, azurite, start_host
) -> None:
    pool = _pool(sim, azurite, capacity=6, min_nodes=3)
    first = start_host(ROOT / "function_app.py", settings=pool.settings)
    second = start_host(ROOT / "function_app.py", settings=pool.settings)
    deltas = [2, -1, 1, -2, -1, 1, -1, 2]
    ids = [
        _submit(first if n % 2 == 0 else second, pool.name, {"delta": delta})
        for n, delta in enumerate(deltas)
    ]

    # Minutes, not seconds: two suites on a 2-core machine slow the hosts; this only ends a hang.
    records = _wait_for(pool, ids, timeout=240)

    # Every job ended, and a failure says why.
    for record in records.values():
        assert record.status in FINAL, record
        if record.status == "failed":
            assert record.error, record
    # Both workers took part (otherwise this would be a one-worker test).
    for host in (first, second):
        assert "Executing 'Functions.scale_jobs'" in host.log.read_text()

    calls = sim.calls()["calls"]
    writes = [c for c in calls if c["operation"] in WRITE_STEP and 200 <= c["status"] < 300]
    assert writes, "no job wrote to the scale set; the check below would prove nothing"

    # One writer per pool: the lease windows of different jobs never overlap...
    windows = [w for i, r in records.items() for w in _held_windows(i, r.steps)]
    for a in windows:
        for b in windows:
            if a["job"] < b["job"]:
                assert a["end"] < b["start"] or b["end"] < a["start"], (a, b)
    # ...and every write the simulator received falls inside the window of the job whose step
    # sent it, between the read it was planned on and the step after it.
    for call in writes:
        stamp = _at(call["sim_time"])
        holders = [w for w in windows if w["start"] <= stamp <= w["end"]]
        assert len(holders) == 1, (call, holders)
        assert WRITE_STEP[call["operation"]] in holders[0]["steps"], (call, holders[0])
    # Nobody wrote between a job's read and its write, so no If-Match ever missed.
    assert not [c for c in calls if c["operation"] == UPDATE and c["status"] == 412]

    # No instance was ever deleted twice, and capacity was never lowered by a write.
    state = sim.state()
    history = [h for h in state["history"] if h["scale_set"] == VMSS]
    assert all(h["event"] == "delete_instances" for h in history), history
    deleted = [i for h in history for i in h["instances"]]
    assert len(deleted) == len(set(deleted)), history
    assert len(history) == sum(1 for c in writes if c["operation"] == DELETE)

    # What the product recorded last is what Azure has.
    recorded = pool.services.tables.pool_status(pool.name)
    truth = next(s for s in state["scale_sets"] if s["name"] == VMSS)
    assert recorded["counts"]["live"] == _true_counts(sim)["live"]
    assert {k: recorded["counts"][k] for k in ("creating", "deleting", "failed")} == {
        k: _true_counts(sim)[k] for k in ("creating", "deleting", "failed")
    }
    assert recorded["capacity"] == truth["capacity"]
    assert _true_counts(sim)["live"] >= 3  # min_nodes held


# -- a worker killed in the middle of a scale-in ---------------------------------------------------


def _kill(host: Any) -> None:
    os.killpg(host.process.pid, signal.SIGKILL)
    host.process.wait(timeout=10)


def test_worker_killed_after_the_delete_started_is_resumed_by_redelivery_without_a_second_delete(
    sim: Simulator, azurite, start_host
) -> None:
    # Deletes take 600 simulated seconds (10 s of wall time at speed 60), so the job is still
    # waiting for the delete when the second worker picks it up.
    pool = _pool(sim, azurite, capacity=5, min_nodes=3, speed=60, latencies={"delete": 600})
    settings = pool.settings | {"POOLKEEPER_LOCAL_QUEUE_LEASE_SECONDS": "5"}
    # The first look at the delete's status hangs, so the worker is inside the invocation that
    # sent the delete (holding its message and the pool's lease) when it is killed.
    sim.post(
        "faults", {"operation": "OperationStatus", "kind": "timeout", "seconds": 3, "count": 1}
    )
    doomed = start_host(ROOT / "function_app.py", settings=settings)
    job_id = _submit(doomed, pool.name, {"delta": -1})

    deadline = time.monotonic() + 30
    record = None
    while time.monotonic() < deadline:
        record = pool.services.tables.job(job_id)
        if record is not None and record.step == "await_delete":
            break
        time.sleep(0.02)
    assert record is not None and record.step == "await_delete", record
    _kill(doomed)
    # The delete was sent and the worker died before it recorded any wait: no continuation was
    # enqueued, so only the redelivery of the message it held can carry the job on.
    assert record.status != "done"
    assert record.steps[-1]["step"] == "delete" and record.steps[-1]["result"] == "next"
    victims = record.state["deleted"]
    assert victims and record.state.get("token")
    sent = [c for c in sim.calls()["calls"] if c["operation"] == DELETE]
    # Which instances each delete took, and when: a second one once showed here under load
    # (stop 27), either this job's or another test's host acting on a scale set of this name.
    history = [(h["event"], h["instances"]) for h in sim.state()["history"]]
    seen = [(c["status"], c["sim_time"], round(c["wall_time"], 3)) for c in sent]
    steps = [(st["step"], st["result"]) for st in record.steps]
    assert len(sent) == 1, f"deletes (status, sim, wall) {seen}; history {history}; steps {steps}"

    # Azurite keeps the dead worker's pool lease until it expires on the wall clock (60 s).
    # Breaking it is what that expiry does; the product cannot tell the two apart.
    blob = pool.services.account.blob_service().get_blob_client(CONTAINER, pool.name)
    BlobLeaseClient(blob).break_lease(lease_break_period=0)

    start_host(ROOT / "function_app.py", settings=settings)
    final = _wait_for(pool, [job_id], timeout=240)[job_id]

    assert final.status == "done", (final.error, final.steps)
    assert final.steps[-1]["step"] == "settle"
    resumed = final.steps[len(record.steps) :]
    assert resumed[0]["step"] == "await_delete", resumed
    assert sorted(final.outcome["deleted"]) == sorted(victims)
    assert final.outcome["survivors"] == []

    calls = sim.calls()["calls"]
    again = [
        (c["status"], c["sim_time"], round(c["wall_time"], 3))
        for c in calls
        if c["operation"] == DELETE
    ]
    assert len(again) == 1, (
        f"never sent again, but: {again}; steps {[st['step'] for st in final.steps]}"
    )
    history = [h for h in sim.state()["history"] if h["scale_set"] == VMSS]
    assert [h["instances"] for h in history] == [victims]
    # The full re-read after the delete: a scale-set GET and the instance list, after the last
    # look at the delete's status.
    last_poll = max(n for n, c in enumerate(calls) if c["operation"] == "OperationStatus")
    after = {c["operation"] for c in calls[last_poll + 1 :]}
    assert {"VirtualMachineScaleSets_Get", "VirtualMachineScaleSetVMs_List"} <= after, after
    recorded = pool.services.tables.pool_status(pool.name)
    assert recorded["counts"]["live"] == _true_counts(sim)["live"] == 4
    assert recorded["counts"]["deleting"] == _true_counts(sim)["deleting"] == 0
    assert not set(victims) & set(recorded["instances"])


# -- redelivery corners, in process ----------------------------------------------------------------
#
# The two moments a host cannot be killed at on purpose: after the runner recorded a wait but
# before (or after) it enqueued the continuation, and a lease that expires in the middle of a step.
# The runner is driven directly (`handle`), with the queue as Azurite holds it.


# A clock and a delete for jobs driven message by message: the delete is Deleting for 5 wall
# seconds (surely seen by a settle read), and the settle step's 30-minute deadline is 30 wall
# seconds. At 600x (a 1200 s delete) a loaded machine's stall of a few seconds passed it.
UNHURRIED: dict[str, Any] = {"speed": 60, "latencies": {"delete": 300}}


def _receive(pool: Pool, *, lease: int) -> list[Any]:
    client = pool.services.queues._queue(pool.services.settings["POOLKEEPER_SCALE_QUEUE"])
    return list(client.receive_messages(max_messages=16, visibility_timeout=lease))


def _on_queue(pool: Pool) -> int:
    client = pool.services.queues._queue(pool.services.settings["POOLKEEPER_SCALE_QUEUE"])
    return client.get_queue_properties().approximate_message_count


def _deliver_until_final(pool: Pool, job_id: str, timeout: float = 120) -> Any:
    """Deliver like the host: success deletes the message."""
    queue = pool.services.settings["POOLKEEPER_SCALE_QUEUE"]
    client = pool.services.queues._queue(queue)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in _receive(pool, lease=30):
            handle(pool.services, queue, message.content)
            client.delete_message(message)
        record = pool.services.tables.job(job_id)
        if record.status in FINAL:
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {pool.services.tables.job(job_id)}")


def _first_wait(pool: Pool, message: dict[str, Any]) -> None:
    """Run the job's first message up to its first wait and leave the message on the queue, as a
    worker that dies before the host deletes it would; it comes back after one second."""
    queue = pool.services.settings["POOLKEEPER_SCALE_QUEUE"]
    pool.services.queues.send(queue, json.dumps(message))
    (received,) = _receive(pool, lease=1)
    with contextlib.suppress(RuntimeError):  # the simulated crash
        handle(pool.services, queue, received.content)
    assert pool.services.tables.job(message["id"]).status == "waiting"


def _redeliver(pool: Pool, message_id: str) -> Any:
    queue = pool.services.settings["POOLKEEPER_SCALE_QUEUE"]
    client = pool.services.queues._queue(queue)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for received in _receive(pool, lease=30):
            if json.loads(received.content).get("continuation") is None:
                handled = handle(pool.services, queue, received.content)
                client.delete_message(received)
                return handled
            client.update_message(received, visibility_timeout=2)  # not ours: put it back
        time.sleep(0.1)
    raise AssertionError(f"message of {message_id} never came back")


def test_redelivered_message_whose_continuation_was_enqueued_adds_no_second_continuation(
    sim: Simulator, azurite
) -> None:
    pool = _pool(sim, azurite, capacity=5, min_nodes=3, **UNHURRIED)
    message = job("scale", pool.name, {"delta": -1})
    _first_wait(pool, message)
    assert _on_queue(pool) == 2  # the dead worker's message, and the continuation it enqueued

    handled = _redeliver(pool, message["id"])

    assert handled.result == "duplicate"
    assert _on_queue(pool) == 1  # only the continuation: no copy of it that skips its delay
    record = _deliver_until_final(pool, message["id"])
    assert record.status == "done", record
    assert [c["operation"] for c in sim.calls()["calls"]].count(DELETE) == 1


def test_continuation_lost_with_its_worker_is_sent_again_when_the_message_returns(
    sim: Simulator, azurite, monkeypatch
) -> None:
    pool = _pool(sim, azurite, capacity=5, min_nodes=3, **UNHURRIED)
    message = job("scale", pool.name, {"delta": -1})
    real_send = pool.services.queues.send

    def crash_on_continuation(queue: str, raw: str, **options: Any) -> None:
        if json.loads(raw).get("continuation"):
            raise RuntimeError("worker died before the continuation went out")
        real_send(queue, raw, **options)

    monkeypatch.setattr(pool.services.queues, "send", crash_on_continuation)
    _first_wait(pool, message)
    monkeypatch.setattr(pool.services.queues, "send", real_send)
    assert _on_queue(pool) == 1  # only the dead worker's message: the continuation is lost

    handled = _redeliver(pool, message["id"])

    assert handled.result == "duplicate"
    assert _on_queue(pool) == 1  # the continuation, sent again
    record = _deliver_until_final(pool, message["id"])
    assert record.status == "done", record
    assert [c["operation"] for c in sim.calls()["calls"]].count(DELETE) == 1


def test_job_whose_lease_expired_mid_step_stops_before_writing_and_resumes_later(
    sim: Simulator, azurite
) -> None:
    pool = _pool(sim, azurite, capacity=5, min_nodes=3)
    message = job("scale", pool.name, {"delta": -1})
    scale_sets = pool.services.scale_sets
    real_read = scale_sets.read
    expired: list[str] = []

    def read_while_the_lease_expires(vmss_id: str) -> Any:
        state = real_read(vmss_id)
        record = pool.services.tables.job(message["id"])
        if not expired and record is not None and record.step == "delete":
            # The step took longer than the lease: it expired, and its holder does not know.
            blob = pool.services.account.blob_service().get_blob_client(CONTAINER, pool.name)
            BlobLeaseClient(blob).break_lease(lease_break_period=0)
            expired.append(record.step)
        return state

    scale_sets.read = read_while_the_lease_expires
    try:
        pool.services.queues.send(
            pool.services.settings["POOLKEEPER_SCALE_QUEUE"], json.dumps(message)
        )
        record = _deliver_until_final(pool, message["id"])
    finally:
        del scale_sets.read

    assert expired == ["delete"]
    assert record.status == "done", record
    delete_steps = [s for s in record.steps if s["step"] == "delete"]
    assert len(delete_steps) == 1  # the interrupted run recorded nothing; the resumed one did
    assert [c["operation"] for c in sim.calls()["calls"]].count(DELETE) == 1
