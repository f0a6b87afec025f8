"""Jobs end to end through the real SDKs: the product against Azurite and the simulator."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from shared.adapters.storage import StorageAccount
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.jobs import Services
from tests.jobs_support import Pump, job, settings_for
from tests.simulator import RG, SUBSCRIPTION, Simulator, scale_set, scenario

VMSS = "aks-apps-44444444-vmss"
VMSS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
    f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}"
)
GROUP = {"elastisys.io/node-group": "apps"}
POOL = {"name": "apps", "vmss_id": VMSS_ID, "node_group": "apps", "min_nodes": 3, "max_nodes": 8}


def _world(
    sim: Simulator,
    azurite: Any,
    capacity: int = 5,
    tags: dict[str, str] | None = None,
    pool: str = "apps",
    **extra: Any,
) -> Pump:
    sim.load(
        scenario(
            scale_set(VMSS, capacity, zones=[], tags=tags or {}),
            workloads={
                "deployments": [
                    {
                        "name": "web",
                        "replicas": 6,
                        "node_selector": GROUP,
                        "termination_grace_seconds": 30,
                        "pdb": {"max_unavailable": 2},
                    }
                ],
                "daemonsets": [{"name": "kube-proxy"}],
            },
            **extra,
        )
    )
    settings = settings_for(sim, azurite.connection_string, [POOL | {"name": pool}])
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    return Pump(services)


def _true_counts(sim: Simulator) -> dict[str, int]:
    instances = sim.scale_set_state(VMSS)["instances"]
    return {
        "live": sum(
            i["provisioning_state"] == "Succeeded" and i["power_state"] == "running"
            for i in instances
        ),
        "deleting": sum(i["provisioning_state"] == "Deleting" for i in instances),
    }


def _recorded(pump: Pump) -> dict[str, Any]:
    return pump.services.tables.pool_status("apps")


def test_scale_up_raises_capacity_and_waits_for_ready_nodes(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    message = job("scale", "apps", {"delta": 2})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done", record
    state = sim.scale_set_state(VMSS)
    assert state["capacity"] == 7 and len(state["instances"]) == 7
    assert record.outcome["ready"] == 7
    assert _recorded(pump)["counts"]["live"] == _true_counts(sim)["live"] == 7
    writes = [c for c in sim.calls()["calls"] if c["operation"] == "VirtualMachineScaleSets_Update"]
    assert len(writes) == 1


def test_scale_up_is_bounded_by_max_nodes(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite, capacity=7)
    message = job("scale", "apps", {"delta": 5})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done"
    assert sim.scale_set_state(VMSS)["capacity"] == 8


def test_stale_etag_is_re_read_and_re_planned(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_Update",
            "kind": "error",
            "status": 412,
            "error": "PreconditionFailed",
            "count": 1,
        },
    )
    message = job("scale", "apps", {"delta": 1})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done"
    assert [s["step"] for s in record.steps].count("plan") == 2
    assert sim.scale_set_state(VMSS)["capacity"] == 6


def test_scale_in_drains_then_deletes_exactly_the_victims(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    message = job("scale", "apps", {"delta": -2})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done", record
    victims = record.state["plan"]["victims"]
    assert sorted(record.outcome["deleted"]) == sorted(victims)
    gone_or_going = {
        i["instance_id"]
        for i in sim.scale_set_state(VMSS)["instances"]
        if i["provisioning_state"] == "Deleting"
    } | (
        {str(n) for n in range(5)}
        - {i["instance_id"] for i in sim.scale_set_state(VMSS)["instances"]}
    )
    assert gone_or_going == set(victims)
    # Drained first: every deletion in the simulator's history is of a drained node.
    evictions = pump.services.kube.pods_on  # the cluster is still readable
    assert evictions
    history = sim.state()["history"]
    assert all(h["event"] != "scale_in" for h in history)  # never a capacity write that lowered
    assert _recorded(pump)["counts"]["live"] == _true_counts(sim)["live"] == 3


def test_scale_in_below_min_nodes_is_refused_and_changes_nothing(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite, capacity=4)
    message = job("scale", "apps", {"delta": -2})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "failed" and "below_min" in record.error
    assert sim.scale_set_state(VMSS)["capacity"] == 4
    assert not any(n.unschedulable for n in pump.services.kube.nodes())


@pytest.mark.parametrize(
    ("tags", "owner"),
    [
        ({"sigs.k8s.io_cluster-api-provider-azure_cluster_prod": "owned"}, "MachinePool"),
        ({"aks-managed-poolName": "apps"}, "AKS"),
    ],
)
@pytest.mark.parametrize("delta", [1, -1])
def test_a_scale_set_that_capz_or_aks_sizes_is_refused_any_capacity_change(
    sim: Simulator, azurite: Any, tags: dict[str, str], owner: str, delta: int
) -> None:
    pump = _world(sim, azurite, capacity=4, tags=tags)
    message = job("scale", "apps", {"delta": delta})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "failed" and "refused (other owner)" in (record.error or ""), record
    assert owner in (record.error or "")
    assert sim.scale_set_state(VMSS)["capacity"] == 4
    assert not any(n.unschedulable for n in pump.services.kube.nodes())


def test_failed_delete_rereads_full_state_and_uncordons_survivors(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_DeleteInstances",
            "kind": "lro_failed",
            "error": "CannotAllocateRemainingVMsInAvailabilitySet",
        },
    )
    message = job("scale", "apps", {"delta": -1})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "failed"
    assert "CannotAllocateRemainingVMsInAvailabilitySet" in record.error
    assert record.outcome["survivors"] == record.state["plan"]["victims"]
    assert record.steps[-1]["step"] == "settle"
    assert _recorded(pump)["counts"]["live"] == _true_counts(sim)["live"] == 5
    assert not any(n.unschedulable for n in pump.services.kube.nodes())


def test_dry_run_records_the_plan_and_changes_nothing(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    message = job("scale", "apps", {"delta": -1, "dry_run": True})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done" and record.outcome["dry_run"] is True
    assert record.outcome["plan"]["live_after"] == 4
    assert not any(
        c["operation"]
        in ("VirtualMachineScaleSets_DeleteInstances", "VirtualMachineScaleSets_Update")
        for c in sim.calls()["calls"]
    )
    assert not any(n.unschedulable for n in pump.services.kube.nodes())


def test_redelivered_message_never_repeats_a_done_job(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    message = job("scale", "apps", {"delta": 1})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done"
    pump.send("scale", message)  # the same message again (at-least-once delivery)
    handled = pump.once("scale")
    assert [h.result for h in handled] == ["duplicate"]
    assert sim.scale_set_state(VMSS)["capacity"] == 6


def test_reconcile_records_counts_and_failed_instance_drift(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    sim.post(
        "faults",
        {
            "operation": "VirtualMachineScaleSets_Update",
            "kind": "lro_failed",
            "error": "AllocationFailed",
        },
    )
    up = job("scale", "apps", {"delta": 1})
    pump.send("scale", up)
    assert pump.run("scale", up["id"]).status == "failed"
    message = job("reconcile", "apps")
    pump.send("reconcile", message)
    record = pump.run("reconcile", message["id"])
    assert record.status == "done"
    recorded = _recorded(pump)
    assert recorded["counts"]["failed"] == 1 and recorded["counts"]["live"] == 5
    assert any(d["kind"] == "failed_instance" for d in recorded["drift"])


BAD = [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"schema": "other/v9", "id": "x"}), "schema must be"),
    (json.dumps(job("scale", "apps", {"delta": 1}) | {"extra": 1}), "invalid envelope"),
    (json.dumps(job("scale", "nope", {"delta": 1})), "unknown pool"),
    (json.dumps(job("scale", "apps", {"delta": 0})), "invalid params"),
    (json.dumps(job("scale", "apps", {"delta": 1, "target": 4})), "invalid params"),
    (json.dumps(job("teleport", "apps")), "invalid envelope"),
    (json.dumps(job("reconcile", "apps")), "belongs on"),  # a reconcile sent to scale-jobs
    (json.dumps(job("scale", "apps", {"delta": 1}, created_at="2026-01-01T00:00:00")), "time zone"),
    (json.dumps(job("scale", "apps", {"delta": 1}, continuation="abc")), "does not know"),
    ("[" * 5000, "nested deeper"),  # Python's parser would raise RecursionError
    (json.dumps(job("scale", "apps", {"delta": 1}))[:-1] + ', "x": ' + "[" * 5000 + "}", "nested"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD, ids=[r for _, r in BAD])
def test_invalid_messages_are_rejected_with_a_reason_and_no_side_effect(
    sim: Simulator, azurite, raw: str, reason: str
) -> None:
    pump = _world(sim, azurite)
    before = sim.calls()["total"]
    recorded_before = pump.services.tables.pool_status("apps")
    pump.send("scale", raw)
    handled = pump.once("scale")
    assert [h.result for h in handled] == ["rejected"]
    rejected = pump.services.tables.rejections(pump.queue("scale"))
    assert len(rejected) == 1 and reason in rejected[0]["reason"]
    assert sim.calls()["total"] == before  # nothing reached Azure
    assert pump.services.tables.pool_status("apps") == recorded_before
    job_id = rejected[0]["job_id"]
    assert job_id is None or pump.services.tables.job(job_id) is None  # no ledger entry


def test_survey_reads_in_full_only_pools_that_changed(sim: Simulator, azurite) -> None:
    from shared.flows.reconcile import survey

    pump = _world(sim, azurite)
    pump.services.tables.put_pool_status("apps", {})  # forget earlier tests' records
    first = survey(pump.services)
    assert len(first) == 1  # never read in full: a full reconcile
    pump.run("reconcile", first[0])
    calls = sim.calls()["counters"]
    assert survey(pump.services) == []  # same ETag and capacity, no drift, read recently
    after = sim.calls()["counters"]
    assert after.get("VirtualMachineScaleSetVMs_List", 0) == calls.get(
        "VirtualMachineScaleSetVMs_List", 0
    )
    assert after["VirtualMachineScaleSets_List"] == calls.get("VirtualMachineScaleSets_List", 0) + 1
    up = job("scale", "apps", {"delta": 1})
    pump.send("scale", up)
    pump.run("scale", up["id"])
    # The scale job re-read and recorded the new ETag; an outside change is what a survey finds.
    compute = sim.compute()
    compute.virtual_machine_scale_sets.begin_update(RG, VMSS, {"sku": {"capacity": 7}}).result()
    assert len(survey(pump.services)) == 1


def test_a_survey_refused_the_group_list_looks_at_each_scale_set_instead(
    sim: Simulator, azurite
) -> None:
    # Roles assigned at each scale set (infra/main.bicep) do not allow listing the group's.
    from shared.flows.reconcile import survey

    pump = _world(sim, azurite)
    pump.services.tables.put_pool_status("apps", {})
    pump.run("reconcile", survey(pump.services)[0])
    refused = {"status": 403, "error": "AuthorizationFailed"}
    sim.post("faults", {"operation": "VirtualMachineScaleSets_List"} | refused)
    calls = sim.calls()["counters"]
    assert survey(pump.services) == []  # unchanged, seen by its own GET: no full read
    after = sim.calls()["counters"]
    assert after["VirtualMachineScaleSets_Get"] == calls.get("VirtualMachineScaleSets_Get", 0) + 1
    assert after.get("VirtualMachineScaleSetVMs_List", 0) == calls.get(
        "VirtualMachineScaleSetVMs_List", 0
    )
    sim.compute().virtual_machine_scale_sets.begin_update(
        RG, VMSS, {"sku": {"capacity": 7}}
    ).result()
    changed = survey(pump.services)
    assert len(changed) == 1  # a change its GET shows
    # The refusal is remembered (for an hour): that survey did not ask for the list again.
    assert (
        sim.calls()["counters"]["VirtualMachineScaleSets_List"]
        == after["VirtualMachineScaleSets_List"]
    )
    pump.run("reconcile", changed[0])
    sim.post("faults", {"operation": "VirtualMachineScaleSets_Get"} | refused)
    assert len(survey(pump.services)) == 1  # neither answers: a full read, in doubt


def test_scale_in_by_count_never_picks_a_node_another_drain_has_cordoned(
    sim: Simulator, azurite
) -> None:
    pump = _world(sim, azurite, capacity=6)
    kube = pump.services.kube
    cordoned = "aks-apps-44444444-vmss000005"  # the one a count-based pick would choose first
    kube.set_unschedulable(cordoned, True)
    message = job("scale", "apps", {"delta": -1, "dry_run": True})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done"
    assert record.outcome["plan"]["nodes"] == ["aks-apps-44444444-vmss000004"]


def test_a_replan_after_a_landed_write_never_adds_delta_twice(sim: Simulator, azurite) -> None:
    # The write lands but its answer is lost (timeout, worker killed): the job re-plans from a
    # fresh read, and must see its goal reached instead of adding delta on top.
    from shared.flows.jobs import StepContext
    from shared.flows.scale import job as scale
    from shared.jobs import Job, Next

    pump = _world(sim, azurite)
    message = Job.model_validate(job("scale", "apps", {"delta": 1}))
    pool = pump.services.config.pool("apps")

    def context() -> StepContext:
        return StepContext(message, pool, pump.services, None, pump.services.clock.now())

    planned = scale._plan(context(), {})
    assert isinstance(planned, Next) and planned.step == "raise"
    raised = scale._raise(context(), planned.state)
    assert isinstance(raised, Next) and raised.step == "await_write"
    # Worker killed before it recorded the write: the redelivery sends the same write again,
    # Azure answers 412 (our own write moved the ETag), and the re-plan finds our mark.
    resent = scale._raise(context(), planned.state)
    assert isinstance(resent, Next) and resent.step == "plan" and "sent" in resent.state
    again = scale._plan(context(), resent.state)
    assert isinstance(again, Next) and again.step == "await_ready"
    assert sim.scale_set_state(VMSS)["capacity"] == 6


def test_a_step_that_keeps_failing_is_retried_then_aborted_and_uncordons(
    sim: Simulator, azurite
) -> None:
    # The cluster's eviction API keeps answering errors nobody planned for: the job must not
    # end in the poison queue with nodes cordoned.
    pump = _world(sim, azurite)
    sim.post("kube/faults", {"verbs": ["create"], "resources": ["pods/eviction"], "status": 500})
    real = pump.services.kube
    message = job("scale", "apps", {"delta": -1})
    pump.send("scale", message)
    record = pump.run("scale", message["id"], timeout=90)
    assert record.status == "failed"
    assert "step drain failed: ServiceException: (500)" in record.error  # the client's 5xx
    assert "gave up" in record.error
    fault = requests.get(f"{sim.admin}/kube/faults", timeout=10).json()["faults"][0]
    assert fault["fired"] >= 5  # every eviction the retried drain step sent
    waits = sum(s.get("repeats", 1) for s in record.steps if s["result"] == "wait")
    assert waits >= 4  # retried first (repeated waits are folded into one ledger entry)
    assert record.outcome["aborted"]  # and undid its cordon
    assert not any(n.unschedulable for n in real.nodes())
    assert sim.scale_set_state(VMSS)["capacity"] == 5


def test_a_drain_job_whose_round_failed_a_while_resumes_its_drain(sim: Simulator, azurite) -> None:
    # Two evictions fail with 500s: the runner retries the step and keeps its count of failures
    # in the job's state, beside the drain's own (a drain job's state is the drain's state).
    pump = _world(sim, azurite)
    sim.post(
        "kube/faults",
        {"verbs": ["create"], "resources": ["pods/eviction"], "status": 500, "count": 2},
    )
    node = "aks-apps-44444444-vmss000001"
    message = job("drain", "apps", {"node": node})
    pump.send("drain", message)
    record = pump.run("drain", message["id"], timeout=90)
    assert record.status == "done", record.error  # was: TypeError on `_failures`, gave up
    assert any(
        s["result"] == "wait" and "ServiceException" in s.get("reason", "") for s in record.steps
    ), record.steps
    assert pump.services.kube.node(node).unschedulable  # drained and left cordoned


def test_scale_in_by_count_picks_the_node_with_fewest_pods_to_move(sim: Simulator, azurite) -> None:
    pump = _world(sim, azurite)
    node = "aks-apps-44444444-vmss00000{}".format
    sim.load(
        scenario(
            scale_set(VMSS, 5, zones=[]),
            workloads={
                "daemonsets": [{"name": "kube-proxy"}],
                "pods": [
                    {"name": f"p{n}-{k}", "node": node(n)} for n in (0, 1, 3, 4) for k in range(2)
                ],
            },
        )
    )
    message = job("scale", "apps", {"delta": -1, "dry_run": True})
    pump.send("scale", message)
    record = pump.run("scale", message["id"])
    assert record.status == "done"
    assert record.outcome["plan"]["nodes"] == [node(2)]  # only a DaemonSet pod on it


def test_a_submitted_job_is_queued_in_the_ledger_and_the_runner_takes_it_over(
    sim: Simulator, azurite
) -> None:
    from shared.flows.jobs import submit

    pump = _world(sim, azurite)
    message = job("scale", "apps", {"delta": 1})
    submit(pump.services, json.dumps(message))
    assert pump.services.tables.job(message["id"]).status == "queued"
    record = pump.run("scale", message["id"])
    assert record.status == "done" and record.steps[0]["step"] == "plan"
    assert sim.scale_set_state(VMSS)["capacity"] == 6


def test_a_message_that_differs_from_a_submitted_job_of_its_id_is_rejected(
    sim: Simulator, azurite
) -> None:
    from shared.flows.jobs import submit

    pump = _world(sim, azurite)
    message = job("scale", "apps", {"delta": 1})
    submit(pump.services, json.dumps(message))
    pump.services.queues._queue(pump.queue("scale")).clear_messages()  # only the other one left
    pump.send("scale", message | {"params": {"delta": 3}})  # written to the queue directly
    assert [h.result for h in pump.once("scale")] == ["rejected"]
    (rejected,) = pump.services.tables.rejections(pump.queue("scale"))
    assert "recorded for another job" in rejected["reason"]
    assert sim.scale_set_state(VMSS)["capacity"] == 5


def test_a_deferred_message_from_another_system_shows_as_deferred_then_runs(
    sim: Simulator, azurite
) -> None:
    pump = _world(sim, azurite)
    # A day ahead: deferred however slow this machine is against the simulated clock.
    soon = pump.services.clock.now() + timedelta(days=1)
    message = job("scale", "apps", {"delta": 1}, not_before=soon.isoformat())
    pump.send("scale", message)
    assert [h.result for h in pump.once("scale")] == ["deferred"]
    record = pump.services.tables.job(message["id"])
    assert record.status == "deferred"
    assert datetime.fromisoformat(record.public()["not_before"]) == soon
    # The day passes; the queue hands the message over again (as its visibility delay ends).
    sim.advance(86400 + 60)
    pump.services.queues._queue(pump.queue("scale")).clear_messages()
    pump.send("scale", message)
    assert pump.run("scale", message["id"]).status == "done"
    assert sim.scale_set_state(VMSS)["capacity"] == 6


def test_a_submission_with_a_timer_s_id_is_refused_and_records_nothing(
    sim: Simulator, azurite
) -> None:
    from shared.flows.jobs import submit
    from shared.jobs import Rejection

    pump = _world(sim, azurite)
    squat = job("scale", "apps", {"delta": 1}, not_before="2099-01-01T00:00:00Z")
    squat["id"] = "patch-apps-20261103"
    with pytest.raises(Rejection) as refused:
        submit(pump.services, json.dumps(squat))
    assert refused.value.status == 409 and "reserved" in refused.value.reason
    assert pump.services.tables.job(squat["id"]) is None  # nothing recorded: the id stays free


def test_a_job_deferred_more_than_a_week_is_refused(sim: Simulator, azurite) -> None:
    from shared.flows.jobs import submit
    from shared.jobs import Rejection

    pump = _world(sim, azurite)
    later = pump.services.clock.now() + timedelta(days=8)
    message = job("scale", "apps", {"delta": 1}, not_before=later.isoformat())
    with pytest.raises(Rejection) as refused:
        submit(pump.services, json.dumps(message))
    assert refused.value.status == 422 and "more than 7 days ahead" in refused.value.reason
    assert pump.services.tables.job(message["id"]) is None


def test_a_pool_with_a_full_backlog_refuses_new_jobs_but_takes_a_resend(
    sim: Simulator, azurite
) -> None:
    from shared.decide.submissions import MAX_PENDING_PER_POOL
    from shared.flows.jobs import submit
    from shared.jobs import Rejection

    pool = f"apps-{uuid.uuid4().hex[:8]}"  # its waiting jobs stay out of other tests' way
    pump = _world(sim, azurite, pool=pool)
    soon = (pump.services.clock.now() + timedelta(days=2)).isoformat()
    waiting = [job("scale", pool, {"delta": 1}, not_before=soon) for _ in range(20)]
    assert len(waiting) == MAX_PENDING_PER_POOL
    for message in waiting:
        submit(pump.services, json.dumps(message))
    one_more = job("scale", pool, {"delta": 1}, not_before=soon)
    with pytest.raises(Rejection) as refused:
        submit(pump.services, json.dumps(one_more))
    assert refused.value.status == 429 and "20 jobs waiting" in refused.value.reason
    assert pump.services.tables.job(one_more["id"]) is None
    submit(pump.services, json.dumps(waiting[0]))  # the same job again: accepted, as before


def test_only_post_api_jobs_records_a_submitter_and_a_resend_keeps_the_first(
    sim: Simulator, azurite
) -> None:
    from shared.flows.jobs import handle, submit
    from shared.jobs import JobKind, queue_name

    pool = f"apps-{uuid.uuid4().hex[:8]}"
    services = _world(sim, azurite, pool=pool).services
    later = (services.clock.now() + timedelta(days=1)).isoformat()
    # A message written straight onto the queue cannot name who submitted it.
    forged = job("scale", pool, {"delta": 1}, not_before=later) | {"submitted_by": "alice (a)"}
    handle(services, queue_name(JobKind.SCALE, services.settings), json.dumps(forged))
    record = services.tables.job(forged["id"])
    assert record is not None and record.status == "deferred"
    assert record.public()["submitted_by"] is None
    # Through the API the submitter is recorded; a colleague's resend keeps the first one.
    message = job("scale", pool, {"delta": 1}, not_before=later)
    first = submit(services, json.dumps(message), submitted_by="olga (o)")
    assert first.submitted_by == "olga (o)"
    again = submit(services, json.dumps(message), submitted_by="bob (b)")
    assert again.submitted_by == "olga (o)"
    recorded = services.tables.job(message["id"])
    assert recorded is not None and recorded.public()["submitted_by"] == "olga (o)"
