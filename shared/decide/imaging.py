"""Pure rules of image jobs: which node is the donor (Kamino's filters, and why each other node is
not), the name of a new version, which versions may go, whether a scale set may be re-imaged at
all, and whether a canary proved the new version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from shared.decide.owners import AKS_TAG_PREFIX, capacity_owner

_VERSION_ID = re.compile(
    r"^(?P<gallery>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/"
    r"galleries/[^/]+)/images/(?P<image>[^/]+)(/versions/(?P<version>[^/]+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DonorCandidate:
    """A node of the pool as donor selection sees it."""

    name: str
    instance_id: str | None
    live: bool  # its instance is live (Succeeded, running)
    ready: bool
    ready_since: datetime | None
    unschedulable: bool
    claimed_by: str | None  # a job's claim
    reboot_pending: bool
    last_patched: datetime | None
    ignored: bool  # carries the pool's ignore annotation


@dataclass(frozen=True)
class DonorPlan:
    """The donor (or None), the candidates longest Ready first, and why every other node is out."""

    donor: str | None
    candidates: tuple[str, ...]
    excluded: Mapping[str, str] = field(default_factory=dict)
    relaxed: bool = False  # the patch-date filter was dropped: the image is older than allowed
    why_none: str | None = None


def _why_not(
    node: DonorCandidate, *, now: datetime, image_built_at: datetime | None, min_ready: timedelta
) -> tuple[str | None, str | None]:
    """(why the node can never be the donor, why only the patch-date filter keeps it out)."""
    if node.instance_id is None or not node.live:
        return "its instance is not live in the scale set", None
    if node.ignored:
        return "it carries the ignore annotation", None
    if node.claimed_by:
        return f"claimed by job {node.claimed_by}", None
    if node.unschedulable:
        return "cordoned", None
    if not node.ready:
        return "not Ready", None
    ready_for = now - node.ready_since if node.ready_since else timedelta(0)
    if ready_for < min_ready:
        return f"Ready for {_minutes(ready_for)}, less than {_minutes(min_ready)}", None
    if node.reboot_pending:
        return "a reboot is pending", None
    if node.last_patched is None:
        return None, "never patched by Poolkeeper (no last-patched annotation)"
    if image_built_at is not None and node.last_patched <= image_built_at:
        return None, (
            f"last patched {node.last_patched:%Y-%m-%d %H:%M}Z, not after the current image "
            f"({image_built_at:%Y-%m-%d %H:%M}Z)"
        )
    return None, None


def _minutes(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 60)} min"


def choose_donor(
    nodes: Iterable[DonorCandidate],
    *,
    now: datetime,
    image_built_at: datetime | None,
    min_ready: timedelta,
    min_candidates: int,
    max_image_age: timedelta | None,
) -> DonorPlan:
    """Kamino's selection: nodes that pass every filter, longest Ready first; the first is the
    donor when there are at least `min_candidates`. When too few pass and the current image is
    older than `max_image_age` (or not ours, so of unknown age), the patch-date filter is
    dropped. `image_built_at` None means the scale set runs an image Poolkeeper did not make."""
    nodes = list(nodes)
    hard: dict[str, str] = {}
    soft: dict[str, str] = {}
    for node in nodes:
        never, patch = _why_not(node, now=now, image_built_at=image_built_at, min_ready=min_ready)
        if never:
            hard[node.name] = never
        elif patch:
            soft[node.name] = patch
    by_ready = {n.name: n.ready_since or now for n in nodes}
    passing = sorted((n for n in by_ready if n not in hard and n not in soft), key=by_ready.get)
    old = max_image_age is not None and (
        image_built_at is None or now - image_built_at > max_image_age
    )
    relaxed = len(passing) < min_candidates and old and bool(soft)
    if relaxed:
        passing = sorted((n for n in by_ready if n not in hard), key=by_ready.get)
        soft = {}
    excluded = hard | soft
    if len(passing) < min_candidates:
        why = (
            f"{len(passing)} candidate(s), fewer than min_candidates {min_candidates}"
            if passing
            else "no node passes the donor filters"
        )
        return DonorPlan(None, tuple(passing), excluded, relaxed, why)
    return DonorPlan(passing[0], tuple(passing), excluded, relaxed)


def version_name(now: datetime, existing: Iterable[str]) -> str:
    """`<year>.<month*100+day>.<hour*10000+minute*100+second>`: three 32-bit integers as Azure
    requires (so no leading zeros: 2026.1104.60546 at 06:05:46 on 4 November), sortable by time,
    and unique even for two runs a day (a clash moves the last part up)."""
    taken = {version_key(name) for name in existing}
    patch = now.hour * 10000 + now.minute * 100 + now.second
    while (now.year, now.month * 100 + now.day, patch) in taken:
        patch += 1
    return f"{now.year}.{now.month * 100 + now.day}.{patch}"


def version_key(name: str) -> tuple[int, ...]:
    """A version name as numbers, for ordering (1.10.0 after 1.9.0); unreadable ones first."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return ()


