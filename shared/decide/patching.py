"""Patch decisions, pure: is now inside the window, which nodes need patching and in what order
(and, for every node left out, why), what holds a node's patch back, whether the pool can take
one more node out, and what a node's check output says. The patch flow asks these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.config.patch import DAYS, Window
from shared.decide.capacity import NodeUsage, Resource, Thresholds

DONE_MARKER = "== done"


def in_window(window: Window, now: datetime) -> bool:
    """Whether `now` falls inside the window (an end before the start runs past midnight, and
    belongs to the day it started on)."""
    local = now.astimezone(ZoneInfo(window.time_zone))
    start, end = _clock(window.start), _clock(window.end).replace(second=59, microsecond=999999)
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    moment = local.time()
    if start <= end:
        return today in window.days and start <= moment <= end
    return (today in window.days and moment >= start) or (
        yesterday in window.days and moment <= end
    )


def window_end(window: Window, now: datetime) -> datetime | None:
    """When the window that `now` is in closes (None when now is outside it)."""
    if not in_window(window, now):
        return None
    local = now.astimezone(ZoneInfo(window.time_zone))
    start, end = _clock(window.start), _clock(window.end)
    close = local.replace(hour=end.hour, minute=end.minute, second=59, microsecond=0)
    if start > end and local.time() >= start:
        close += timedelta(days=1)
    return close


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class NodeCheck:
    """What a node's patch check printed: its kernel, boot id, whether it asks for a reboot, the
    updates pending and the newest kernel among them."""

    kernel: str
    boot_id: str
    reboot_required: bool
    pending: int
    new_kernel: str | None


class CheckUnreadable(ValueError):
    """The check's output is not what the script prints when it runs to the end."""


def parse_check(stdout: str) -> NodeCheck:
    """Read patch_check.sh's sections (`== name` lines, `== done` last). Azure keeps only the
    output's last 4 KB: a list of updates cut at its start still says that updates are pending,
    but not reliably which kernel, so then no kernel is expected."""
    sections: dict[str, list[str]] = {}
    current = sections.setdefault("upgrades", [])  # lines before any header: a cut list
    cut = not stdout.lstrip().startswith("== upgrades")
    for raw in stdout.splitlines():
        line = raw.strip()
        if line.startswith("== "):
            current = sections.setdefault(line[3:], [])
        elif line:
            current.append(line)
    missing = [s for s in ("kernel", "boot", "reboot", "done") if s not in sections]
    if missing:
        raise CheckUnreadable(f"the check's output lacks {', '.join(missing)}: {stdout[-300:]!r}")
    installs = [line for line in sections["upgrades"] if line.startswith("Inst ")]
    kernels = sorted(
        (
            package.removeprefix("linux-image-")
            for package in (line.split()[1] for line in installs)
            if re.fullmatch(r"linux-image-\d.*", package)
        ),
        key=kernel_order,
    )
    return NodeCheck(
        kernel=(sections["kernel"] or [""])[0],
        boot_id=(sections["boot"] or [""])[0],
        reboot_required=(sections["reboot"] or [""])[0] == "required",
        pending=max(len(installs), 1 if cut else 0),
        new_kernel=kernels[-1] if kernels and not cut else None,
    )


