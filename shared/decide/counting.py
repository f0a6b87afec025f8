"""Count truth for one scale set: instance states, node matching, drift, and scale plans.

Pure: the reconcile and scale flows call it on a fresh read made under the pool lease.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from shared.decide.wording import listing as _listing
from shared.decide.wording import plural as _n
from shared.decide.wording import span as _span

NODE_GROUP_LABEL = "elastisys.io/node-group"
PROTOTYPE_LABEL = "poolkeeper.io/prototype"  # "true" on the node whose disk becomes the image

_STOPPED_POWER = frozenset({"stopping", "stopped", "deallocating", "deallocated"})
_NO_LOAD: Mapping[str, float] = MappingProxyType({})


class InstanceState(StrEnum):
    LIVE = "live"  # Succeeded and running: the only state that counts as serving
    CREATING = "creating"  # Creating, or Succeeded while still starting
    UPDATING = "updating"  # restarting, reimaging, upgrading, or not known: exists, not serving
    STOPPED = "stopped"  # stopped or deallocated, or on its way there
    DELETING = "deleting"  # going away: no longer part of the active count
    FAILED = "failed"  # its last operation failed


@dataclass(frozen=True)
class VmInstance:
    """One scale-set instance with its instance view, in ARM's words."""

    instance_id: str
    computer_name: str
    provisioning: str  # provisioningState: Creating, Succeeded, Updating, Deleting, Failed
    power: str | None = None  # x of PowerState/x: running, starting, stopped, deallocated, ...
    failure: str | None = None  # ARM error code of the failed operation, e.g. AllocationFailed
    zone: str | None = None
    latest_model: bool = True
    image: str | None = None  # the gallery version (exactVersion) or marketplace version it runs


@dataclass(frozen=True)
class ScaleSetState:
    """One fresh read: the scale-set GET (with its ETag) and the full instance list."""

    vmss_id: str  # lower-cased on construction: ARM ids compare ignoring case
    etag: str
    capacity: int  # sku.capacity
    model_image: Mapping[str, str]  # the model's imageReference fields that are set
    instances: tuple[VmInstance, ...]
    read_at: datetime
    tags: Mapping[str, str] = field(default_factory=dict)  # the scale set's resource tags
    identities: tuple[str, ...] = ()  # the model's user-assigned identities (ids, lower-cased)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vmss_id", self.vmss_id.lower())
        object.__setattr__(self, "instances", tuple(self.instances))


@dataclass(frozen=True)
class NodeView:
    """A Kubernetes node as counting sees it; the kube adapter builds it from a `Node`."""

    name: str
    vmss_id: str | None  # from providerID, lower-cased on construction; None if not a VMSS node
    instance_id: str | None
    node_group: str | None = None  # label elastisys.io/node-group
    ready: bool = False
    unschedulable: bool = False
    scale_down_disabled: bool = False  # cluster-autoscaler.kubernetes.io/scale-down-disabled
    prototype: bool = False  # label poolkeeper.io/prototype=true: the image donor
    claim: str | None = None  # annotation poolkeeper.io/claimed-by: a job holds this node
    kernel: str = ""  # nodeInfo.kernelVersion
    last_patched: str | None = None  # annotation poolkeeper.io/last-patched (RFC 3339)

    def __post_init__(self) -> None:
        if self.vmss_id is not None:
            object.__setattr__(self, "vmss_id", self.vmss_id.lower())


def classify(instance: VmInstance) -> InstanceState:
    """The instance's state for counting. Pure; whatever is not known to serve is never LIVE."""
    provisioning = instance.provisioning.lower()
    power = (instance.power or "").lower().removeprefix("powerstate/")
    if provisioning == "deleting":
        return InstanceState.DELETING
    if provisioning == "failed":
        return InstanceState.FAILED
    if provisioning == "creating":
        return InstanceState.CREATING
    if provisioning == "succeeded":
        if power == "running":
            return InstanceState.LIVE
        if power == "starting":
            return InstanceState.CREATING
        if power in _STOPPED_POWER:
            return InstanceState.STOPPED
    # Updating, or a state or power unknown here (such as a missing instance view): the instance
    # exists, so capacity counts it, but nothing may assume it serves.
    return InstanceState.UPDATING


