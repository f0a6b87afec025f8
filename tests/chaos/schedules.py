"""Chaos schedules as plain data: which jobs arrive, which faults strike and when, drawn from one
seed. Pure (no I/O): the driver (`tests/chaos/driver.py`) plays them against the running stack.

A *schedule* is one pool's sequence of jobs and faults on a fresh scenario; a *round* packs one
schedule per chaos pool into one world and adds what hits every pool at once (429 and 5xx storms,
host kills, Azurite restarts). Job kinds come from `GENERATORS`, so a new kind is one entry.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.simulator import RG, SUBSCRIPTION

DELETE = "VirtualMachineScaleSets_DeleteInstances"
UPDATE = "VirtualMachineScaleSets_Update"
GET = "VirtualMachineScaleSets_Get"
LIST = "VirtualMachineScaleSetVMs_List"
RUN = "VirtualMachineScaleSetVMs_RunCommand"
RESTART = "VirtualMachineScaleSetVMs_Restart"
REIMAGE = "VirtualMachineScaleSetVMs_Reimage"
POWER_OFF = "VirtualMachineScaleSetVMs_PowerOff"
UPGRADE = "VirtualMachineScaleSets_UpdateInstances"
CANNOT_ALLOCATE = "CannotAllocateRemainingVMsInAvailabilitySet"
SCHEDULE_SECONDS = 6.0  # wall seconds over which a round's events are spread (pacing only)
HOLD_SECONDS = 2.0  # a held answer: time enough for the driver to kill the worker first
# A brake schedule: two of the pool's nodes NotReady (more than repair's 34 %), and the pool
# grown to this many instances once repair would act on them (not_ready_minutes passed).
BRAKE_SIZE = 6
BRAKE_NOT_READY = 120  # the brake pools' repair.not_ready_minutes
BRAKE_GROW_AFTER = 12.5  # wall seconds after the nodes went NotReady: 125 product minutes


@dataclass(frozen=True)
class ChaosPool:
    """A pool the hosts are configured with for the whole run (their settings never change)."""

    index: int
    min_nodes: int
    max_nodes: int
    undrainable: str  # the patch section's choice for a node that cannot be drained

    @property
    def vmss(self) -> str:
        return f"aks-chaos{self.index}-{self.index + 1:08d}-vmss"

    @property
    def node_group(self) -> str:
        return f"chaos{self.index}"

    @property
    def name(self) -> str:
        return f"chaos{self.index}"

    def config(self) -> dict[str, Any]:
        """The pool's entry in POOLKEEPER_POOLS."""
        return {
            "name": self.name,
            "vmss_id": (
                f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
                f"Microsoft.Compute/virtualMachineScaleSets/{self.vmss}"
            ),
            "node_group": self.node_group,
            "min_nodes": self.min_nodes,
            "max_nodes": self.max_nodes,
            "patch": {
                "soak_minutes": 1,
                "ready_timeout_minutes": 10,
                "drain_timeout_minutes": 10,
                "undrainable": self.undrainable,
            },
        } | ({"repair": {"not_ready_minutes": BRAKE_NOT_READY}} if self.brakes else {})

    @property
    def brakes(self) -> bool:
        """Can have a brake schedule: room to grow to BRAKE_SIZE, and repair that waits
        BRAKE_NOT_READY for a node to register (a window wide enough to act in at 600x)."""
        return self.index % 10 in (0, 2, 7)


# The pools the hosts are configured with; a round uses the first N (--chaos-pools). Sizes and
# bounds differ, so that min_nodes, max_nodes and the undrainable choice all come into play.
POOLS = tuple(
    ChaosPool(
        index,
        min_nodes=(2, 3, 1, 2, 0, 4, 1, 2, 3, 2)[index % 10],
        max_nodes=(8, 9, 6, 7, 5, 10, 6, 8, 8, 6)[index % 10],
        undrainable=("skip", "quarantine")[index % 2],
    )
    for index in range(20)
)


@dataclass(frozen=True)
class Event:
    """One thing the driver does `at` wall seconds into the round (pacing, never asserted).

    what: job (detail: generator), fault (a /_sim/faults body; kind `held` kills the worker
    that sent the call right after it took effect), not_ready (restart an instance, maybe with a
    never_ready boot fault), node_image (an operator moves the scale set's model to a newer node
    image), cordon (an operator cordons a node the pool's patch rollout has yet to take),
    brake_grow (the pool grows while its repair brake holds), throttle (429 storm), storm (5xx
    storm), kill (SIGKILL a host, restarted after `down` seconds), azurite (restart Azurite with
    its data), kube_outage (the Kubernetes API answers 503 for a while, once a canary or a drain
    runs)."""

    at: float
    what: str
    pool: int | None
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        where = f" pool{self.pool}" if self.pool is not None else ""
        return f"{self.at:4.1f}s {self.what}{where} {self.detail}"