def versions_to_prune(
    versions: Sequence[str], *, keep: int, protected: Iterable[str], failed: Iterable[str] = ()
) -> list[str]:
    """The `failed` versions (they serve nothing and block their name), then the oldest beyond
    the `keep` newest of the others; never a `protected` one (the version in use and the one
    before it, the rollback target)."""
    spare, broken = set(protected), set(failed)
    good = sorted((v for v in versions if v not in broken), key=version_key, reverse=True)
    gone = sorted(broken & set(versions), key=version_key) + good[keep:]
    return [v for v in gone if v not in spare]


@dataclass(frozen=True)
class ImageRef:
    """A gallery image reference: a pinned version, or a definition (its latest version)."""

    gallery_id: str
    image: str
    version: str | None

    @property
    def definition_id(self) -> str:
        return f"{self.gallery_id}/images/{self.image}"


def parse_image_ref(image_id: str | None) -> ImageRef | None:
    """The gallery, definition and version of an imageReference id; None for other images."""
    found = _VERSION_ID.match(image_id or "")
    if found is None:
        return None
    return ImageRef(found["gallery"], found["image"], found["version"])


def model_change_refusal(
    tags: Mapping[str, str], upgrade_mode: str | None, *, allow_upgrade_policy: bool
) -> str | None:
    """Why Poolkeeper must not change this scale set's model, or None."""
    owner = capacity_owner(tags)
    if owner and not owner.startswith("AKS"):  # AKS's own words follow
        return f"the scale set belongs to {owner}; its image comes from there too"
    aks = sorted(k for k in tags if k.lower().startswith(AKS_TAG_PREFIX))
    if aks:
        return (
            f"the scale set is managed by AKS (tags {', '.join(aks[:3])}): AKS reverts model "
            "changes; use AKS's node image upgrade instead (az aks nodepool upgrade "
            "--node-image-only, or the NodeImage auto-upgrade channel)"
        )
    mode = (upgrade_mode or "Manual").lower()
    if mode in ("automatic", "rolling") and not allow_upgrade_policy:
        return (
            f"the scale set's upgrade policy is {upgrade_mode}: Azure would roll every instance "
            "onto the new image before the canary proves it; set the policy to Manual, or set "
            "image.allow_upgrade_policy: true in the pool's config to accept that"
        )
    return None


@dataclass(frozen=True)
class CanaryNode:
    """The canary's node as the check sees it."""

    name: str
    ready: bool
    boot_id: str
    machine_id: str
    kernel: str
    ready_since: datetime | None = None  # lastTransitionTime of its Ready condition


@dataclass(frozen=True)
class CanaryVerdict:
    state: Literal["proven", "waiting", "failed"]
    reason: str
    ready_since: datetime | None = None  # Ready, with its own identity, since (the soak's start)


