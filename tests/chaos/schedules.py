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
CANNOT_ALLOCATE = "CannotAllocateRemainingVMsInAvailabilitySet"
SCHEDULE_SECONDS = 6.0  # wall seconds over which a round's events are spread (pacing only)


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
        }


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

    what: job (detail: generator), fault (a /_sim/faults body), not_ready (restart an instance,
    maybe with a never_ready boot fault), throttle (429 storm), storm (5xx storm), kill (SIGKILL
    a host, restarted after `down` seconds), azurite (restart Azurite with its data)."""

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


@dataclass(frozen=True)
class Round:
    seed: int
    schedules: tuple[Schedule, ...]
    events: tuple[Event, ...]  # round-wide: storms, kills, Azurite restarts

    @property
    def heavy(self) -> bool:
        """Kills hosts or restarts Azurite."""
        return any(e.what in ("kill", "azurite") for e in self.events)

    def all_events(self) -> list[Event]:
        merged = [e for s in self.schedules for e in s.events] + list(self.events)
        return sorted(merged, key=lambda e: e.at)

    def describe(self) -> str:
        lines = [f"round seed {self.seed}{' (kills/Azurite)' if self.heavy else ''}"]
        for s in self.schedules:
            lines.append(
                f"  pool{s.pool.index}: {s.capacity} nodes, min {s.pool.min_nodes}, "
                f"pdb max_unavailable {s.pdb_max_unavailable}, grace {s.grace_seconds}s, "
                f"bare pod on {s.bare_pod_on}"
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
    nodes; None: nothing sensible to send now), and how often it is drawn."""

    kind: str
    params: Params
    weight: float


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
NODE_FAULTS = ("not_ready_reboot", "not_ready_stuck")  # a reboot; a boot that never gets Ready
STORM_OPERATIONS = (GET, LIST, UPDATE, DELETE)


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
    return Round(seed, schedules, tuple(sorted(events, key=lambda e: e.at)))


def _plan_schedule(rng: random.Random, pool: ChaosPool) -> Schedule:
    capacity = rng.randint(max(1, pool.min_nodes), pool.min_nodes + 4)
    events = [
        Event(rng.uniform(0, SCHEDULE_SECONDS), "job", pool.index, {"generator": draw_job(rng)})
        for _ in range(rng.randint(3, 6))
    ]
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
    return Schedule(
        pool=pool,
        capacity=capacity,
        pdb_max_unavailable=rng.choice([0, 1, 1, 2, 2]),
        grace_seconds=rng.choice([5, 30, 120]),
        bare_pod_on=rng.randrange(capacity) if rng.random() < 0.25 else None,
        events=tuple(sorted(events, key=lambda e: e.at)),
    )
