"""Plays a chaos round against the rig: loads a fresh world through the simulator's admin API,
sends the round's jobs through the real queues and `POST /api/jobs`, injects its faults, kills
and restarts hosts and Azurite, then waits for every job to end and settles the pools with a
last reconcile, ready for `tests/chaos/invariants.py`.

Pacing uses the wall clock; nothing here asserts on it. How long a job may take is bounded in
product time (the simulated clock), which runs at SPEED whatever the load on the machine.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.ledger import FINAL, JobRecord, LedgerConflict
from tests.chaos import acts
from tests.chaos.accounting import await_jobs, round_jobs
from tests.chaos.rig import FUNCTION_KEY, Rig
from tests.chaos.schedules import GENERATORS, STORM_OPERATIONS, Event, Round, Schedule
from tests.jobs_support import job
from tests.simulator import scale_set, scenario

SPEED = 600  # simulated seconds per wall second
HISTORY = timedelta(hours=2)  # usage history the patch headroom check needs before a round
OLD_KERNEL, NEW_KERNEL = "6.8.0-1015-azure", "6.8.0-1017-azure"
NEVER = 10**7  # product seconds: a manual upgrade of a round where they hang (115 days)
STOP_ATTEMPTS = 50  # conditional writes that end a stuck job, against its own writes


@dataclass
class Sent:
    """A job the driver sent and how; `accepted` once the API or the queue took it."""

    id: str
    pool: int
    generator: str
    kind: str
    params: dict[str, Any]
    via: str
    accepted: bool = False


class Log(list[str]):
    """What the driver did, each line with the wall seconds since the round began."""

    def __init__(self) -> None:
        super().__init__()
        self.began = time.monotonic()

    def append(self, what: str) -> None:
        super().append(f"{time.monotonic() - self.began:5.1f}s {what}")


@dataclass
class RoundResult:
    round: Round
    sent: list[Sent] = field(default_factory=list)
    records: dict[str, JobRecord] = field(default_factory=dict)  # every job of the round
    unfinished: dict[str, str] = field(default_factory=dict)
    done: Log = field(default_factory=Log)  # what the driver did, in order
    faults: Counter[str] = field(default_factory=Counter)
    started_at: datetime | None = None
    wall_seconds: float = 0.0
    kills_after_send: Counter[str] = field(default_factory=Counter)  # by the operation sent
    cordons: list[dict[str, str]] = field(default_factory=list)  # an operator's, mid-rollout
    brakes: list[dict[str, Any]] = field(default_factory=list)  # pools grown under the brake
    node_images: int = 0  # models an operator moved to a newer node image


def world_for(rnd: Round, start: datetime) -> dict[str, Any]:
    """The scenario of a round: one scale set per schedule with its workloads."""
    deployments, pods = [], []
    for s in rnd.schedules:
        deployments.append(
            {
                "name": f"web{s.pool.index}",
                "replicas": s.capacity,
                "node_selector": {"elastisys.io/node-group": s.pool.node_group},
                "termination_grace_seconds": s.grace_seconds,
                "pdb": {"max_unavailable": s.pdb_max_unavailable},
            }
        )
        if s.bare_pod_on is not None:
            pods.append({"name": f"debug{s.pool.index}", "node": node_name(s, s.bare_pod_on)})
    hang = {"latencies": {"update_model": NEVER}} if rnd.upgrades_hang else {}
    return scenario(
        *(scale_set(s.pool.vmss, s.capacity, zones=[]) for s in rnd.schedules),
        **hang,
        speed=SPEED,
        clock={"start": start.isoformat(), "speed": SPEED},
        workloads={
            "deployments": deployments,
            "daemonsets": [{"name": "kube-proxy"}],
            "pods": pods,
        },
        os={"kernel": OLD_KERNEL},
        os_updates=[
            {"date": (start - timedelta(days=1)).isoformat(), "kernel": NEW_KERNEL, "packages": 2}
        ],
    )


def node_name(schedule: Schedule, instance: int) -> str:
    """The computer name of one of the schedule's first instances (ids below 36)."""
    return f"{schedule.pool.vmss}{instance:06d}"


