"""Outcomes that are known before anyone acts on them (issue 9, parts 2 and 3): a delete whose
answer is lost, a worker that dies after sending, a status poll Azure refuses; scale-ups that
must tell their own write and instances from another job's; retries bounded in time.
Driven through the product's runner against Azurite and the simulator.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.adapters.ledger import FINAL
from shared.decide.writes import write_mark
from tests.simulator import RG, Simulator
from tests.truth_support import CANNOT_ALLOCATE, DELETE, SPEED, UPDATE, World, make_world

VMSS = "aks-fate-41414141-vmss"


def _world(sim: Simulator, azurite: Any, **extra: Any) -> World:
    return make_world(
        sim,
        azurite,
        vmss=VMSS,
        capacity=5,
        min_nodes=2,
        max_nodes=12,
        replicas=4,
        max_unavailable=1,
        grace=5,
        **extra,
    )


def _fault(world: World, **fault: Any) -> None:
    world.sim.post("faults", {"scale_set": VMSS} | fault)


@contextmanager
def _held(world: World, job_id: str) -> Iterator[None]:
    """Keep a waiting job's continuation message off the queue while the block runs (as a
    long visibility delay would), then make it visible again: other jobs go first, surely."""
    client = world.pump.services.queues._queue(world.pump.queue("scale"))
    token = world.tables.job(job_id).continuation
    deadline = time.monotonic() + 30
    held = None
    while held is None and time.monotonic() < deadline:
        for message in client.receive_messages(max_messages=32, visibility_timeout=600):
            if json.loads(message.content).get("continuation") == token:
                held = message
            else:
                client.update_message(message, visibility_timeout=0)
    assert held is not None, f"the continuation of {job_id} never showed up"
    try:
        yield
    finally:
        client.update_message(held, visibility_timeout=0)


def _steps(record: Any) -> list[str]:
    return [s["step"] for s in record.steps]


# A delete that runs a simulated day (`latencies={"delete": DAY}`) lasts until the test moves the
# clock, so a settle read surely sees its victim Deleting, whatever the machine's speed. With the
# 60 s default at 600x it was Deleting for 0.1 wall second: a read slower than that (a loaded
# machine) saw the victim back, never going, and the job sent the delete again.
DAY = 86400
# The clock while a job waits for that read: the settle step's 3-minute quiet time is 6 wall
# seconds at 30x, and its 30-minute deadline a wall minute.
SLOW = 30


def _slow(world: World) -> None:
    """The clock for a job whose outcome hangs on when a lost delete lands against the settle
    step's quiet time and deadline: at 600x a step on a loaded machine took ten simulated
    minutes, long enough to pass both before a read saw the landing."""
    world.sim.post("clock", {"speed": SLOW})


def _settling(world: World, job_id: str) -> Any:
    """Drive a scale-in at SLOW until a settle read saw its victim Deleting; SPEED again after."""
    _slow(world)
    record = world.drive(
        "scale", job_id, lambda r: r.status == "waiting" and bool(r.state.get("seen_going"))
    )
    world.sim.post("clock", {"speed": SPEED})
    assert record.step == "settle" and record.state["seen_going"] == record.state["deleted"]
    return record


def test_a_lost_delete_answer_keeps_victims_cordoned_until_the_delete_lands(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    _slow(world)
    # Azure takes the request but the answer is lost, and the delete starts a minute later.
    _fault(world, operation=DELETE, kind="lost_answer", apply_after=60, count=1)
    record = world.run("scale", {"delta": -1})
    assert record.status == "done", record.error
    victims = record.state["plan"]["victims"]
    assert record.outcome["deleted"] == victims and record.outcome["survivors"] == []
    assert record.outcome["uncordoned"] == {}  # nobody gave the victim back before it went
    assert "settle" in _steps(record)
    world.assert_truth()


def test_a_lost_delete_that_never_shows_itself_is_sent_again_and_ends_with_an_answer(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    _slow(world)
    # The lost request takes effect 20 minutes later: long after the victim looked steady.
    _fault(world, operation=DELETE, kind="lost_answer", apply_after=1200, count=1)
    record = world.run("scale", {"delta": -1})
    assert record.status == "done", record.error
    assert record.state["resent"] is True and len(world.witness.deletes) == 2
    assert record.outcome["survivors"] == [] and record.outcome["uncordoned"] == {}
    world.assert_truth()


def test_a_victim_whose_lost_delete_may_still_land_stays_cordoned_until_it_lands(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    _slow(world)
    # The first request's answer is lost and it lands after 20 minutes; the second is refused
    # definitively meanwhile. The node must still be cordoned when the first one lands.
    _fault(world, operation=DELETE, kind="lost_answer", apply_after=1200, count=1)
    _fault(world, operation=DELETE, kind="lro_failed", error=CANNOT_ALLOCATE, count=1)
    record = world.run("scale", {"delta": -1})
    assert record.status == "done", record.error  # the lost delete landed ...
    assert record.outcome["deleted"] == record.state["plan"]["victims"]
    assert record.outcome["uncordoned"] == {}
    assert len(world.witness.deletes) == 2  # sent again, and that one was refused
    world.assert_truth()  # ... on a node that was cordoned and empty when it landed


def test_a_lost_answer_for_a_delete_that_fails_later_releases_the_survivor_after_it_settles(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, latencies={"delete": DAY})
    assert world.run("reconcile").status == "done"
    _fault(
        world,
        operation=DELETE,
        kind="lost_answer",
        outcome="lro_failed",
        error=CANNOT_ALLOCATE,
        count=1,
    )
    job_id = world.send("scale", {"delta": -1})
    _settling(world, job_id)
    cordoned = [name for name, node in world.cluster().items() if node["unschedulable"]]
    assert len(cordoned) == 1  # the victim's node, kept cordoned while its delete runs
    sim.advance(DAY)  # the delete fails; the instance is back
    record = world.drive("scale", job_id)
    assert record.status == "failed", record.outcome
    victims = record.state["plan"]["victims"]
    assert record.outcome["survivors"] == victims and record.outcome["deleted"] == []
    assert list(record.outcome["uncordoned"].values()) == ["uncordoned"]
    assert not record.state.get("resent") and len(world.witness.deletes) == 1
    world.assert_truth()  # nothing left cordoned, the record equals the truth


def test_a_worker_dying_after_the_send_never_counts_deleting_as_deleted(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, latencies={"delete": DAY})
    assert world.run("reconcile").status == "done"
    _fault(world, operation=DELETE, kind="lro_failed", error=CANNOT_ALLOCATE, count=1)
    world.witness.crash_after_send = 1
    job_id = world.send("scale", {"delta": -1})
    settling = _settling(world, job_id)  # the redelivered step found the victim Deleting
    assert settling.state["deleted"] == settling.state["plan"]["victims"]
    world.assert_truth(settled=False)  # the victim is Deleting: not counted as gone
    sim.advance(DAY)  # the delete fails; the instance is back
    record = world.drive("scale", job_id)
    assert record.status == "failed", record.outcome
    victims = record.state["plan"]["victims"]
    assert record.outcome["survivors"] == victims and record.outcome["deleted"] == []
    assert len(world.witness.deletes) == 1  # never sent twice
    world.assert_truth()  # and not left cordoned, counted live but never a victim


def test_a_refused_status_poll_settles_by_re_reads_and_releases_the_survivors(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite, latencies={"delete": DAY})
    assert world.run("reconcile").status == "done"
    _fault(world, operation=DELETE, kind="lro_failed", error=CANNOT_ALLOCATE, count=1)
    world.sim.post(
        "faults",
        {"operation": "OperationStatus", "kind": "error", "status": 404, "error": "NotFound"},
    )
    job_id = world.send("scale", {"delta": -1})
    assert "await_delete" in _steps(_settling(world, job_id))  # its poll was refused
    sim.advance(DAY)  # the delete fails; the instance is back
    record = world.drive("scale", job_id)
    assert record.status == "failed"
    assert record.outcome["survivors"] == record.state["plan"]["victims"]
    assert _steps(record)[-1] == "settle"  # the full re-read came last
    assert not record.state.get("resent") and len(world.witness.deletes) == 1
    world.assert_truth()


def test_a_scale_up_whose_write_failed_adds_its_own_delta_on_top_of_anothers(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    _fault(world, operation=UPDATE, kind="error", status=500, count=1)
    u1 = world.deliver_once("scale", {"delta": 2})  # plans 7, its write gets a 500
    assert world.tables.job(u1).state["sent"]["capacity"] == 7
    with _held(world, u1):
        u2 = world.run("scale", {"delta": 2})  # raises capacity to 7 meanwhile
    assert u2.status == "done"
    assert sim.scale_set_state(VMSS)["capacity"] == 7
    record = world.drive("scale", u1)
    assert record.status == "done", record.error
    assert sim.scale_set_state(VMSS)["capacity"] == 9  # +2 and +2
    assert record.outcome["added_ready"] == 2
    mine = set(record.state["existing"])
    assert set(u2.state["existing"]) < mine  # U1 planned after U2's instances existed
    world.assert_truth()


def test_a_scale_up_never_takes_a_later_instance_for_its_own_that_someone_deleted(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    # U1's instance (5) hangs at boot; U1 sees it and records it as its own.
    _fault(world, operation="Boot", kind="never_boots", instance="5", count=1)
    u1 = world.deliver_once("scale", {"delta": 1})
    seen = world.drive("scale", u1, lambda r: bool(r.state.get("added")) or r.status in FINAL)
    assert seen.state.get("added") == ["5"], seen
    with _held(world, u1):
        # Someone deletes it, and another scale-up adds instance 6, which is Ready.
        compute = sim.compute()
        compute.virtual_machine_scale_sets.begin_delete_instances(
            RG, VMSS, {"instanceIds": ["5"]}
        ).result()
        u2 = world.run("scale", {"delta": 1})
    assert u2.status == "done" and u2.outcome["added"] == ["6"], u2.outcome
    record = world.drive("scale", u1)
    # Before, U1 took 6 (the first instance added since its read) for its own and ended done.
    assert record.status == "failed" and record.outcome["added"] == ["5"], record.outcome
    assert record.outcome["added_ready"] == 0


def test_a_scale_in_between_a_failed_write_and_its_replan_does_not_overshoot(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    _fault(world, operation=UPDATE, kind="error", status=500, count=1)
    u1 = world.deliver_once("scale", {"delta": 2})
    with _held(world, u1):
        assert world.run("scale", {"delta": -1}).status == "done"
    assert sim.scale_set_state(VMSS)["capacity"] == 4
    assert world.drive("scale", u1).status == "done"
    assert sim.scale_set_state(VMSS)["capacity"] == 6  # 4 + 2, not the 7 planned first
    world.assert_truth()


def test_a_capacity_write_whose_answer_was_lost_is_recognised_as_ours(
    sim: Simulator, azurite: Any
) -> None:
    world = _world(sim, azurite)
    assert world.run("reconcile").status == "done"
    _fault(world, operation=UPDATE, kind="lost_answer", count=1)
    record = world.run("scale", {"delta": 2})
    assert record.status == "done", record.error
    assert sim.scale_set_state(VMSS)["capacity"] == 7  # never 9
    assert any("landed" in note for s in record.steps for note in s.get("notes", []))
    tags = world.pump.services.scale_sets.read(world.pool["vmss_id"]).tags
    assert tags["poolkeeper-writes"] == write_mark(record.id)
    world.assert_truth()


def test_an_azure_error_that_never_clears_fails_the_job_in_bounded_time_with_a_small_ledger(
    sim: Simulator, azurite: Any
) -> None:
    notifications = f"notify-{uuid.uuid4().hex[:8]}"
    world = _world(
        sim,
        azurite,
        settings={"POOLKEEPER_RETRY_MINUTES": "5", "POOLKEEPER_NOTIFICATIONS_QUEUE": notifications},
    )
    assert world.run("reconcile").status == "done"
    _fault(world, operation=UPDATE, kind="error", status=500)  # every capacity write, for good
    record = world.run("scale", {"delta": 1})
    assert record.status == "failed"
    assert "InternalExecutionError" in record.error and "after 0:05:00" in record.error
    assert record.outcome["azure_error"] == "InternalExecutionError"
    # However many retries fitted in (that depends on the machine), they fold into one entry.
    assert [s["result"] for s in record.steps].count("wait") == 1
    assert len(json.dumps(record.steps)) < 4000
    sent = world.pump.services.queues._queue(notifications).peek_messages(max_messages=32)
    bodies = [json.loads(m.content) for m in sent]
    assert [b["kind"] for b in bodies] == ["job_failed"]
    assert record.id in bodies[0]["message"]
    assert sim.scale_set_state(VMSS)["capacity"] == 5