def kernel_order(version: str) -> tuple[int, ...]:
    """A kernel version as numbers, for ordering: 5.15.0-100 comes after 5.15.0-99."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


@dataclass(frozen=True)
class PatchCandidate:
    """A node of the pool as the patch plan sees it."""

    name: str
    instance_id: str
    zone: str | None
    ready: bool
    unschedulable: bool
    claimed_by: str | None
    last_patched: datetime | None
    check: NodeCheck | None  # None: its check failed (the reason is in `check_error`)
    check_error: str | None = None
    kured_reboot_needed: bool = False  # kured's weave.works/kured-most-recent-reboot-needed
    outdated: bool = False  # its instance does not run the scale set's latest model


@dataclass(frozen=True)
class PatchPlan:
    order: tuple[str, ...]  # most overdue first, zone by zone
    left_out: Mapping[str, str]  # node -> why it is not patched


def plan_patch(
    candidates: Sequence[PatchCandidate], *, mode: str, only: Collection[str] = ()
) -> PatchPlan:
    """The nodes to patch and their order, and why every other node is left out. Pure.

    Most overdue first (never patched, then oldest `last_patched`); when the pool spans zones,
    one zone at a time: the zone holding the most overdue node first, every node of a zone
    before the next zone's.
    """
    left_out: dict[str, str] = {}
    wanted: list[PatchCandidate] = []
    names = {c.name for c in candidates}
    for name in sorted(set(only) - names):
        left_out[name] = "not a node of this pool"
    for node in candidates:
        why = _left_out(node, mode=mode, only=only)
        if why:
            left_out[node.name] = why
        else:
            wanted.append(node)
    oldest = datetime.min.replace(tzinfo=None)

    def overdue(node: PatchCandidate) -> tuple[datetime, str]:
        stamp = node.last_patched.replace(tzinfo=None) if node.last_patched else oldest
        return stamp, node.name

    zones: dict[str | None, list[PatchCandidate]] = {}
    for node in sorted(wanted, key=overdue):
        zones.setdefault(node.zone, []).append(node)
    ordered = sorted(zones.values(), key=lambda nodes: overdue(nodes[0]))
    return PatchPlan(tuple(n.name for zone in ordered for n in zone), left_out)


def why_not_take(*, unschedulable: bool, ready: bool) -> str | None:
    """Why a node that no job holds must not be taken down for patching (the plan's words; the
    rollout asks again right before it claims a node). Pure."""
    if unschedulable:
        return "cordoned by someone else: left as it is"
    if not ready:
        return "not Ready: repair, not patching, is what it needs"
    return None


def _left_out(node: PatchCandidate, *, mode: str, only: Collection[str]) -> str | None:
    if only and node.name not in only:
        return "not named in the job"
    if node.claimed_by:
        return f"claimed by job {node.claimed_by}"
    if why := why_not_take(unschedulable=node.unschedulable, ready=node.ready):
        return why
    if mode == "upgrade":
        return None if node.outdated else "already runs the latest model"
    if node.check is None:
        return f"its check failed: {node.check_error or 'no answer'}"
    if node.check.reboot_required or node.kured_reboot_needed:
        return None
    if mode == "reboot_only":
        return "no reboot pending"
    if node.check.pending == 0:
        return "up to date: no updates pending, no reboot pending"
    return None


def patch_headroom(
    usages: Sequence[NodeUsage], out: Collection[str], candidate: str, thresholds: Thresholds
) -> str | None:
    """Why the pool cannot take `candidate` out as well as the nodes already `out`, or None
    when it can: the whole group's load spread over the nodes that stay must remain at or under
    the P1 thresholds. A node without any data is a "no" (fail safe); a partial window is
    used as it is — a node just patched was down for part of the last hour. Pure."""
    if not usages:
        return "no usage data: headroom is not assumed"
    lacking = sorted(u.node for u in usages if any(u.value(r) is None for r in Resource))
    if lacking:
        return f"no full usage data for {', '.join(lacking)}: headroom is not assumed"
    away = set(out) | {candidate}
    remaining = math.fsum(u.cpu_capacity for u in usages if u.node not in away)
    if remaining <= 0:
        return "nothing would be left to run the pool's pods"
    limits = {Resource.CPU: thresholds.p1_cpu, Resource.MEMORY: thresholds.p1_memory}
    over = []
    for resource, limit in limits.items():
        load = math.fsum(float(u.value(resource) or 0.0) * u.cpu_capacity for u in usages)
        after = load / remaining
        if after > limit:
            over.append(f"{resource.value} {after:.1f}% > {limit:g}%")
    if over:
        return f"with {len(away)} node(s) out the rest would run at " + ", ".join(over) + " (P1)"
    return None


def blockers(
    *,
    group_p1: bool,
    blocking_pods: Sequence[str],
    kured_lock_holders: Sequence[str],
    pool_nodes: Collection[str],
) -> list[str]:
    """Every reason no node of the pool may go down now (kured's blockers, in Poolkeeper's
    words). Pure. A blocker makes the rollout wait; it never fails it."""
    found = []
    if group_p1:
        found.append("a P1 alert is active on the node group")
    if blocking_pods:
        found.append("pods matching a blocking selector: " + ", ".join(blocking_pods[:5]))
    held = [h for h in kured_lock_holders if h == "?" or h in pool_nodes]
    if held:
        found.append(f"kured holds its reboot lock for {', '.join(held)}")
    return found
