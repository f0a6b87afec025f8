"""Patch jobs (`patch-jobs`): a rolling OS patch of a pool, kured's job done faster and safer.

Steps: `check` runs the check script on every candidate node (run command, in parallel) →
`await_checks` collects the answers and plans (pure: order, and why each node is left out) →
`rollout` takes nodes down at most `max_unavailable` at a time, one zone at a time, each only
when no blocker holds it and the pool can take one more node out (headroom), and advances every
node in flight a step (`shared.flows.patch.node`). It stops taking nodes when the window ends,
and halts when a node does not come back. The timer enqueues one job per pool in its window.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.instances import Instances, ScriptResult
from shared.adapters.ledger import AlertLog
from shared.adapters.notify import Notifier
from shared.adapters.scaleset import AzureCallError, TemporaryAzureError
from shared.decide.claims import parse_claim
from shared.decide.counting import InstanceState
from shared.decide.patching import (
    CheckUnreadable,
    NodeCheck,
    PatchCandidate,
    blockers,
    in_window,
    parse_check,
    patch_headroom,
    plan_patch,
    window_end,
)
from shared.flows.capacity.evaluation import hourly_usage, pool_thresholds
from shared.flows.claims import Owner, release_all
from shared.flows.jobs import Flow, StepContext, enqueue_once, register
from shared.flows.patch import node as patch_node
from shared.flows.patch.progress import Progress
from shared.flows.retries import temporary_wait
from shared.flows.truth import read_truth
from shared.jobs import Done, Fail, JobKind, Next, Outcome, PatchParams, Wait

log = logging.getLogger("poolkeeper.patch")

CHECK_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "patch_check.sh"
CHECK_POLL = timedelta(seconds=20)
CHECK_DEADLINE = timedelta(minutes=30)
CHECK_BATCH = 25
HISTORY = 12  # steps kept per node in the job's state
BLOCKED_RETRY = timedelta(minutes=1)
BLOCKED_GIVE_UP = timedelta(hours=2)  # then the job ends; the next window's job tries again
KURED_LOCK = "weave.works/kured-node-lock"
KURED_REBOOT_NEEDED = "weave.works/kured-most-recent-reboot-needed"


def _params(ctx: StepContext) -> PatchParams:
    params = ctx.job.typed_params()
    assert isinstance(params, PatchParams)
    return params


def _check(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Fresh read; start the check script on every node that may be patched."""
    try:
        truth = read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        return temporary_wait("check", state, error, ctx)
    if truth.nodes is None:
        return Fail("cannot patch: the cluster's nodes could not be read (fail safe)")
    only = set(_params(ctx).nodes)
    upgrade = _params(ctx).action == "upgrade"
    views = {n.name: n for n in truth.nodes}
    nodes: dict[str, Any] = {}
    for instance_id, seen in truth.record["instances"].items():
        name = seen["node"]
        if name is None or (only and name not in only):
            continue
        view = views[name]
        nodes[name] = {
            "name": name,
            "instance": instance_id,
            "zone": seen["zone"],
            "live": seen["state"] == InstanceState.LIVE.value,
            "ready": view.ready,
            "unschedulable": view.unschedulable,
            "claimed_by": _holder(view.claim),
            "outdated": seen.get("latest_model") is False,
        }
    for node in nodes.values():
        # A node the plan leaves out anyway (and says why) is not checked.
        node["to_check"] = bool(
            node["live"] and node["ready"] and not node["claimed_by"] and not node["unschedulable"]
        )
        # An upgrade moves nodes to the latest model: the model, not a check, says who needs it.
        node["upgrade"] = upgrade
        node["to_check"] &= not upgrade
    if _params(ctx).dry_run:  # runs nothing on the nodes (observe mode's patch timer)
        _recorded_checks(ctx, nodes)
        return _plan(ctx, {"nodes": nodes, "checks_since": ctx.now.isoformat()})
    _start_checks(ctx, nodes)
    started = {"nodes": nodes, "checks_since": ctx.now.isoformat()}
    if upgrade:
        return _plan(ctx, started)
    return Wait("await_checks", CHECK_POLL, state | started, reason="checking the nodes")