def judge_canary(
    node: CanaryNode | None,
    *,
    donor_kernel: str,
    others: Mapping[str, tuple[str, str]],
    deadline: datetime,
    now: datetime,
    soak: timedelta = timedelta(0),
    ready_seen: datetime | None = None,
) -> CanaryVerdict:
    """Did the canary boot the new version as a healthy, distinct node? Registered and Ready by
    `deadline`, a boot id and machine-id of its own (`others`: node name -> (boot id,
    machine-id) of every other node), the donor's kernel, then Ready without a break for
    `soak`. `ready_seen`: when an earlier check first saw it so (a NotReady since fails it). A
    shared machine-id fails at once: such a node never settles (Kamino's issue #22)."""
    by = f"by {deadline:%H:%M}Z, the canary's deadline (canary_ready_minutes)"
    if node is None:
        if now < deadline:
            return CanaryVerdict("waiting", "the canary's node has not registered yet")
        return CanaryVerdict("failed", f"the canary's node never registered {by}")
    if node.machine_id:
        twins = sorted(n for n, (_, mid) in others.items() if mid == node.machine_id)
        if twins:
            return CanaryVerdict(
                "failed",
                f"machine-id {node.machine_id} is shared with {', '.join(twins[:3])}: the image "
                "kept its donor's identity",
            )
    if not node.ready:
        if ready_seen is not None:
            return CanaryVerdict(
                "failed",
                f"{node.name} went NotReady during its soak (Ready since {ready_seen:%H:%M:%S}Z, "
                f"NotReady at {now:%H:%M:%S}Z; canary_soak_minutes {_minutes(soak)})",
            )
        if now < deadline:
            return CanaryVerdict("waiting", f"{node.name} is not Ready yet")
        return CanaryVerdict("failed", f"{node.name} was not Ready {by}")
    if not node.boot_id or any(boot == node.boot_id for boot, _ in others.values()):
        return CanaryVerdict("failed", f"{node.name} has no boot id of its own")
    if not node.machine_id:
        return CanaryVerdict("failed", f"{node.name} reports no machine-id")
    if node.kernel != donor_kernel:
        return CanaryVerdict(
            "failed",
            f"{node.name} runs kernel {node.kernel or '?'}, not the donor's {donor_kernel}",
        )
    since = node.ready_since
    if ready_seen is not None and since is not None and since > ready_seen:
        return CanaryVerdict(
            "failed",
            f"{node.name} went NotReady and back during its soak (Ready since "
            f"{ready_seen:%H:%M:%S}Z, again since {since:%H:%M:%S}Z)",
        )
    since = ready_seen or min(since or now, now)
    if now - since < soak:
        return CanaryVerdict(
            "waiting",
            f"{node.name} Ready since {since:%H:%M:%S}Z: soaking until {since + soak:%H:%M:%S}Z",
            since,
        )
    return CanaryVerdict(
        "proven",
        f"{node.name} Ready for {_minutes(now - since)} on kernel {node.kernel}, its own identity",
        since,
    )


def restore_guard(
    current: Mapping[str, str], *, ours: str, previous: Mapping[str, str]
) -> tuple[Literal["write", "done", "left"], str]:
    """May a model that an image job pointed at `ours` be pointed back to `previous`? Only while
    it still names `ours` (the rollback's guard, and the abort's): "done" when it has `previous`
    already, "left" when someone else changed it since (an operator's change stays)."""
    if same_image(current, previous):
        return "done", f"the model has the previous image {dict(previous)}"
    if (current.get("id") or "").lower() != ours.lower():
        return "left", (
            f"left alone: the model names {dict(current)}, not this job's version (changed by "
            "someone else since)"
        )
    return "write", f"the model still names {ours}: the previous image goes back"


IMAGE_FIELDS = (
    "id",
    "publisher",
    "offer",
    "sku",
    "version",
    "sharedGalleryImageId",
    "communityGalleryImageId",
)


def same_image(current: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Do two image references name the same image (every reference field, any case)?"""
    return all(
        (current.get(f) or "").lower() == (wanted.get(f) or "").lower() for f in IMAGE_FIELDS
    )


def versions_in_use(
    versions: Iterable[tuple[str, str, bool]],
    *,
    model: ImageRef | None,
    definition_id: str,
    running: Mapping[str, str],
) -> dict[str, str]:
    """Why each version of a definition must stay: the model resolves to it (pinned, or the
    latest of a definition reference) or an instance runs it. `versions`: (name, provisioning
    state, excluded from latest); `running`: instance id -> the version name it runs."""
    found: dict[str, str] = {}
    if model is not None and model.definition_id.lower() == definition_id.lower():
        if model.version:
            found[model.version] = "the scale set's model names it"
        else:
            usable = [n for n, state, excluded in versions if state == "Succeeded" and not excluded]
            latest = max(usable, key=version_key, default=None)
            if latest:
                found[latest] = "the scale set's model takes the definition's latest: it"
    names = {n for n, _, _ in versions}
    for instance, name in sorted(running.items()):
        if name in names and name not in found:
            found[name] = f"instance {instance} runs it"
    return found
