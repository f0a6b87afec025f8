"""Drain planning: each row of kubectl drain's filter table, with and without its flag."""

from __future__ import annotations

import pytest

from shared.decide.drain import Action, DrainOptions, Pod, plan_drain

DEFAULTS = DrainOptions()
ALL_FLAGS = DrainOptions(ignore_daemonsets=True, delete_emptydir_data=True, force=True)
STRICT = DrainOptions(ignore_daemonsets=False)


def pod(name: str, **fields: object) -> Pod:
    values = {
        "namespace": "default",
        "name": name,
        "uid": f"uid-{name}",
        "phase": "Running",
        "controller_kind": "ReplicaSet",
    } | fields
    return Pod(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subject", "options", "action", "reason"),
    [
        (pod("web"), DEFAULTS, Action.EVICT, "managed by ReplicaSet"),
        (pod("db-0", controller_kind="StatefulSet"), DEFAULTS, Action.EVICT, "StatefulSet"),
        (pod("agent", controller_kind="DaemonSet"), DEFAULTS, Action.SKIP, "DaemonSet"),
        (
            pod("agent", controller_kind="DaemonSet"),
            STRICT,
            Action.BLOCK,
            "cannot delete DaemonSet-managed Pods",
        ),
        (pod("kube-proxy", controller_kind="Node", mirror=True), DEFAULTS, Action.SKIP, "mirror"),
        (pod("cache", empty_dir=True), DEFAULTS, Action.BLOCK, "local storage"),
        (pod("cache", empty_dir=True), ALL_FLAGS, Action.EVICT, "emptyDir data is deleted"),
        (pod("bare", controller_kind=None), DEFAULTS, Action.BLOCK, "declare no controller"),
        (pod("bare", controller_kind=None), ALL_FLAGS, Action.EVICT, "will not come back"),
        (
            pod("job-x", controller_kind="Job", phase="Succeeded"),
            DEFAULTS,
            Action.DELETE,
            "completed",
        ),
        (
            pod("bare-done", controller_kind=None, phase="Failed", empty_dir=True),
            DEFAULTS,
            Action.DELETE,
            "phase Failed",
        ),
        (pod("leaving", terminating=True), DEFAULTS, Action.WAIT, "already terminating"),
        (
            pod("leaving-bare", controller_kind=None, terminating=True),
            DEFAULTS,
            Action.WAIT,
            "already terminating",
        ),
        (
            pod("agent", controller_kind="DaemonSet", terminating=True),
            DEFAULTS,
            Action.SKIP,
            "DaemonSet",
        ),
    ],
)
def test_each_pod_kind_gets_kubectls_decision(
    subject: Pod, options: DrainOptions, action: Action, reason: str
) -> None:
    (decision,) = plan_drain([subject], options).decisions
    assert decision.action is action
    assert reason in decision.reason


def test_one_blocking_pod_blocks_the_whole_drain_and_is_named() -> None:
    plan = plan_drain(
        [pod("web"), pod("bare", controller_kind=None), pod("cache", empty_dir=True)], DEFAULTS
    )
    assert plan.blocked
    assert plan.blockers() == [
        "default/bare: cannot delete Pods that declare no controller",
        "default/cache: cannot delete Pods with local storage (emptyDir)",
    ]
    assert [p.name for p in plan.pods(Action.EVICT)] == ["web"]


def test_plan_without_blockers_lists_evictions_and_skips_in_stable_order() -> None:
    plan = plan_drain([pod("b"), pod("a"), pod("ds", controller_kind="DaemonSet")], DEFAULTS)
    assert not plan.blocked
    assert [p.name for p in plan.pods(Action.EVICT)] == ["a", "b"]
    assert [p.name for p in plan.pods(Action.SKIP)] == ["ds"]