def _recorded_checks(ctx: StepContext, nodes: dict[str, Any]) -> None:
    """A dry run's checks: the ones recorded last (the status page's), none run now."""
    recorded = ctx.services.tables.patch_status(ctx.pool.name)
    wanted = [f.name for f in fields(NodeCheck)]
    for node in nodes.values():
        if not node.pop("to_check", False):
            continue
        seen = recorded.get(node["name"], {})
        if all(name in seen for name in wanted):
            node["check"] = {name: seen[name] for name in wanted}
            node["pending"], node["new_kernel"] = seen["pending"], seen["new_kernel"]
        else:
            node["check_error"] = "not checked: a dry run runs nothing on the nodes"


def _start_checks(ctx: StepContext, nodes: dict[str, Any]) -> None:
    """Start checks until CHECK_BATCH run at once: a large pool is checked in batches, so the
    job's state (a token of kilobytes per running check) and the step stay small."""
    instances = Instances(ctx.services.scale_sets)
    running = sum("check_token" in n for n in nodes.values())
    for node in nodes.values():
        if running >= CHECK_BATCH:
            return
        if not node.pop("to_check", False):
            continue
        ctx.before_write()
        try:
            node["check_token"] = instances.begin_run_script(
                ctx.pool.vmss_id, node["instance"], CHECK_SCRIPT.read_text()
            )
            running += 1
        except AzureCallError as error:
            node["check_error"] = f"{error.code}: {error.message}"


def _holder(raw: str | None) -> str | None:
    found = parse_claim(raw)
    return found.job if found else None