@dataclass(frozen=True)
class Counts:
    live: int = 0
    creating: int = 0
    updating: int = 0
    stopped: int = 0
    deleting: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return sum(self.of(state) for state in InstanceState)

    @property
    def active(self) -> int:
        """Every instance not being deleted: what sku.capacity should equal."""
        return self.total - self.deleting

    def of(self, state: InstanceState) -> int:
        return int(getattr(self, state.value))

    def as_dict(self) -> dict[str, int]:
        """Per state, then total and active: the shape the pool status records."""
        return {state.value: self.of(state) for state in InstanceState} | {
            "total": self.total,
            "active": self.active,
        }


def count(state: ScaleSetState) -> Counts:
    """Instances of this read by state. Pure."""
    return _tally(state.instances)


def _tally(instances: Iterable[VmInstance]) -> Counts:
    tally = dict.fromkeys(InstanceState, 0)
    for instance in instances:
        tally[classify(instance)] += 1
    return Counts(**{state.value: number for state, number in tally.items()})


@dataclass(frozen=True)
class Matching:
    pairs: Mapping[str, str]  # instance id -> node name
    instances_without_node: tuple[str, ...]
    nodes_without_instance: tuple[str, ...]  # nodes of this pool whose instance is not listed


def match_nodes(
    state: ScaleSetState, nodes: Iterable[NodeView], node_group: str | None
) -> Matching:
    """Pair instances with nodes by providerID. Pure.

    A node belongs to the pool if its providerID points at this scale set or it carries the
    pool's node-group label; one whose instance is not in the read is reported, not dropped.
    """
    listed = {instance.instance_id for instance in state.instances}
    pairs: dict[str, str] = {}
    orphans: list[str] = []
    for node in sorted(nodes, key=lambda n: n.name):
        ours = node.vmss_id == state.vmss_id
        if not ours and (node_group is None or node.node_group != node_group):
            continue
        if ours and node.instance_id in listed and node.instance_id not in pairs:
            pairs[str(node.instance_id)] = node.name
        else:
            orphans.append(node.name)
    return Matching(
        pairs={instance: pairs[instance] for instance in _by_id(pairs)},
        instances_without_node=tuple(_by_id(i for i in listed if i not in pairs)),
        nodes_without_instance=tuple(orphans),
    )


@dataclass(frozen=True)
class Observation:
    """An instance's state and when it was first seen in it; reconciles carry these forward."""

    state: InstanceState
    since: datetime


class DriftKind(StrEnum):
    CAPACITY_MISMATCH = "capacity_mismatch"
    STUCK_CREATING = "stuck_creating"
    STUCK_DELETING = "stuck_deleting"
    FAILED_INSTANCE = "failed_instance"
    INSTANCE_WITHOUT_NODE = "instance_without_node"
    NODE_WITHOUT_INSTANCE = "node_without_instance"


@dataclass(frozen=True)
class Drift:
    kind: DriftKind
    detail: str  # for the operator: what differs, with the numbers
    instance_ids: tuple[str, ...] = ()
    node_names: tuple[str, ...] = ()