class Driver:
    """Runs rounds one after another on one rig; product time only ever moves forward."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.leftover: set[str] = set()  # jobs the last round left unfinished
        self.next_start = datetime.fromisoformat("2027-01-04T08:00:00+00:00")
        # Kubernetes API outages need the simulator's kube faults (issue 18, branch sim).
        self.kube_faults = acts.kube_faults_supported(rig)
        self.watch: acts.Watch | None = None

    # -- a round -----------------------------------------------------------------------------

    def run(self, rnd: Round) -> RoundResult:
        result = RoundResult(rnd)
        began = time.monotonic()
        sim = self.rig.sim
        self._forget_stuck_jobs()
        sim.load(world_for(rnd, self.next_start))
        sim.advance(HISTORY.total_seconds())
        result.started_at = self.rig.services.clock.now()
        pending: list[tuple[float, str, Callable[[], None]]] = []  # (due, what, action)
        rng = random.Random(rnd.seed)
        self.watch = acts.Watch(self.rig, result)
        self.watch.start()
        try:
            for event in rnd.all_events():
                self._until(began + event.at, pending, result)
                self._play(event, rng, result, pending)
            self._until(float("inf"), pending, result)  # restarts and storm ends still due
            result.done.append(f"events played in {time.monotonic() - began:.1f} s")
            self._await_jobs(result)
        finally:
            self.watch.stop()
        result.done.append(f"jobs ended {time.monotonic() - began:.1f} s into the round")
        self._settle(result)
        result.done.append(f"settled {time.monotonic() - began:.1f} s into the round")
        self.next_start = self.rig.services.clock.now() + timedelta(days=1)
        self.leftover = set(result.unfinished)
        result.wall_seconds = time.monotonic() - began
        return result

    def _forget_stuck_jobs(self) -> None:
        """End the jobs the last round left stuck (already reported) and empty the job queues:
        such a job must not act in the next world, whose nodes have the same names. Ended in
        the ledger, a message of it that a host holds right now runs no further."""
        tables = self.rig.services.tables
        for job_id in self.leftover:
            # A stuck job may still be writing its ledger (a wait that never ends polls on):
            # read again and retry until it has ended, or it would block the pool's next jobs
            # (an image job waits for a patch job to end) in the rounds to come.
            for _ in range(STOP_ATTEMPTS):
                record = tables.job(job_id)
                if record is None or record.status in FINAL:
                    break
                with contextlib.suppress(LedgerConflict):
                    tables.update_job(
                        record,
                        status="failed",
                        error="stuck at the end of its chaos round; ended by the driver",
                        continuation=None,
                    )
                    break
                time.sleep(0.1)
        self.leftover = set()
        service = self.rig.services.account.queue_service()
        for queue in self.rig.queues().values():
            with contextlib.suppress(ResourceNotFoundError):
                service.get_queue_client(queue).clear_messages()

    def _until(
        self,
        due: float,
        pending: list[tuple[float, str, Callable[[], None]]],
        result: RoundResult,
    ) -> None:
        """Run the pending actions that fall due before `due`, then wait until `due`."""
        while True:
            pending.sort(key=lambda p: p[0])
            if pending and pending[0][0] <= due:
                at, what, action = pending.pop(0)
                time.sleep(max(0.0, at - time.monotonic()))
                action()
                result.done.append(what)
                continue
            if due != float("inf"):
                time.sleep(max(0.0, due - time.monotonic()))
            return

    def _play(
        self,
        event: Event,
        rng: random.Random,
        result: RoundResult,
        pending: list[tuple[float, str, Callable[[], None]]],
    ) -> None:
        sim, rig = self.rig.sim, self.rig
        schedule = next((s for s in result.round.schedules if s.pool.index == event.pool), None)
        if schedule is not None and self._operator(event, schedule, result):
            return
        if event.what == "job":
            assert schedule is not None
            self._send(schedule, event.detail["generator"], rng, result)
        elif event.what == "kube_outage":
            if self.kube_faults:
                assert self.watch is not None
                self.watch.arm(acts.kube_outage(rig, event.detail, result))
            else:
                result.done.append("no Kubernetes API outage: the simulator has no kube faults")
        elif event.what == "fault":
            assert schedule is not None
            body = {k: v for k, v in event.detail.items() if k != "name"}
            sim.post("faults", body | {"scale_set": schedule.pool.vmss})
            result.faults[event.detail["name"]] += 1
            result.done.append(f"fault {event.detail['name']} on pool{event.pool}")
        elif event.what == "not_ready":
            assert schedule is not None
            self._not_ready(schedule, event, result)
        elif event.what == "throttle":
            families = [
                {
                    "family": "ChaosStorm",
                    "operations": list(STORM_OPERATIONS),
                    "limit": event.detail["limit"],
                    "window_seconds": 300,
                }
            ]
            sim.post("throttling", families)
            result.faults["429_storm"] += 1
            result.done.append(f"429 storm, {event.detail['limit']} calls per 5 sim-minutes")
            due = time.monotonic() + event.detail["seconds"]
            pending.append((due, "429 storm over", lambda: sim.post("throttling", [])))
        elif event.what == "storm":
            for operation in STORM_OPERATIONS:
                sim.post(
                    "faults",
                    {
                        "operation": operation,
                        "kind": "error",
                        "status": event.detail["status"],
                        "error": "InternalExecutionError",
                        "count": event.detail["count"],
                    },
                )
            result.faults["5xx_storm"] += 1
            result.done.append(f"5xx storm: {event.detail}")
        elif event.what == "kill":
            host = rig.hosts[event.detail["host"]]
            if host.alive:
                rig.kill_now(host)
                result.done.append(f"SIGKILL host{host.slot}")
                pending.append(
                    (
                        time.monotonic() + event.detail["down"],
                        f"host{host.slot} started again",
                        lambda host=host: rig.ensure_running(host),
                    )
                )
        elif event.what == "azurite":
            rig.restart_azurite()
            result.done.append("Azurite restarted with its data")

    def _operator(self, event: Event, schedule: Schedule, result: RoundResult) -> bool:
        """An operator's hand on one pool (tests/chaos/acts.py); False: not such an event."""
        if event.what == "node_image":
            acts.node_image(self.rig, schedule, result)
        elif event.what == "cordon":
            assert self.watch is not None
            self.watch.arm(acts.cordon_mid_rollout(self.rig, schedule, result))
        elif event.what == "brake_grow":

            def send(generator: str, params: dict[str, Any]) -> bool:
                kind = "scale" if generator == "brake_grow" else generator
                return self._submit(schedule, generator, kind, params, "queue", result).accepted

            trigger = acts.brake_grow(self.rig, schedule, result, send)
            if trigger is not None:
                assert self.watch is not None
                self.watch.arm(trigger)
        else:
            return False
        return True

    # -- jobs --------------------------------------------------------------------------------

    def _nodes(self, schedule: Schedule) -> list[str]:
        nodes = requests.get(f"{self.rig.sim.admin}/kube/pods", timeout=10).json()["nodes"]
        return sorted(n for n, v in nodes.items() if v["node_group"] == schedule.pool.node_group)

    def _send(self, schedule: Schedule, generator: str, rng: random.Random, result: RoundResult):
        spec = GENERATORS[generator]
        params = spec.params(rng, self._nodes(schedule))
        if params is None:
            result.done.append(f"no {generator} job for pool{schedule.pool.index}: no nodes")
            return
        via = rng.choice(["http", "queue"])
        self._submit(schedule, generator, spec.kind, params, via, result)

    def _submit(
        self,
        schedule: Schedule,
        generator: str,
        kind: str,
        params: dict[str, Any],
        via: str,
        result: RoundResult,
    ) -> Sent:
        """Send a job (`generator` says why, in the figures) through the API or the queue."""
        now = self.rig.services.clock.now()
        envelope = job(kind, schedule.pool.name, params, created_at=now.isoformat())
        envelope["id"] = f"chaos-{result.round.seed}-p{schedule.pool.index}-{len(result.sent)}"
        sent = Sent(envelope["id"], schedule.pool.index, generator, kind, params, via)
        result.sent.append(sent)
        sent.accepted = self._deliver(envelope, sent.via)
        result.done.append(
            f"{generator} {params} -> pool{schedule.pool.index} via {sent.via}"
            + ("" if sent.accepted else " (not accepted)")
        )
        return sent

    def _deliver(self, envelope: dict[str, Any], via: str, attempts: int = 40) -> bool:
        """Submit until the API or the queue takes it (a host may be dead, Azurite restarting);
        a job the API refused for good is not accepted (and not expected to run)."""
        raw = json.dumps(envelope)
        for _ in range(attempts):
            try:
                if via == "queue":
                    queue = self.rig.queues()[envelope["kind"]]
                    self.rig.services.queues.send(queue, raw)
                    return True
                hosts = self.rig.live_hosts()
                if hosts:
                    host = random.choice(hosts)
                    answer = requests.post(
                        f"{host.url}/api/jobs",
                        data=raw,
                        headers={
                            "x-functions-key": FUNCTION_KEY,
                            "Content-Type": "application/json",
                        },
                        timeout=10,
                    )
                    if answer.status_code == 202:
                        return True
                    if answer.status_code == 422 and "has no node of that name" in answer.text:
                        return False  # the node went since the driver listed it: rightly refused
                    if answer.status_code < 500:
                        raise AssertionError(f"the API refused a valid job: {answer.text}")
            except AssertionError:
                raise
            except Exception:  # noqa: BLE001 - a dead host, Azurite restarting: try again
                pass
            time.sleep(0.25)
        return False

    # -- faults on nodes ---------------------------------------------------------------------

    def _not_ready(self, schedule: Schedule, event: Event, result: RoundResult) -> None:
        """A node goes NotReady: its VM reboots (platform maintenance), and with a boot fault
        its kubelet never comes back Ready."""
        instance = str(event.detail["instance"])
        state = self.rig.sim.scale_set_state(schedule.pool.vmss)
        if not any(
            i["instance_id"] == instance and i["provisioning_state"] == "Succeeded"
            for i in state["instances"]
        ):
            result.done.append(f"no instance {instance} in pool{schedule.pool.index} to reboot")
            return
        boots = {"not_ready_stuck": 1, "not_ready_stubborn": 2}.get(event.detail["name"])
        if boots:  # this many boots never get Ready: repair's restart too, for a stubborn one
            self.rig.sim.post(
                "faults",
                {
                    "operation": "Boot",
                    "kind": "never_ready",
                    "scale_set": schedule.pool.vmss,
                    "instance": instance,
                    "count": boots,
                },
            )
        try:  # the scale set's form of the call: Poolkeeper's restarts are per instance
            self.rig.compute.virtual_machine_scale_sets.begin_restart(
                state["resource_group"], schedule.pool.vmss, {"instanceIds": [instance]}
            )
        except Exception as error:  # noqa: BLE001 - a storm may refuse the driver's call too
            result.done.append(f"reboot of pool{schedule.pool.index}/{instance} refused: {error}")
            return
        result.faults[event.detail["name"]] += 1
        result.done.append(f"{event.detail['name']} pool{schedule.pool.index}/{instance}")

    # -- the end of a round -----------------------------------------------------------------

    def _settle(self, result: RoundResult) -> None:
        """No more faults; every host up; an hour later a last reconcile of each pool (and
        whatever it enqueues), so the recorded truth can be compared with the simulator's."""
        sim = self.rig.sim
        requests.delete(f"{sim.admin}/faults", timeout=10)
        if self.kube_faults:
            requests.delete(f"{sim.admin}/kube/faults", timeout=10)
        sim.post("throttling", [])
        for host in self.rig.hosts:
            self.rig.ensure_running(host)
        for _ in range(3):
            sim.advance(3600)
            before = set(result.records)
            ids = set()
            for s in result.round.schedules:
                envelope = job(
                    "reconcile",
                    s.pool.name,
                    {},
                    created_at=self.rig.services.clock.now().isoformat(),
                )
                envelope["id"] = f"chaos-{result.round.seed}-p{s.pool.index}-final-{len(before)}"
                assert self._deliver(envelope, "queue")
                ids.add(envelope["id"])
            self._await_jobs(result, ids)
            if set(result.records) == before | ids:
                return  # nothing new was enqueued by the reconciles

    def _await_jobs(self, result: RoundResult, extra: set[str] | None = None) -> None:
        await_jobs(self.rig.services.clock, result, lambda: round_jobs(self.rig, result), extra)
