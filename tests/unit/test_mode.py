"""POOLKEEPER_MODE: act or observe, unset is act, anything else stops the configuration."""

from __future__ import annotations

import json

import pytest

from shared.config import ConfigError, load_config
from shared.config.mode import Mode, mode_from_settings

POOLS = json.dumps(
    {
        "pools": [
            {
                "name": "gpu",
                "vmss_id": "/subscriptions/6f1c2a9e-4b7d-4c3e-9a51-2d8e7f0b3c64/resourceGroups/"
                "rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss-gpu",
                "node_group": "gpu",
                "min_nodes": 0,
                "max_nodes": 4,
            }
        ]
    }
)


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, Mode.ACT),
        ("", Mode.ACT),
        ("act", Mode.ACT),
        ("observe", Mode.OBSERVE),
        ("Observe ", Mode.OBSERVE),
    ],
)
def test_the_mode_setting_reads_act_or_observe_and_unset_is_act(
    value: str | None, mode: Mode
) -> None:
    assert mode_from_settings({} if value is None else {"POOLKEEPER_MODE": value}) is mode


def test_a_mistyped_mode_is_a_configuration_error_naming_the_setting_and_the_values() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"POOLKEEPER_POOLS": POOLS, "POOLKEEPER_MODE": "dry-run"})
    assert caught.value.problems == [
        "POOLKEEPER_MODE is 'dry-run'; set it to 'observe' (decide and record only) or 'act'"
    ]
