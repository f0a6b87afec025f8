"""Invariants on what the jobs did to the machines, judged from the simulators' own records (the
Azure call log, the delete history, the resources left) against the jobs' ledger:

- no instance restarted or reimaged twice for one job step;
- no Ready node deleted by a repair;
- no snapshot, and no version of a failed image job, left behind (unless the model names it);
- a node an operator cordoned in the middle of a rollout is not patched, and stays cordoned;
- no repair acts in a pool whose brake holds (`_brake_schedule`), even while it grows;
- no job ends on a programming error.

Each returns violations as sentences (empty: it held). Called by `invariants.check_round`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.ledger import JobRecord
from tests.chaos.driver import RoundResult
from tests.chaos.schedules import Schedule

SENT = re.compile(
    r"/virtualMachineScaleSets/(?P<vmss>[^/]+)/virtualMachines/(?P<instance>[^/]+)"
    r"/(?P<action>restart|reimage)$",
    re.IGNORECASE,
)
MAY_SEND = {"restart": {"repair", "patch", "image"}, "reimage": {"repair"}}  # kinds that do
LATE = timedelta(hours=1)  # a lost delete lands after its job wrote last
CRASH = re.compile(
    r"step \S+ failed: (KeyError|TypeError|AttributeError|NameError|FileNotFoundError|"
    r"ImportError|IndexError|UnboundLocalError|ZeroDivisionError|AssertionError|RecursionError)"
)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _sends(calls: list[dict[str, Any]], vmss: str) -> dict[tuple[str, str], list[datetime]]:
    """(instance, action) -> when Azure accepted a restart or a reimage of it, in order."""
    found: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for call in calls:
        sent = SENT.search(call["path"])
        if sent and sent["vmss"].lower() == vmss.lower() and 200 <= call["status"] < 300:
            found[(sent["instance"], sent["action"].lower())].append(_time(call["sim_time"]))
    return {key: sorted(times) for key, times in found.items()}


def _scope(record: JobRecord) -> set[str]:
    """The instances a job may restart or reimage: a repair's target, a patch's nodes, an
    image job's donor (restarted when its clean-up may have stopped half-way)."""
    state, outcome = record.state or {}, record.outcome or {}
    if record.kind == "image":
        return {str(i) for i in [(state.get("donor") or {}).get("instance")] if i}
    if record.kind == "repair":
        targets = [(state.get("repair") or {}).get("instance")]
        targets.append((outcome.get("repair") or {}).get("instance"))
        return {str(t) for t in targets if t}
    if record.kind == "patch":
        return {str(n["instance"]) for n in (state.get("nodes") or {}).values() if "instance" in n}
    return set()


def sends_per_step(calls: list[dict[str, Any]], result: RoundResult, pool: Schedule) -> list[str]:
    """Each job restarts an instance at most once and reimages it at most once (the ladder and
    a patch each do so one step at a time). A job whose worker died right after a send must
    judge the effect, never send again. (The driver's own reboots use the scale set's form of
    the call, `.../restart` with instance ids, which Poolkeeper does not: they are not here.)"""
    found = []
    vmss = pool.pool.vmss
    for (instance, action), times in sorted(_sends(calls, vmss).items()):
        jobs = [
            r
            for r in result.records.values()
            if r.pool == pool.pool.name and r.kind in MAY_SEND[action] and instance in _scope(r)
        ]
        used: set[str] = set()
        for at in times:
            alive = [r for r in jobs if _time(r.created_at) <= at <= _time(r.updated_at)]
            able = [r for r in alive if r.id not in used]
            if able:  # the one that ends first: a greedy match is the largest one here
                used.add(min(able, key=lambda r: _time(r.updated_at)).id)
                continue
            running = ", ".join(f"{r.kind} {r.id}" for r in alive) or "no job that may"
            found.append(
                f"pool {pool.pool.name}: instance {instance} got {len(times)} {action}s "
                f"({', '.join(t.strftime('%H:%M:%S') for t in times)}); the one at "
                f"{at:%H:%M:%S} while {running} ran: a second {action} for one job step"
            )
    return found


def ready_deletes_by_repair(
    state: dict[str, Any], result: RoundResult, pool: Schedule
) -> list[str]:
    """A repair deletes an instance for its problem; never one whose node is Ready (again) when
    the delete is sent (`ready` in the simulator's delete history)."""
    found = []
    repairs = [
        r for r in result.records.values() if r.kind == "repair" and r.pool == pool.pool.name
    ]
    for entry in state["history"]:
        if entry["scale_set"] != pool.pool.vmss or not entry.get("ready"):
            continue
        at = _time(entry["time"])
        for instance in entry["ready"]:
            for repair in repairs:
                deleted = {str(i) for i in (repair.state or {}).get("deleted", [])}
                ended = _time(repair.updated_at) + LATE
                if instance in deleted and _time(repair.created_at) <= at <= ended:
                    node = dict(zip(entry["instances"], entry["computer_names"], strict=False))
                    found.append(
                        f"pool {pool.pool.name}: repair {repair.id} deleted instance {instance} "
                        f"({node.get(instance)}) at {entry['time']} while its node was Ready"
                    )
    return found


