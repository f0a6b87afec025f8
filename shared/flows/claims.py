"""One owner per node (invariant 11): claim a node before cordoning it, release it by restoring
what the claim found, and check a claim right before acting on it.

Every flow that cordons goes through here (scale-in, drain jobs; patch and image later); none
cordons or uncordons a node by hand. A claim is the annotation `poolkeeper.io/claimed-by`, written
together with the cordon in one patch conditional on the node's resourceVersion, so two jobs
cannot both win a node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.adapters.kube import CLAIM_ANNOTATION, DRAINING_ANNOTATION, Kube, Node, NodeChanged
from shared.decide.claims import Claim, parse_claim
from shared.decide.drain import DrainOptions, plan_drain

log = logging.getLogger("poolkeeper.claims")

ATTEMPTS = 3  # conditional writes that lose a race re-read and try again this often
HANDED_BACK = "released, left cordoned as asked"


@dataclass(frozen=True)
class Owner:
    """A job, as it signs its claims."""

    job: str
    kind: str

    @classmethod
    def of(cls, job: Any) -> Owner:
        """The owner a job signs its claims as (a `shared.jobs.Job`)."""
        return cls(job.id, job.kind.value)


@dataclass(frozen=True)
class Claimed:
    node: Node
    claim: Claim


@dataclass(frozen=True)
class Refused:
    reason: str
    holder: str | None = None  # the job that holds the node, if another does


def holds(node: Node, owner: Owner) -> bool:
    """Whether `owner` holds the claim on `node`."""
    claim = parse_claim(node.claim)
    return claim is not None and claim.job == owner.job


def why_not_idle(kube: Kube, name: str, owner: Owner) -> str | None:
    """Why work that needs the node drained (delete, reboot, capture) must not start on it now,
    from a fresh read, or None: it is still claimed by `owner`, cordoned, and holds no pod a
    drain would have to move."""
    found = kube.node(name)
    if found is None:
        return f"node {name} is gone: nothing shows it was drained"
    if not holds(found, owner):
        return f"node {name} is no longer claimed by this job"
    if not found.unschedulable:
        return f"node {name} is schedulable again (someone uncordoned it)"
    left = plan_drain(kube.pods_on(name), DrainOptions()).left()
    if left:
        return f"node {name} still has pods: " + "; ".join(left[:5])
    return None


def claim(
    kube: Kube,
    name: str,
    owner: Owner,
    now: datetime,
    *,
    unless: Callable[[Node], str | None] | None = None,
) -> Claimed | Refused:
    """Claim and cordon `name` in one conditional write; Refused when another job holds it, or
    when `unless` gives a reason on the very read the write is conditional on (so a cordon or a
    NotReady that lands in between makes the write fail and the node is read again).

    Claiming a node this job already holds changes nothing (a redelivered step)."""
    for _ in range(ATTEMPTS):
        node = kube.node(name)
        if node is None:
            return Refused(f"node {name} does not exist")
        found = parse_claim(node.claim)
        if found is not None:
            if found.job == owner.job:
                return Claimed(node, found)
            return Refused(
                f"node {name} is claimed by {found.kind} job {found.job} since {found.at}",
                found.job,
            )
        why = unless(node) if unless else None
        if why:
            return Refused(why)
        new = Claim(owner.job, owner.kind, now.isoformat(), node.unschedulable)
        try:
            written = kube.patch_if_unchanged(
                node, annotations={CLAIM_ANNOTATION: new.encode()}, unschedulable=True
            )
        except NodeChanged:
            continue
        log.info("Job %s claimed node %s (cordoned: %s)", owner.job, name, node.unschedulable)
        return Claimed(written, new)
    return Refused(f"node {name} kept changing while it was being claimed")


def release(kube: Kube, name: str, owner: Owner, *, keep_cordoned: bool = False) -> str:
    """Give `name` back as the claim found it (or cordoned, with `keep_cordoned`), and say what
    was done. A node another job holds, or nobody, is left alone."""
    try:
        for _ in range(ATTEMPTS):
            node = kube.node(name)
            if node is None:
                return f"node {name} is gone; nothing to release"
            found = parse_claim(node.claim)
            if found is None or found.job != owner.job:
                holder = f"claimed by job {found.job}" if found else "not claimed"
                return f"node {name} is {holder}; left alone"
            # Restore a cordon, never add one: a node someone uncordoned while we held it
            # stays schedulable (they took it back).
            cordoned = node.unschedulable and (keep_cordoned or found.was_unschedulable)
            try:
                kube.patch_if_unchanged(
                    node,
                    annotations={CLAIM_ANNOTATION: None, DRAINING_ANNOTATION: None} | found.restore,
                    unschedulable=cordoned,
                )
            except NodeChanged:
                continue
            if not cordoned:
                return "uncordoned" if node.unschedulable else "released (already schedulable)"
            if keep_cordoned:
                return HANDED_BACK
            return "released, left cordoned (it was before the claim)"
        return f"node {name} kept changing; claim not released"
    except Exception as error:  # noqa: BLE001 - the caller records why (invariant 9)
        return f"could not release {name}: {type(error).__name__}: {error}"


def mark(kube: Kube, name: str, owner: Owner, annotations: dict[str, str]) -> str | None:
    """Set annotations on a node `owner` holds, remembering in the claim what was there, so that
    any release puts it back. Why not, if it could not."""
    for _ in range(ATTEMPTS):
        node = kube.node(name)
        found = parse_claim(node.claim) if node is not None else None
        if node is None or found is None or found.job != owner.job:
            return f"node {name} is not held by {owner.job}"
        before = {k: node.annotations.get(k) for k in annotations if k not in found.restore}
        claim_now = replace(found, restore=found.restore | before)
        try:
            kube.patch_if_unchanged(
                node, annotations={CLAIM_ANNOTATION: claim_now.encode(), **annotations}
            )
        except NodeChanged:
            continue
        return None
    return f"node {name} kept changing; not marked"


def release_all(kube: Kube, names: list[str], owner: Owner) -> dict[str, str]:
    """`release` each node; what became of each ("" stands for an instance without a node)."""
    return {name: release(kube, name, owner) for name in names if name}
