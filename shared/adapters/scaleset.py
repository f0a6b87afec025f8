"""Scale-set adapter: one VM Scale Set as cluster-autoscaler's NodeGroup sees it, over Compute.

Flows call `ScaleSets` for fresh state, capacity raises, named deletes and LRO status checks; it
is the only module that imports azure-mgmt-compute, and returns the core's plain types.

Errors (every Azure failure leaves this module as one of these, mapped in `_error_type`):

    AzureCallError                  status, code, message, vmss_id, instance_ids, operation
    ├── TemporaryAzureError         5xx, timeouts, OperationPreempted, ...: retry after retry_after
    │   └── ThrottledError          429; retry_after from Retry-After, honoured for the whole API
    ├── EtagMismatch                412: the scale set changed since the read; re-read, re-plan
    └── PermanentAzureError         other 4xx: the same request will fail again
        ├── ScaleSetNotFound        404
        └── AllocationError         CannotAllocateRemainingVMsInAvailabilitySet, quota, stockout

    UntrustedRequest                a request for another host than the ARM endpoint (a tampered
                                    operation token): refused before it leaves, bearer and all
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from shared.clock import Clock
from shared.decide.counting import ScaleSetState, VmInstance

ARM_ENDPOINT_SETTING = "POOLKEEPER_ARM_ENDPOINT"
CA_BUNDLE_SETTING = "POOLKEEPER_CA_BUNDLE"
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
API = "Microsoft.Compute"

# A function must not sit in the SDK's retry loop: no retries on status codes (429 and 5xx come
# back to us at once), one immediate retry when the connection could not be made, none when a
# request was sent but its answer did not come (it may have been applied). Writes go with
# `sent_once()`: not even the connection retry. Short timeouts.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 1,
    "retry_connect": 1,
    "retry_read": 0,
    "retry_status": 0,
    "connection_timeout": 5,
    "read_timeout": 30,
}
DEFAULT_RETRY_AFTER = 30.0  # seconds, when a 429 comes without a usable Retry-After
# A resource group whose scale-set list was refused (the identity's roles are assigned at each
# scale set) is not asked again for this long; the survey GETs each scale set meanwhile.
LIST_REFUSAL_KEPT = timedelta(hours=1)
LIST_REFUSED_EARLIER = "ListRefusedEarlier"

ALLOCATION_CODES = frozenset(
    {
        "CannotAllocateRemainingVMsInAvailabilitySet",
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "QuotaExceeded",
        "SkuNotAvailable",
    }
)
TEMPORARY_CODES = frozenset(
    {
        "OperationPreempted",
        "InternalExecutionError",
        "InternalServerError",
        "GatewayTimeout",
        "ServiceUnavailable",
        "RetryableError",
    }
)

_VMSS_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Compute/virtualMachineScaleSets/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


# -- errors ----------------------------------------------------------------------------------------


class AzureCallError(Exception):
    """A Compute call failed; `code` is the ARM error code (or the SDK's error name)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        vmss_id: str = "",
        instance_ids: Sequence[str] = (),
        operation: str = "",
    ) -> None:
        super().__init__(f"{operation} {vmss_id}: {status or '-'} {code or '-'}: {message}")
        self.status, self.code, self.message = status, code, message
        self.vmss_id, self.instance_ids, self.operation = vmss_id, tuple(instance_ids), operation


class TemporaryAzureError(AzureCallError):
    """Worth retrying later: after `retry_after` seconds (wall) if Azure said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class ThrottledError(TemporaryAzureError):
    """429: the API refuses calls for `retry_after` wall seconds."""


class EtagMismatch(AzureCallError):
    """412: the scale set changed since the read whose ETag was sent; re-read and re-plan."""


class PermanentAzureError(AzureCallError):
    """The same request would fail again (4xx): fail the step, or change the request."""


class ScaleSetNotFound(PermanentAzureError):
    """404: the scale set (or its resource group or subscription) does not exist."""


class AllocationError(PermanentAzureError):
    """Azure cannot place or keep the VMs: availability-set rules, quota, or no capacity."""


class UntrustedRequest(Exception):
    """A request for a host other than the ARM endpoint, refused before it was sent: the status
    URLs inside a stored operation token were changed. Not an Azure error: the job that holds
    the token fails at once, naming it; retrying would only ask the same host again."""

    def __init__(self, url: str, endpoint: str) -> None:
        super().__init__(
            f"refused to send a request with the identity's token to {_origin(url)}: it is not "
            f"the ARM endpoint {_origin(endpoint)} (an operation token in the job's state was "
            "changed)"
        )
        self.url, self.endpoint = url, endpoint


def _origin(url: str) -> str:
    """scheme://host:port, the port written out (https://management.azure.com:443)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def _only_to(endpoint: str) -> Callable[[Any], None]:
    """A pipeline hook that refuses any request not for `endpoint`'s scheme, host and port. It
    runs after the bearer token is attached and before the request is sent."""
    allowed = _origin(endpoint)

    def check(request: Any) -> None:
        url = request.http_request.url
        if _origin(url) != allowed:
            raise UntrustedRequest(url, endpoint)

    return check


