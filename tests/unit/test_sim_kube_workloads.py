"""The scenario's `workloads` section is parsed strictly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from local.sim.kube.workloads import parse_workloads


def test_defaults_and_a_full_section() -> None:
    workloads = parse_workloads(
        {
            "start_seconds": 3,
            "deployments": [
                {
                    "name": "web",
                    "replicas": 3,
                    "requests": {"cpu": "250m", "memory": "256Mi"},
                    "node_selector": {"elastisys.io/node-group": "workers"},
                    "pdb": {"max_unavailable": "25%"},
                }
            ],
            "daemonsets": [{"name": "kube-proxy"}],
            "static_pods": [{"name": "etcd"}],
            "pods": [{"name": "job", "phase": "Succeeded"}],
            "pdbs": [{"name": "extra", "selector": {"app": "web"}, "min_available": 1}],
        }
    )
    assert workloads.replace_seconds == 2
    assert workloads.deployments[0].pdb is not None
    assert workloads.daemonsets[0].namespace == "kube-system"
    assert parse_workloads(None).deployments == []


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"deployments": [{"name": "web", "replicas": 1, "colour": "red"}]}, "Extra inputs"),
        ({"deployments": [{"name": "Web", "replicas": 1}]}, "should match pattern"),
        (
            {
                "deployments": [
                    {"name": "w", "replicas": 1, "pdb": {"min_available": 1, "max_unavailable": 1}}
                ]
            },
            "exactly one of min_available and max_unavailable",
        ),
        (
            {"deployments": [{"name": "w", "replicas": 1, "pdb": {"min_available": "50"}}]},
            "percentage",
        ),
        (
            {"deployments": [{"name": "w", "replicas": 1, "requests": {"cpu": "lots"}}]},
            "regular expression",
        ),
        (
            {"pods": [{"name": "p"}, {"name": "p"}]},
            "pod default/p is defined twice",
        ),
        (
            {
                "deployments": [{"name": "w", "replicas": 1, "pdb": {"min_available": 1}}],
                "pdbs": [{"name": "w", "selector": {"a": "b"}, "min_available": 1}],
            },
            "pdb default/w is defined twice",
        ),
    ],
)
def test_mistakes_are_errors(section: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        parse_workloads(section)
