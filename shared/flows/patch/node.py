"""One node's patch, as a small state machine the patch rollout advances a step at a time:
claim → mark scale-down-disabled → drain → install updates → restart → Ready on a new boot
(and the expected kernel) → soak → uncordon, `poolkeeper.io/last-patched`, annotation removed.

Each phase does one short thing. A phase that starts an Azure operation returns STARTED, so the
rollout records the operation's token before anything else happens (a redelivered message then
polls it; it never starts it twice). Every way out gives the node back, or says why not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.images import Images
from shared.adapters.instances import Instances, ScriptResult
from shared.adapters.kube import LAST_PATCHED_ANNOTATION as LAST_PATCHED
from shared.adapters.kube import SCALE_DOWN_DISABLED
from shared.adapters.scaleset import AzureCallError, TemporaryAzureError, ThrottledError
from shared.decide.drain import DrainOptions
from shared.decide.patching import DONE_MARKER, kernel_order
from shared.flows.claims import Claimed, Owner, claim, holds, mark, release, why_not_idle
from shared.flows.drain import Drained, DrainFailed, DrainState, continue_drain, start_drain
from shared.flows.jobs import StepContext

PATCH_STATUS_LABEL = "poolkeeper.io/patch-status"
POLL = timedelta(seconds=15)
INSTALL_DEADLINE = timedelta(minutes=90)  # Azure's own limit for a run command
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "patch_install.sh"


@dataclass(frozen=True)
class Progress:
    """What one advance did: come back after `delay`; STARTED (record now); or the node ended
    (`outcome` set), and `halt` says the rollout must take no further node down."""

    delay: timedelta | None = None
    started: bool = False
    outcome: str | None = None
    halt: bool = False


STARTED = Progress(started=True)


def begin(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Take the node: claim (which cordons), mark it for the autoscaler, start its drain."""
    kube = ctx.services.kube
    ctx.before_write()
    claimed = claim(kube, node["name"], owner, ctx.now)
    if not isinstance(claimed, Claimed):
        return Progress(outcome=f"not patched: {claimed.reason}")
    node["boot_id"] = claimed.node.boot_id
    # The claim remembers what was there, and any release puts it back (someone else's "true"
    # stays; ours goes, even when reconcile releases the node after this job ended).
    why_not = mark(kube, node["name"], owner, {SCALE_DOWN_DISABLED: "true"})
    if why_not:
        return Progress(outcome=f"not patched: {why_not}; {release(kube, node['name'], owner)}")
    step = start_drain(
        kube,
        node["name"],
        owner=owner,
        now=ctx.now,
        timeout=timedelta(minutes=ctx.pool.patch.drain_timeout_minutes),
        options=DrainOptions(delete_emptydir_data=True),
    )
    node["phase"] = "drain"
    return _drained(ctx, owner, node, step)


