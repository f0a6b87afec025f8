"""Which scale sets and workloads belong to one of a scenario's `clusters` (pure).

A cluster's nodes are the instances of its `scale_sets`. Its workloads are its own `workloads`
when it has them; otherwise the top-level `workloads` entries that fit its nodes:

- a deployment, DaemonSet, static pod, or a pod without `node`: when its `node_selector` matches
  the labels every node of one of the cluster's scale sets carries (`nodes.template_labels`:
  node group, agent pool, mode, role, OS, arch, instance type, region). An empty selector matches
  every cluster that has a scale set, so such an entry runs in each of them;
- a pod with `node`: in the cluster of the scale set whose computer-name prefix starts that name;
- a standalone PDB: in each cluster that got an entry of its namespace whose pod labels it
  selects (a deployment's own `pdb` goes with the deployment).
"""

from __future__ import annotations

from local.sim.kube.nodes import template_labels
from local.sim.kube.workloads import BarePod, PodTemplate, Workloads
from local.sim.scenario import ClusterSpec, ScaleSetSpec, Scenario
from local.sim.world import computer_name_prefix


def cluster_spec(scenario: Scenario, name: str) -> ClusterSpec:
    for spec in scenario.clusters or []:
        if spec.name == name:
            return spec
    raise KeyError(f"the scenario has no cluster {name!r}")


def members(scenario: Scenario, spec: ClusterSpec) -> list[ScaleSetSpec]:
    """The cluster's scale sets (by name, ignoring case, as Azure does)."""
    names = {m.lower() for m in spec.scale_sets}
    return [s for s in scenario.scale_sets if s.name.lower() in names]


def _pod_labels(entry: PodTemplate, name: str, default: dict[str, str]) -> dict[str, str]:
    return entry.labels or default or {"app": name}


def workloads_of(scenario: Scenario, spec: ClusterSpec) -> Workloads:
    """The cluster's workloads: its own, or the top-level entries that fit its nodes."""
    if spec.workloads is not None:
        return spec.workloads
    scale_sets = members(scenario, spec)
    templates = [template_labels(s, scenario.location) for s in scale_sets]
    prefixes = [computer_name_prefix(s) for s in scale_sets]

    def fits(entry: PodTemplate) -> bool:
        return any(
            all(labels.get(k) == v for k, v in entry.node_selector.items()) for labels in templates
        )

    def placed(pod: BarePod) -> bool:
        if pod.node is None:
            return fits(pod)
        return any(pod.node.startswith(prefix) for prefix in prefixes)

    source = scenario.workloads
    deployments = [d for d in source.deployments if fits(d)]
    daemonsets = [d for d in source.daemonsets if fits(d)]
    static_pods = [s for s in source.static_pods if fits(s)]
    pods = [p for p in source.pods if placed(p)]
    running = [
        *((d.namespace, _pod_labels(d, d.name, {})) for d in (*deployments, *daemonsets, *pods)),
        *(
            (s.namespace, _pod_labels(s, s.name, {"component": s.name, "tier": "node"}))
            for s in static_pods
        ),
    ]
    pdbs = [
        b
        for b in source.pdbs
        if any(
            namespace == b.namespace and all(labels.get(k) == v for k, v in b.selector.items())
            for namespace, labels in running
        )
    ]
    return source.model_copy(
        update={
            "deployments": deployments,
            "daemonsets": daemonsets,
            "static_pods": static_pods,
            "pods": pods,
            "pdbs": pdbs,
        }
    )
