"""The Azure operations on a patch node — install (run command), restart, manual upgrade — each
sent at most once, each waited for with a deadline (invariants 13 and 14).

Intent before send: a phase first records `intent` (`action`, `at`, `expect`, and `by`: the
invocation that recorded it) and returns STARTED, so the rollout stores it before anything is
sent. The step that finds the intent under the same invocation knows nothing was sent in between,
and sends. A step under another invocation (a redelivery after a worker died right after the
send, or a send whose answer was lost) cannot vouch for the send: it judges by what it can see —
a new boot, the model applied, the run command's own status on the instance — and waits while the
operation runs. Only when nothing at all shows it `LAND_WINDOW` after the intent (the send never
reached Azure) is it sent again, once; otherwise the node fails and is given back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.images import Images
from shared.adapters.instances import InstanceLook, Instances, ScriptResult
from shared.adapters.scaleset import AzureCallError, TemporaryAzureError, ThrottledError
from shared.decide.patching import DONE_MARKER
from shared.flows.claims import Owner
from shared.flows.jobs import StepContext
from shared.flows.patch.progress import (
    POLL,
    STARTED,
    Progress,
    enter,
    failed,
    past,
    still_ours,
)

INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "patch_install.sh"
# An operation Azure accepted shows on its instance (Updating, the guest going down, the run
# command's status) well within this: nothing by then means the send never reached Azure.
LAND_WINDOW = timedelta(minutes=5)
SEND_ATTEMPTS = 2  # an operation proven never to have landed is sent once more, no more
SEND_RETRY = timedelta(minutes=15)  # a send refused by throttling is asked again this long
# The setting that bounds each action's wait, and the phase that polls it.
SETTING = {
    "install": "install_timeout_minutes",
    "restart": "ready_timeout_minutes",
    "manualupgrade": "upgrade_timeout_minutes",
}
POLLED = {"installing": "install", "restarting": "restart", "upgrading": "manualupgrade"}
Judge = Callable[[StepContext, Owner, dict[str, Any], dict[str, Any]], Progress]


def _limit(ctx: StepContext, action: str) -> timedelta:
    return timedelta(minutes=getattr(ctx.pool.patch, SETTING[action]))


def _instances(ctx: StepContext) -> Instances:
    return Instances(ctx.services.scale_sets)


def _at(intent: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(intent["at"])


@dataclass(frozen=True)
class _Action:
    name: str  # the intent's action
    done: str  # what it does to the node, for "not ...: why"
    then: str  # the phase that polls it by its token
    expect: Callable[[dict[str, Any]], dict[str, Any]]  # the effect it is judged by
    send: Callable[[StepContext, dict[str, Any]], str]  # sends it; its token
    judge: Judge


def _phase(action: _Action) -> Callable[[StepContext, Owner, dict[str, Any]], Progress]:
    def phase(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
        if why := still_ours(ctx, owner, node):
            return failed(ctx, owner, node, f"not {action.done}: {why}")
        return _once(ctx, owner, node, action)

    return phase


def _once(ctx: StepContext, owner: Owner, node: dict[str, Any], action: _Action) -> Progress:
    """Record the intent (STARTED: stored before the send); send under the same invocation;
    judge by the effect under any other."""
    intent = node.get("intent")
    if intent is None or intent["action"] != action.name:
        return _intend(ctx, node, action.name, action.expect(node), attempt=1)
    if not intent.get("by") or intent["by"] != ctx.invocation:
        return action.judge(ctx, owner, node, intent)
    ctx.before_write()
    intent["by"] = ""  # from here on, whoever finds this intent judges it
    try:
        node["token"] = action.send(ctx, node)
    except ThrottledError as error:  # refused before anything happened: ask again later
        del node["intent"]
        node.setdefault("retry_since", ctx.now.isoformat())
        if ctx.now - datetime.fromisoformat(node["retry_since"]) < SEND_RETRY:
            return Progress(delay=POLL)
        return failed(ctx, owner, node, error)
    except TemporaryAzureError as error:
        # The answer was lost: the operation may be running. Never sent twice: judged by its
        # effect from the next round on.
        intent["answer"] = f"lost ({error.code})"
        return STARTED
    except AzureCallError as error:
        return failed(ctx, owner, node, error)
    node.pop("retry_since", None)
    enter(node, action.then, ctx.now, ctx.now + _limit(ctx, action.name))
    return STARTED


def _intend(
    ctx: StepContext, node: dict[str, Any], action: str, expect: dict[str, Any], *, attempt: int
) -> Progress:
    node["intent"] = {
        "action": action,
        "at": ctx.now.isoformat(),
        "expect": expect,
        "by": ctx.invocation,
        "attempt": attempt,
    }
    node["deadline"] = (ctx.now + LAND_WINDOW + _limit(ctx, action)).isoformat()
    return STARTED


def _unseen(
    ctx: StepContext, owner: Owner, node: dict[str, Any], intent: dict[str, Any], seen: str
) -> Progress:
    """Nothing shows the operation: wait while it may still land; then send it once more, or
    fail."""
    at, action = _at(intent), intent["action"]
    if ctx.now < at + LAND_WINDOW:
        return Progress(delay=POLL)
    if intent.get("attempt", 1) >= SEND_ATTEMPTS:
        why = f"the {action} sent at {intent['at']} shows no effect {LAND_WINDOW} later ({seen})"
        return failed(ctx, owner, node, f"{why}; not sent again")
    ctx.notes.append(
        f"{node['name']}: the {action} of {intent['at']} never reached Azure ({seen}): sent again"
    )
    return _intend(ctx, node, action, intent["expect"], attempt=intent.get("attempt", 1) + 1)


def _running(
    ctx: StepContext, owner: Owner, node: dict[str, Any], intent: dict[str, Any], what: str
) -> Progress:
    """The operation runs, without its token: looked at again until its deadline."""
    action = intent["action"]
    deadline = _at(intent) + _limit(ctx, action)
    node["deadline"] = deadline.isoformat()
    if ctx.now <= deadline:
        return Progress(delay=POLL)
    limit = f"{SETTING[action]} {_limit(ctx, action)}"
    why = f"the {action} sent at {intent['at']} {what} by {deadline.isoformat()} ({limit})"
    return failed(ctx, owner, node, why)


def _look(ctx: StepContext, node: dict[str, Any]) -> InstanceLook:
    return _instances(ctx).look(ctx.pool.vmss_id, node["instance"])


def _judge_restart(
    ctx: StepContext, owner: Owner, node: dict[str, Any], intent: dict[str, Any]
) -> Progress:
    found = ctx.kube.node(node["name"])
    rebooted = (
        found is not None
        and bool(found.boot_id)
        and (found.boot_id != intent["expect"]["boot_id_not"])
    )
    if found is not None and found.ready and not rebooted:
        try:
            updating = _look(ctx, node).instance.provisioning == "Updating"
        except TemporaryAzureError as error:
            return _running(ctx, owner, node, intent, f"could not be seen ({error.code})")
        if not updating:
            return _unseen(ctx, owner, node, intent, "the node is Ready on its old boot")
    # Sent: landing or landed. The node has the last word: Ready on a new boot by the deadline.
    enter(node, "ready", ctx.now, _at(intent) + _limit(ctx, "restart"))
    return Progress(delay=POLL)


def _judge_upgrade(
    ctx: StepContext, owner: Owner, node: dict[str, Any], intent: dict[str, Any]
) -> Progress:
    try:
        look = _look(ctx, node)
    except TemporaryAzureError as error:
        return _running(ctx, owner, node, intent, f"could not be seen ({error.code})")
    if look.instance.latest_model and look.instance.provisioning != "Updating":
        return _upgraded(ctx, node)
    found = ctx.kube.node(node["name"])
    if look.instance.provisioning == "Updating" or (found is not None and not found.ready):
        return _running(ctx, owner, node, intent, "did not finish")
    return _unseen(ctx, owner, node, intent, "the instance is not on the latest model")


def _judge_install(
    ctx: StepContext, owner: Owner, node: dict[str, Any], intent: dict[str, Any]
) -> Progress:
    try:
        script = _look(ctx, node).last_script
    except TemporaryAzureError as error:
        return _running(ctx, owner, node, intent, f"could not be seen ({error.code})")
    if script is None or script.at is None or script.at < _at(intent):
        return _unseen(ctx, owner, node, intent, "no run command on the instance since")
    if script.state == "transitioning":
        return _running(ctx, owner, node, intent, "did not end")
    if script.state != "succeeded":
        return failed(ctx, owner, node, f"the install failed: {script.message[-300:]!r}")
    return _installed(ctx, owner, node, script.stdout, script.stderr)


def _bounded(ctx: StepContext, node: dict[str, Any]) -> None:
    """A polled operation's deadline (a state from before deadlines were kept gets one now)."""
    if "deadline" not in node:
        since = datetime.fromisoformat(node["since"])
        node["deadline"] = (since + _limit(ctx, POLLED[node["phase"]])).isoformat()


