"""Donor selection, version names, pruning, refusals, the canary's verdict and soak, the model
restore's guard, which versions are in use (pure); the image section's canary settings."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import ConfigError, parse_config
from shared.decide.imaging import (
    CanaryNode,
    DonorCandidate,
    choose_donor,
    judge_canary,
    model_change_refusal,
    parse_image_ref,
    restore_guard,
    version_key,
    version_name,
    versions_in_use,
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
    for late in (judge(None, DEADLINE), judge(canary(ready=False), DEADLINE)):
        assert "canary_ready_minutes" in late.reason and "02:20Z" in late.reason, late.reason


SOAK = timedelta(minutes=5)


def soaking(node: CanaryNode, now: datetime, seen: datetime | None = None):
    return judge_canary(
        node,
        donor_kernel="6.8.0-1020-azure",
        others=OTHERS,
        deadline=DEADLINE,
        now=now,
        soak=SOAK,
        ready_seen=seen,
    )


def test_a_canary_is_proven_only_after_it_stayed_ready_for_the_soak() -> None:
    ready_at = NOW + timedelta(minutes=3)
    node = canary(ready_since=ready_at)
    first = soaking(node, ready_at + timedelta(seconds=30))
    assert first.state == "waiting" and first.ready_since == ready_at and "soaking" in first.reason
    assert soaking(node, ready_at + timedelta(minutes=4), ready_at).state == "waiting"
    proven = soaking(node, ready_at + SOAK, ready_at)
    assert proven.state == "proven" and "Ready for 5 min" in proven.reason
    # The soak may run past the Ready deadline: it is bounded by its own length.
    late = canary(ready_since=DEADLINE - timedelta(minutes=1))
    assert soaking(late, DEADLINE + timedelta(minutes=2), late.ready_since).state == "waiting"


def test_a_canary_that_goes_not_ready_during_its_soak_fails() -> None:
    ready_at = NOW + timedelta(minutes=3)
    went = soaking(canary(ready=False), ready_at + timedelta(minutes=2), ready_at)
    assert went.state == "failed" and "went NotReady during its soak" in went.reason
    # Down and up again between two checks: its Ready condition moved on.
    again = canary(ready_since=ready_at + timedelta(minutes=2))
    flapped = soaking(again, ready_at + timedelta(minutes=3), ready_at)
    assert flapped.state == "failed" and "NotReady and back" in flapped.reason


GALLERY = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/p"


def test_the_restore_writes_only_while_the_model_names_the_jobs_version() -> None:
    ours = f"{GALLERY}/images/a/versions/1.0.1"
    previous = {"publisher": "microsoft-aks", "offer": "aks", "sku": "x", "version": "1"}
    assert restore_guard({"id": ours.upper()}, ours=ours, previous=previous)[0] == "write"
    assert restore_guard(dict(previous), ours=ours, previous=previous)[0] == "done"
    verdict, why = restore_guard(
        {"id": ours.replace("1.0.1", "1.0.2")}, ours=ours, previous=previous
    )
    assert verdict == "left" and "changed by someone else" in why


def test_versions_in_use_are_the_models_and_every_instances() -> None:
    definition = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/p/images/a"
    )
    versions = [
        ("1.0.1", "Succeeded", False),
        ("1.0.2", "Succeeded", False),
        ("1.0.3", "Succeeded", True),  # excluded: never "latest"
        ("1.0.4", "Failed", True),
    ]
    pinned = parse_image_ref(f"{definition}/versions/1.0.1")
    use = versions_in_use(versions, model=pinned, definition_id=definition, running={"7": "1.0.4"})
    assert set(use) == {"1.0.1", "1.0.4"} and "instance 7 runs it" in use["1.0.4"]
    latest = parse_image_ref(definition)
    use = versions_in_use(versions, model=latest, definition_id=definition, running={"3": "9.9"})
    assert set(use) == {"1.0.2"}, "the latest a definition reference resolves to"
    other = parse_image_ref(definition.replace("images/a", "images/b") + "/versions/1.0.2")
    assert versions_in_use(versions, model=other, definition_id=definition, running={}) == {}


def _image_pool(image: dict) -> str:
    vmss = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.Compute/virtualMachineScaleSets/vmss-a"
    )
    pool = {"name": "a", "vmss_id": vmss, "node_group": "a", "min_nodes": 1, "max_nodes": 3}
    return json.dumps({"pools": [pool | {"image": image}]})


def test_canary_soak_minutes_defaults_to_five_and_is_checked_like_the_others() -> None:
    config = parse_config(_image_pool({}), source="test")
    assert config.pools[0].image.canary_soak_minutes == 5
    assert parse_config(_image_pool({"canary_soak_minutes": 0}), source="t").pools[0].image
    for wrong in (-1, 241, "5", 2.5):
        with pytest.raises(ConfigError) as raised:
            parse_config(_image_pool({"canary_soak_minutes": wrong}), source="test")
        message = str(raised.value)
        assert "field 'image.canary_soak_minutes'" in message and "0 to 240" in message, message
