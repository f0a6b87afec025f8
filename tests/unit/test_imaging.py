"""Donor selection, version names, pruning, refusals and the canary's verdict (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.decide.imaging import (
    CanaryNode,
    DonorCandidate,
    choose_donor,
    judge_canary,
    model_change_refusal,
    parse_image_ref,
    version_key,
    version_name,
    versions_to_prune,
)

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
BUILT = NOW - timedelta(days=3)


def node(name: str, **changes: object) -> DonorCandidate:
    base = DonorCandidate(
        name=name,
        instance_id=name[-1],
        live=True,
        ready=True,
        ready_since=NOW - 5 * HOUR,
        unschedulable=False,
        claimed_by=None,
        reboot_pending=False,
        last_patched=NOW - 2 * HOUR,
        ignored=False,
    )
    return replace(base, **changes)


def choose(nodes: list[DonorCandidate], **overrides: object):
    options: dict[str, object] = {
        "now": NOW,
        "image_built_at": BUILT,
        "min_ready": HOUR,
        "min_candidates": 1,
        "max_image_age": timedelta(days=7),
    }
    return choose_donor(nodes, **(options | overrides))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"live": False}, "not live"),
        ({"instance_id": None}, "not live"),
        ({"ignored": True}, "ignore annotation"),
        ({"claimed_by": "patch-1"}, "claimed by job patch-1"),
        ({"unschedulable": True}, "cordoned"),
        ({"ready": False}, "not Ready"),
        ({"ready_since": NOW - timedelta(minutes=10)}, "Ready for 10 min, less than 60 min"),
        ({"reboot_pending": True}, "reboot is pending"),
        ({"last_patched": None}, "never patched"),
        ({"last_patched": BUILT - HOUR}, "not after the current image"),
    ],
)
def test_each_filter_excludes_a_node_and_says_why(changes: dict, reason: str) -> None:
    plan = choose([node("n0"), node("n1", **changes)])
    assert plan.donor == "n0"
    assert reason in plan.excluded["n1"]


def test_longest_ready_node_is_the_donor() -> None:
    plan = choose([node("n0", ready_since=NOW - 2 * HOUR), node("n1", ready_since=NOW - 9 * HOUR)])
    assert plan.donor == "n1"
    assert plan.candidates == ("n1", "n0")


def test_too_few_candidates_means_no_donor_and_names_the_count() -> None:
    plan = choose([node("n0"), node("n1", unschedulable=True)], min_candidates=2)
    assert plan.donor is None
    assert "fewer than min_candidates 2" in (plan.why_none or "")
    assert plan.excluded == {"n1": "cordoned"}


def test_old_image_relaxes_only_the_patch_date_filter() -> None:
    nodes = [node("n0", last_patched=None), node("n1", unschedulable=True)]
    fresh = choose(nodes)
    assert fresh.donor is None and not fresh.relaxed
    old = choose(nodes, image_built_at=NOW - timedelta(days=30))
    assert old.donor == "n0" and old.relaxed
    assert old.excluded == {"n1": "cordoned"}


def test_foreign_image_counts_as_old_but_zero_age_never_relaxes() -> None:
    nodes = [node("n0", last_patched=None)]
    assert choose(nodes, image_built_at=None).donor == "n0"
    assert choose(nodes, image_built_at=None, max_image_age=None).donor is None


def test_version_names_sort_by_time_and_stay_unique_within_a_second() -> None:
    first = version_name(NOW, [])
    assert first == "2026.1130.20000"
    second = version_name(NOW, [first])
    assert second == "2026.1130.20001"
    later = version_name(NOW + timedelta(days=40), [first, second])
    assert version_key(first) < version_key(second) < version_key(later)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1)))
def test_version_names_are_azure_version_numbers(when: datetime) -> None:
    parts = version_name(when, []).split(".")
    assert len(parts) == 3 and all(0 <= int(p) < 2**31 for p in parts)


def test_prune_takes_failed_versions_first_without_counting_them() -> None:
    versions = ["2026.1101.1", "2026.1110.1", "2026.1120.1"]
    gone = versions_to_prune(versions, keep=2, protected=[], failed=["2026.1120.1"])
    assert gone == ["2026.1120.1"]


def test_prune_keeps_the_newest_and_never_the_protected() -> None:
    versions = ["2026.1101.1", "2026.1110.1", "2026.1120.1", "2026.1130.1", "2026.909.1"]
    gone = versions_to_prune(versions, keep=2, protected=["2026.1101.1"])
    assert gone == ["2026.1110.1", "2026.909.1"]


def test_refusals_name_aks_and_upgrade_policies() -> None:
    aks = model_change_refusal({"aks-managed-poolName": "np1"}, "Manual", allow_upgrade_policy=True)
    assert aks and "node-image-only" in aks
    rolling = model_change_refusal({}, "Rolling", allow_upgrade_policy=False)
    assert rolling and "allow_upgrade_policy" in rolling
    assert model_change_refusal({}, "Rolling", allow_upgrade_policy=True) is None
    assert model_change_refusal({"team": "x"}, None, allow_upgrade_policy=False) is None


def test_image_references_parse_versions_and_definitions() -> None:
    gallery = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g"
    pinned = parse_image_ref(f"{gallery}/images/pool/versions/2026.1130.1")
    assert pinned and pinned.version == "2026.1130.1" and pinned.gallery_id == gallery
    latest = parse_image_ref(f"{gallery}/images/pool")
    assert latest and latest.version is None and latest.definition_id.endswith("/images/pool")
    assert parse_image_ref(None) is None


DEADLINE = NOW + timedelta(minutes=20)
OTHERS = {"n0": ("boot-0", "mid-0"), "n1": ("boot-1", "mid-1")}


def judge(canary: CanaryNode | None, now: datetime = NOW):
    return judge_canary(
        canary, donor_kernel="6.8.0-1020-azure", others=OTHERS, deadline=DEADLINE, now=now
    )


def canary(**changes: object) -> CanaryNode:
    base = CanaryNode("n2", True, "boot-2", "mid-2", "6.8.0-1020-azure")
    return replace(base, **changes)


def test_canary_is_proven_when_ready_distinct_and_on_the_donors_kernel() -> None:
    assert judge(canary()).state == "proven"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"machine_id": "mid-1"}, "shared with n1"),
        ({"boot_id": "boot-0"}, "boot id of its own"),
        ({"kernel": "6.8.0-1015-azure"}, "not the donor's"),
        ({"machine_id": ""}, "no machine-id"),
    ],
)
def test_canary_fails_on_identity_or_kernel(changes: dict, words: str) -> None:
    verdict = judge(canary(**changes))
    assert verdict.state == "failed" and words in verdict.reason


def test_shared_machine_id_fails_before_the_deadline_even_when_not_ready() -> None:
    assert judge(canary(ready=False, machine_id="mid-0")).state == "failed"


def test_canary_waits_until_its_deadline_then_fails() -> None:
    assert judge(None).state == "waiting"
    assert judge(canary(ready=False)).state == "waiting"
    assert "never registered" in judge(None, DEADLINE).reason
    assert judge(canary(ready=False), DEADLINE).state == "failed"