def advance(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """One short step of the node's patch, by its phase."""
    return PHASES[node["phase"]](ctx, owner, node)


def _drain(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    ctx.before_write()
    step = continue_drain(ctx.services.kube, DrainState(**node["drain"]), now=ctx.now, owner=owner)
    return _drained(ctx, owner, node, step)


def _drained(ctx: StepContext, owner: Owner, node: dict[str, Any], step: Any) -> Progress:
    node["drain"] = step.state.to_json()
    if isinstance(step, DrainFailed):
        return _undrainable(ctx, owner, node, step)
    if not isinstance(step, Drained):
        return Progress(delay=step.delay)
    node.pop("drain", None)  # drained: its round state is not needed any more
    wants_updates = ctx.pool.patch.mode == "updates" and node.get("pending", 0) > 0
    node["phase"] = "upgrade" if node.get("upgrade") else "install" if wants_updates else "restart"
    return advance(ctx, owner, node)


def _undrainable(
    ctx: StepContext, owner: Owner, node: dict[str, Any], step: DrainFailed
) -> Progress:
    """AKS's two behaviours: `skip` gives the node back; `quarantine` keeps it cordoned and
    labelled. Either way the rollout goes on and the report says why."""
    kube = ctx.services.kube
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


def _instances(ctx: StepContext) -> Instances:
    return Instances(ctx.services.scale_sets)


def _still_ours(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> str | None:
    """Why the node must not be worked on now: no longer ours, uncordoned, or pods back."""
    return why_not_idle(ctx.services.kube, node["name"], owner)


def _install(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    if why := _still_ours(ctx, owner, node):
        return _failed(ctx, owner, node, f"not installed: {why}")
    node["installed"] = True
    return _start(
        ctx,
        owner,
        node,
        lambda: _instances(ctx).begin_run_script(
            ctx.pool.vmss_id, node["instance"], INSTALL_SCRIPT.read_text()
        ),
        then="installing",
    )


def _start(
    ctx: StepContext,
    owner: Owner,
    node: dict[str, Any],
    begin: Callable[[], str],
    *,
    then: str,
) -> Progress:
    """Start an Azure operation on the node; STARTED once its token is in the node's state."""
    ctx.before_write()
    try:
        node["token"] = begin()
    except ThrottledError as error:  # refused before anything happened: ask again later
        return Progress(delay=POLL) if _retry(node, ctx) else _failed(ctx, owner, node, error)
    except TemporaryAzureError as error:
        # The answer was lost: the operation may be running. Never send it twice; a restart or
        # an upgrade (which reboots) is judged by the node (a new boot, Ready), an install by its
        # retry (Azure refuses a second script while one runs).
        if then in ("restarting", "upgrading"):
            node["phase"], node["since"] = "ready", ctx.now.isoformat()
            node["note"] = f"{then[:-3]} answer lost ({error.code}): judged by the node's boot"
            return STARTED
        return Progress(delay=POLL) if _retry(node, ctx) else _failed(ctx, owner, node, error)
    except AzureCallError as error:
        return _failed(ctx, owner, node, error)
    node["phase"], node["since"] = then, ctx.now.isoformat()
    return STARTED


def _upgrade(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Move the instance to the scale set's latest model (manualupgrade: it reboots onto it)."""
    if why := _still_ours(ctx, owner, node):
        return _failed(ctx, owner, node, f"not upgraded: {why}")
    return _start(
        ctx,
        owner,
        node,
        lambda: Images(ctx.services.scale_sets).begin(
            "upgrade", vmss_id=ctx.pool.vmss_id, instance_id=node["instance"]
        ),
        then="upgrading",
    )


def _upgrading(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    try:
        status = Images(ctx.services.scale_sets).status(
            "upgrade", node["token"], vmss_id=ctx.pool.vmss_id, instance_id=node["instance"]
        )
    except TemporaryAzureError:
        return Progress(delay=POLL)
    except AzureCallError as error:
        return _failed(ctx, owner, node, error)
    if not status.done:
        return Progress(delay=POLL)
    node.pop("token", None)
    if status.state == "Failed":
        return _failed(ctx, owner, node, f"the upgrade failed: {status.code}: {status.message}")
    node["phase"], node["since"] = "ready", ctx.now.isoformat()
    return Progress(delay=POLL)


def _installing(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    try:
        found = _instances(ctx).script_result(ctx.pool.vmss_id, node["instance"], node["token"])
    except TemporaryAzureError:
        return Progress(delay=POLL)
    except AzureCallError as error:
        return _failed(ctx, owner, node, error)
    if not isinstance(found, ScriptResult):
        if found.state == "Failed":
            return _failed(ctx, owner, node, f"the install failed: {found.code}: {found.message}")
        if ctx.now - datetime.fromisoformat(node["since"]) > INSTALL_DEADLINE:
            return _failed(ctx, owner, node, f"the install did not end within {INSTALL_DEADLINE}")
        return Progress(delay=POLL)
    node.pop("token", None)
    if DONE_MARKER not in found.stdout:
        tail = (found.stderr or found.stdout)[-300:]
        return _failed(ctx, owner, node, f"the install did not finish: {tail!r}")
    node["phase"] = "restart"
    return advance(ctx, owner, node)


def _restart(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    if why := _still_ours(ctx, owner, node):
        return _failed(ctx, owner, node, f"not restarted: {why}")
    return _start(
        ctx,
        owner,
        node,
        lambda: _instances(ctx).begin_restart(ctx.pool.vmss_id, node["instance"]),
        then="restarting",
    )


def _restarting(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    try:
        status = _instances(ctx).restart_status(ctx.pool.vmss_id, node["instance"], node["token"])
    except TemporaryAzureError:
        return Progress(delay=POLL)
    except AzureCallError as error:
        # The restart cannot be asked about: the node itself will tell (new boot, Ready).
        node["phase"], node["note"] = "ready", f"restart status unknown: {error.code}"
        return Progress(delay=POLL)
    ready_by = timedelta(minutes=ctx.pool.patch.ready_timeout_minutes)
    if not status.done and ctx.now - datetime.fromisoformat(node["since"]) <= ready_by:
        return Progress(delay=POLL)
    node.pop("token", None)
    if not status.done:  # the node, not the operation, has the last word (its deadline)
        node["phase"] = "ready"
        return Progress(delay=POLL)
    if status.state == "Failed":
        return _failed(ctx, owner, node, f"the restart failed: {status.code}: {status.message}")
    node["phase"] = "ready"
    return Progress(delay=POLL)


def _ready(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Back: Ready, on a new boot, running the kernel the updates brought (if any)."""
    found = ctx.services.kube.node(node["name"])
    expected = node.get("new_kernel") if node.get("installed") else None
    if (
        found is not None
        and found.ready
        and found.boot_id
        and found.boot_id != node.get("boot_id")
        and (not expected or kernel_order(found.kernel) >= kernel_order(expected))
    ):
        node["kernel"] = found.kernel
        node["phase"] = "soak"
        node["soak_until"] = (ctx.now + timedelta(minutes=ctx.pool.patch.soak_minutes)).isoformat()
        return advance(ctx, owner, node)
    deadline = datetime.fromisoformat(node["since"]) + timedelta(
        minutes=ctx.pool.patch.ready_timeout_minutes
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
    return _failed(ctx, owner, node, why)


def _soak(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    found = ctx.services.kube.node(node["name"])
    if found is None or not found.ready:
        return _failed(ctx, owner, node, "became NotReady while soaking")
    until = datetime.fromisoformat(node["soak_until"])
    if ctx.now < until:
        return Progress(delay=min(POLL * 4, until - ctx.now))
    ctx.before_write()
    if node.get("upgrade"):
        # On the image's patch level now, not patched here: no last-patched (a node stamped
        # so would count as freshly patched, and donate the same image again next night).
        released = release(ctx.services.kube, node["name"], owner)
        return Progress(outcome=f"patched: on the latest model, kernel {found.kernel}; {released}")
    ctx.services.kube.annotate(node["name"], {LAST_PATCHED: ctx.now.isoformat()})
    released = release(ctx.services.kube, node["name"], owner)
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


def _retry(node: dict[str, Any], ctx: StepContext) -> bool:
    """A temporary error starting an operation: retried for a while, then the node fails."""
    node.setdefault("retry_since", ctx.now.isoformat())
    return ctx.now - datetime.fromisoformat(node["retry_since"]) < timedelta(minutes=15)


def _failed(
    ctx: StepContext, owner: Owner, node: dict[str, Any], error: AzureCallError | str
) -> Progress:
    """The node did not make it: give it back, say why, and halt the rollout."""
    why = error if isinstance(error, str) else f"{error.code}: {error.message}"
    ctx.before_write()
    released = release(ctx.services.kube, node["name"], owner)
    return Progress(outcome=f"failed in {node['phase']}: {why}; {released}", halt=True)


PHASES = {
    "claim": lambda ctx, owner, node: begin(ctx, owner, node),
    "drain": _drain,
    "install": _install,
    "upgrade": _upgrade,
    "upgrading": _upgrading,
    "installing": _installing,
    "restart": _restart,
    "restarting": _restarting,
    "ready": _ready,
    "soak": _soak,
}