def images_left(state: dict[str, Any], result: RoundResult, pool: Schedule) -> list[str]:
    """Every image job has ended: none left its snapshot, and a failed one left no version the
    scale set's model does not name, unless the job said why it stays (`kept: ...` or `not
    deleted (...)`, in its outcome)."""
    resources = {r.lower() for r in state["resources"]}
    scale_set = next(s for s in state["scale_sets"] if s["name"] == pool.pool.vmss)
    model = str((scale_set.get("model_image") or {}).get("id", "")).lower()
    found = []
    for record in result.records.values():
        if record.kind != "image" or record.pool != pool.pool.name:
            continue
        names = (record.state or {}).get("names") or {}
        snapshot, version = names.get("snapshot_id"), names.get("version_id")
        said = {what: _why_left(record.outcome, what) for what in ("snapshot", "version")}
        ended = f"{record.status} at {record.step}: {(record.error or '')[:160]}"
        if snapshot and snapshot.lower() in resources and not said["snapshot"]:
            found.append(f"image job {record.id} ({ended}) left its snapshot {snapshot}")
        if (
            record.status == "failed"
            and version
            and version.lower() in resources
            and version.lower() != model
            and not said["version"]
        ):
            found.append(
                f"failed image job {record.id} ({ended}) left its version {version} (the model "
                f"names {model or 'a marketplace image'})"
            )
    return found


def _why_left(outcome: Any, what: str) -> str | None:
    """Why the job says its `what` stays, wherever its outcome says it (clean-up, abort)."""
    if isinstance(outcome, dict):
        said = outcome.get(what)
        if isinstance(said, str) and said.startswith(("kept", "not deleted")):
            return said
        return next((w for v in outcome.values() if (w := _why_left(v, what))), None)
    return None


def operator_cordons(result: RoundResult, nodes: list[Any]) -> list[str]:
    """A node an operator cordoned while a rollout still had it to come is theirs: the rollout
    leaves it (the plan's promise, re-checked right before the claim) and it stays cordoned."""
    by_name = {node.name: node for node in nodes}
    found = []
    for cordon in result.cordons:
        name, record = cordon["node"], result.records.get(cordon["job"])
        what = f"{name}, cordoned by an operator at {cordon['at']} while {cordon['job']}"
        outcome = (record.outcome if record else None) or {}
        results = {**outcome.get("patched", {}), **outcome.get("not_patched", {})}
        results = results or ((record.state or {}).get("results") or {} if record else {})
        done = results.get(name)
        if done and not done.startswith("not patched"):
            found.append(f"{what} had it to come, was patched anyway: {done}")
        node = by_name.get(name)
        if node is not None and not node.unschedulable:
            found.append(f"{what} had it to come, is schedulable again")
    return found


def brake_held(
    calls: list[dict[str, Any]], state: dict[str, Any], result: RoundResult, pool: Schedule
) -> list[str]:
    """In a pool whose brake held (two of its nodes NotReady, more than 34 %) and that grew by
    instances that never became nodes, no repair restarted, reimaged or deleted anything."""
    brake = next((b for b in result.brakes if b["pool"] == pool.pool.index), None)
    if brake is None:
        return []
    vmss = pool.pool.vmss
    sent = sum(len(times) for times in _sends(calls, vmss).values())
    deleted = [
        i
        for entry in state["history"]
        if entry["scale_set"] == vmss
        for i in entry["instances"]
        if i in brake["instances"]
    ]
    acted = sorted(
        r.id
        for r in result.records.values()
        if r.kind == "repair" and r.pool == pool.pool.name and (r.state or {}).get("acted")
    )
    if not sent and not deleted and not acted:
        return []
    return [
        f"pool {pool.pool.name}: {len(brake['not_ready'])} of its nodes NotReady "
        f"({', '.join(brake['not_ready'])}) held the repair brake when it grew at {brake['at']}, "
        f"yet {sent} restart(s)/reimage(s) were sent, instances {deleted or 'none'} "
        f"deleted, repairs that acted: {', '.join(acted) or 'none'}"
    ]


def no_crashes(result: RoundResult) -> list[str]:
    """A job fails with a reason, never on an error in the product's own code."""
    return [
        f"job {r.id} ({r.kind}) ended on a programming error: {r.error}"
        for r in result.records.values()
        if r.status == "failed" and r.error and CRASH.search(r.error)
    ]
