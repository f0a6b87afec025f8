"""Kubernetes adapter: nodes, pods and evictions through the official `kubernetes` client.

Flows call it for cordon, drain and node/instance matching; it returns the core's plain types.
Connects with a kubeconfig (file or content in a setting) or, for AKS clusters with Entra ID
integration, with a token from `azure-identity`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.config.clusters import (
    CA_SETTING,
    KEY_VAULT_SETTING,
    KUBECONFIG_CONTENT_SETTING,
    KUBECONFIG_SETTING,
    SERVER_SETTING,
    Cluster,
    EntraAuth,
)
from shared.decide.counting import NodeView
from shared.decide.drain import Pod

# The well-known application id of the AKS Entra ID server: the token audience AKS expects.
AKS_ENTRA_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"

# (connect, read) seconds for every call to the API server: a hung server must not hold a worker
# (the client retries an idempotent read 3 times, so a hung GET ends within about 2 minutes).
REQUEST_TIMEOUT = (5.0, 30.0)

DRAINING_ANNOTATION = "poolkeeper.io/draining"
CLAIM_ANNOTATION = "poolkeeper.io/claimed-by"
LAST_PATCHED_ANNOTATION = "poolkeeper.io/last-patched"
NODE_GROUP_LABEL = "elastisys.io/node-group"
PROTOTYPE_LABEL = "poolkeeper.io/prototype"
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"

_PROVIDER_ID = re.compile(
    r"^azure:///subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Compute/virtualMachineScaleSets/(?P<vmss>[^/]+)/virtualMachines/(?P<id>\d+)$",
    re.IGNORECASE,
)


class KubeConfigError(ValueError):
    """The Kubernetes connection settings are missing or unusable."""


class ClusterUnavailable(Exception):
    """A call to a cluster got no answer, or was held back because its breaker
    (shared.decide.breaker) is open after calls in a row got none or a 5xx. A job waits it out
    as a temporary error."""

    def __init__(
        self, cluster: str, last_error: str, retry_in: float, *, held: bool = True
    ) -> None:
        state = (
            f"breaker open, next try in {retry_in:.0f} s"
            if held
            else "no answer; calls go on until three in a row fail"
        )
        super().__init__(f"cluster {cluster} is not answering ({state}); last error: {last_error}")
        self.cluster, self.last_error, self.retry_in = cluster, last_error, retry_in


class NodeChanged(Exception):
    """A conditional node write found the node changed since it was read (409 Conflict)."""

    def __init__(self, node: str) -> None:
        super().__init__(f"node {node} changed since it was read")
        self.node = node


@dataclass(frozen=True)
class Node:
    name: str
    provider_id: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    unschedulable: bool
    ready: bool
    ready_since: datetime | None  # lastTransitionTime of the Ready condition
    resource_version: str = ""  # for writes that must not land on a node changed since
    kernel: str = ""  # status.nodeInfo.kernelVersion
    boot_id: str = ""  # status.nodeInfo.bootID: changes with every boot
    machine_id: str = ""  # status.nodeInfo.machineID: clones of one image may share it

    @property
    def claim(self) -> str | None:
        """The raw `poolkeeper.io/claimed-by` annotation, if a job holds this node."""
        return self.annotations.get(CLAIM_ANNOTATION) or None

    @property
    def scale_set_instance(self) -> tuple[str, str] | None:
        """(lower-cased scale-set id, instance id) parsed from providerID, if it is a VMSS node."""
        return parse_provider_id(self.provider_id)

    @property
    def scale_down_disabled(self) -> bool:
        return self.annotations.get(SCALE_DOWN_DISABLED, "").lower() == "true"

    def view(self) -> NodeView:
        """The node as the counting core sees it."""
        vmss_id, instance_id = self.scale_set_instance or (None, None)
        return NodeView(
            name=self.name,
            vmss_id=vmss_id,
            instance_id=instance_id,
            node_group=self.labels.get(NODE_GROUP_LABEL),
            ready=self.ready,
            unschedulable=self.unschedulable,
            scale_down_disabled=self.scale_down_disabled,
            prototype=self.labels.get(PROTOTYPE_LABEL, "").lower() == "true",
            claim=self.claim,
            kernel=self.kernel,
            last_patched=self.annotations.get(LAST_PATCHED_ANNOTATION),
        )


class EvictionResult(StrEnum):
    EVICTED = "evicted"
    BUDGET = "disruption budget allows no disruption now (429)"
    MULTIPLE_BUDGETS = "more than one PodDisruptionBudget selects the pod (500)"
    GONE = "pod no longer exists (404)"


_FOLDER: list[str] = []


def _private_folder() -> str:
    """A folder only this user can enter: the shared name when it is ours and closed to others
    (so processes reuse the files), else one of our own."""
    if _FOLDER:
        return _FOLDER[0]
    folder = os.path.join(tempfile.gettempdir(), f"poolkeeper-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    seen = os.lstat(folder)
    if not stat.S_ISDIR(seen.st_mode) or seen.st_uid != os.getuid() or seen.st_mode & 0o077:
        folder = tempfile.mkdtemp(prefix="poolkeeper-")  # someone else made the shared one
    _FOLDER.append(folder)
    return folder


def _private_file(content: str, suffix: str) -> str:
    """`content` in a file only this process's user can read (the client takes paths), named by
    its hash so that rebuilding a connection reuses it."""
    folder = _private_folder()
    path = os.path.join(folder, hashlib.sha256(content.encode()).hexdigest()[:32] + suffix)
    if not os.path.exists(path):
        fd, partial = tempfile.mkstemp(dir=folder)  # 0600
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.replace(partial, path)
    return path


def parse_provider_id(provider_id: str) -> tuple[str, str] | None:
    """(lower-cased scale-set id, instance id) from an AKS providerID, or None."""
    found = _PROVIDER_ID.match(provider_id or "")
    if found is None:
        return None
    vmss_id = (
        f"/subscriptions/{found['sub']}/resourceGroups/{found['rg']}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{found['vmss']}"
    )
    return vmss_id.lower(), found["id"]


def _node(raw: Any) -> Node:
    ready = next((c for c in raw.status.conditions or [] if c.type == "Ready"), None)
    return Node(
        name=raw.metadata.name,
        provider_id=raw.spec.provider_id or "",
        labels=dict(raw.metadata.labels or {}),
        annotations=dict(raw.metadata.annotations or {}),
        unschedulable=bool(raw.spec.unschedulable),
        ready=ready is not None and ready.status == "True",
        ready_since=ready.last_transition_time if ready is not None else None,
        resource_version=raw.metadata.resource_version or "",
        kernel=(raw.status.node_info.kernel_version if raw.status.node_info else "") or "",
        boot_id=(raw.status.node_info.boot_id if raw.status.node_info else "") or "",
        machine_id=(raw.status.node_info.machine_id if raw.status.node_info else "") or "",
    )


def _pod(raw: Any) -> Pod:
    controller = next((o for o in raw.metadata.owner_references or [] if o.controller), None)
    annotations = raw.metadata.annotations or {}
    return Pod(
        namespace=raw.metadata.namespace,
        name=raw.metadata.name,
        uid=raw.metadata.uid,
        phase=raw.status.phase or "Unknown",
        controller_kind=controller.kind if controller is not None else None,
        mirror="kubernetes.io/config.mirror" in annotations,
        empty_dir=any(v.empty_dir is not None for v in raw.spec.volumes or []),
        terminating=raw.metadata.deletion_timestamp is not None,
    )


class Kube:
    """The cluster's API, in the words the flows use."""

    def __init__(self, api_client: Any, *, timeout: tuple[float, float] = REQUEST_TIMEOUT) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._client = client
        self._timeout = timeout

    def guarded_by(self, gate: Any) -> Kube:
        """Send every call to the API server through `gate.call(send, ...)` (the cluster's breaker,
        shared.adapters.connections): the REST client's `request` is the one door all APIs use."""
        rest = self._core.api_client.rest_client
        send = rest.request
        rest.request = lambda *args, **kwargs: gate.call(send, *args, **kwargs)
        return self

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, str],
        *,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
        one_attempt: bool = False,
    ) -> Kube:
        """Kubeconfig file, kubeconfig content, or server + Entra ID token (in that order).
        `timeout`: (connect, read) seconds per call; `one_attempt`: no retries of a read that
        timed out (for HTTP requests, whose caller retries)."""
        from kubernetes import client, config

        retries = 0 if one_attempt else None

        path = settings.get(KUBECONFIG_SETTING)
        content = settings.get(KUBECONFIG_CONTENT_SETTING)
        server = settings.get(SERVER_SETTING)
        if path or content:
            if content:
                path = _private_file(content, ".kubeconfig")
            try:
                bounded = None
                if retries is not None:
                    bounded = type.__call__(client.Configuration)  # as the loader makes one
                    bounded.retries = retries
                api_client = config.new_client_from_config(
                    config_file=path, client_configuration=bounded
                )
                return cls(api_client, timeout=timeout)
            except Exception as error:
                raise KubeConfigError(
                    f"cannot load the kubeconfig from "
                    f"{KUBECONFIG_CONTENT_SETTING if content else KUBECONFIG_SETTING}: {error}"
                ) from error
        if server:
            from azure.identity import DefaultAzureCredential

            configuration = client.Configuration()
            configuration.retries = retries
            configuration.host = server
            configuration.ssl_ca_cert = settings.get(CA_SETTING) or None
            credential = DefaultAzureCredential()

            def refresh(conf: Any) -> None:
                conf.api_key["authorization"] = credential.get_token(AKS_ENTRA_SCOPE).token

            configuration.api_key_prefix["authorization"] = "Bearer"
            # The client sends the header only for a key it already has; the hook then refreshes it.
            configuration.api_key["authorization"] = ""
            configuration.refresh_api_key_hook = refresh
            return cls(client.ApiClient(configuration), timeout=timeout)
        raise KubeConfigError(
            f"no Kubernetes connection: set {KUBECONFIG_SETTING} (a kubeconfig path), "
            f"{KUBECONFIG_CONTENT_SETTING} (its content) or {SERVER_SETTING} (API server URL, "
            "with an Entra ID token from the managed identity)"
        )

    @classmethod
    def for_cluster(
        cls,
        cluster: Cluster,
        secrets: Any,
        settings: Mapping[str, str],
        *,
        one_attempt: bool = False,
        read_timeout: float | None = None,
    ) -> Kube:
        """A listed cluster (`shared.config.clusters`): its server, CA and credential, the secrets
        read through `secrets` (shared.adapters.secrets.Secrets). A token is read again (from the
        cache) before each call, so a rotated one is used once the cache lets it go."""
        from kubernetes import client, config

        read = min(read_timeout or cluster.request_timeout_seconds, cluster.request_timeout_seconds)
        timeout = (min(REQUEST_TIMEOUT[0], read), read)
        vault = cluster.key_vault or settings.get(KEY_VAULT_SETTING, "")
        configuration = type.__call__(client.Configuration)  # not the process-wide default
        configuration.retries = 0 if one_attempt else None
        auth = cluster.auth
        if not isinstance(auth, EntraAuth) and auth.mode == "kubeconfig":
            import yaml

            content = secrets.get(vault, auth.secret)
            try:
                api_client = config.new_client_from_config_dict(
                    yaml.safe_load(content), client_configuration=configuration
                )
            except (
                yaml.YAMLError,
                config.ConfigException,
                ValueError,
                TypeError,
                KeyError,
            ) as error:
                raise KubeConfigError(
                    f"cluster {cluster.name}: the kubeconfig in secret {auth.secret!r} cannot be "
                    f"used: {type(error).__name__}: {error}"
                ) from None
            return cls(api_client, timeout=timeout)
        assert cluster.server is not None and cluster.ca is not None  # the config guarantees it
        configuration.host = cluster.server
        pem = cluster.ca.pem or secrets.get(vault, str(cluster.ca.secret))
        configuration.ssl_ca_cert = _private_file(pem, ".crt")
        configuration.api_key_prefix["authorization"] = "Bearer"
        # The client sends the header only for a key it already has; the hooks below refresh it.
        configuration.api_key["authorization"] = ""
        if isinstance(auth, EntraAuth):
            from azure.identity import DefaultAzureCredential

            credential, scope = DefaultAzureCredential(), f"{auth.application_id}/.default"

            def entra(conf: Any) -> None:
                conf.api_key["authorization"] = credential.get_token(scope).token

            configuration.refresh_api_key_hook = entra
        elif auth.mode == "token":
            name = auth.secret

            def token(conf: Any) -> None:
                conf.api_key["authorization"] = secrets.get(vault, name).strip()

            configuration.refresh_api_key_hook = token
        else:  # client_certificate: the certificate and its key in one PEM
            both = secrets.get(vault, auth.secret)
            if "CERTIFICATE-----" not in both or "PRIVATE KEY-----" not in both:
                raise KubeConfigError(
                    f"cluster {cluster.name}: secret {auth.secret!r} must hold the client "
                    "certificate and its private key, both PEM"
                )
            configuration.api_key.pop("authorization")
            configuration.cert_file = configuration.key_file = _private_file(both, ".pem")
        return cls(client.ApiClient(configuration), timeout=timeout)

    def version(self) -> str:
        """The API server's gitVersion (any authenticated client may read it)."""
        from kubernetes import client

        info = client.VersionApi(self._core.api_client).get_code(_request_timeout=self._timeout)
        return str(info.git_version)

    def allowed(self, verb: str, resource: str, group: str = "", subresource: str = "") -> bool:
        """May this client `verb` the resource (cluster-wide)? A SelfSubjectAccessReview."""
        review = self._client.V1SelfSubjectAccessReview(
            spec=self._client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=self._client.V1ResourceAttributes(
                    verb=verb, resource=resource, group=group, subresource=subresource or None
                )
            )
        )
        answer = self._client.AuthorizationV1Api(
            self._core.api_client
        ).create_self_subject_access_review(review, _request_timeout=self._timeout)
        return bool(answer.status.allowed)

    def nodes(self) -> list[Node]:
        """Every node, fresh from the API server."""
        return [_node(raw) for raw in self._core.list_node(_request_timeout=self._timeout).items]

    def node(self, name: str) -> Node | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return _node(self._core.read_node(name, _request_timeout=self._timeout))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def set_unschedulable(self, name: str, unschedulable: bool) -> None:
        """Cordon (True) or uncordon (False) a node."""
        self._core.patch_node(
            name,
            {"spec": {"unschedulable": unschedulable or None}},
            _request_timeout=self._timeout,
        )

    def patch_if_unchanged(
        self,
        node: Node,
        *,
        annotations: Mapping[str, str | None] | None = None,
        unschedulable: bool | None = None,
    ) -> Node:
        """One merge patch that lands only on the node as it was read (its resourceVersion):
        NodeChanged when someone wrote it since. Returns the node as written."""
        from kubernetes.client.exceptions import ApiException

        body: dict[str, Any] = {"metadata": {"resourceVersion": node.resource_version}}
        if annotations:
            body["metadata"]["annotations"] = dict(annotations)
        if unschedulable is not None:
            body["spec"] = {"unschedulable": unschedulable or None}
        try:
            return _node(self._core.patch_node(node.name, body, _request_timeout=self._timeout))
        except ApiException as error:
            if error.status == 409:
                raise NodeChanged(node.name) from error
            raise

    def annotate(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """Set annotations on a node; None removes one."""
        self._core.patch_node(
            name,
            {"metadata": {"annotations": dict(annotations)}},
            _request_timeout=self._timeout,
        )

    def label(self, name: str, labels: Mapping[str, str | None]) -> None:
        """Set labels on a node; None removes one."""
        self._core.patch_node(
            name, {"metadata": {"labels": dict(labels)}}, _request_timeout=self._timeout
        )

    def delete_node(self, name: str) -> None:
        """Delete a Node object (one whose VM is gone); a gone node is fine."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.delete_node(name, _request_timeout=self._timeout)
        except ApiException as error:
            if error.status != 404:
                raise

    def pods_on(self, node: str) -> list[Pod]:
        """All pods bound to `node`, across namespaces, following the API's paging."""
        pods: list[Pod] = []
        token = None
        while True:
            page = self._core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node}",
                limit=500,
                _continue=token,
                _request_timeout=self._timeout,
            )
            pods += [_pod(raw) for raw in page.items]
            token = page.metadata._continue
            if not token:
                return pods

    def pods_matching(self, node: str, selectors: Sequence[str]) -> list[str]:
        """Pods on `node` still running (not finished) that match any of the label selectors."""
        found: set[str] = set()
        for selector in selectors:
            page = self._core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node}",
                label_selector=selector,
                _request_timeout=self._timeout,
            )
            found |= {
                f"{raw.metadata.namespace}/{raw.metadata.name}"
                for raw in page.items
                if (raw.status.phase or "") not in ("Succeeded", "Failed")
            }
        return sorted(found)

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data; None when it is absent."""
        from kubernetes.client.exceptions import ApiException

        try:
            found = self._core.read_namespaced_config_map(
                name, namespace, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found.data or {})

    def daemonset_annotation(self, namespace: str, name: str, key: str) -> str | None:
        """One annotation of a DaemonSet (e.g. kured's lock); None when it or the DS is absent."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            found = client.AppsV1Api(self._core.api_client).read_namespaced_daemon_set(
                name, namespace, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return (found.metadata.annotations or {}).get(key)

    def evictable_pods(self) -> dict[str, int]:
        """Per node, the pods a drain would have to move (not DaemonSet, mirror or completed
        pods): one paged list of all pods, so a scale-in can pick the least loaded nodes."""
        counts: dict[str, int] = {}
        token = None
        while True:
            page = self._core.list_pod_for_all_namespaces(
                limit=500, _continue=token, _request_timeout=self._timeout
            )
            for raw in page.items:
                pod = _pod(raw)
                node = raw.spec.node_name
                movable = pod.controller_kind != "DaemonSet" and not pod.mirror
                if node and movable and pod.phase not in ("Succeeded", "Failed"):
                    counts[node] = counts.get(node, 0) + 1
            token = page.metadata._continue
            if not token:
                return counts

    def pod_uid(self, namespace: str, name: str) -> str | None:
        """The pod's current uid, or None when it is gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self._core.read_namespaced_pod(name, namespace, _request_timeout=self._timeout)
            return pod.metadata.uid
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def evict(self, pod: Pod) -> EvictionResult:
        """Ask the eviction API to remove the pod, so PodDisruptionBudgets hold."""
        from kubernetes.client.exceptions import ApiException

        body = self._client.V1Eviction(
            metadata=self._client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=self._client.V1DeleteOptions(
                preconditions=self._client.V1Preconditions(uid=pod.uid)
            ),
        )
        try:
            self._core.create_namespaced_pod_eviction(
                pod.name, pod.namespace, body, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status == 429:
                return EvictionResult.BUDGET
            if error.status == 404 or error.status == 409:  # gone, or replaced (uid precondition)
                return EvictionResult.GONE
            if error.status == 500 and "more than one" in (error.body or ""):
                return EvictionResult.MULTIPLE_BUDGETS
            raise
        return EvictionResult.EVICTED

    def delete_pod(self, pod: Pod, *, grace_seconds: int | None = None) -> None:
        """Delete a completed pod directly (nothing to protect); a gone pod is fine.
        `grace_seconds=0` force-deletes one whose node is dead and can never confirm it."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.delete_namespaced_pod(
                pod.name,
                pod.namespace,
                grace_period_seconds=grace_seconds,
                _request_timeout=self._timeout,
            )
        except ApiException as error:
            if error.status != 404:
                raise
