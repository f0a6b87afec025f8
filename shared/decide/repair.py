"""Which repair a pool's drift gets: the problem, the rung of the ladder (restart, reimage,
replace), and the brakes — an outage of something shared, a node repaired too often, a node or
pool that opted out.

Pure, given `now`: reconcile asks `plan_repair` what to enqueue; the repair job asks again on its
own fresh read before it acts (`shared.flows.repair.job`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.config.repair import RepairSettings
from shared.decide.claims import FINAL, UNKNOWN_JOB_GRACE
from shared.decide.counting import InstanceState
from shared.decide.wording import listing, plural, span

NO_REPAIR_ANNOTATION = "poolkeeper.io/no-repair"  # "true" on a node: never repaired
QUARANTINE_ANNOTATION = "poolkeeper.io/quarantined"  # set by a repair job, with the reason
RUNGS = ("restart", "reimage", "replace")  # AKS's node auto-repair ladder
DAY = timedelta(days=1)
REPAIR_KIND = "repair"
ENDED = ("done", "failed", "refused", "quarantined")  # a repair log entry's final statuses


class Problem(StrEnum):
    FAILED = "failed_instance"
    STUCK_CREATING = "stuck_creating"
    STUCK_DELETING = "stuck_deleting"
    NOT_READY = "not_ready"
    NEVER_REGISTERED = "never_registered"  # a live instance whose node never came
    ORPHAN_NODE = "orphan_node"  # a node of the pool whose instance is gone


# Most urgent first: a failed instance holds capacity and quota; a NotReady node holds pods.
_PRIORITY = {problem: rank for rank, problem in enumerate(Problem)}
_SHORT = {
    Problem.FAILED: "failed",
    Problem.STUCK_CREATING: "creating",
    Problem.STUCK_DELETING: "deleting",
    Problem.NOT_READY: "notready",
    Problem.NEVER_REGISTERED: "nonode",
    Problem.ORPHAN_NODE: "orphan",
}
LADDER = frozenset({Problem.NOT_READY, Problem.NEVER_REGISTERED})


@dataclass(frozen=True)
class Member:
    """One instance of the pool with its node (if any), or a node of the pool with no instance.

    `since` is when the instance entered `state` (reconcile's observation), or for an orphan
    node when it was first seen NotReady."""

    name: str  # the node's name, or the instance's computer name when it has no node
    instance_id: str | None  # None: an orphan node
    state: InstanceState | None
    since: datetime
    has_node: bool = True
    ready: bool = True
    ready_since: datetime | None = None  # lastTransitionTime of the node's Ready condition
    claim_job: str | None = None  # the job that holds the node, if any
    claim_kind: str | None = None
    no_repair: bool = False
    quarantined: bool = False


@dataclass(frozen=True)
class Finding:
    problem: Problem
    member: Member
    since: datetime  # when the problem began
    detail: str


@dataclass(frozen=True)
class Repair:
    """Repair `finding`: the ladder from its first rung, or a delete (by force when stuck)."""

    finding: Finding
    job_id: str
    first_rung: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Quarantine:
    """Repaired too often: cordon the node for good, report it, repair it no more."""

    finding: Finding
    job_id: str
    reason: str


@dataclass(frozen=True)
class RepairPlan:
    findings: tuple[Finding, ...]
    action: Repair | Quarantine | None
    brake: str | None = None  # why nothing is repaired at all
    left_out: Mapping[str, str] = field(default_factory=dict)  # name -> why not repaired

    def describe(self) -> dict[str, Any]:
        """The plan as the ledger and the reconcile outcome show it."""
        action: dict[str, Any] | None = None
        if self.action is not None:
            finding = self.action.finding
            action = {
                "job": self.action.job_id,
                "problem": finding.problem.value,
                "node": finding.member.name,
                "instance": finding.member.instance_id,
                "detail": finding.detail,
            }
            if isinstance(self.action, Quarantine):
                action |= {"quarantine": self.action.reason}
            else:
                action |= {"first_rung": self.action.first_rung, "force": self.action.force}
        return {
            "findings": [f.detail for f in self.findings],
            "action": action,
            "brake": self.brake,
            "left_out": dict(self.left_out),
        }


def _age(since: datetime | None, now: datetime) -> timedelta:
    return now - since if since is not None else timedelta(0)


def _minutes(delta: timedelta) -> str:
    return span(delta)


def find_problems(
    members: Iterable[Member], settings: RepairSettings, now: datetime
) -> list[Finding]:
    """Every member whose problem has lasted past its deadline, most urgent first. Pure."""
    not_ready_after = timedelta(minutes=settings.not_ready_minutes)
    stuck_after = timedelta(minutes=settings.stuck_minutes)
    orphan_after = timedelta(minutes=settings.orphan_node_minutes)
    found: list[Finding] = []
    for member in members:
        age = _age(member.since, now)
        if member.state is None:
            if age > orphan_after:
                found.append(
                    Finding(
                        Problem.ORPHAN_NODE,
                        member,
                        member.since,
                        f"node {member.name} has no instance in the scale set (for more than "
                        f"{_minutes(orphan_after)})",
                    )
                )
        elif member.state is InstanceState.FAILED:
            found.append(
                Finding(
                    Problem.FAILED,
                    member,
                    member.since,
                    f"instance {member.instance_id} ({member.name}) failed",
                )
            )
        elif member.state in (InstanceState.CREATING, InstanceState.DELETING) and age > stuck_after:
            problem = (
                Problem.STUCK_CREATING
                if member.state is InstanceState.CREATING
                else Problem.STUCK_DELETING
            )
            found.append(
                Finding(
                    problem,
                    member,
                    member.since,
                    f"instance {member.instance_id} ({member.name}) {member.state} for "
                    f"{_minutes(age)}",
                )
            )
        elif member.state is InstanceState.LIVE and not member.has_node and age > not_ready_after:
            found.append(
                Finding(
                    Problem.NEVER_REGISTERED,
                    member,
                    member.since,
                    f"instance {member.instance_id} ({member.name}) live for {_minutes(age)} "
                    "and its node never registered",
                )
            )
        elif member.state is InstanceState.LIVE and member.has_node and not member.ready:
            not_ready = _age(member.ready_since, now)
            if not_ready > not_ready_after:
                found.append(
                    Finding(
                        Problem.NOT_READY,
                        member,
                        member.ready_since or member.since,
                        f"node {member.name} (instance {member.instance_id}) NotReady for "
                        f"{_minutes(not_ready)}",
                    )
                )
    return sorted(found, key=lambda f: (_PRIORITY[f.problem], f.since, f.member.name))


def unhealthy(members: Iterable[Member], settings: RepairSettings, now: datetime) -> list[str]:
    """The members unhealthy now, however recently (the brake counts these): failed, stuck,
    NotReady (unless another kind of job holds the node: a patch reboots it), or live without a
    node past the deadline. Pure."""
    stuck_after = timedelta(minutes=settings.stuck_minutes)
    not_ready_after = timedelta(minutes=settings.not_ready_minutes)
    names = []
    for member in members:
        state, age = member.state, _age(member.since, now)
        if (
            state is InstanceState.FAILED
            or (state in (InstanceState.CREATING, InstanceState.DELETING) and age > stuck_after)
            or (state is InstanceState.LIVE and not member.has_node and age > not_ready_after)
            or (
                state is InstanceState.LIVE
                and member.has_node
                and not member.ready
                and member.claim_kind in (None, REPAIR_KIND)
            )
        ):
            names.append(member.name)
    return names


def brake_members(members: Iterable[Member], sick: Iterable[str]) -> list[Member]:
    """The instances the brake's share is of: those whose node registered, and every unhealthy
    one. An instance still being created, or live with no node yet within its deadline, is
    neither healthy nor counted: new instances must not dilute an outage. Pure."""
    unwell = set(sick)
    return [
        member
        for member in members
        if member.instance_id is not None
        and (
            member.name in unwell
            or (member.has_node and member.state is not InstanceState.CREATING)
        )
    ]


def repairs_today(history: Iterable[Mapping[str, Any]], node: str, now: datetime) -> int:
    """How many repairs acted on `node` in the last day (the ledger's repair entries). Pure."""
    return sum(
        1
        for entry in history
        if entry.get("node") == node
        and entry.get("acted")
        and _age(_time(entry.get("at")), now) < DAY
    )


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def repair_job_id(pool: str, finding: Finding) -> str:
    """One id per pool, problem, target and start of the problem: the same drift seen by two
    reconciles is one job (the runner refuses the second), a new episode is a new job."""
    member = finding.member
    target = member.instance_id or hashlib.sha256(member.name.encode()).hexdigest()[:10]
    return f"repair-{pool}-{_SHORT[finding.problem]}-{target}-{finding.since:%Y%m%dT%H%M%S}"


def attempt_id(job_id: str, entries: Iterable[Mapping[str, Any]]) -> str:
    """The id of the next attempt at an episode: `job_id` itself, or, after attempts that were
    refused before they touched anything (a canary being proven, the brake on when the job
    ran), `<job_id>.r<n>`, so that the episode is repaired once that has passed. Pure."""
    refused = sum(
        1
        for entry in entries
        if entry.get("status") == "refused"
        and (str(entry.get("job")) == job_id or str(entry.get("job")).startswith(f"{job_id}.r"))
    )
    return f"{job_id}.r{refused}" if refused else job_id


def _brake(
    members: Sequence[Member],
    settings: RepairSettings,
    now: datetime,
    *,
    cluster_nodes: int,
    cluster_not_ready: int,
) -> str | None:
    share = settings.max_unhealthy_share
    sick = unhealthy(members, settings, now)
    counted = brake_members(members, sick)
    total = len(counted)
    if total and len(sick) / total > share:
        coming = sum(1 for m in members if m.instance_id is not None) - total
        return (
            f"{len(sick)} of {plural(total, 'instance')} of the pool are unhealthy at once "
            f"({listing(sorted(sick)[:10])}), more than {share:.0%}: probably an outage of "
            "something they share (network, API server, a bad image); repairing them one by "
            "one would make it worse, so none is repaired"
            + (f" ({plural(coming, 'instance')} still coming up not counted)" if coming else "")
        )
    if cluster_nodes and cluster_not_ready / cluster_nodes > share:
        return (
            f"{cluster_not_ready} of {plural(cluster_nodes, 'node')} of the cluster are NotReady "
            f"at once, more than {share:.0%}: probably an outage of something they share "
            "(network, API server, DNS); no node is repaired"
        )
    return None


def plan_repair(
    pool: str,
    members: Sequence[Member],
    settings: RepairSettings,
    history: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    cluster_nodes: int = 0,
    cluster_not_ready: int = 0,
    target: str | None = None,
) -> RepairPlan:
    """The one repair to do now (at most one a pool at a time), or why none. Pure.

    `target` (a node name, computer name or instance id) limits the plan to that member.
    """
    findings = find_problems(members, settings, now)
    if target is not None:
        findings = [f for f in findings if target in (f.member.name, f.member.instance_id)]
    if not settings.enabled:
        return RepairPlan(tuple(findings), None, left_out={"*": "repair is off for this pool"})
    if not findings:
        return RepairPlan((), None)
    brake = _brake(
        members,
        settings,
        now,
        cluster_nodes=cluster_nodes,
        cluster_not_ready=cluster_not_ready,
    )
    if brake is not None:
        return RepairPlan(tuple(findings), None, brake=brake)
    left_out: dict[str, str] = {}
    for finding in findings:
        member, why = finding.member, _why_not(finding, history, now)
        if why is not None:
            left_out[member.name] = why
            continue
        job_id = repair_job_id(pool, finding)
        done = repairs_today(history, member.name, now)
        if (
            finding.problem in LADDER
            and member.has_node
            and done >= settings.max_repairs_per_node_per_day
        ):
            reason = (
                f"repaired {plural(done, 'time')} in the last day "
                f"(max_repairs_per_node_per_day {settings.max_repairs_per_node_per_day}) "
                f"and {finding.detail}"
            )
            return RepairPlan(tuple(findings), Quarantine(finding, job_id, reason), None, left_out)
        action = Repair(
            finding,
            job_id,
            first_rung=RUNGS[0] if finding.problem in LADDER else None,
            force=finding.problem in (Problem.STUCK_CREATING, Problem.STUCK_DELETING),
        )
        return RepairPlan(tuple(findings), action, None, left_out)
    return RepairPlan(tuple(findings), None, left_out=left_out)


def _why_not(finding: Finding, history: Sequence[Mapping[str, Any]], now: datetime) -> str | None:
    member = finding.member
    if member.no_repair:
        return f"{NO_REPAIR_ANNOTATION} is set on the node"
    if member.quarantined:
        return "quarantined: an operator lifts it (docs/repair.md)"
    # A stuck delete, or a node whose instance is gone, is repaired whoever holds the node: it
    # is going or gone anyway (the claim of the delete stays on it until it has settled).
    held = member.claim_job is not None and member.claim_kind != REPAIR_KIND
    if held and finding.problem not in (Problem.STUCK_DELETING, Problem.ORPHAN_NODE):
        return f"held by {member.claim_kind} job {member.claim_job}"
    if finding.problem in (Problem.STUCK_CREATING, Problem.STUCK_DELETING):
        tried = [
            e
            for e in history
            if e.get("instance") == member.instance_id
            and e.get("problem") in (Problem.STUCK_CREATING.value, Problem.STUCK_DELETING.value)
            and e.get("acted")
            and _age(_time(e.get("at")), now) < DAY
        ]
        if tried:
            return (
                f"a forced delete was tried at {tried[-1].get('at')} ({tried[-1].get('job')}) "
                "and escalated: it needs a person"
            )
    return None


def next_rung(rung: str) -> str | None:
    """The rung after `rung`, or None after the last."""
    index = RUNGS.index(rung) + 1
    return RUNGS[index] if index < len(RUNGS) else None


def in_flight(
    entries: Iterable[Mapping[str, Any]],
    statuses: Mapping[str, str | None],
    now: datetime,
) -> str | None:
    """The pool's repair job still in flight, if any (at most one a pool): an entry not ended
    whose job the ledger does not show ended either. A job the ledger never knew counts for
    UNKNOWN_JOB_GRACE after it was queued (its message may still be on its way). Pure."""
    for entry in entries:
        if entry.get("status") in ENDED:
            continue
        job = str(entry.get("job"))
        status = statuses.get(job)
        if status in FINAL:
            continue
        if status is None and _age(_time(entry.get("at")), now) > UNKNOWN_JOB_GRACE:
            continue
        return job
    return None
