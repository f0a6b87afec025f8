"""The scale-set adapter against the Azure simulator, through the real azure-mgmt-compute."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.scaleset import (
    AllocationError,
    AzureCallError,
    EtagMismatch,
    OperationStatus,
    PermanentAzureError,
    ScaleSetNotFound,
    ScaleSets,
    TemporaryAzureError,
    ThrottledError,
    ThrottleGate,
    UntrustedRequest,
)
from shared.clock import FileClock
from tests.simulator import RG, SUBSCRIPTION, Simulator, retargeted_token, scale_set, scenario

pytestmark = pytest.mark.integration

VMSS = "aks-workers-11111111-vmss"
VMSS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}"
    f"/providers/Microsoft.Compute/virtualMachineScaleSets/{VMSS}"
)
DELETE = "VirtualMachineScaleSets_DeleteInstances"
UPDATE = "VirtualMachineScaleSets_Update"
GET = "VirtualMachineScaleSets_Get"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make(sim: Simulator) -> Iterator[Callable[..., ScaleSets]]:
    """Adapters built from settings as the app builds them, each with its own throttle gate."""
    built: list[ScaleSets] = []
    settings = {
        "POOLKEEPER_ARM_ENDPOINT": sim.info["arm"],
        "POOLKEEPER_CA_BUNDLE": sim.info["ca_cert"],
    }

    def build(gate: ThrottleGate | None = None) -> ScaleSets:
        adapter = ScaleSets.from_settings(
            settings, clock=FileClock(Path(sim.info["clock_file"])), gate=gate or ThrottleGate()
        )
        built.append(adapter)
        return adapter

    yield build
    for adapter in built:
        adapter.close()


def sim_instances(sim: Simulator) -> dict[str, str]:
    return {
        i["instance_id"]: i["provisioning_state"] for i in sim.scale_set_state(VMSS)["instances"]
    }


def counters(sim: Simulator) -> Counter[str]:
    return Counter(sim.calls()["counters"])


def until_done(check: Callable[[], OperationStatus], timeout: float = 15) -> list[str]:
    """Check an operation again after short sleeps until it ends; the states seen, in order."""
    seen = [check()]
    deadline = time.monotonic() + timeout
    while not seen[-1].done and time.monotonic() < deadline:
        time.sleep(0.1)
        seen.append(check())
    assert seen[-1].done, f"still {seen[-1]} after {timeout}s"
    return [s.state for s in seen]


def distinct(states: list[str]) -> list[str]:
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


# -- reads -----------------------------------------------------------------------------------------


def test_read_returns_every_instance_across_pages_with_its_states(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.load(scenario(scale_set(VMSS, 230), speed=1))
    adapter = make()
    fault = {"operation": UPDATE, "kind": "lro_failed", "error": "AllocationFailed", "count": 1}
    sim.post("faults", fault)
    etag, _ = adapter.peek(VMSS_ID)
    adapter.raise_capacity(VMSS_ID, 232, etag)  # 230 and 231 will end Failed
    sim.advance(91)
    etag, capacity = adapter.peek(VMSS_ID)
    adapter.raise_capacity(VMSS_ID, capacity + 1, etag)  # 232: Creating
    adapter.begin_delete(VMSS_ID, ["5"])  # Deleting
    before = counters(sim)

    state = adapter.read(VMSS_ID)

    calls = counters(sim) - before
    assert (calls[GET], calls["VirtualMachineScaleSetVMs_List"]) == (1, 3)  # 100 per page
    truth = sim.scale_set_state(VMSS)
    assert (state.vmss_id, state.etag, state.capacity) == (
        VMSS_ID.lower(),
        truth["etag"],
        truth["capacity"],
    )
    assert dict(state.model_image) == truth["model_image"]
    assert len(state.instances) == len(truth["instances"]) == 233
    assert [i.instance_id for i in state.instances] == [
        i["instance_id"] for i in truth["instances"]
    ]
    by_id = {i.instance_id: i for i in state.instances}
    assert by_id["0"].computer_name == f"{VMSS}000000"
    assert (by_id["0"].provisioning, by_id["0"].power, by_id["0"].zone) == (
        "Succeeded",
        "running",
        "1",
    )
    assert (by_id["0"].failure, by_id["0"].latest_model) == (None, True)
    assert (by_id["5"].provisioning, by_id["5"].power) == ("Deleting", "stopping")
    assert (by_id["230"].provisioning, by_id["230"].failure) == ("Failed", "AllocationFailed")
    assert (by_id["232"].provisioning, by_id["232"].power) == ("Creating", None)
    assert Counter(i.provisioning for i in state.instances) == Counter(
        i["provisioning_state"] for i in truth["instances"]
    )
    since_start = state.read_at - datetime(2026, 11, 2, 8, tzinfo=UTC)  # the simulated clock
    assert timedelta(seconds=91) < since_start < timedelta(seconds=120)


def test_peek_is_one_get_that_returns_etag_and_capacity(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.load(scenario(scale_set(VMSS, 4)))
    before = counters(sim)

    assert make().peek(VMSS_ID) == ('"1"', 4)
    assert counters(sim) - before == Counter({GET: 1})


def test_an_unknown_scale_set_raises_not_found(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    adapter = make()
    missing = VMSS_ID.replace(VMSS, "aks-gone-99999999-vmss")

    with pytest.raises(ScaleSetNotFound) as gone:
        adapter.read(missing)
    assert (gone.value.status, gone.value.code) == (404, "ResourceNotFound")
    assert (gone.value.vmss_id, gone.value.operation) == (missing.lower(), "read")
    with pytest.raises(ScaleSetNotFound):
        adapter.peek(missing.replace(RG, "rg-elsewhere"))


def test_bad_arguments_are_refused_before_any_call(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    adapter = make()
    before = sim.calls()["total"]

    for capacity in (0, -3, True, 2.0):
        with pytest.raises(ValueError, match="capacity"):
            adapter.raise_capacity(VMSS_ID, capacity, '"1"')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ETag"):
        adapter.raise_capacity(VMSS_ID, 5, "")
    for ids in ([], [""], "12"):
        with pytest.raises(ValueError, match="named instances"):
            adapter.begin_delete(VMSS_ID, ids)
    with pytest.raises(ValueError, match="resource id"):
        adapter.peek(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}")
    with pytest.raises(ValueError, match="kind"):
        adapter.operation_status("restart", VMSS_ID, "token")  # type: ignore[arg-type]
    assert sim.calls()["total"] == before
    assert sim.scale_set_state(VMSS)["capacity"] == 3


# -- capacity writes and deletes -------------------------------------------------------------------


def test_raise_capacity_with_the_read_etag_is_in_progress_then_succeeded(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.load(scenario(scale_set(VMSS, 2), speed=60))  # create: 90 simulated s = 1.5 wall s
    adapter = make()
    etag, capacity = adapter.peek(VMSS_ID)

    began = time.monotonic()
    token = adapter.raise_capacity(VMSS_ID, capacity + 2, etag)
    assert time.monotonic() - began < 1  # started, not waited for
    assert sim_instances(sim) == {
        "0": "Succeeded",
        "1": "Succeeded",
        "2": "Creating",
        "3": "Creating",
    }

    states = until_done(lambda: adapter.operation_status("update", VMSS_ID, token))
    assert distinct(states) == ["InProgress", "Succeeded"]
    assert set(sim_instances(sim).values()) == {"Succeeded"}
    assert adapter.peek(VMSS_ID) == ('"2"', 4)


def test_a_stale_etag_raises_etag_mismatch_and_writes_nothing(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.load(scenario(scale_set(VMSS, 3)))
    adapter = make()
    stale = adapter.read(VMSS_ID)
    adapter.raise_capacity(VMSS_ID, 4, stale.etag)  # another writer got there first

    with pytest.raises(EtagMismatch) as mismatch:
        adapter.raise_capacity(VMSS_ID, 9, stale.etag)
    assert (mismatch.value.status, mismatch.value.code) == (412, "PreconditionFailed")
    assert mismatch.value.operation == "raise_capacity"
    assert sim.scale_set_state(VMSS)["capacity"] == 4
    assert len(sim_instances(sim)) == 4


def test_a_delete_that_fails_in_azure_reports_its_code_and_every_instance_stays(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.load(scenario(scale_set(VMSS, 3), speed=60))
    code = "CannotAllocateRemainingVMsInAvailabilitySet"
    sim.post("faults", {"operation": DELETE, "kind": "lro_failed", "error": code})
    adapter = make()

    token = adapter.begin_delete(VMSS_ID, ["1", "2"])
    assert sim_instances(sim) == {"0": "Succeeded", "1": "Deleting", "2": "Deleting"}

    final = None

    def check() -> OperationStatus:
        nonlocal final
        final = adapter.operation_status("delete", VMSS_ID, token)
        return final

    assert distinct(until_done(check)) == ["InProgress", "Failed"]
    assert final is not None and final.code == code
    assert "cannot be allocated together" in (final.message or "")
    assert final.error_type is AllocationError
    fresh = adapter.read(VMSS_ID)
    assert [(i.instance_id, i.provisioning) for i in fresh.instances] == [
        ("0", "Succeeded"),
        ("1", "Succeeded"),
        ("2", "Succeeded"),
    ]
    assert fresh.capacity == 3


def test_a_partial_delete_fails_and_a_fresh_read_shows_who_is_left(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.load(scenario(scale_set(VMSS, 4), speed=60))
    sim.post(
        "faults",
        {
            "operation": DELETE,
            "kind": "partial_delete",
            "deleted": 1,
            "error": "InternalExecutionError",
        },
    )
    adapter = make()

    token = adapter.begin_delete(VMSS_ID, ["0", "1", "2"])
    until_done(lambda: adapter.operation_status("delete", VMSS_ID, token))
    final = adapter.operation_status("delete", VMSS_ID, token)

    assert (final.state, final.code) == ("Failed", "InternalExecutionError")
    assert final.error_type is TemporaryAzureError
    fresh = adapter.read(VMSS_ID)
    assert [i.instance_id for i in fresh.instances] == ["1", "2", "3"]
    assert fresh.capacity == 3


def test_a_token_is_resumed_by_a_new_adapter_as_a_redelivered_job_would(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    # delete: 60 simulated s = 10 wall s, so the first check surely finds it running (at 60x, a
    # loaded machine took longer than its 1 s between the send and that check)
    sim.load(scenario(scale_set(VMSS, 3), speed=6))
    first = make()
    token = first.begin_delete(VMSS_ID, ["2"], force=False)
    first.close()

    later = make()  # another invocation: new adapter, new clients, new credential
    assert later.operation_status("delete", VMSS_ID, token).state == "InProgress"
    check = lambda: later.operation_status("delete", VMSS_ID, token)  # noqa: E731
    assert distinct(until_done(check, timeout=60))[-1] == "Succeeded"
    assert sim_instances(sim) == {"0": "Succeeded", "1": "Succeeded"}
    calls = [c for c in sim.calls()["calls"] if c["operation"] == DELETE]
    assert len(calls) == 1  # resuming never repeats the delete


def test_a_tampered_operation_token_never_sends_the_identity_elsewhere(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    # Anyone who can write the job tables can edit a stored token: its status poll must not carry
    # the bearer token to the host they name.
    sim.load(scenario(scale_set(VMSS, 3)))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    origin = f"https://127.0.0.1:{listener.getsockname()[1]}"
    adapter = make()
    token = adapter.begin_delete(VMSS_ID, ["2"])
    with listener:
        with pytest.raises(UntrustedRequest, match=origin.replace(".", r"\.")):
            adapter.operation_status("delete", VMSS_ID, retargeted_token(token, origin))
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever connected to it
    assert adapter.operation_status("delete", VMSS_ID, token).state in ("InProgress", "Succeeded")


def test_starting_and_checking_operations_leaves_no_polling_thread(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.load(scenario(scale_set(VMSS, 3), speed=1))  # nothing finishes during the test
    adapter = make()
    etag, _ = adapter.peek(VMSS_ID)

    update = adapter.raise_capacity(VMSS_ID, 4, etag)
    delete = adapter.begin_delete(VMSS_ID, ["0"])
    assert adapter.operation_status("update", VMSS_ID, update).state == "InProgress"
    assert adapter.operation_status("delete", VMSS_ID, delete).state == "InProgress"

    assert not [t.name for t in threading.enumerate() if t.name.startswith("LROPoller")]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "code", "expected"),
    [
        (DELETE, 409, "CannotAllocateRemainingVMsInAvailabilitySet", AllocationError),
        (UPDATE, 409, "QuotaExceeded", AllocationError),
        (UPDATE, 409, "AllocationFailed", AllocationError),
        (DELETE, 409, "OperationPreempted", TemporaryAzureError),
        (DELETE, 500, "InternalExecutionError", TemporaryAzureError),
        (UPDATE, 400, "InvalidParameter", PermanentAzureError),
    ],
)
def test_a_synchronous_arm_error_becomes_its_class_with_code_and_changes_nothing(
    sim: Simulator,
    make: Callable[..., ScaleSets],
    operation: str,
    status: int,
    code: str,
    expected: type[AzureCallError],
) -> None:
    sim.load(scenario(scale_set(VMSS, 4)))
    sim.post("faults", {"operation": operation, "status": status, "error": code, "count": 1})
    adapter = make()
    etag, _ = adapter.peek(VMSS_ID)

    with pytest.raises(AzureCallError) as raised:
        if operation == DELETE:
            adapter.begin_delete(VMSS_ID, ["1", "3"])
        else:
            adapter.raise_capacity(VMSS_ID, 6, etag)
    error = raised.value
    assert type(error) is expected
    assert (error.status, error.code, error.vmss_id) == (status, code, VMSS_ID.lower())
    if operation == DELETE:
        assert (error.operation, error.instance_ids) == ("begin_delete", ("1", "3"))
    assert counters(sim)[operation] == 1  # the SDK did not retry
    assert sim_instances(sim) == dict.fromkeys("0123", "Succeeded")
    assert adapter.peek(VMSS_ID) == (etag, 4)


def test_a_500_on_a_read_is_temporary_and_not_retried_inside_the_call(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.post("faults", {"operation": GET, "status": 500, "count": 1})
    adapter = make()

    began = time.monotonic()
    with pytest.raises(TemporaryAzureError) as failed:
        adapter.read(VMSS_ID)
    assert time.monotonic() - began < 1
    assert (failed.value.status, failed.value.code) == (500, "InternalExecutionError")
    assert counters(sim)[GET] == 1
    assert len(adapter.read(VMSS_ID).instances) == 3  # the next call goes through


def test_a_hanging_call_times_out_as_a_temporary_error_without_a_retry(sim: Simulator) -> None:
    from azure.identity import DefaultAzureCredential

    sim.post("faults", {"operation": GET, "kind": "timeout", "seconds": 2, "count": 2})
    adapter = ScaleSets(
        DefaultAzureCredential(),
        clock=FileClock(Path(sim.info["clock_file"])),
        endpoint=sim.info["arm"],
        ca_bundle=sim.info["ca_cert"],
        gate=ThrottleGate(),
        read_timeout=0.5,
    )
    try:
        began = time.monotonic()
        with pytest.raises(TemporaryAzureError) as hung:
            adapter.peek(VMSS_ID)
        assert time.monotonic() - began < 1.5  # one try, no read retry
        assert (hung.value.status, hung.value.code) == (None, "ServiceResponseError")
    finally:
        adapter.close()


# -- throttling ------------------------------------------------------------------------------------

BUDGET = [
    {
        "family": "HighCostGetVMScaleSet3Min",
        "operations": [GET],
        "limit": 2,
        "window_seconds": 6000,  # 10 wall seconds at 600x: the Retry-After
    }
]


def test_a_429_raises_throttled_and_later_calls_wait_without_reaching_azure(
    sim: Simulator, make: Callable[..., ScaleSets]
) -> None:
    sim.post("throttling", BUDGET)
    monotonic = FakeMonotonic()
    gate = ThrottleGate(monotonic)
    adapter, other = make(gate), make(gate)  # two invocations of one process
    etag, _ = adapter.peek(VMSS_ID)
    adapter.peek(VMSS_ID)

    with pytest.raises(ThrottledError) as throttled:
        adapter.peek(VMSS_ID)
    assert (throttled.value.status, throttled.value.code) == (429, "OperationNotAllowed")
    # 10 wall seconds from the first counted call; less if this machine took a while since.
    wait = throttled.value.retry_after
    assert wait is not None and 1 <= wait <= 10
    assert isinstance(throttled.value, TemporaryAzureError)

    before = sim.calls()["total"]
    monotonic.now += wait - 1
    blocked: list[Callable[[], Any]] = [
        lambda: adapter.read(VMSS_ID),
        lambda: other.peek(VMSS_ID),
        lambda: other.raise_capacity(VMSS_ID, 5, etag),  # not even another operation family
        lambda: other.begin_delete(VMSS_ID, ["0"]),
        lambda: other.operation_status("delete", VMSS_ID, "token"),
    ]
    for call in blocked:
        with pytest.raises(ThrottledError) as waiting:
            call()
        assert waiting.value.code == "RetryAfterPending"
        assert waiting.value.retry_after == pytest.approx(1)
    assert sim.calls()["total"] == before  # nothing reached the simulator

    sim.advance(6000)  # the budget's window has passed in Azure
    monotonic.now += 1
    assert other.peek(VMSS_ID) == (etag, 3)


@pytest.mark.parametrize("kind", ["delete", "raise"])
def test_a_write_whose_connection_is_cut_after_it_took_effect_is_sent_once(
    sim: Simulator, make: Callable[..., ScaleSets], kind: str
) -> None:
    # Azure applied it, then the connection was cut before the answer: the SDK must not send it
    # again (a retry on reads, or on a connection error that came after the send, would); the
    # flow settles it by re-reads.
    sim.load(scenario(scale_set(VMSS, 3)))
    operation = DELETE if kind == "delete" else UPDATE
    sim.post("faults", {"operation": operation, "kind": "dropped", "count": 1})
    adapter = make()
    with pytest.raises(TemporaryAzureError):
        if kind == "delete":
            adapter.begin_delete(VMSS_ID, ["1"])
        else:
            etag, _ = adapter.peek(VMSS_ID)
            adapter.raise_capacity(VMSS_ID, 4, etag)
    assert counters(sim)[operation] == 1
    if kind == "delete":
        assert sim_instances(sim).get("1", "gone") in ("Deleting", "gone")
    else:
        assert sim.scale_set_state(VMSS)["capacity"] == 4