def observe(
    state: ScaleSetState,
    nodes: Iterable[NodeView],
    previous: Mapping[str, Observation],
    now: datetime,
    *,
    grace: timedelta,
    stuck_after: timedelta,
    node_group: str | None = None,
) -> tuple[dict[str, Observation], list[Drift]]:
    """This read's observations (to keep for the next one) and every drift it shows. Pure.

    An instance first seen in a state counts from `now`; one that left the list is forgotten.
    Give the pool's `node_group` to also find its nodes by label, as `match_nodes` does.
    """
    observations: dict[str, Observation] = {}
    for instance in state.instances:
        current = classify(instance)
        before = previous.get(instance.instance_id)
        kept = before is not None and before.state == current
        observations[instance.instance_id] = Observation(current, before.since if kept else now)

    def held(wanted: InstanceState, longer_than: timedelta) -> list[VmInstance]:
        return [
            instance
            for instance in _sorted_instances(state.instances)
            if observations[instance.instance_id].state is wanted
            and now - observations[instance.instance_id].since > longer_than
        ]

    def age(instance: VmInstance) -> str:
        return _span(now - observations[instance.instance_id].since)

    drifts: list[Drift] = []
    counts = count(state)
    if state.capacity != counts.active:
        drifts.append(
            Drift(
                DriftKind.CAPACITY_MISMATCH,
                f"capacity {state.capacity} but {_n(counts.active, 'active instance')}",
            )
        )
    failed = [i for i in _sorted_instances(state.instances) if classify(i) is InstanceState.FAILED]
    if failed:
        reasons = [f"{i.instance_id} ({i.failure or 'no error code'})" for i in failed]
        drifts.append(
            Drift(
                DriftKind.FAILED_INSTANCE,
                f"{_n(len(failed), 'failed instance')}: {_listing(reasons)}",
                instance_ids=tuple(i.instance_id for i in failed),
            )
        )
    for kind, stuck_state in (
        (DriftKind.STUCK_CREATING, InstanceState.CREATING),
        (DriftKind.STUCK_DELETING, InstanceState.DELETING),
    ):
        stuck = held(stuck_state, stuck_after)
        if stuck:
            aged = [f"{i.instance_id} ({age(i)})" for i in stuck]
            drifts.append(
                Drift(
                    kind,
                    f"{_n(len(stuck), 'instance')} {stuck_state} for more than "
                    f"{_span(stuck_after)}: {_listing(aged)}",
                    instance_ids=tuple(i.instance_id for i in stuck),
                )
            )
    matching = match_nodes(state, nodes, node_group)
    unmatched = set(matching.instances_without_node)
    nodeless = [i for i in held(InstanceState.LIVE, grace) if i.instance_id in unmatched]
    if nodeless:
        spelled = [f"{i.instance_id} {i.computer_name} (live {age(i)})" for i in nodeless]
        drifts.append(
            Drift(
                DriftKind.INSTANCE_WITHOUT_NODE,
                f"{_n(len(nodeless), 'live instance')} with no node after more than "
                f"{_span(grace)}: {_listing(spelled)}",
                instance_ids=tuple(i.instance_id for i in nodeless),
            )
        )
    if matching.nodes_without_instance:
        orphans = matching.nodes_without_instance
        drifts.append(
            Drift(
                DriftKind.NODE_WITHOUT_INSTANCE,
                f"{_n(len(orphans), 'node')} of this pool with no instance in scale set "
                f"{state.vmss_id}: {_listing(list(orphans))}",
                node_names=orphans,
            )
        )
    return observations, drifts


class RefusalReason(StrEnum):
    INVALID_REQUEST = "invalid_request"  # neither or both of the alternatives, or a count <= 0
    DELTA_NOT_POSITIVE = "delta_not_positive"
    NOT_ABOVE_CURRENT = "not_above_current"  # capacity is only ever raised by a write
    AT_MAX = "at_max"
    UNKNOWN_NODE = "unknown_node"
    NOT_IN_POOL = "not_in_pool"  # the node is not an instance of this scale set
    NOT_LIVE = "not_live"
    SCALE_DOWN_DISABLED = "scale_down_disabled"
    PROTOTYPE = "prototype"
    TOO_FEW_CANDIDATES = "too_few_candidates"
    BELOW_MIN = "below_min"


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    message: str  # for the operator: what was asked, what the read showed, why not


@dataclass(frozen=True)
class ScaleUpPlan:
    current_capacity: int  # sku.capacity in the read
    new_capacity: int  # the capacity to write: above both capacity and the active count
    etag: str  # of the read this plan came from: send it as If-Match
    bounded: bool  # the request went past max_nodes and was cut to it
    active: int  # active instances in the read
    requested: int  # the capacity asked for, before the bound

    @property
    def detail(self) -> str:
        bound = f" (asked for {self.requested}, bounded by max_nodes)" if self.bounded else ""
        return (
            f"capacity {self.current_capacity} -> {self.new_capacity}{bound}; "
            f"{_n(self.active, 'active instance')} in the read"
        )


