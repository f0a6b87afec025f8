"""What the chaos driver does besides sending jobs and injecting faults: an operator's hand (a new
node image on the model, a cordon in the middle of a patch rollout), a worker killed right after
a send took effect, a Kubernetes API outage while a canary or a drain runs, and a pool grown
while its repair brake holds.

Some of these wait for the world (a rollout with nodes still to come, a held answer): `Watch`, a
thread that runs beside the driver for the whole round and acts the moment they show. It acts
through the same APIs an operator or a crash would: the simulators' admin API, the Kubernetes
and Azure APIs, SIGKILL.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import requests
from kubernetes import client

from shared.adapters.kube import CLAIM_ANNOTATION
from shared.adapters.ledger import FINAL, JOBS_TABLE
from shared.flows.image.canary import CANARY_STEPS
from tests.chaos.schedules import BRAKE_SIZE, Schedule
from tests.simulator import RG

if TYPE_CHECKING:
    from tests.chaos.driver import RoundResult
    from tests.chaos.rig import Rig

TICK = 0.05  # wall seconds between the watcher's looks at held answers
LEDGER_TICK = 0.25  # and at the ledger (every look is a few reads of Azurite)
KILLED_FOR = 1.0  # wall seconds a worker killed after a send stays down
CORDON_PATIENCE = 90.0  # wall seconds a cordon waits for its rollout to have nodes to come
OUTAGE_PATIENCE = 30.0  # wall seconds an outage waits for a canary or a drain, then strikes
DRAIN_STEPS = frozenset({"drain", "drain_donor", "canary_remove"})
BRAKE_PATIENCE = 30.0  # wall seconds a braked pool's growth may take to be written
# Wall seconds after a braked pool's capacity write landed: a reconcile and a repair of the pool
# while its new instances are not nodes yet (Creating for 90 product seconds, then within
# BRAKE_NOT_READY minutes without one: 12 wall seconds).
BRAKE_NUDGES = (0.0, 2.0, 4.0, 6.0)
HOST = re.compile(r"chaos-host(\d+)")
# The node image an operator moves a scale set's model to (AKS's node image upgrade).
NODE_IMAGE = {"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-ubuntu-2204-gen2"}

Trigger = Callable[[float], bool]  # given time.monotonic(): True once it acted (or gave up)


class Watch:
    """Runs beside the driver during a round: kills the worker whose answer a `held` fault holds
    back (it has sent, it has not saved), starts it again after KILLED_FOR, and polls the
    triggers the round's events armed until each has acted."""

    def __init__(self, rig: Rig, result: RoundResult) -> None:
        self.rig, self.result = rig, result
        self.triggers: list[Trigger] = []
        self.restarts: list[tuple[float, int]] = []
        self.seen: set[int] = set()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)
        self.last_ledger_look = 0.0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=60)

    def arm(self, trigger: Trigger) -> None:
        with self.lock:
            self.triggers.append(trigger)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._tick()
            except Exception as error:  # noqa: BLE001 - Azurite restarting, a host dying: go on
                self.result.done.append(f"watch: {type(error).__name__}: {error}"[:200])
            self.stopped.wait(TICK)

    def _tick(self) -> None:
        self._kill_after_send()
        now = time.monotonic()
        for due, slot in [r for r in self.restarts if r[0] <= now]:
            self.restarts.remove((due, slot))
            self.rig.ensure_running(self.rig.hosts[slot])
            self.result.done.append(f"host{slot} started again")
        if now - self.last_ledger_look < LEDGER_TICK:
            return
        self.last_ledger_look = now
        with self.lock:
            armed = list(self.triggers)
        for trigger in armed:
            if trigger(now):
                with self.lock:
                    self.triggers.remove(trigger)

    def _kill_after_send(self) -> None:
        held = requests.get(f"{self.rig.sim.admin}/held", timeout=5).json()["held"]
        for call in held:
            if call["id"] in self.seen:
                continue
            self.seen.add(call["id"])
            where = f"{call['operation']} on {call['scale_set']}/{call['instance'] or '-'}"
            found = HOST.search(call["client"])
            if found is None:  # the driver's own call (an operator's model write): nobody dies
                self.result.done.append(f"held {where} of the driver itself")
                continue
            slot = int(found.group(1))
            self.rig.kill_now(self.rig.hosts[slot])
            self.result.kills_after_send[call["operation"]] += 1
            self.result.done.append(f"SIGKILL host{slot} right after its {where} took effect")
            self.restarts.append((time.monotonic() + KILLED_FOR, slot))


# -- an operator's hand ----------------------------------------------------------------------


def node_image(rig: Rig, schedule: Schedule, result: RoundResult) -> None:
    """An operator moves the scale set's model to a newer node image: every instance is on an
    older model now, what a patch job with action `upgrade` moves them off (manualupgrade)."""
    result.node_images += 1
    version = f"2026.12.{result.node_images:02d}"
    profile = {"storageProfile": {"imageReference": NODE_IMAGE | {"version": version}}}
    try:
        rig.compute.virtual_machine_scale_sets.begin_update(
            RG, schedule.pool.vmss, {"properties": {"virtualMachineProfile": profile}}
        )
    except Exception as error:  # noqa: BLE001 - a fault or a storm may refuse the operator too
        result.done.append(f"node image {version} on pool{schedule.pool.index} refused: {error}")
        return
    result.done.append(f"operator: model of pool{schedule.pool.index} on node image {version}")


