"""One node's patch, as a small state machine the patch rollout advances a step at a time:
claim → mark scale-down-disabled → drain → install updates → restart → Ready on a new boot
(and the expected kernel) → soak → uncordon, `poolkeeper.io/last-patched`, annotation removed.

Each phase does one short thing. The Azure operations (install, restart, manual upgrade) are
each sent at most once, their intent stored before the send (`shared.flows.patch.operations`);
every wait has a deadline, kept in the node's state. Every way out gives the node back, or says
why not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.adapters.kube import LAST_PATCHED_ANNOTATION as LAST_PATCHED
from shared.adapters.kube import SCALE_DOWN_DISABLED, Node
from shared.decide.drain import DrainOptions
from shared.decide.patching import kernel_order, why_not_take
from shared.flows.claims import Claimed, Owner, claim, holds, mark, release
from shared.flows.drain import (
    GOING_GRACE,
    Drained,
    DrainFailed,
    DrainState,
    continue_drain,
    start_drain,
)
from shared.flows.jobs import StepContext
from shared.flows.patch import operations
from shared.flows.patch.progress import POLL, Progress, enter, failed

PATCH_STATUS_LABEL = "poolkeeper.io/patch-status"


def _take(node: Node) -> str | None:
    return why_not_take(unschedulable=node.unschedulable, ready=node.ready)


def begin(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Take the node: re-checked and claimed in one conditional write (which cordons), marked
    for the autoscaler, its drain started. A node someone cordoned, another job holds, or that
    is not Ready any more since the plan is not taken (skipped: "not reached", with why)."""
    kube = ctx.kube
    ctx.before_write()
    claimed = claim(kube, node["name"], owner, ctx.now, unless=_take)
    if not isinstance(claimed, Claimed):
        return Progress(outcome=claimed.reason, skipped=True)
    node["boot_id"] = claimed.node.boot_id
    # The claim remembers what was there, and any release puts it back (someone else's "true"
    # stays; ours goes, even when reconcile releases the node after this job ended).
    why_not = mark(kube, node["name"], owner, {SCALE_DOWN_DISABLED: "true"})
    if why_not:
        return Progress(outcome=f"not patched: {why_not}; {release(kube, node['name'], owner)}")
    timeout = timedelta(minutes=ctx.pool.patch.drain_timeout_minutes)
    step = start_drain(
        kube,
        node["name"],
        owner=owner,
        now=ctx.now,
        timeout=timeout,
        options=DrainOptions(delete_emptydir_data=True),
    )
    # The drain ends itself at its timeout (plus the grace for pods already going); a round or
    # two later at the latest, the node moves.
    enter(node, "drain", ctx.now, ctx.now + timeout + GOING_GRACE + 2 * POLL)
    return _drained(ctx, owner, node, step)