def _error_type(status: int | None, code: str | None, operation: str) -> type[AzureCallError]:
    """The one mapping from an HTTP status and ARM error code to an error class."""
    if status == 429:
        return ThrottledError
    if status == 412:
        return EtagMismatch
    if code in ALLOCATION_CODES:
        return AllocationError
    if code in TEMPORARY_CODES or status == 408 or (status is not None and status >= 500):
        return TemporaryAzureError
    if status == 404 and operation != "operation_status":
        return ScaleSetNotFound
    return PermanentAzureError


def _to_error(
    error: Exception, *, operation: str, vmss_id: str, instance_ids: Sequence[str]
) -> AzureCallError:
    """An SDK exception as our typed error (uses `_error_type`)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    context: dict[str, Any] = {
        "vmss_id": vmss_id,
        "instance_ids": instance_ids,
        "operation": operation,
    }
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        odata = error.error
        code = (odata.code if odata else None) or error.reason
        message = (odata.message if odata else None) or str(error.message)
        kind = _error_type(error.status_code, code, operation)
        context.update(status=error.status_code, code=code)
        if kind is ThrottledError:
            return ThrottledError(message, retry_after=_retry_after(error.response), **context)
        return kind(message, **context)
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        # No answer: the connection failed or timed out. A write may or may not have landed;
        # the caller re-reads before deciding anything (invariant 3).
        kind = (
            "ServiceRequestError"
            if isinstance(error, ServiceRequestError)
            else "ServiceResponseError"
        )
        return TemporaryAzureError(str(error), code=kind, **context)
    if isinstance(error, ClientAuthenticationError):  # no token: the identity is not usable
        return PermanentAzureError(str(error), code="CredentialUnavailable", **context)
    return TemporaryAzureError(str(error), code=type(error).__name__, **context)


def _retry_after(response: Any) -> float:
    """Seconds from Retry-After (delta-seconds or HTTP-date), else DEFAULT_RETRY_AFTER."""
    raw = (response.headers.get("Retry-After") or "").strip() if response is not None else ""
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


# -- the Retry-After gate --------------------------------------------------------------------------


class ThrottleGate:
    """Per (subscription, API): no call before the Retry-After of the last 429 has passed.

    Wall time on purpose (`time.monotonic`), not the product clock: Azure's Retry-After, and the
    simulator's, are wall seconds whatever the simulated clock's speed. Thread-safe, since the
    Functions worker runs invocations on a thread pool.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._blocked_until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def remaining(self, key: tuple[str, str]) -> float:
        """Seconds until calls for `key` may go out again (0 when they may now)."""
        with self._lock:
            return max(0.0, self._blocked_until.get(key, 0.0) - self._monotonic())

    def block(self, key: tuple[str, str], seconds: float) -> None:
        with self._lock:
            until = self._monotonic() + seconds
            self._blocked_until[key] = max(until, self._blocked_until.get(key, 0.0))


# Process-wide: the adapter is built per invocation, the API's patience is per process.
PROCESS_GATE = ThrottleGate()


# -- long-running operations -----------------------------------------------------------------------


@dataclass(frozen=True)
class OperationStatus:
    """One look at a long-running operation; `code`/`message` are the ARM error when Failed."""

    state: Literal["InProgress", "Succeeded", "Failed"]
    code: str | None = None
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.state != "InProgress"

    @property
    def error_type(self) -> type[AzureCallError] | None:
        """The class a failure's code maps to (e.g. AllocationError), None unless Failed."""
        return _error_type(None, self.code, "lro") if self.state == "Failed" else None