def installing(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Poll the install's run command by its token."""
    _bounded(ctx, node)
    try:
        found = _instances(ctx).script_result(ctx.pool.vmss_id, node["instance"], node["token"])
    except TemporaryAzureError as error:
        return _poll_again(ctx, owner, node, f"(its status unknown: {error.code})")
    except AzureCallError as error:
        return failed(ctx, owner, node, error)
    if not isinstance(found, ScriptResult):
        if found.state == "Failed":
            return failed(ctx, owner, node, f"the install failed: {found.code}: {found.message}")
        return _poll_again(ctx, owner, node, "")
    node.pop("token", None)
    return _installed(ctx, owner, node, found.stdout, found.stderr)


def _installed(
    ctx: StepContext, owner: Owner, node: dict[str, Any], stdout: str, stderr: str
) -> Progress:
    if DONE_MARKER not in stdout:
        tail = (stderr or stdout)[-300:]
        return failed(ctx, owner, node, f"the install did not finish: {tail!r}")
    node["installed"] = True
    enter(node, "restart", ctx.now, None)
    return restart(ctx, owner, node)


def restarting(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Poll the restart by its token; past its deadline (or unanswerable) the node decides."""
    _bounded(ctx, node)
    try:
        status = _instances(ctx).restart_status(ctx.pool.vmss_id, node["instance"], node["token"])
    except AzureCallError as error:
        # The restart cannot be asked about now: the node itself will tell (a new boot, Ready),
        # however long the errors last.
        node["note"] = f"restart status unknown: {error.code}"
        status = None
    if status is not None and not status.done and not past(node, ctx.now):
        return Progress(delay=POLL)
    node.pop("token", None)
    if status is not None and status.state == "Failed":
        return failed(ctx, owner, node, f"the restart failed: {status.code}: {status.message}")
    # Done, or not answered by its deadline: the node has the last word, by the same deadline.
    enter(node, "ready", ctx.now, datetime.fromisoformat(node["deadline"]))
    return Progress(delay=POLL)


def upgrading(ctx: StepContext, owner: Owner, node: dict[str, Any]) -> Progress:
    """Poll the manual upgrade by its token, until its deadline."""
    _bounded(ctx, node)
    try:
        status = Images(ctx.services.scale_sets).status(
            "upgrade", node["token"], vmss_id=ctx.pool.vmss_id, instance_id=node["instance"]
        )
    except TemporaryAzureError as error:
        return _poll_again(ctx, owner, node, f"(its status unknown: {error.code})")
    except AzureCallError as error:
        return failed(ctx, owner, node, error)
    if not status.done:
        return _poll_again(ctx, owner, node, "")
    node.pop("token", None)
    if status.state == "Failed":
        return failed(ctx, owner, node, f"the upgrade failed: {status.code}: {status.message}")
    return _upgraded(ctx, node)


def _upgraded(ctx: StepContext, node: dict[str, Any]) -> Progress:
    ready_by = timedelta(minutes=ctx.pool.patch.ready_timeout_minutes)
    enter(node, "ready", ctx.now, ctx.now + ready_by)
    return Progress(delay=POLL)


def _poll_again(ctx: StepContext, owner: Owner, node: dict[str, Any], status: str) -> Progress:
    """Poll again — or, past the deadline (however the polls went), fail naming it."""
    if not past(node, ctx.now):
        return Progress(delay=POLL)
    action = POLLED[node["phase"]]
    limit = f"{SETTING[action]} {_limit(ctx, action)}"
    why = f"the {action} did not end by its deadline {node['deadline']} ({limit}) {status}"
    return failed(ctx, owner, node, why.strip())


# Run patch_install.sh on the drained node (run command).
install = _phase(
    _Action(
        "install",
        "installed",
        "installing",
        lambda node: {"script": "succeeded", "stdout": DONE_MARKER},
        lambda ctx, node: _instances(ctx).begin_run_script(
            ctx.pool.vmss_id, node["instance"], INSTALL_SCRIPT.read_text()
        ),
        _judge_install,
    )
)
# Restart the drained node's instance (a graceful OS reboot).
restart = _phase(
    _Action(
        "restart",
        "restarted",
        "restarting",
        lambda node: {"boot_id_not": node.get("boot_id")},
        lambda ctx, node: _instances(ctx).begin_restart(ctx.pool.vmss_id, node["instance"]),
        _judge_restart,
    )
)
# Move the instance to the scale set's latest model (manualupgrade: it reboots onto it).
upgrade = _phase(
    _Action(
        "manualupgrade",
        "upgraded",
        "upgrading",
        lambda node: {"latest_model": True, "boot_id_not": node.get("boot_id")},
        lambda ctx, node: Images(ctx.services.scale_sets).begin(
            "upgrade", vmss_id=ctx.pool.vmss_id, instance_id=node["instance"]
        ),
        _judge_upgrade,
    )
)
