"""A fleet of self-managed clusters on the simulator, for the fleet benchmarks: cluster
`capz-NN` with its scale sets `capz-NN-md-P` in its own resource group, its own TLS API server
and a ServiceAccount token from the simulated Key Vault, each scale set a pool of that cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services
from tests.jobs_support import settings_for
from tests.simulator import SUBSCRIPTION, cluster, running_simulator, scale_set, scenario


@dataclass(frozen=True)
class Fleet:
    clusters: int
    pools_per_cluster: int
    size: int  # instances per scale set
    group: Callable[[int], str]  # cluster number -> its resource group
    min_nodes: int = 1
    max_nodes: int = 200
    request_timeout_seconds: int | None = None

    def name(self, n: int) -> str:
        return f"capz-{n:02d}"

    def scale_sets(self, n: int) -> list[str]:
        return [f"{self.name(n)}-md-{p}" for p in range(self.pools_per_cluster)]

    def world(self) -> dict[str, Any]:
        """The simulator's scenario: every scale set running, every cluster served."""
        sets = [
            scale_set(vmss, self.size, zones=[], resource_group=self.group(n), node_group=vmss)
            for n in range(self.clusters)
            for vmss in self.scale_sets(n)
        ]
        clusters = [cluster(self.name(n), *self.scale_sets(n)) for n in range(self.clusters)]
        return scenario(*sets, clusters=clusters, speed=1)

    def started(self, state: Path) -> Any:
        """The simulator started with the world (a world's clusters are served from the start)."""
        (state / "scenario.json").write_text(json.dumps(self.world()))
        return running_simulator(state, state / "scenario.json")

    def services(self, sim: Any, storage: str) -> Services:
        """Poolkeeper's services for the fleet: every pool names its cluster, no default one."""
        clusters, pools = [], []
        for n in range(self.clusters):
            name, published = self.name(n), sim.cluster(self.name(n))
            clusters.append(
                {
                    "name": name,
                    "server": published["server"],
                    "ca": {"pem": published["ca_pem"]},
                    "auth": {"mode": "token", "secret": f"{name}-token"},
                }
                | (
                    {"request_timeout_seconds": self.request_timeout_seconds}
                    if self.request_timeout_seconds
                    else {}
                )
            )
            pools += [
                {
                    "name": vmss,
                    "cluster": name,
                    "node_group": vmss,
                    "min_nodes": self.min_nodes,
                    "max_nodes": self.max_nodes,
                    "vmss_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{self.group(n)}/"
                    f"providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}",
                }
                for vmss in self.scale_sets(n)
            ]
        settings = settings_for(sim, storage, pools)
        del settings["POOLKEEPER_KUBECONFIG"]  # no default cluster: every pool names its own
        settings["POOLKEEPER_POOLS"] = json.dumps({"clusters": clusters, "pools": pools})
        settings["POOLKEEPER_KEY_VAULT_URL"] = sim.info["key_vault"]["url"]
        return Services(
            settings,
            clock_from_settings(settings),
            load_config(settings),
            StorageAccount.from_settings(settings),
        )
