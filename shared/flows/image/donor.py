"""The donor's part of an image job: claim (which cordons) and mark it for the autoscaler → drain →
clean its identity and power it off from inside → stop → snapshot its OS disk → start it → Ready
on a new boot → released (uncordoned, the annotation put back). Every way out gives the donor
back: `give_back` starts it if it is stopped and releases the claim.

Kamino's order (A1 in the reference), with two differences: nothing runs on the donor until it is
drained, still ours and empty (a fresh check), and the donor is out of service only from the
cordon to its own Ready, while the image version replicates afterwards.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from shared.adapters.instances import Instances, ScriptResult
from shared.adapters.kube import SCALE_DOWN_DISABLED
from shared.adapters.scaleset import AzureCallError, OperationStatus, TemporaryAzureError
from shared.decide.drain import DrainOptions
from shared.flows.claims import Claimed, Owner, claim, mark, release, why_not_idle
from shared.flows.drain import Drained, DrainFailed, DrainState, continue_drain, start_drain
from shared.flows.image.ops import POLL, Seen, images, operation, send_once, tags
from shared.flows.jobs import StepContext
from shared.flows.retries import temporary_wait
from shared.jobs import Fail, Next, Outcome, Wait

CLEAN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "image_clean.sh"
CLEAN_DONE = "== done"  # the script's last section (run command reports no exit code)
DRAIN_TIMEOUT = timedelta(minutes=15)
CLEAN_DEADLINE = timedelta(minutes=10)
BACK_DEADLINE = timedelta(minutes=15)
SELF_POWER_OFF = timedelta(minutes=2)  # the script powers off 5 s after its answer
STOP_POLL = timedelta(seconds=5)
# A power-off, start or restart whose answer was lost shows its effect within this, or never will;
# one under way (stopping, starting) has ended within the longer bound.
POWER_SETTLE = timedelta(minutes=10)
POWER_UNDER_WAY = timedelta(minutes=30)


def take(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Claim the donor (cordon), mark it scale-down-disabled, start its drain."""
    kube, donor, owner = ctx.kube, state["donor"], Owner.of(ctx.job)
    ctx.before_write()
    claimed = claim(kube, donor["name"], owner, ctx.now)
    if not isinstance(claimed, Claimed):
        return Fail(f"donor {donor['name']} not taken: {claimed.reason}", _report(state))
    donor["taken_at"] = ctx.now.isoformat()
    donor["boot_id"] = claimed.node.boot_id
    why_not = mark(kube, donor["name"], owner, {SCALE_DOWN_DISABLED: "true"})
    if why_not:
        return Fail(f"donor not marked: {why_not}", _report(state) | give_back(ctx, state))
    step = start_drain(
        kube,
        donor["name"],
        owner=owner,
        now=ctx.now,
        timeout=DRAIN_TIMEOUT,
        options=DrainOptions(delete_emptydir_data=True),
    )
    return _drained(ctx, state, step)