def cordon_mid_rollout(rig: Rig, schedule: Schedule, result: RoundResult) -> Trigger:
    """Armed with a patch job of the pool: once its rollout has a node down and others to come,
    an operator cordons the last of those (kubectl cordon: it is theirs now). Recorded only
    when the cordon landed on a node nobody held and the rollout still had it to come."""
    core = rig.core
    tables, clock = rig.services.tables, rig.services.clock
    give_up = time.monotonic() + CORDON_PATIENCE
    index = schedule.pool.index

    def trigger(now: float) -> bool:
        jobs = [s for s in result.sent if s.pool == index and s.generator == "patch_cordoned"]
        for sent in jobs:
            record = tables.job(sent.id)
            if record is None or record.status in FINAL or record.step != "rollout":
                continue
            if not record.state.get("active") or not record.state.get("queue"):
                continue
            name = record.state["queue"][-1]
            node = core.read_node(name)
            if node.spec.unschedulable or CLAIM_ANNOTATION in (node.metadata.annotations or {}):
                continue
            at = clock.now()
            body = {"metadata": {"resourceVersion": node.metadata.resource_version}}
            try:  # only on the node as read: a claim since then wins, and nothing is recorded
                core.patch_node(name, body | {"spec": {"unschedulable": True}})
            except client.ApiException:
                continue
            again = tables.job(sent.id)
            if again is None or name not in again.state.get("queue", []):
                result.done.append(f"operator cordoned {name}, but {sent.id} had taken it")
                return True
            result.cordons.append({"node": name, "job": sent.id, "at": at.isoformat()})
            result.done.append(f"operator cordoned {name} while {sent.id} had it to come")
            return True
        if now > give_up:
            result.done.append(f"no rollout in pool{index} had nodes to come: nothing cordoned")
            return True
        return False

    return trigger


# -- a Kubernetes API outage -----------------------------------------------------------------


def kube_faults_supported(rig: Rig) -> bool:
    """Does this simulator take Kubernetes API faults (`/_sim/kube/faults`)?"""
    try:
        return requests.get(f"{rig.sim.admin}/kube/faults", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def kube_outage(rig: Rig, detail: dict[str, Any], result: RoundResult) -> Trigger:
    """Armed at the round's start: once a canary is being proven (or a drain runs), the
    Kubernetes API answers 503 to everything for `seconds` of product time; at the latest
    OUTAGE_PATIENCE after arming, whatever runs then."""
    table, clock = rig.services.tables._table(JOBS_TABLE), rig.services.clock
    strike_anyway = time.monotonic() + OUTAGE_PATIENCE
    during = detail["during"]
    steps = CANARY_STEPS if during == "canary" else DRAIN_STEPS
    pools = {s.pool.name for s in result.round.schedules}

    def running() -> str | None:
        unfinished = table.query_entities(
            "PartitionKey eq 'job' and status ne 'done' and status ne 'failed'",
            select=["RowKey", "pool", "step"],
        )
        for entity in unfinished:
            if entity["pool"] in pools and entity["step"] in steps:
                return f"{entity['RowKey']} at {entity['step']}"
        return None

    def trigger(now: float) -> bool:
        why = running()
        if why is None and now < strike_anyway:
            return False
        start = clock.now()
        until = start + timedelta(seconds=detail["seconds"])
        body = {"kind": "error", "status": 503, "from": start.isoformat()}
        requests.post(
            f"{rig.sim.admin}/kube/faults", json=body | {"until": until.isoformat()}, timeout=10
        ).raise_for_status()
        result.faults["kube_outage"] += 1
        result.done.append(
            f"Kubernetes API down for {detail['seconds']} product seconds "
            f"({why or f'no {during} running: at a random moment'})"
        )
        return True

    return trigger


# -- a pool that grows while its repair brake holds --------------------------------------------


def brake_grow(
    rig: Rig, schedule: Schedule, result: RoundResult, send: Callable[[str, dict[str, Any]], bool]
) -> Trigger | None:
    """The pool's two stuck nodes hold the brake: grow it to BRAKE_SIZE with instances that
    never boot (never nodes); the trigger returned sends a reconcile and a repair of the pool
    once the capacity write has landed, and again BRAKE_NUDGES later. None when the brake is
    not on (the scene did not set up: nothing is recorded)."""
    vmss, index = schedule.pool.vmss, schedule.pool.index
    state = rig.sim.scale_set_state(vmss)
    ids = sorted(int(i["instance_id"]) for i in state["instances"])
    nodes = requests.get(f"{rig.sim.admin}/kube/pods", timeout=10).json()["nodes"]
    mine = {n: v for n, v in nodes.items() if v["node_group"] == schedule.pool.node_group}
    sick = sorted(n for n, v in mine.items() if not v.get("ready"))
    if not mine or len(sick) / len(mine) <= 0.34:
        result.done.append(f"pool{index}: brake not on ({len(sick)} of {len(mine)} NotReady)")
        return None
    for instance in range(max(ids, default=-1) + 1, max(ids, default=-1) + 1 + 2 * BRAKE_SIZE):
        fault = {"operation": "Boot", "kind": "never_boots", "scale_set": vmss, "count": 1}
        rig.sim.post("faults", fault | {"instance": str(instance)})
    grown = send("brake_grow", {"delta": BRAKE_SIZE - len(ids)})
    result.brakes.append(
        {
            "pool": index,
            "at": rig.services.clock.now().isoformat(),
            "instances": [str(i) for i in ids],
            "not_ready": sick,
            "grown": grown,
        }
    )
    result.done.append(f"pool{index}: {len(sick)} of {len(mine)} NotReady, growing to {BRAKE_SIZE}")
    give_up = time.monotonic() + BRAKE_PATIENCE
    due: list[float] = []

    def trigger(now: float) -> bool:
        if not due:
            if rig.sim.scale_set_state(vmss)["capacity"] < BRAKE_SIZE:
                return now > give_up
            due.extend(now + after for after in BRAKE_NUDGES)
        if now >= due[0]:
            due.pop(0)
            send("reconcile", {})
            send("repair", {})
        return not due

    return trigger