@dataclass(frozen=True)
class Schedule:
    """One pool's world and events in a round."""

    pool: ChaosPool
    capacity: int
    pdb_max_unavailable: int  # 0: no eviction is ever allowed (every drain times out)
    grace_seconds: int
    bare_pod_on: int | None  # an instance index running a pod without a controller
    events: tuple[Event, ...]
    brake: bool = False  # a brake schedule (`_brake_schedule`): no repair may act on the pool


@dataclass(frozen=True)
class Round:
    seed: int
    schedules: tuple[Schedule, ...]
    events: tuple[Event, ...]  # round-wide: storms, kills, Azurite restarts, kube outages
    upgrades_hang: bool = False  # every manual upgrade of the round never ends

    @property
    def heavy(self) -> bool:
        """Kills hosts or restarts Azurite."""
        return any(e.what in ("kill", "azurite") for e in self.events)

    def all_events(self) -> list[Event]:
        merged = [e for s in self.schedules for e in s.events] + list(self.events)
        return sorted(merged, key=lambda e: e.at)

    def describe(self) -> str:
        lines = [
            f"round seed {self.seed}{' (kills/Azurite)' if self.heavy else ''}"
            + (" (manual upgrades never end)" if self.upgrades_hang else "")
        ]
        for s in self.schedules:
            lines.append(
                f"  pool{s.pool.index}: {s.capacity} nodes, min {s.pool.min_nodes}, "
                f"pdb max_unavailable {s.pdb_max_unavailable}, grace {s.grace_seconds}s, "
                f"bare pod on {s.bare_pod_on}{', repair brake' if s.brake else ''}"
            )
        lines += [f"  {e.describe()}" for e in self.all_events()]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- jobs --------------------------------------------------------------------------------------

Params = Callable[[random.Random, Sequence[str]], dict[str, Any] | None]


@dataclass(frozen=True)
class Generator:
    """A job kind the driver can send: its envelope kind, its params (given the pool's current
    nodes; None: nothing sensible to send now), how often it is drawn, and what an operator
    does around it (`companion`: an event of that name comes with the job)."""

    kind: str
    params: Params
    weight: float
    companion: str | None = None


def _some(rng: random.Random, nodes: Sequence[str], most: int) -> list[str]:
    return sorted(rng.sample(list(nodes), min(len(nodes), rng.randint(1, most))))


GENERATORS: dict[str, Generator] = {
    "scale_up": Generator("scale", lambda r, n: {"delta": r.choice([1, 1, 2])}, 2),
    "scale_in": Generator("scale", lambda r, n: {"delta": r.choice([-1, -1, -2])}, 2),
    "scale_in_named": Generator(
        "scale", lambda r, n: {"nodes": _some(r, n, 2)} if n else None, 1.5
    ),
    "drain": Generator(
        "drain",
        lambda r, n: (
            {"node": r.choice(list(n)), "timeout_seconds": r.choice([300, 900])} if n else None
        ),
        1,
    ),
    "reconcile": Generator("reconcile", lambda r, n: {}, 1.5),
    "patch": Generator(
        "patch", lambda r, n: {"nodes": _some(r, n, 2), "max_unavailable": 1} if n else None, 1
    ),
    # A node named, or the pool's most urgent problem; reconcile also enqueues repairs itself.
    "repair": Generator(
        "repair", lambda r, n: {"node": r.choice(list(n))} if n and r.random() < 0.5 else {}, 1
    ),
    "image": Generator("image", lambda r, n: {"dry_run": r.random() < 0.3}, 0.5),
    # Up to four nodes, two at a time, while an operator cordons one still to come.
    "patch_cordoned": Generator(
        "patch",
        lambda r, n: (
            {"nodes": sorted(r.sample(list(n), min(len(n), 4))), "max_unavailable": 2}
            if len(n) > 2
            else None
        ),
        0.7,
        "cordon",
    ),
    # Nodes moved to the model an operator has just set (manualupgrade), maybe never ending.
    "patch_upgrade": Generator(
        "patch",
        lambda r, n: {"action": "upgrade", "max_unavailable": r.choice([1, 2])} if n else None,
        0.7,
        "node_image",
    ),
}


