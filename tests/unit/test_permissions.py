"""Which needed Azure actions a scope's effective permissions lack (shared.decide.permissions)."""

from __future__ import annotations

from shared.decide.permissions import (
    DISK_ACTIONS,
    IDENTITY_ACTIONS,
    REFERENCE_ACTIONS,
    RUN_COMMAND_ACTIONS,
    SCALE_SET_ACTIONS,
    SNAPSHOT_ACTIONS,
    missing_actions,
)

NODE_ACTIONS = (
    *SCALE_SET_ACTIONS,
    *RUN_COMMAND_ACTIONS,
    *DISK_ACTIONS,
    *SNAPSHOT_ACTIONS,
    *REFERENCE_ACTIONS,
)

DELETE = "Microsoft.Compute/virtualMachineScaleSets/delete/action"
RUN = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action"


def test_a_wildcard_grants_everything_below_it_in_any_case() -> None:
    assert missing_actions(NODE_ACTIONS, [{"actions": ["*"]}]) == []
    compute_only = [{"actions": ["microsoft.compute/*"], "not_actions": []}]
    assert missing_actions(NODE_ACTIONS, compute_only) == [
        a for a in NODE_ACTIONS if not a.startswith("Microsoft.Compute/")
    ]


def test_not_actions_take_away_what_actions_grant() -> None:
    contributor_but = [{"actions": ["*"], "not_actions": [DELETE, "*/runCommand/action"]}]
    assert missing_actions(NODE_ACTIONS, contributor_but) == [DELETE, RUN]


def test_entries_add_up_and_exact_names_match_only_themselves() -> None:
    entries = [{"actions": [DELETE]}, {"actions": [RUN]}]
    assert missing_actions([DELETE, RUN], entries) == []
    assert missing_actions([DELETE], [{"actions": [DELETE + "x"]}]) == [DELETE]
    assert missing_actions([DELETE], []) == [DELETE]


def test_a_wildcard_segment_matches_no_segment_too() -> None:
    # Managed Identity Operator, the built-in role for assigning user-assigned identities.
    operator = [{"actions": ["Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action"]}]
    assert missing_actions(IDENTITY_ACTIONS, operator) == []
    assert missing_actions([DELETE], operator) == [DELETE]
    narrower = [{"actions": ["Microsoft.Compute/virtualMachineScaleSets/*/action"]}]
    assert missing_actions([DELETE, RUN], narrower) == []