@functools.cache
def _no_wait_polling() -> type[Any]:
    """An ARMPolling that never waits or polls on its own (built once, lazily: SDK import).

    Why this and not the alternatives (azure-core 1.41 / azure-mgmt-core 1.6):
    - `LROPoller` starts a background thread that polls and sleeps unless its polling method
      says `finished()`. This one always does, so starting an LRO or resuming one from a token
      through the generated `begin_*(..., polling=...)` starts no thread.
    - `polling=False` (`NoPolling`) cannot give a continuation token any more: its token is the
      raw response, which is not JSON-serializable ("Payload is not JSON-serializable").
    - The status check stays ARMPolling's own (`update_status`: Azure-AsyncOperation, else
      Location, else the body) through the client's pipeline (auth, no-retry policy, timeouts);
      `request_status` is overridden only to keep the answer, for the ARM error of a failure.
    """
    from azure.mgmt.core.polling.arm_polling import ARMPolling

    class NoWaitPolling(ARMPolling):  # type: ignore[misc]
        last_response: Any = None

        def finished(self) -> bool:
            return True

        def request_status(self, status_link: str) -> Any:
            self.last_response = super().request_status(status_link)
            return self.last_response

    return NoWaitPolling


# -- the adapter -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    subscription: str
    resource_group: str
    name: str
    vmss_id: str  # lower-cased


def _ref(vmss_id: str) -> _Ref:
    found = _VMSS_ID.match(vmss_id or "")
    if found is None:
        raise ValueError(f"not a VM scale set resource id: {vmss_id!r}")
    return _Ref(found["sub"], found["rg"], found["name"], vmss_id.lower())