def draw_job(rng: random.Random) -> str:
    """A generator name, by weight."""
    names = sorted(GENERATORS)
    return rng.choices(names, weights=[GENERATORS[n].weight for n in names])[0]


# -- faults ------------------------------------------------------------------------------------

FAULTS: dict[str, dict[str, Any]] = {
    "delete_failed": {"operation": DELETE, "kind": "lro_failed", "error": CANNOT_ALLOCATE},
    "delete_5xx": {"operation": DELETE, "kind": "error", "status": 500},
    "delete_preempted": {"operation": DELETE, "kind": "error", "error": "OperationPreempted"},
    "delete_partial": {"operation": DELETE, "kind": "partial_delete", "deleted": 1},
    "delete_lost": {"operation": DELETE, "kind": "lost_answer", "apply_after": 40},
    "delete_lost_failed": {
        "operation": DELETE,
        "kind": "lost_answer",
        "apply_after": 20,
        "outcome": "lro_failed",
        "error": CANNOT_ALLOCATE,
    },
    "write_5xx": {"operation": UPDATE, "kind": "error", "status": 503},
    "write_failed": {"operation": UPDATE, "kind": "lro_failed", "error": "AllocationFailed"},
    "write_lost": {"operation": UPDATE, "kind": "lost_answer", "apply_after": 30},
    "read_5xx": {"operation": GET, "kind": "error", "status": 500},
    "list_5xx": {"operation": LIST, "kind": "error", "status": 502},
    "read_timeout": {"operation": GET, "kind": "timeout", "seconds": 1.5},
    "run_command_5xx": {"operation": RUN, "kind": "error", "status": 500},
    "run_command_failed": {"operation": RUN, "kind": "lro_failed"},
    "restart_failed": {"operation": RESTART, "kind": "lro_failed"},
}
# A reboot; a boot that never gets Ready; two such boots (repair's restart fails: a reimage).
NODE_FAULTS = ("not_ready_reboot", "not_ready_stuck", "not_ready_stubborn")
STORM_OPERATIONS = (GET, LIST, UPDATE, DELETE)
# A worker SIGKILLed right after each kind of send took effect, before it saved what it sent.
KILL_AFTER: dict[str, dict[str, Any]] = {
    f"kill_after_{name}": {"operation": operation, "kind": "held", "seconds": HOLD_SECONDS}
    for name, operation in (
        ("restart", RESTART),
        ("reimage", REIMAGE),
        ("upgrade", UPGRADE),
        ("run_command", RUN),
        ("power_off", POWER_OFF),
        ("scale_set_write", UPDATE),  # a model write (image point, roll-back) or a capacity one
    )
}


def plan_round(seed: int, pools: Sequence[ChaosPool] = POOLS) -> Round:
    """The round for `seed`: one schedule per pool; every third seed also kills hosts and/or
    restarts Azurite."""
    rng = random.Random(seed)
    schedules = tuple(_plan_schedule(rng, pool) for pool in pools)
    events: list[Event] = []
    if rng.random() < 0.4:
        events.append(
            Event(
                rng.uniform(0, SCHEDULE_SECONDS),
                "throttle",
                None,
                {"limit": rng.choice([5, 15, 30]), "seconds": rng.choice([1.0, 3.0])},
            )
        )
    if rng.random() < 0.4:
        events.append(
            Event(
                rng.uniform(0, SCHEDULE_SECONDS),
                "storm",
                None,
                {"status": rng.choice([500, 502, 503]), "count": rng.randint(3, 8)},
            )
        )
    if seed % 3 == 0:
        shock = rng.choice(["kill", "kill", "azurite", "both"])
        if shock in ("kill", "both"):
            for _ in range(rng.randint(1, 2)):
                events.append(
                    Event(
                        rng.uniform(0.5, SCHEDULE_SECONDS),
                        "kill",
                        None,
                        {"host": rng.randrange(3), "down": round(rng.uniform(0.2, 3), 1)},
                    )
                )
        if shock in ("azurite", "both"):
            events.append(Event(rng.uniform(0.5, SCHEDULE_SECONDS), "azurite", None, {}))
    if rng.random() < 0.3:
        during = rng.choice(["canary", "drain"])
        seconds = rng.choice([300, 600, 1200])  # product seconds: 0.5 to 2 wall seconds
        events.append(Event(0.0, "kube_outage", None, {"during": during, "seconds": seconds}))
    return Round(
        seed,
        schedules,
        tuple(sorted(events, key=lambda e: e.at)),
        upgrades_hang=rng.random() < 0.3,
    )