def plan_scale_up(
    state: ScaleSetState,
    pool_max: int,
    *,
    delta: int | None = None,
    target: int | None = None,
) -> ScaleUpPlan | Refusal:
    """The capacity to write to add instances, from this fresh read alone, or why not. Pure.

    Counts from the larger of sku.capacity and the active instances, so a stale low capacity
    never turns a scale-up into a write that lets Azure delete instances.
    """
    if (delta is None) == (target is None):
        return Refusal(
            RefusalReason.INVALID_REQUEST,
            f"a scale-up needs exactly one of delta or target; got delta={delta}, target={target}",
        )
    active = count(state).active
    base = max(state.capacity, active)
    size = f"capacity {state.capacity}, {_n(active, 'active instance')}"
    if delta is not None and delta <= 0:
        return Refusal(
            RefusalReason.DELTA_NOT_POSITIVE,
            f"a scale-up delta must be above 0; got {delta} (scale in names nodes or a count)",
        )
    if target is not None and target <= base:
        return Refusal(
            RefusalReason.NOT_ABOVE_CURRENT,
            f"target {target} is not above the current size ({size}); capacity is only ever "
            "raised by a write, scale in deletes named nodes",
        )
    if base >= pool_max:
        return Refusal(RefusalReason.AT_MAX, f"already at max_nodes {pool_max} ({size})")
    requested = base + delta if delta is not None else int(target or 0)
    new = min(requested, pool_max)
    if new <= base:  # unreachable after the checks above; it is the invariant, so it stays
        return Refusal(
            RefusalReason.NOT_ABOVE_CURRENT,
            f"capacity {new} is not above the current size ({size})",
        )
    return ScaleUpPlan(
        current_capacity=state.capacity,
        new_capacity=new,
        etag=state.etag,
        bounded=requested > pool_max,
        active=active,
        requested=requested,
    )


@dataclass(frozen=True)
class Victim:
    instance_id: str
    node_name: str
    load: float | None  # the node's load as given; None when there was no data


@dataclass(frozen=True)
class ScaleInPlan:
    """Named instances to drain and delete; never a capacity (a write only ever raises it)."""

    victims: tuple[Victim, ...]
    live_before: int
    live_after: int
    etag: str  # of the read this plan came from

    @property
    def instance_ids(self) -> tuple[str, ...]:
        return tuple(victim.instance_id for victim in self.victims)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(victim.node_name for victim in self.victims)


def plan_scale_in(
    state: ScaleSetState,
    nodes: Iterable[NodeView],
    pool_min: int,
    node_group: str,
    *,
    count: int | None = None,
    names: Sequence[str] = (),
    load: Mapping[str, float] = _NO_LOAD,
) -> ScaleInPlan | Refusal:
    """The live instances to remove — `names`, or the `count` least loaded — or why not. Pure.

    Never a scale-down-disabled node or the prototype donor. Nodes without load data come last:
    missing data is never read as idle. Ties go to the highest instance id. The batch must leave
    `live - len(victims) >= pool_min` on this read.
    """
    if bool(names) == (count is not None):
        return Refusal(
            RefusalReason.INVALID_REQUEST,
            f"a scale-in names nodes or gives a count, exactly one; got names={list(names)}, "
            f"count={count}",
        )
    if count is not None and count <= 0:
        return Refusal(
            RefusalReason.INVALID_REQUEST, f"a scale-in count must be above 0; got {count}"
        )
    views = list(nodes)
    states = {instance.instance_id: classify(instance) for instance in state.instances}
    live = sum(1 for current in states.values() if current is InstanceState.LIVE)
    pairs = match_nodes(state, views, node_group).pairs
    if names:
        chosen = _named(views, names, pairs, states, load)
    else:
        chosen = _least_loaded(views, int(count or 0), pairs, states, load)
    if isinstance(chosen, Refusal):
        return chosen
    after = live - len(chosen)
    if after < pool_min:
        return Refusal(
            RefusalReason.BELOW_MIN,
            f"removing {len(chosen)} of {_n(live, 'live instance')} would leave {after}, "
            f"below min_nodes {pool_min}",
        )
    return ScaleInPlan(victims=chosen, live_before=live, live_after=after, etag=state.etag)