def advance(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """One short step of the node's patch, by its phase."""
    return PHASES[node["phase"]](ctx, owner, node)


def _drain(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    ctx.before_write()
    step = continue_drain(ctx.kube, DrainState.from_json(node["drain"]), now=ctx.now, owner=owner)
    return _drained(ctx, owner, node, step)


def _drained(ctx: StepContext, owner: Owner, node: dict[str, Any], step: Any) -> Progress:
    node["drain"] = step.state.to_json()
    if isinstance(step, DrainFailed):
        return _undrainable(ctx, owner, node, step)
    if not isinstance(step, Drained):
        return Progress(delay=step.delay)
    node.pop("drain", None)  # drained: its round state is not needed any more
    wants_updates = ctx.pool.patch.mode == "updates" and node.get("pending", 0) > 0
    phase = "upgrade" if node.get("upgrade") else "install" if wants_updates else "restart"
    enter(node, phase, ctx.now, None)
    return advance(ctx, owner, node)


def _undrainable(
    ctx: StepContext, owner: Owner, node: dict[str, Any], step: DrainFailed
) -> Progress:
    """AKS's two behaviours: `skip` gives the node back; `quarantine` keeps it cordoned and
    labelled. Either way the rollout goes on and the report says why."""
    kube = ctx.kube
    why = f"{step.reason}: " + "; ".join(step.remaining[:5])
    ctx.before_write()
    found = kube.node(node["name"])
    if found is None or not holds(found, owner):  # someone took it back: theirs, untouched
        return Progress(outcome=f"not patched: {why}; {release(kube, node['name'], owner)}")
    if ctx.pool.patch.undrainable == "quarantine":
        kube.label(node["name"], {PATCH_STATUS_LABEL: "quarantined"})
        released = release(kube, node["name"], owner, keep_cordoned=True)
        return Progress(
            outcome=f"quarantined (cordoned, labelled): drain failed: {why}; {released}"
        )
    return Progress(outcome=f"skipped: drain failed: {why}; {release(kube, node['name'], owner)}")


def _ready(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Back: Ready, on a new boot, running the kernel the updates brought (if any)."""
    found = ctx.kube.node(node["name"])
    expected = node.get("new_kernel") if node.get("installed") else None
    if (
        found is not None
        and found.ready
        and found.boot_id
        and found.boot_id != node.get("boot_id")
        and (not expected or kernel_order(found.kernel) >= kernel_order(expected))
    ):
        node["kernel"] = found.kernel
        until = ctx.now + timedelta(minutes=ctx.pool.patch.soak_minutes)
        node["soak_until"] = until.isoformat()
        enter(node, "soak", ctx.now, until + 8 * POLL)  # it is looked at every 4 polls
        return advance(ctx, owner, node)
    ready_by = timedelta(minutes=ctx.pool.patch.ready_timeout_minutes)
    deadline = datetime.fromisoformat(
        node.get("deadline") or (datetime.fromisoformat(node["since"]) + ready_by).isoformat()
    )
    if ctx.now < deadline:
        return Progress(delay=POLL)
    seen = (
        "gone"
        if found is None
        else f"Ready={found.ready}, boot {found.boot_id or '?'}, kernel {found.kernel or '?'}"
    )
    why = (
        f"not back Ready on a new boot{f' with kernel {expected}' if expected else ''} by "
        f"{deadline.isoformat()} ({seen})"
    )
    return failed(ctx, owner, node, why)


def _soak(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    found = ctx.kube.node(node["name"])
    if found is None or not found.ready:
        return failed(ctx, owner, node, "became NotReady while soaking")
    until = datetime.fromisoformat(node["soak_until"])
    if ctx.now < until:
        return Progress(delay=min(POLL * 4, until - ctx.now))
    ctx.before_write()
    if node.get("upgrade"):
        # On the image's patch level now, not patched here: no last-patched (a node stamped
        # so would count as freshly patched, and donate the same image again next night).
        released = release(ctx.kube, node["name"], owner)
        return Progress(outcome=f"patched: on the latest model, kernel {found.kernel}; {released}")
    ctx.kube.annotate(node["name"], {LAST_PATCHED: ctx.now.isoformat()})
    released = release(ctx.kube, node["name"], owner)
    # What the pool status shows for the node, until its next check.
    ctx.services.tables.put_patch_checks(
        ctx.pool.name,
        {
            node["name"]: {
                "checked_at": ctx.now.isoformat(),
                "kernel": found.kernel,
                "boot_id": found.boot_id,
                "reboot_required": False,
                "pending": 0 if node.get("installed") else node.get("pending", 0),
                "new_kernel": None,
                "patched_at": ctx.now.isoformat(),
            }
        },
    )
    return Progress(outcome=f"patched: kernel {found.kernel}, new boot; {released}")


PHASES = {
    "claim": begin,
    "drain": _drain,
    "install": operations.install,
    "installing": operations.installing,
    "upgrade": operations.upgrade,
    "upgrading": operations.upgrading,
    "restart": operations.restart,
    "restarting": operations.restarting,
    "ready": _ready,
    "soak": _soak,
}