def _plan_schedule(rng: random.Random, pool: ChaosPool) -> Schedule:
    if pool.brakes and rng.random() < 0.2:
        return _brake_schedule(rng, pool)
    capacity = rng.randint(max(1, pool.min_nodes), pool.min_nodes + 4)
    events = []
    for _ in range(rng.randint(3, 6)):
        at, generator = rng.uniform(0, SCHEDULE_SECONDS), draw_job(rng)
        events.append(Event(at, "job", pool.index, {"generator": generator}))
        if GENERATORS[generator].companion == "node_image":  # the model first, then the job
            events.append(Event(max(0.0, at - 0.5), "node_image", pool.index))
        elif GENERATORS[generator].companion == "cordon":  # armed now, acts mid-rollout
            events.append(Event(at, "cordon", pool.index))
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(sorted(FAULTS))
        fault = FAULTS[name] | {"count": rng.randint(1, 2)}
        events.append(
            Event(rng.uniform(0, SCHEDULE_SECONDS), "fault", pool.index, {"name": name} | fault)
        )
    if rng.random() < 0.4:
        events.append(
            Event(
                rng.uniform(0, SCHEDULE_SECONDS),
                "not_ready",
                pool.index,
                {"name": rng.choice(NODE_FAULTS), "instance": rng.randrange(capacity)},
            )
        )
    if rng.random() < 0.5:
        name = rng.choice(_sends_to_come(events))
        fault = KILL_AFTER[name] | {"count": 1}
        events.append(
            Event(rng.uniform(0, SCHEDULE_SECONDS), "fault", pool.index, {"name": name} | fault)
        )
    return _schedule(rng, pool, capacity, events)


# Which sends a schedule's jobs and node faults lead to (the first of each kind gets killed).
SENDS = {
    "patch": ("restart", "run_command"),
    "patch_cordoned": ("restart", "run_command"),
    "patch_upgrade": ("upgrade",),
    "image": ("power_off", "scale_set_write", "run_command"),
    "repair": ("restart",),
    "scale_up": ("scale_set_write",),
    "not_ready_reboot": ("restart",),
    "not_ready_stuck": ("restart",),
    "not_ready_stubborn": ("restart", "reimage"),
}


def _sends_to_come(events: list[Event]) -> list[str]:
    """The kill-after-send faults this schedule's events make sends for (all, if none)."""
    names = {e.detail.get("generator") or e.detail.get("name") for e in events}
    wanted = {f"kill_after_{send}" for name in names for send in SENDS.get(name or "", ())}
    return sorted(wanted) or sorted(KILL_AFTER)


def _brake_schedule(rng: random.Random, pool: ChaosPool) -> Schedule:
    """Two of the pool's nodes go NotReady for good (the brake holds: more than 34 %); once
    repair would act on them, the pool grows to BRAKE_SIZE with instances that never boot, and
    reconciles run while those are not nodes yet (BRAKE_NOT_READY): the brake must still hold.
    Nothing else happens to the pool, so any repair that acts on it acted through the brake."""
    capacity = rng.randint(max(3, pool.min_nodes), BRAKE_SIZE - 1)
    at = rng.uniform(0, 2)
    events = [
        Event(at, "not_ready", pool.index, {"name": "not_ready_stuck", "instance": instance})
        for instance in (0, 1)
    ]
    events.append(Event(at + BRAKE_GROW_AFTER, "brake_grow", pool.index, {"to": BRAKE_SIZE}))
    return _schedule(rng, pool, capacity, events, brake=True)


def _schedule(
    rng: random.Random, pool: ChaosPool, capacity: int, events: list[Event], brake: bool = False
) -> Schedule:
    return Schedule(
        pool=pool,
        capacity=capacity,
        pdb_max_unavailable=rng.choice([0, 1, 1, 2, 2]),
        grace_seconds=rng.choice([5, 30, 120]),
        bare_pod_on=rng.randrange(capacity) if rng.random() < 0.25 else None,
        events=tuple(sorted(events, key=lambda e: e.at)),
        brake=brake,
    )