def _named(
    views: list[NodeView],
    names: Sequence[str],
    pairs: Mapping[str, str],
    states: Mapping[str, InstanceState],
    load: Mapping[str, float],
) -> tuple[Victim, ...] | Refusal:
    by_name = {view.name: view for view in views}
    instance_of = {name: instance for instance, name in pairs.items()}
    victims: list[Victim] = []
    problems: list[tuple[RefusalReason, str]] = []
    for name in dict.fromkeys(names):
        node = by_name.get(name)
        instance = instance_of.get(name)
        if node is None:
            problems.append((RefusalReason.UNKNOWN_NODE, f"no node named {name!r}"))
        elif node.prototype:
            problems.append(
                (RefusalReason.PROTOTYPE, f"node {name!r} is the prototype donor (never removed)")
            )
        elif node.scale_down_disabled:
            problems.append(
                (RefusalReason.SCALE_DOWN_DISABLED, f"node {name!r} is marked scale-down-disabled")
            )
        elif instance is None:
            problems.append(
                (RefusalReason.NOT_IN_POOL, f"node {name!r} is not an instance of this scale set")
            )
        elif states[instance] is not InstanceState.LIVE:
            problems.append(
                (
                    RefusalReason.NOT_LIVE,
                    f"node {name!r} (instance {instance}) is {states[instance]}, not live",
                )
            )
        else:
            victims.append(Victim(instance, name, _load_of(load, name)))
    if problems:
        return Refusal(problems[0][0], "; ".join(message for _, message in problems))
    return tuple(victims)


def _least_loaded(
    views: list[NodeView],
    wanted: int,
    pairs: Mapping[str, str],
    states: Mapping[str, InstanceState],
    load: Mapping[str, float],
) -> tuple[Victim, ...] | Refusal:
    by_name = {view.name: view for view in views}
    live = [(i, by_name[n]) for i, n in pairs.items() if states[i] is InstanceState.LIVE]
    disabled = sum(1 for _, node in live if node.scale_down_disabled)
    prototypes = sum(1 for _, node in live if node.prototype and not node.scale_down_disabled)
    eligible = [(i, node) for i, node in live if not (node.scale_down_disabled or node.prototype)]
    if wanted > len(eligible):
        return Refusal(
            RefusalReason.TOO_FEW_CANDIDATES,
            f"asked to remove {wanted} but only {len(eligible)} of {_n(len(live), 'live node')} "
            f"may be removed ({disabled} scale-down-disabled, {prototypes} prototype)",
        )
    # Two stable sorts: highest instance id first, then by load with missing data last.
    ranked = sorted(eligible, key=lambda pair: _id_key(pair[0]), reverse=True)
    ranked.sort(key=lambda pair: _load_key(_load_of(load, pair[1].name)))
    return tuple(Victim(i, node.name, _load_of(load, node.name)) for i, node in ranked[:wanted])


def _load_of(load: Mapping[str, float], name: str) -> float | None:
    value = load.get(name)
    return value if value is not None and math.isfinite(value) else None  # NaN is no data


def _load_key(value: float | None) -> tuple[int, float]:
    return (1, 0.0) if value is None else (0, value)


def _id_key(instance_id: str) -> tuple[int, int, str]:
    # Uniform scale sets number their instances; compare those as numbers ("10" after "9").
    if instance_id.isdigit():
        return (0, int(instance_id), "")
    return (1, 0, instance_id)


def _by_id(instance_ids: Iterable[str]) -> list[str]:
    return sorted(instance_ids, key=_id_key)


def _sorted_instances(instances: Iterable[VmInstance]) -> list[VmInstance]:
    return sorted(instances, key=lambda instance: _id_key(instance.instance_id))