class ScaleSets:
    """Compute calls for scale sets: the NodeGroup seam (read, raise capacity, delete named)."""

    def __init__(
        self,
        credential: Any,
        *,
        clock: Clock,
        endpoint: str = DEFAULT_ARM_ENDPOINT,
        ca_bundle: str | None = None,
        gate: ThrottleGate | None = None,
        **client_options: Any,
    ) -> None:
        self._credential = credential
        self._clock = clock
        self._endpoint = endpoint.rstrip("/")
        self._gate = gate or PROCESS_GATE
        self._options = _CLIENT_OPTIONS | {"raw_request_hook": _only_to(endpoint)} | client_options
        if ca_bundle:
            self._options["connection_verify"] = ca_bundle
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._unlistable: dict[tuple[str, str], datetime] = {}  # survey refused (403): when

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, str],
        *,
        clock: Clock,
        gate: ThrottleGate | None = None,
        **client_options: Any,
    ) -> ScaleSets:
        """From app settings; the identity is whatever DefaultAzureCredential finds.
        `client_options` override the SDK client's (timeouts, retries)."""
        from azure.identity import DefaultAzureCredential

        return cls(
            DefaultAzureCredential(),
            clock=clock,
            endpoint=settings.get(ARM_ENDPOINT_SETTING) or DEFAULT_ARM_ENDPOINT,
            ca_bundle=settings.get(CA_BUNDLE_SETTING) or None,
            gate=gate,
            **client_options,
        )

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _compute(self, subscription: str) -> Any:
        """One ComputeManagementClient per subscription, built on first use."""
        with self._lock:
            client = self._clients.get(subscription.lower())
            if client is None:
                from azure.mgmt.compute import ComputeManagementClient

                client = ComputeManagementClient(
                    self._credential,
                    subscription,
                    base_url=self._endpoint,
                    **self._options,
                )
                self._clients[subscription.lower()] = client
            return client

    @contextmanager
    def _call(self, operation: str, ref: _Ref, instance_ids: Sequence[str] = ()) -> Iterator[Any]:
        """Gate on Retry-After, yield the client, and turn any SDK error into ours."""
        key = (ref.subscription.lower(), API)
        context: dict[str, Any] = {
            "vmss_id": ref.vmss_id,
            "instance_ids": instance_ids,
            "operation": operation,
        }
        wait = self._gate.remaining(key)
        if wait > 0:
            raise ThrottledError(
                f"not sent: {API} calls in subscription {ref.subscription} wait {wait:.1f}s more "
                "for the Retry-After of an earlier 429",
                retry_after=wait,
                status=429,
                code="RetryAfterPending",
                **context,
            )
        from azure.core.exceptions import AzureError

        try:
            yield self._compute(ref.subscription)
        except AzureError as error:
            mapped = _to_error(error, **context)
            if isinstance(mapped, ThrottledError):
                self._gate.block(key, mapped.retry_after or DEFAULT_RETRY_AFTER)
            raise mapped from error

    # -- reads -------------------------------------------------------------------------------------

    def peek(self, vmss_id: str) -> tuple[str, int]:
        """(ETag, sku.capacity) from one scale-set GET: the cheap "did anything change?"."""
        ref = _ref(vmss_id)
        with self._call("peek", ref) as compute:
            vmss = compute.virtual_machine_scale_sets.get(ref.resource_group, ref.name)
        return vmss.etag, int(vmss.sku.capacity or 0)

    def survey(self, subscription: str, resource_group: str) -> dict[str, tuple[str, int]]:
        """(ETag, sku.capacity) of every scale set in a resource group, from one list call:
        how a fleet learns cheaply which pools changed and need a full read."""
        ref = _Ref(
            subscription,
            resource_group,
            "",
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}",
        )
        key = (subscription.lower(), resource_group.lower())
        refused = self._unlistable.get(key)
        if refused is not None and self._clock.now() - refused < LIST_REFUSAL_KEPT:
            raise PermanentAzureError(
                f"not sent: listing the scale sets of {resource_group} was refused at "
                f"{refused.isoformat()}; asked again an hour after",
                status=403,
                code=LIST_REFUSED_EARLIER,
                vmss_id=ref.vmss_id,
                instance_ids=(),
                operation="survey",
            )
        try:
            with self._call("survey", ref) as compute:
                found = list(compute.virtual_machine_scale_sets.list(resource_group))
        except PermanentAzureError as error:
            if error.status == 403:  # roles at each scale set: a GET each works
                self._unlistable[key] = self._clock.now()
            raise
        self._unlistable.pop(key, None)
        return {vmss.id.lower(): (vmss.etag, int(vmss.sku.capacity or 0)) for vmss in found}

    def read(self, vmss_id: str) -> ScaleSetState:
        """A fresh, full read: the scale-set GET, then every page of the instance list with
        instance views. Nothing is cached; the ETag is the GET's."""
        ref = _ref(vmss_id)
        with self._call("read", ref) as compute:
            vmss = compute.virtual_machine_scale_sets.get(ref.resource_group, ref.name)
            vms = list(
                compute.virtual_machine_scale_set_vms.list(
                    ref.resource_group, ref.name, expand="instanceView"
                )
            )
        profile = vmss.properties.virtual_machine_profile if vmss.properties else None
        storage = profile.storage_profile if profile else None
        image = storage.image_reference if storage else None
        return ScaleSetState(
            vmss_id=ref.vmss_id,
            etag=vmss.etag,
            capacity=int(vmss.sku.capacity or 0),
            model_image={k: str(v) for k, v in dict(image or {}).items() if v is not None},
            instances=tuple(_instance(vm) for vm in vms),
            read_at=self._clock.now(),
            tags=dict(vmss.tags or {}),
            identities=tuple(
                sorted(
                    k.lower()
                    for k in (getattr(vmss.identity, "user_assigned_identities", None) or {})
                )
            ),
        )

    # -- writes ------------------------------------------------------------------------------------

    def raise_capacity(
        self, vmss_id: str, new_capacity: int, etag: str, tags: Mapping[str, str] | None = None
    ) -> str:
        """PATCH sku.capacity (and `tags`, the whole set, when given) with If-Match `etag`;
        returns the LRO's continuation token.

        Only ever called to raise (invariant 2): that the value is higher than the read's is the
        caller's check, made on the read whose ETag it sends (and whose tags it extends).
        """
        if isinstance(new_capacity, bool) or not isinstance(new_capacity, int) or new_capacity < 1:
            raise ValueError(f"refusing to write capacity {new_capacity!r}: must be at least 1")
        if not etag:
            raise ValueError("refusing a capacity write without the ETag of a fresh read")
        from azure.core import MatchConditions

        ref = _ref(vmss_id)
        with self._call("raise_capacity", ref) as compute:
            poller = compute.virtual_machine_scale_sets.begin_update(
                ref.resource_group,
                ref.name,
                {"sku": {"capacity": new_capacity}}
                | ({"tags": dict(tags)} if tags is not None else {}),
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                **sent_once(),
            )
        return poller.continuation_token()

    def begin_delete(
        self, vmss_id: str, instance_ids: Sequence[str], *, force: bool = False
    ) -> str:
        """DeleteInstances of exactly these instances; returns the LRO's continuation token."""
        ids = [str(i) for i in instance_ids]
        if isinstance(instance_ids, str) or not ids or not all(ids):
            raise ValueError(f"refusing to delete without named instances: {instance_ids!r}")
        ref = _ref(vmss_id)
        with self._call("begin_delete", ref, ids) as compute:
            poller = compute.virtual_machine_scale_sets.begin_delete_instances(
                ref.resource_group,
                ref.name,
                {"instanceIds": ids},
                force_deletion=force,
                **sent_once(),
            )
        return poller.continuation_token()

    def operation_status(
        self, kind: Literal["update", "delete"], vmss_id: str, token: str
    ) -> OperationStatus:
        """One status GET of the LRO behind `token` (from this or another process); no waiting."""
        if kind not in ("update", "delete"):
            raise ValueError(f"unknown operation kind {kind!r}: 'update' or 'delete'")
        ref = _ref(vmss_id)
        polling = _no_wait_polling()()
        with self._call("operation_status", ref) as compute:
            operations = compute.virtual_machine_scale_sets
            begin = (
                operations.begin_update if kind == "update" else operations.begin_delete_instances
            )
            # No request: rebuilds the poller from the token (a ValueError if it is not one);
            # `polling` picks the status URL from the saved first answer's headers.
            begin(ref.resource_group, ref.name, None, continuation_token=token, polling=polling)
            status = poll_once(polling)
        return operation_status_of(status, polling)