def drain(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    ctx.before_write()
    step = continue_drain(
        ctx.kube,
        DrainState.from_json(state["donor"]["drain"]),
        now=ctx.now,
        owner=Owner.of(ctx.job),
    )
    return _drained(ctx, state, step)


def _drained(ctx: StepContext, state: dict[str, Any], step: Any) -> Outcome:
    state["donor"]["drain"] = step.state.to_json()
    if isinstance(step, DrainFailed):
        why = f"drain of donor {state['donor']['name']} failed: {step.reason}"
        return Fail(why, _report(state) | {"remaining": step.remaining} | give_back(ctx, state))
    if not isinstance(step, Drained):
        return Wait("drain_donor", step.delay, state, reason="draining the donor")
    state["donor"].pop("drain", None)
    return Next("clean", state)


def clean(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Run the clean-up script (identity emptied, then the OS powers itself off) — only on a
    donor that is still ours, cordoned and empty."""
    donor = state["donor"]
    run = Instances(ctx.services.scale_sets)
    if "clean_token" not in donor:
        why = why_not_idle(ctx.kube, donor["name"], Owner.of(ctx.job))
        if why:
            return Fail(f"donor not captured: {why}", _report(state) | give_back(ctx, state))
        if "clean_since" not in donor:
            # Recorded before the send: a worker that dies after sending, before the token is
            # recorded, leaves this mark, and the next delivery asks the instance instead.
            donor["clean_since"] = ctx.now.isoformat()
            return Next("clean", state)
        try:
            power = images(ctx).donor_disk(ctx.pool.vmss_id, donor["instance"]).power
        except TemporaryAzureError as error:
            return temporary_wait("clean", state, error, ctx)
        if power in ("stopping", "stopped"):  # the script powers off only as its very last act
            ctx.notes.append("the clean-up's answer was lost; it ran to its power-off")
            return Next("power_off", state)
        ctx.before_write()
        try:
            donor["clean_token"] = run.begin_run_script(
                ctx.pool.vmss_id, donor["instance"], CLEAN_SCRIPT.read_text()
            )
        except TemporaryAzureError as error:
            return temporary_wait("clean", state, error, ctx)
        except AzureCallError as error:
            if error.status == 409 and not _late(ctx, donor):  # a lost send's script still runs
                return Wait("clean", POLL, state, reason=f"run command busy: {error.code}")
            return _lost_donor(ctx, state, f"clean-up not started: {error.code}: {error.message}")
        return Next("clean", state)
    try:
        found = run.script_result(ctx.pool.vmss_id, donor["instance"], donor["clean_token"])
    except TemporaryAzureError as error:
        return temporary_wait("clean", state, error, ctx)
    except AzureCallError as error:
        return _lost_donor(ctx, state, f"clean-up status refused: {error.code}")
    if not isinstance(found, ScriptResult):
        late = _late(ctx, donor)
        if found.state == "Failed" or late:
            why = f"{found.code}: {found.message}" if found.state == "Failed" else "no answer"
            return _lost_donor(ctx, state, f"clean-up did not finish: {why}")
        return Wait("clean", POLL, state, reason="cleaning the donor's identity")
    if CLEAN_DONE not in found.stdout:
        tail = (found.stderr or found.stdout)[-300:]
        return _lost_donor(ctx, state, f"clean-up did not finish: {tail!r}")
    return Next("power_off", state)


def _late(ctx: StepContext, donor: dict[str, Any]) -> bool:
    return ctx.now - datetime.fromisoformat(donor["clean_since"]) > CLEAN_DEADLINE


def _lost_donor(ctx: StepContext, state: dict[str, Any], why: str) -> Outcome:
    """The capture cannot go on: start the donor again (its clean-up may have run) and give it
    back once it is up; then fail."""
    state["donor"]["failure"] = why
    return Next("start_donor", state)


def power_off(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Wait for the OS to power itself off (the script's last act): the instance view says
    stopped, and the disk is quiet for the snapshot. Azure's own stop takes minutes (Kamino's
    measured 2-3), so it is only the fallback for a guest that did not stop by itself: sent once
    (intent first; a redelivery judges by the power state)."""
    donor = state["donor"]
    args = {"vmss_id": ctx.pool.vmss_id, "instance_id": donor["instance"]}
    if "power_off" not in state.get("ops", {}) and "intent" not in state.get("power_off", {}):
        donor.setdefault("cleaned_at", ctx.now.isoformat())
        try:
            power = images(ctx).donor_disk(ctx.pool.vmss_id, donor["instance"]).power
        except TemporaryAzureError as error:
            return temporary_wait("power_off", state, error, ctx)
        if power == "stopped":
            return Next("snapshot", state)
        if ctx.now - datetime.fromisoformat(donor["cleaned_at"]) < SELF_POWER_OFF:
            return Wait(
                "power_off", STOP_POLL, state, reason=f"waiting for the OS to stop ({power})"
            )
        ctx.notes.append(f"the OS did not stop within {SELF_POWER_OFF}: Azure stops it")
    got = send_once(
        ctx,
        state,
        "power_off",
        "power_off",
        lambda: args,
        step="power_off",
        expect={"power": "stopped"},
        observe=lambda: _power_seen(ctx, donor, done="stopped", under_way="stopping"),
        settle=POWER_SETTLE,
        under_way=POWER_UNDER_WAY,
        poll=STOP_POLL,
    )
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        return _lost_donor(ctx, state, f"power-off failed: {got.code}: {got.message}")
    return Next("snapshot", state)


def _power_seen(ctx: StepContext, donor: dict[str, Any], *, done: str, under_way: str) -> Seen:
    power = images(ctx).donor_disk(ctx.pool.vmss_id, donor["instance"]).power
    return "done" if power == done else "under way" if power == under_way else "absent"


def snapshot(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Snapshot the stopped OS disk (a full copy, tagged with where it came from)."""
    donor, names = state["donor"], state["names"]
    if "snapshot" not in state.get("ops", {}):
        # A send whose token was never recorded (the worker died) made it already: adopt it.
        try:
            made = images(ctx).snapshot_state(names["snapshot_id"])
        except TemporaryAzureError as error:
            return temporary_wait("snapshot", state, error, ctx)
        if made == "Succeeded":
            state.setdefault("ops", {})["snapshot"] = {"ended": "Succeeded"}
        elif made is not None and made != "Failed":
            return Wait("snapshot", POLL, state, reason=f"snapshot {made}")
    args = {
        "snapshot_id": names["snapshot_id"],
        "location": donor["location"],
        "disk_id": donor["disk_id"],
        "hyper_v_generation": donor["hyper_v"],
        "tags": tags(ctx) | {"built-from": donor["name"]},
    }
    got = operation(ctx, state, "snapshot", "create_snapshot", args, step="snapshot")
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        donor["failure"] = f"snapshot failed: {got.code}: {got.message}"
    return Next("start_donor", state)


def start(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Start the stopped donor. After a failed capture it may still be running, its identity
    perhaps half cleaned: then it is restarted, so that it boots into a whole one. Either is
    sent once (intent first; a redelivery judges by the power state or the node's boot id)."""
    donor = state["donor"]
    args = {"vmss_id": ctx.pool.vmss_id, "instance_id": donor["instance"]}
    if "how" not in donor:
        how = "start"
        if donor.get("failure"):
            try:
                power = images(ctx).donor_disk(ctx.pool.vmss_id, donor["instance"]).power
            except TemporaryAzureError as error:
                return temporary_wait("start_donor", state, error, ctx)
            how = "restart" if power in ("running", "starting") else "start"
        if how == "restart":
            node = ctx.kube.node(donor["name"])
            donor["boot_before_restart"] = node.boot_id if node else ""
        donor["how"] = how
    if donor["how"] == "restart":
        expect: dict[str, Any] = {"boot_id_other_than": donor["boot_before_restart"]}
        observe = partial(_rebooted, ctx, donor)
    else:
        expect = {"power": "running"}
        observe = partial(_power_seen, ctx, donor, done="running", under_way="starting")
    got = send_once(
        ctx,
        state,
        "start",
        donor["how"],
        lambda: args,
        step="start_donor",
        expect=expect,
        observe=observe,
        settle=POWER_SETTLE,
        under_way=POWER_UNDER_WAY,
    )
    if not isinstance(got, OperationStatus):
        return got
    if got.state == "Failed":
        state["donor"]["start_error"] = f"{got.code}: {got.message}"
    state["donor"]["started_at"] = ctx.now.isoformat()
    return Next("donor_back", state)


def _rebooted(ctx: StepContext, donor: dict[str, Any]) -> Seen:
    node = ctx.kube.node(donor["name"])
    rebooted = node is not None and node.boot_id not in ("", donor["boot_before_restart"])
    return "done" if rebooted else "absent"


def back(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """The donor Ready on a new boot: give it back. Not back by the deadline: give it back
    anyway (uncordoned, it takes no pods while NotReady) and say so."""
    donor = state["donor"]
    found = ctx.kube.node(donor["name"])
    up = found is not None and found.ready and found.boot_id and found.boot_id != donor["boot_id"]
    late = ctx.now - datetime.fromisoformat(donor["started_at"]) > BACK_DEADLINE
    if not up and not late:
        return Wait("donor_back", POLL, state, reason=f"waiting for {donor['name']} to be Ready")
    ctx.before_write()
    if not up:  # a power-off that came late (a clean-up answered after its deadline): start it
        donor["restart"] = give_back(ctx, state).get("donor", {})
    released = donor.get("released") or release(ctx.kube, donor["name"], Owner.of(ctx.job))
    donor["released"] = released
    donor["out_of_service"] = (ctx.now - datetime.fromisoformat(donor["taken_at"])).total_seconds()
    if not up:
        donor["note"] = f"not Ready on a new boot within {BACK_DEADLINE}; released ({released})"
        ctx.notes.append(f"donor {donor['name']}: {donor['note']}")
    if donor.get("failure"):  # what the capture made (a failed snapshot) goes first
        state["failed"] = f"capture failed: {donor['failure']}"
        return Next("cleanup", state)
    return Next("version", state)


def give_back(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Best effort, for every path that gives up: a stopped donor is started (not waited for)
    and the claim released, which uncordons it and removes the annotation."""
    donor = state.get("donor") or {}
    if not donor.get("taken_at") or donor.get("released"):
        return {}
    undone: dict[str, Any] = {}
    try:
        disk = images(ctx).donor_disk(ctx.pool.vmss_id, donor["instance"])
        if disk.power in ("stopped", "stopping", "deallocated"):
            images(ctx).begin("start", vmss_id=ctx.pool.vmss_id, instance_id=donor["instance"])
            undone["started"] = donor["instance"]
    except AzureCallError as error:
        undone["start"] = f"not started: {error.code}: {error.message}"
    undone["released"] = release(ctx.kube, donor["name"], Owner.of(ctx.job))
    donor["released"] = undone["released"]
    return {"donor": undone}


def _report(state: dict[str, Any]) -> dict[str, Any]:
    return {"plan": state.get("plan", {}), "donor": state.get("donor", {}).get("name")}
