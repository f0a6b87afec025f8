"""Unit tests for shared/config/: every configuration mistake gets a message naming the pool,
the field, what is allowed and what was given; good configurations load from either setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.config import ConfigError, PoolNotFound, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
SUBSCRIPTION = "6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64"
VMSS = "Microsoft.Compute/virtualMachineScaleSets"


def vmss_id(
    name: str, *, subscription: str = SUBSCRIPTION, group: str = "rg-prod-aks", kind: str = VMSS
) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{kind}/{name}"


def pool(name: str = "gpu", **changes: Any) -> dict[str, Any]:
    """A valid pool called `name`, with `changes` applied; a change to None drops the field."""
    fields = {
        "name": name,
        "vmss_id": vmss_id(f"vmss-{name}"),
        "node_group": name,
        "min_nodes": 0,
        "max_nodes": 4,
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not None}


def document(*pools: dict[str, Any], **top_level: Any) -> str:
    return json.dumps({"pools": list(pools), **top_level})


ALLOWED_VMSS_ID = (
    "must be a full ARM resource id like /subscriptions/<subscription-guid>/resourceGroups/"
    "<resource-group>/providers/Microsoft.Compute/virtualMachineScaleSets/<name>"
)

# (configuration text, the start of the one expected problem, fragments the problem must hold)
MISTAKES = [
    pytest.param(
        document(pool(maxNodes=5)),
        "pool 'gpu' field 'maxNodes': is not a known field",
        [
            "allowed fields are name, vmss_id, node_group, min_nodes, max_nodes, cluster, "
            "capacity, patch, image, repair"
        ],
        id="unknown-key-in-pool",
    ),
    pytest.param(
        document(pool(), scaling={}),
        "top-level field 'scaling': is not a known field",
        ["allowed top-level fields are pools"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        document(pool(vmss_id="abc")),
        "pool 'gpu' field 'vmss_id': ",
        [ALLOWED_VMSS_ID, "got 'abc'"],
        id="vmss-id-not-an-arm-id",
    ),
    pytest.param(
        document(pool(vmss_id=vmss_id("vm-gpu-0", kind="Microsoft.Compute/virtualMachines"))),
        "pool 'gpu' field 'vmss_id': ",
        [ALLOWED_VMSS_ID, "got '/subscriptions/", "/virtualMachines/vm-gpu-0'"],
        id="vmss-id-of-a-virtual-machine",
    ),
    pytest.param(
        document(pool(vmss_id=vmss_id("vmss-gpu", subscription="prod"))),
        "pool 'gpu' field 'vmss_id': ",
        [ALLOWED_VMSS_ID, "got '/subscriptions/prod/"],
        id="vmss-id-subscription-not-a-guid",
    ),
    pytest.param(
        document(pool(vmss_id=vmss_id("vmss-gpu", group="rg-prod."))),
        "pool 'gpu' field 'vmss_id': ",
        [ALLOWED_VMSS_ID, "/resourceGroups/rg-prod./"],
        id="vmss-id-resource-group-ends-in-dot",
    ),
    pytest.param(
        document(pool(vmss_id=vmss_id("vmss-gpu") + "/virtualMachines/3")),
        "pool 'gpu' field 'vmss_id': ",
        [ALLOWED_VMSS_ID, "/vmss-gpu/virtualMachines/3'"],
        id="vmss-id-of-a-scale-set-instance",
    ),
    pytest.param(
        document(pool(min_nodes=5, max_nodes=3)),
        "pool 'gpu' field 'min_nodes': ",
        ["must be at most max_nodes (3)", "got 5"],
        id="min-nodes-above-max-nodes",
    ),
    pytest.param(
        document(pool(min_nodes=-1)),
        "pool 'gpu' field 'min_nodes': ",
        ["must be a whole number of at least 0", "got -1"],
        id="negative-min-nodes",
    ),
    pytest.param(
        document(pool(max_nodes=1001)),
        "pool 'gpu' field 'max_nodes': ",
        ["must be a whole number from 1 to 1000", "got 1001"],
        id="max-nodes-above-scale-set-limit",
    ),
    pytest.param(
        document(pool(max_nodes=0)),
        "pool 'gpu' field 'max_nodes': ",
        ["must be a whole number from 1 to 1000", "got 0"],
        id="max-nodes-zero",
    ),
    pytest.param(
        document(pool(min_nodes=True)),
        "pool 'gpu' field 'min_nodes': ",
        ["must be a whole number of at least 0", "got true"],
        id="bool-where-int-expected",
    ),
    pytest.param(
        document(pool(max_nodes="3")),
        "pool 'gpu' field 'max_nodes': ",
        ["must be a whole number from 1 to 1000", "got '3'"],
        id="string-where-int-expected",
    ),
    pytest.param(
        document(pool(max_nodes=2.5)),
        "pool 'gpu' field 'max_nodes': ",
        ["must be a whole number from 1 to 1000", "got 2.5"],
        id="fraction-where-int-expected",
    ),
    pytest.param(
        document(pool(node_group=None)),
        "pool 'gpu' field 'node_group': is missing",
        ["must be a Kubernetes label value for elastisys.io/node-group"],
        id="missing-required-field",
    ),
    pytest.param(
        document(pool(node_group="gpu nodes")),
        "pool 'gpu' field 'node_group': ",
        ["Kubernetes label value", "starting and ending with a letter or digit", "got 'gpu nodes'"],
        id="node-group-not-a-label-value",
    ),
    pytest.param(
        document(pool(node_group="gpu-")),
        "pool 'gpu' field 'node_group': ",
        ["starting and ending with a letter or digit", "got 'gpu-'"],
        id="node-group-ends-in-dash",
    ),
    pytest.param(
        document(pool(node_group="g" * 64)),
        "pool 'gpu' field 'node_group': ",
        ["1-63 characters", "got 'gggg"],
        id="node-group-too-long",
    ),
    pytest.param(
        document(pool(name="GPU")),
        "pools[0] field 'name': ",
        ["1-63 characters of lowercase letters, digits and '-'", "got 'GPU'"],
        id="pool-name-with-capitals",
    ),
    pytest.param(
        document(pool(name=None, node_group="gpu")),
        "pools[0] field 'name': is missing",
        ["must be 1-63 characters of lowercase letters"],
        id="pool-name-missing",
    ),
    pytest.param(
        document(pool("gpu"), pool("gpu", vmss_id=vmss_id("vmss-gpu-2"), node_group="gpu-2")),
        "pool 'gpu' (pools[1]) field 'name': ",
        ["must be unique across pools", "got 'gpu', already used by pool 'gpu' (pools[0])"],
        id="duplicate-pool-names",
    ),
    pytest.param(
        document(pool("a"), pool("b", vmss_id=vmss_id("vmss-a").upper())),
        "pool 'b' (pools[1]) field 'vmss_id': ",
        ["must be a scale set that no other pool manages", "already used by pool 'a' (pools[0])"],
        id="duplicate-scale-sets-differing-in-case",
    ),
    pytest.param(
        document(pool("a", node_group="workers"), pool("b", node_group="workers")),
        "pool 'b' (pools[1]) field 'node_group': ",
        ["must be a node group that no other pool owns", "got 'workers', already used by pool 'a'"],
        id="duplicate-node-group",
    ),
    pytest.param(
        document(),
        "top-level field 'pools': ",
        ["must be a list of at least one pool", "got []"],
        id="empty-pools-list",
    ),
    pytest.param(
        "{}",
        "top-level field 'pools': is missing",
        ["must be a list of at least one pool"],
        id="pools-missing",
    ),
    pytest.param(
        document(pool(), 3),
        "pools[1]: must be an object",
        ["with the fields name, vmss_id, node_group, min_nodes, max_nodes", "got 3"],
        id="pool-not-an-object",
    ),
    pytest.param(
        json.dumps([pool()]),
        "the configuration must be a JSON object",
        ['{"pools": [...]}', 'got [{"name": "gpu"'],
        id="top-level-not-an-object",
    ),
    pytest.param(
        '{\n  "pools": [\n    {"name": "gpu",}\n  ]\n}',
        "not valid JSON at line 3 column 20: ",
        ["Expecting property name"],
        id="malformed-json",
    ),
    pytest.param(
        '{"pools": [{"name": "gpu", "max_nodes": 4, "max_nodes": 400}]}',
        "key 'max_nodes' appears twice in one JSON object",
        ["each key may appear once"],
        id="key-repeated-in-an-object",
    ),
]


@pytest.mark.parametrize(("text", "start", "fragments"), MISTAKES)
def test_each_mistake_is_one_problem_naming_pool_field_rule_and_value(
    text: str, start: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="POOLKEEPER_POOLS")

    [problem] = caught.value.problems
    assert problem.startswith(start)
    for fragment in fragments:
        assert fragment in problem


def test_error_message_has_a_header_then_one_line_per_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document(pool(min_nodes=-1, max_nodes=0)), source="POOLKEEPER_POOLS")

    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid Poolkeeper configuration in POOLKEEPER_POOLS: 2 problems"
    assert lines[1:] == [f"  - {problem}" for problem in caught.value.problems]


def test_all_problems_are_reported_together_including_overlaps_of_otherwise_broken_pools() -> None:
    text = document(
        pool("system", vmss_id="abc"),
        pool("workers", max_nodes="50", min_nodes=8),
        pool("batch", node_group="workers", extra=1),
        pool("BATCH", vmss_id=vmss_id("vmss-batch-2"), node_group="batch-2"),
    )

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="test")

    assert caught.value.problems == [
        f"pool 'system' field 'vmss_id': {ALLOWED_VMSS_ID}; got 'abc'",
        "pool 'workers' field 'max_nodes': must be a whole number from 1 to 1000 "
        "(the scale set instance limit); got '50'",
        "pool 'batch' field 'extra': is not a known field; "
        "allowed fields are name, vmss_id, node_group, min_nodes, max_nodes, cluster, capacity, "
        "patch, "
        "image, repair",
        "pools[3] field 'name': must be 1-63 characters of lowercase letters, digits and '-', "
        "starting with a letter or digit; got 'BATCH'",
        "pool 'batch' (pools[2]) field 'node_group': must be a node group that no other pool "
        "owns; got 'workers', already used by pool 'workers' (pools[1])",
    ]
    assert str(caught.value).startswith("invalid Poolkeeper configuration in test: 5 problems\n")


SETTINGS_MISTAKES = [
    pytest.param(
        {"POOLKEEPER_POOLS": document(pool()), "POOLKEEPER_POOLS_FILE": "pools.json"},
        ["set only one of POOLKEEPER_POOLS", "and POOLKEEPER_POOLS_FILE", "both are set"],
        id="both-settings",
    ),
    pytest.param(
        {},
        [
            "set one of POOLKEEPER_POOLS",
            "and POOLKEEPER_POOLS_FILE",
            "neither is set",
            "docs/configuration.md",
        ],
        id="neither-setting",
    ),
    pytest.param(
        {"POOLKEEPER_POOLS": "  ", "POOLKEEPER_POOLS_FILE": ""},
        ["neither is set"],
        id="blank-settings-count-as-unset",
    ),
]


@pytest.mark.parametrize(("settings", "fragments"), SETTINGS_MISTAKES)
def test_exactly_one_pools_setting_must_be_set(
    settings: dict[str, str], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(settings)

    [problem] = caught.value.problems
    for fragment in fragments:
        assert fragment in problem


def test_missing_pools_file_names_the_setting_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"

    with pytest.raises(ConfigError) as caught:
        load_config({"POOLKEEPER_POOLS_FILE": str(missing)})

    [problem] = caught.value.problems
    assert problem.startswith(f"POOLKEEPER_POOLS_FILE is '{missing}'")
    assert f"no file at {missing}" in problem


def test_pools_file_that_is_a_directory_is_reported_not_raised_raw(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"POOLKEEPER_POOLS_FILE": str(tmp_path)})

    assert "cannot be read" in caught.value.problems[0]


def test_mistake_in_pools_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pools.json"
    path.write_text(document(pool(min_nodes=-1)))

    with pytest.raises(ConfigError) as caught:
        load_config({"POOLKEEPER_POOLS_FILE": str(path)})

    assert str(caught.value).startswith(
        f"invalid Poolkeeper configuration in POOLKEEPER_POOLS_FILE ({path}): 1 problem\n"
    )


def test_example_file_loads_through_pools_file_setting() -> None:
    config = load_config({"POOLKEEPER_POOLS_FILE": str(REPO / "pools.example.json")})

    assert [(p.name, p.node_group, p.min_nodes, p.max_nodes) for p in config.pools] == [
        ("system", "system", 3, 6),
        ("workers", "workers", 3, 50),
    ]
    assert config.pool("workers").resource_group == "rg-capz-prod"


def test_relative_pools_file_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pools.json").write_text("\ufeff" + document(pool()), encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    config = load_config({"POOLKEEPER_POOLS_FILE": "pools.json"})

    assert config.pool("gpu").max_nodes == 4


def test_inline_pools_setting_loads() -> None:
    config = load_config({"POOLKEEPER_POOLS": document(pool("a"), pool("b", min_nodes=2))})

    assert config.pool("b").min_nodes == 2
    assert [p.name for p in config.pools] == ["a", "b"]


def test_pool_exposes_the_parts_of_its_scale_set_id() -> None:
    config = parse_config(
        document(pool(vmss_id=vmss_id("vmss-gpu_01", group="MC_rg-prod(aks).eu"))), source="test"
    )

    gpu = config.pool("gpu")
    assert (gpu.subscription_id, gpu.resource_group, gpu.vmss_name) == (
        SUBSCRIPTION,
        "MC_rg-prod(aks).eu",
        "vmss-gpu_01",
    )


def test_pool_for_vmss_ignores_case_like_arm() -> None:
    config = parse_config(document(pool("a"), pool("b")), source="test")
    shouted = vmss_id("vmss-b").upper()

    assert config.pool_for_vmss(shouted) == config.pool("b")
    assert config.pool_for_vmss(vmss_id("vmss-c")) is None


def test_vmss_id_keywords_and_provider_match_in_any_case() -> None:
    lowered = vmss_id("vmss-gpu").lower()

    config = parse_config(document(pool(vmss_id=lowered)), source="test")

    assert config.pool("gpu").vmss_id == lowered


def test_unknown_pool_name_raises_pool_not_found_naming_it() -> None:
    config = parse_config(document(pool("a"), pool("b")), source="test")

    with pytest.raises(KeyError) as caught:
        config.pool("c")

    assert isinstance(caught.value, PoolNotFound)
    assert str(caught.value) == "no pool named 'c' is configured; configured pools: a, b"


def test_boundary_values_are_accepted() -> None:
    config = parse_config(
        document(
            pool(
                "a" * 63,
                vmss_id=vmss_id("v" * 64),
                node_group="a.b_c-D" * 9,
                min_nodes=1000,
                max_nodes=1000,
            ),
            pool("b", min_nodes=0, max_nodes=1),
        ),
        source="test",
    )

    assert [(p.min_nodes, p.max_nodes) for p in config.pools] == [(1000, 1000), (0, 1)]


def test_config_is_immutable() -> None:
    config = parse_config(document(pool()), source="test")

    with pytest.raises(ValueError, match="frozen"):
        config.pool("gpu").max_nodes = 10  # type: ignore[misc]


def test_capacity_section_defaults_and_per_pool_thresholds() -> None:
    config = parse_config(
        json.dumps(
            {
                "pools": [
                    {**_capacity_pool(), "capacity": {"p1_cpu": 90, "auto_scale_up_on_p2": True}},
                ]
            }
        ),
        source="test",
    )
    settings = config.pools[0].capacity
    assert (settings.p1_cpu, settings.p1_memory, settings.p2_cpu) == (90.0, 85.0, 75.0)
    assert settings.auto_scale_up_on_p2 and not settings.execute_downscale


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        ({"p1_cpu": 0}, "field 'capacity.p1_cpu': must be a percentage above 0 and at most 100"),
        ({"p2_memory": 101}, "field 'capacity.p2_memory': must be a percentage above 0"),
        ({"p1_cpu": -5}, "field 'capacity.p1_cpu'"),
        ({"cooldown_minutes": 0}, "field 'capacity.cooldown_minutes': must be a whole number"),
        ({"execute_downscale": "yes"}, "field 'capacity.execute_downscale': must be true or false"),
        ({"p3_cpu": 50}, "field 'capacity.p3_cpu': is not a known field"),
    ],
)
def test_capacity_mistakes_name_the_pool_and_the_field(capacity: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(
            json.dumps({"pools": [{**_capacity_pool(), "capacity": capacity}]}), source="test"
        )
    assert f"pool 'cap' {message}" in str(raised.value)


def _capacity_pool() -> dict:
    return {
        "name": "cap",
        "node_group": "cap",
        "min_nodes": 1,
        "max_nodes": 5,
        "vmss_id": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
        "/providers/Microsoft.Compute/virtualMachineScaleSets/vmss-cap",
    }