def sent_once() -> dict[str, Any]:
    """The keyword arguments for a write that must reach Azure at most once: started without
    waiting, and never resent by the SDK. Its one connection retry would resend when urllib3
    reports an error after the request went out (an SSL error on the answer becomes a
    "connection" error); a write whose answer is lost is settled by re-reads instead."""
    return {"polling": _no_wait_polling()(), "retry_total": 0}


def poll_once(polling: Any) -> str:
    """One status GET of an LRO rebuilt with a no-wait polling; its status, lower-cased.
    A non-2xx status answer becomes the SDK's HttpResponseError (mapped by `_call`)."""
    from azure.core.exceptions import HttpResponseError
    from azure.core.polling.base_polling import BadResponse, BadStatus

    try:
        polling.update_status()
    except (BadStatus, BadResponse) as error:  # the status GET was not a 2xx status
        answer = polling.last_response
        if answer is None:
            raise
        raise HttpResponseError(response=answer.http_response) from error
    return str(polling.status()).lower()


def operation_status_of(status: str, polling: Any) -> OperationStatus:
    """An LRO's status (from `poll_once`) in our words, with the ARM error of a failure."""
    if status == "succeeded":
        return OperationStatus("Succeeded")
    if status not in ("failed", "canceled", "cancelled"):
        return OperationStatus("InProgress")
    error = _failure(polling.last_response)
    return OperationStatus(
        "Failed", error.get("code") or status, error.get("message") or f"operation {status}"
    )


def _failure(response: Any) -> dict[str, Any]:
    """The `error` object of a Failed operation-status body, if it has one."""
    try:
        body = json.loads(response.http_response.text())
    except (AttributeError, ValueError):
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _instance(vm: Any) -> VmInstance:
    """A scale-set VM (listed with its instance view) as the core's VmInstance."""
    props = vm.properties
    view = props.instance_view if props else None
    power: str | None = None
    failure: str | None = None
    for status in (view.statuses if view else None) or []:
        code = status.code or ""
        if code.startswith("PowerState/"):
            power = code.removeprefix("PowerState/")
        elif code.lower().startswith("provisioningstate/failed/"):
            failure = code.split("/", 2)[2]
    storage = props.storage_profile if props else None
    reference = storage.image_reference if storage else None
    os_profile = props.os_profile if props else None
    computer_name = (os_profile.computer_name if os_profile else None) or (
        view.computer_name if view else None
    )
    return VmInstance(
        instance_id=str(vm.instance_id),
        computer_name=computer_name or "",
        provisioning=(props.provisioning_state if props else None) or "Unknown",
        power=power,
        failure=failure,
        zone=vm.zones[0] if vm.zones else None,
        # Unknown is not "outdated": only Azure's explicit false may start an image rollout.
        latest_model=props is None or props.latest_model_applied is not False,
        image=(reference.exact_version or reference.version) if reference else None,
    )