def _await_checks(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Collect the checks; when all have answered (or timed out), plan."""
    instances = Instances(ctx.services.scale_sets)
    nodes: dict[str, Any] = state["nodes"]
    late = ctx.now - datetime.fromisoformat(state["checks_since"]) > CHECK_DEADLINE
    pending = 0
    for node in nodes.values():
        if "check_token" not in node:
            continue
        try:
            found = instances.script_result(ctx.pool.vmss_id, node["instance"], node["check_token"])
        except AzureCallError as error:
            node["check_error"] = f"{error.code}: {error.message}"
            continue
        if not isinstance(found, ScriptResult) and not found.done and not late:
            pending += 1
            continue
        del node["check_token"]  # answered: the token (kilobytes) is not kept
        if isinstance(found, ScriptResult):
            try:
                check = parse_check(found.stdout)
            except CheckUnreadable as error:
                node["check_error"] = str(error)
                continue
            node["check"] = check.__dict__
            node["pending"], node["new_kernel"] = check.pending, check.new_kernel
        elif found.state == "Failed":
            node["check_error"] = f"{found.code}: {found.message}"
        else:
            node["check_error"] = f"no answer within {CHECK_DEADLINE}"
    _start_checks(ctx, nodes)
    waiting = sum(bool(n.get("to_check")) for n in nodes.values())
    if pending or waiting or any("check_token" in n for n in nodes.values()):
        return Wait(
            "await_checks", CHECK_POLL, state, reason=f"{pending} check(s) running, {waiting} to go"
        )
    return _plan(ctx, state)


def _plan(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    kube = ctx.kube
    candidates = []
    for node in state["nodes"].values():
        found = kube.node(node["name"])
        annotations = found.annotations if found else {}
        last = _time(annotations.get(patch_node.LAST_PATCHED))
        # kured never clears its mark: it counts only when newer than our last patch.
        kured = _time(annotations.get(KURED_REBOOT_NEEDED))
        candidates.append(
            PatchCandidate(
                name=node["name"],
                instance_id=node["instance"],
                zone=node["zone"],
                ready=node["ready"] and node["live"],
                unschedulable=node["unschedulable"],
                claimed_by=node["claimed_by"],
                last_patched=last,
                check=NodeCheck(**node["check"]) if "check" in node else None,
                check_error=node.get("check_error"),
                kured_reboot_needed=kured is not None and (last is None or kured > last),
                outdated=node.get("outdated", False),
            )
        )
    mode = "upgrade" if _params(ctx).action == "upgrade" else ctx.pool.patch.mode
    plan = plan_patch(candidates, mode=mode, only=_params(ctx).nodes)
    if not _params(ctx).dry_run:  # a dry run's checks are the recorded ones
        ctx.services.tables.put_patch_checks(
            ctx.pool.name,
            {
                n["name"]: {"checked_at": ctx.now.isoformat()} | n.get("check", {})
                for n in state["nodes"].values()
                if "check" in n
            },
        )
    described = {"order": list(plan.order), "left_out": dict(plan.left_out)}
    if _params(ctx).dry_run:
        return Done({"dry_run": True} | described)
    if not plan.order:
        return Done(described | {"patched": {}, "note": "nothing to patch"})
    # Only the nodes to patch go on in the state (the others' reasons are in the plan).
    return Next(
        "rollout",
        {
            "nodes": {n: _compact(state["nodes"][n]) for n in plan.order},
            "plan": described,
            "queue": list(plan.order),
            "active": [],
            "results": {},
        },
    )


def _compact(node: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "instance", "zone", "pending", "new_kernel", "upgrade")
    return {k: node[k] for k in keep if k in node}


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _rollout(ctx: StepContext, state: dict[str, Any]) -> Outcome:
    """Advance every node in flight; take more nodes down while allowed; report at the end."""
    owner = Owner.of(ctx.job)
    nodes: dict[str, Any] = state["nodes"]
    delays: list[timedelta] = []
    for name in list(state["active"]):
        phase = nodes[name]["phase"]
        progress = patch_node.advance(ctx, owner, nodes[name])
        if nodes[name]["phase"] != phase:
            _step(ctx, nodes[name], nodes[name]["phase"])
        if progress.started:
            return Next("rollout", state)  # record the intent (or the operation's token) first
        if progress.outcome is not None:
            _ended(ctx, state, name, progress)
        elif progress.delay is not None:
            delays.append(progress.delay)
    stop = _why_stop(ctx, state)
    if stop is not None:
        if not state["active"]:
            return _report(ctx, state, stop)
        why_not = stop
    else:
        why_not, name = _next_node(ctx, state)
    if why_not is None:
        # In `active` before anything is written: a step that raises mid-claim resumes it.
        state["queue"].remove(name)
        state["active"].append(name)
        nodes[name]["phase"] = "claim"
        progress = patch_node.advance(ctx, owner, nodes[name])
        if not progress.skipped:
            _step(ctx, nodes[name], f"taken down: {nodes[name]['phase']}")
        if progress.outcome is not None:
            _ended(ctx, state, name, progress)
        return Next("rollout", state)  # record the claim; the next round carries on
    state["waiting_for"] = why_not
    if state["active"]:
        state.pop("blocked_since", None)
    else:
        # Nothing in flight and nothing may go down: a blocker that never clears (a node
        # someone keeps out, a P1 that lasts) must not keep the job waiting for ever.
        since = datetime.fromisoformat(state.setdefault("blocked_since", ctx.now.isoformat()))
        if ctx.now - since > BLOCKED_GIVE_UP:
            return _report(ctx, state, f"no node could go down for {BLOCKED_GIVE_UP}: {why_not}")
    return Wait(
        "rollout",
        min(delays) if delays else BLOCKED_RETRY if not state["active"] else patch_node.POLL,
        state,
        reason=f"{len(state['active'])} node(s) in flight; {why_not}",
    )


def _ended(ctx: StepContext, state: dict[str, Any], name: str, progress: Progress) -> None:
    """A node is out of the rollout: patched or not (its result), or never taken (skipped: a
    re-check right before its claim found it cordoned, held or NotReady since the plan)."""
    state["active"].remove(name)
    _step(ctx, state["nodes"][name], progress.outcome)
    if progress.skipped:
        state.setdefault("skipped", {})[name] = progress.outcome
        return
    state["results"][name] = progress.outcome
    if progress.halt:
        state["halted"] = f"{name}: {progress.outcome}"
        _notify_halt(ctx, name, progress.outcome)


def _step(ctx: StepContext, node: dict[str, Any], what: str) -> None:
    """A node's step, in the ledger's notes and in the node's own history (kept in the job's
    state, so the ledger lists every node's steps however long the rollout)."""
    ctx.notes.append(f"{node['name']}: {what}")
    history = node.setdefault("history", [])
    history.append(f"{ctx.now:%Y-%m-%dT%H:%M:%SZ} {what[:160]}")
    del history[1:-HISTORY]  # the first (taken down) and the last few


def _why_stop(ctx: StepContext, state: dict[str, Any]) -> str | None:
    """Why the rollout takes no further node at all (it ends once the nodes out are back)."""
    if state.get("halted"):
        return f"halted: {state['halted']}"
    if not state["queue"]:
        return "no node left to patch"
    if not in_window(ctx.pool.patch.window, ctx.now):
        return "the maintenance window has closed"
    return None


def _next_node(ctx: StepContext, state: dict[str, Any]) -> tuple[str | None, str]:
    """(why no node goes down now, or None; the node that may). These wait; they never fail
    the job. A node held by its own pods waits while the nodes behind it go on."""
    nodes = state["nodes"]
    truth = ctx.services.tables.pool_status(ctx.pool.name) or {}  # read once for this round
    pool_nodes = {v["node"] for v in (truth.get("instances") or {}).values() if v.get("node")}
    out = _nodes_out(ctx, state, pool_nodes | set(nodes))
    # Nodes this rollout quarantined are reported and stay out, but do not stop it (AKS keeps a
    # surge node for each); min_nodes and headroom below still count them as gone.
    quarantined = {n for n, r in state["results"].items() if r.startswith("quarantined")}
    counted = out - quarantined
    limit = _params(ctx).max_unavailable or ctx.pool.patch.max_unavailable
    if len(counted) >= limit:
        names = ", ".join(sorted(counted))
        return f"{len(counted)} node(s) out of service ({names}; max_unavailable {limit})", ""
    held = _pool_blockers(ctx, pool_nodes)
    if held:
        return "; ".join(held), ""
    zones = {nodes[n]["zone"] for n in state["active"]}
    reasons = []
    for name in state["queue"]:
        if zones and nodes[name]["zone"] not in zones:
            reasons.append(f"one zone at a time: {name} waits for its zone's turn")
            continue
        pods = ctx.kube.pods_matching(name, ctx.pool.patch.blocking_pod_selectors)
        if pods:
            reasons.append(f"{name} held: pods matching a blocking selector: {', '.join(pods[:5])}")
            continue
        short = _headroom(ctx, truth, name, out)
        return (short, "") if short else (None, name)
    return "; ".join(reasons[:3]), ""


def _nodes_out(ctx: StepContext, state: dict[str, Any], pool_nodes: set[str]) -> set[str]:
    """The pool's nodes out of service now, whoever took them out (this job, another job, an
    operator, or a fault): cordoned, claimed or not Ready — from a fresh node list."""
    out = set(state["active"])
    for node in ctx.kube.nodes():
        if node.name in pool_nodes and (node.unschedulable or node.claim or not node.ready):
            out.add(node.name)
    return out


def _pool_blockers(ctx: StepContext, pool_nodes: set[str]) -> list[str]:
    """What holds every node of the pool: a P1 on the group, kured's lock on one of them."""
    kube = ctx.kube
    group_p1 = any(
        a["alert"] == f"P1/group/{ctx.pool.node_group}" and a["state"] == "firing"
        for a in AlertLog(ctx.services.tables).alerts(ctx.pool.name)
    )
    namespace, daemonset = ctx.pool.patch.kured_daemonset.split("/", 1)
    lock = kube.daemonset_annotation(namespace, daemonset, KURED_LOCK)
    return blockers(
        group_p1=group_p1,
        blocking_pods=[],
        kured_lock_holders=_lock_holders(lock),
        pool_nodes=pool_nodes,
    )


def _lock_holders(raw: str | None) -> list[str]:
    """The nodes in kured's lock: {"nodeID": ...} or, with --concurrency, {"locks": [...]}."""
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return ["?"]  # a lock we cannot read is held by someone
    locks = data.get("locks", [data]) if isinstance(data, dict) else []
    return [
        str(lock.get("nodeID")) for lock in locks if isinstance(lock, dict) and lock.get("nodeID")
    ]


def _headroom(ctx: StepContext, truth: dict[str, Any], name: str, out: set[str]) -> str | None:
    """Can the pool take `name` out too, beside the nodes already `out`? The serving count
    after it (min_nodes) and the hour's usage over the nodes that stay."""
    live = (truth.get("counts") or {}).get("live", 0)
    serving = live - len(out) - 1
    if serving < ctx.pool.min_nodes:
        return (
            f"{live} live, {len(out)} out: taking {name} too would leave {serving} serving, "
            f"fewer than min_nodes {ctx.pool.min_nodes}"
        )
    window, error = hourly_usage(ctx.services, ctx.pool, truth, ctx.now)
    if window is None:
        return f"headroom unknown: {error or 'no usage data'}"
    instance = {v["node"]: k for k, v in (truth.get("instances") or {}).items() if v.get("node")}
    away = [instance[n] for n in out if n in instance]
    return patch_headroom(window.nodes, away, instance.get(name, name), pool_thresholds(ctx.pool))


def _report(ctx: StepContext, state: dict[str, Any], why_stopped: str) -> Outcome:
    results: dict[str, str] = state["results"]
    report = {
        "patched": {n: r for n, r in results.items() if r.startswith("patched")},
        "not_patched": {n: r for n, r in results.items() if not r.startswith("patched")},
        # Never taken down: skipped at the re-check before its claim (why), or not reached
        # before the rollout stopped (why it stopped).
        "not_reached": state.get("skipped", {}) | {n: why_stopped for n in state["queue"]},
        "left_out": state["plan"]["left_out"],
        "stopped": why_stopped,
    }
    try:  # the pool's record as the rollout leaves it (its last nodes given back, uncordoned)
        read_truth(ctx.services, ctx.pool, ctx.now, job_id=ctx.job.id, lease=ctx.lease)
    except TemporaryAzureError as error:
        report["reread"] = f"failed ({error.code}): the next reconcile records the pool"
    if state.get("halted"):
        return Fail(f"rollout halted: {state['halted']}", report)
    return Done(report)


def _notify_halt(ctx: StepContext, name: str, outcome: str) -> None:
    try:
        Notifier(ctx.services.queues, ctx.services.settings).send(
            pool=ctx.pool.name,
            kind="patch_halted",
            severity="P2",
            at=ctx.now,
            values={"job": ctx.job.id, "node": name},
            message=f"patch rollout of {ctx.pool.name} halted at {name}: {outcome}",
        )
    except Exception as error:  # noqa: BLE001 - the report carries it anyway
        log.error("Patch %s: notifying the halt at %s failed: %s", ctx.job.id, name, error)


def _abort(ctx: StepContext, state: dict[str, Any]) -> dict[str, Any]:
    """Giving up: every node in flight is given back as its claim found it."""
    return release_all(ctx.kube, list(state.get("active", [])), Owner.of(ctx.job))


register(
    JobKind.PATCH,
    Flow(
        first_step="check",
        steps={"check": _check, "await_checks": _await_checks, "rollout": _rollout},
        abort=_abort,
    ),
)


def enqueue_patches(services: Any) -> list[str]:
    """The patch timer: one patch job per pool with `patch.automatic` whose window is open,
    once per window."""
    now = services.clock.now()
    enqueued = []
    for pool in services.config.pools:
        if not pool.patch.automatic:
            continue
        closes = window_end(pool.patch.window, now)
        if closes is None:
            continue
        job_id = f"patch-{pool.name}-{closes:%Y%m%d}"
        if enqueue_once(services, JobKind.PATCH, pool.name, job_id, timer="patch_timer"):
            enqueued.append(job_id)
    return enqueued
