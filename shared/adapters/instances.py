"""Compute calls on single scale-set instances: run a shell script (run command v1), restart and
reimage — each an LRO started without waiting, then asked once per step by its continuation token.

The patch and repair flows call it; it shares the scale-set adapter's clients, Retry-After gate
and error mapping (`ScaleSets._call`), so throttling is obeyed across every Compute call
(invariant 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.adapters.scaleset import (
    OperationStatus,
    ScaleSets,
    _instance,
    _no_wait_polling,
    _ref,
    operation_status_of,
    poll_once,
    sent_once,
)
from shared.decide.counting import VmInstance

MESSAGE_STDOUT = "[stdout]\n"
MESSAGE_STDERR = "\n[stderr]\n"


@dataclass(frozen=True)
class ScriptResult:
    """A finished run command: Azure's status code and the script's output streams.

    Azure's v1 run command reports no exit code (a script that exits non-zero still ends
    "ProvisioningState/succeeded"): callers judge by what the script printed."""

    code: str
    stdout: str
    stderr: str


@dataclass(frozen=True)
class LastScript:
    """The instance's last run command as its instance view shows it (the RunCommandLinux
    extension's status): `state` is transitioning, succeeded or failed; `at` when it was set."""

    state: str
    at: datetime | None
    stdout: str
    stderr: str
    message: str


@dataclass(frozen=True)
class InstanceLook:
    """One instance now (one GET with its instance view): provisioning, power, latest model,
    and its last run command — what a step that lost an operation's token judges by."""

    instance: VmInstance
    last_script: LastScript | None


def parse_run_command_message(message: str) -> tuple[str, str]:
    """(stdout, stderr) from a v1 message "Enable succeeded: \\n[stdout]\\n...\\n[stderr]\\n..."."""
    _, _, rest = message.partition(MESSAGE_STDOUT)
    stdout, _, stderr = rest.partition(MESSAGE_STDERR)
    return stdout, stderr.rstrip("\n")


# Named as a table so that the infra test finds every Compute call (and the role grants it).
_VM_ACTIONS = {
    "restart": ("virtual_machine_scale_set_vms", "begin_restart"),
    "reimage": ("virtual_machine_scale_set_vms", "begin_reimage"),
}


class Instances:
    """Run command and restart on one instance of a scale set."""

    def __init__(self, scale_sets: ScaleSets) -> None:
        self._scale_sets = scale_sets

    def begin_run_script(self, vmss_id: str, instance_id: str, script: str) -> str:
        """Start RunShellScript with `script`; the LRO's continuation token."""
        ref = _ref(vmss_id)
        body = {"commandId": "RunShellScript", "script": script.splitlines()}
        with self._scale_sets._call("run_command", ref, [instance_id]) as compute:
            poller = compute.virtual_machine_scale_set_vms.begin_run_command(
                ref.resource_group, ref.name, instance_id, body, **sent_once()
            )
        return poller.continuation_token()

    def script_result(
        self, vmss_id: str, instance_id: str, token: str
    ) -> OperationStatus | ScriptResult:
        """One status check of a run command: still running / failed, or its result."""
        ref = _ref(vmss_id)
        polling = _no_wait_polling()()
        with self._scale_sets._call("operation_status", ref, [instance_id]) as compute:
            poller = compute.virtual_machine_scale_set_vms.begin_run_command(
                ref.resource_group,
                ref.name,
                instance_id,
                None,
                continuation_token=token,
                polling=polling,
            )
            status = poll_once(polling)
            if status == "succeeded":
                return _script_result(_final_resource(polling, poller))
        return operation_status_of(status, polling)

    def look(self, vmss_id: str, instance_id: str) -> InstanceLook:
        """One instance with its instance view (a GET: no operation token needed)."""
        ref = _ref(vmss_id)
        with self._scale_sets._call("look", ref, [instance_id]) as compute:
            vm = compute.virtual_machine_scale_set_vms.get(
                ref.resource_group, ref.name, instance_id, expand="instanceView"
            )
        return InstanceLook(_instance(vm), _last_script(vm))

    def begin_restart(self, vmss_id: str, instance_id: str) -> str:
        """Restart one instance (a graceful OS reboot); the LRO's continuation token."""
        return self._begin("restart", vmss_id, instance_id)

    def begin_reimage(self, vmss_id: str, instance_id: str) -> str:
        """Reimage one instance (a new OS disk from its own model, then a boot); the LRO's
        continuation token."""
        return self._begin("reimage", vmss_id, instance_id)

    def _begin(self, action: Literal["restart", "reimage"], vmss_id: str, instance_id: str) -> str:
        ref = _ref(vmss_id)
        group, method = _VM_ACTIONS[action]
        with self._scale_sets._call(action, ref, [instance_id]) as compute:
            begin = getattr(getattr(compute, group), method)
            poller = begin(ref.resource_group, ref.name, instance_id, **sent_once())
        return poller.continuation_token()

    def restart_status(self, vmss_id: str, instance_id: str, token: str) -> OperationStatus:
        """One status check of a restart started with `begin_restart`."""
        ref = _ref(vmss_id)
        polling = _no_wait_polling()()
        with self._scale_sets._call("operation_status", ref, [instance_id]) as compute:
            compute.virtual_machine_scale_set_vms.begin_restart(
                ref.resource_group,
                ref.name,
                instance_id,
                continuation_token=token,
                polling=polling,
            )
            status = poll_once(polling)
        return operation_status_of(status, polling)


def _final_resource(polling: Any, poller: Any) -> Any:
    """The operation's result: ARMPolling fetches it from the final GET URL (the Location of a
    POST) only inside its own wait loop, which this adapter never runs; so do that one GET."""
    url = polling._operation.get_final_get_url(polling._pipeline_response)
    if url:
        polling._pipeline_response = polling.request_status(url)
    return poller.result()


def _script_result(result: Any) -> ScriptResult:
    status: Any = next(iter(getattr(result, "value", None) or []), None)
    message = str(getattr(status, "message", "") or "")
    stdout, stderr = parse_run_command_message(message)
    code: Literal[""] | str = str(getattr(status, "code", "") or "")
    return ScriptResult(code=code, stdout=stdout, stderr=stderr)


def _last_script(vm: Any) -> LastScript | None:
    view = vm.properties.instance_view if vm.properties else None
    for extension in (view.extensions if view else None) or []:
        if not str(extension.type or "").endswith("RunCommandLinux"):
            continue
        status = next(iter(extension.statuses or []), None)
        if status is None:
            return None
        message = str(status.message or "")
        stdout, stderr = parse_run_command_message(message)
        state = str(status.code or "").removeprefix("ProvisioningState/").split("/")[0].lower()
        return LastScript(state, status.time, stdout, stderr, message)
    return None
