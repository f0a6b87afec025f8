"""The Kubernetes API (aiohttp), as the `kubernetes` client and kubectl use it. No watch.

Without an `Access` (the plain-HTTP cluster) any client may do anything it is served; with one
(a scenario's cluster, served over TLS by `server`), each request is held while the cluster
hangs, then authenticated and authorized first (`access`). SelfSubjectAccessReviews are served.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from local.sim import bodies
from local.sim.bodies import BodyError
from local.sim.kube import tables
from local.sim.kube.access import REVIEW_GROUP, Access, User, review
from local.sim.kube.faults import KubeFault
from local.sim.kube.model import ApiError, Cluster, conflict
from local.sim.kube.objects import BY_RESOURCE, KINDS, SERVER_VERSION, Kind, Obj
from local.sim.kube.requestinfo import RequestInfo, request_info
from local.sim.kube.selectors import parse_field_selector, parse_label_selector

JSON = "application/json"
# Deep enough for any object a client sends; shallow enough that copying and patching a body
# stays far from Python's recursion limit.
MAX_DEPTH = 100
LOG = logging.getLogger(__name__)
_BY_PATH: dict[tuple[str, str, str], Kind] = {(k.group, k.version, k.resource): k for k in KINDS}
# Subresources listed in discovery: (group, version, "resource/sub") -> (kind, verbs, group of
# the body, version of the body).
_SUBRESOURCES: dict[tuple[str, str], list[tuple[str, str, tuple[str, ...], str, str]]] = {
    ("", "v1"): [
        ("nodes/status", "Node", ("get",), "", ""),
        ("pods/status", "Pod", ("get",), "", ""),
        ("pods/eviction", "Eviction", ("create",), "policy", "v1"),
    ],
    ("apps", "v1"): [
        ("deployments/status", "Deployment", ("get",), "", ""),
        ("replicasets/status", "ReplicaSet", ("get",), "", ""),
        ("daemonsets/status", "DaemonSet", ("get",), "", ""),
    ],
    ("policy", "v1"): [("poddisruptionbudgets/status", "PodDisruptionBudget", ("get",), "", "")],
}
GROUPS = ("apps", "policy")
# Resources served outside the object store: (group, version) -> their discovery entries.
_OTHER_RESOURCES: dict[tuple[str, str], list[Obj]] = {
    (REVIEW_GROUP, "v1"): [
        {
            "name": "selfsubjectaccessreviews",
            "singularName": "selfsubjectaccessreview",
            "namespaced": False,
            "kind": "SelfSubjectAccessReview",
            "verbs": ["create"],
        }
    ]
}
USER_KEY = "kube_user"  # the request's authenticated user, kept on the aiohttp request


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), status=status, content_type=JSON
    )


def _status(error: ApiError) -> web.Response:
    return _json(error.status(), error.code)


def _not_found_page() -> web.Response:
    return web.Response(text="404 page not found\n", status=404, content_type="text/plain")


def _group_version(group: str) -> Obj:
    return {"groupVersion": f"{group}/v1", "version": "v1"}


def _api_group(group: str) -> Obj:
    return {
        "name": group,
        "versions": [_group_version(group)],
        "preferredVersion": _group_version(group),
    }


def _resource_list(group: str, version: str) -> Obj:
    resources: list[Obj] = []
    for kind in KINDS:
        if (kind.group, kind.version) != (group, version):
            continue
        entry: Obj = {
            "name": kind.resource,
            "singularName": kind.kind.lower(),
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": sorted(kind.verbs),
        }
        if kind.short_names:
            entry["shortNames"] = list(kind.short_names)
        if kind.categories:
            entry["categories"] = list(kind.categories)
        resources.append(entry)
    for name, kind_name, verbs, body_group, body_version in _SUBRESOURCES.get((group, version), []):
        parent = next(k for k in KINDS if k.resource == name.split("/")[0])
        entry = {
            "name": name,
            "singularName": "",
            "namespaced": parent.namespaced,
            "kind": kind_name,
            "verbs": list(verbs),
        }
        if body_group:
            entry |= {"group": body_group, "version": body_version}
        resources.append(entry)
    resources.extend(_OTHER_RESOURCES.get((group, version), []))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def _encode_continue(key: tuple[str, str], version: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": int(version), "start": list(key)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        namespace, name = data["start"]
        return str(namespace), str(name)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _bad_request(f"continue key is not valid: {token!r}") from None


class KubeApi:
    """The request handler; `current()` gives the cluster of the current world at every call,
    `access` (None: everyone may do everything) who may call it."""

    def __init__(self, current: Callable[[], Cluster], access: Access | None = None) -> None:
        self.current = current
        self.access = access
        # The plain-HTTP cluster lists the groups it always did; it answers reviews all the same.
        self.groups = GROUPS if access is None else (*GROUPS, REVIEW_GROUP)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.access is not None:
            await self.access.hold()
        raw = await request.read() if request.can_read_body else b""
        cluster = self.current()
        fault: KubeFault | None = None
        user: User | None = None
        try:
            cluster.sync()
            info = request_info(request.method, request.path, request.query)
            if self.access is not None:
                user = request[USER_KEY] = self.access.check(request, info)
            fault = cluster.faults.take(info, raw, cluster.world.now())
            if fault is None:
                response = self._route(request, cluster, raw)
            else:
                response = _status(await self._fault(request, cluster, raw, info, fault))
        except ApiError as error:
            response = _status(error)
        except Exception as error:  # a simulator bug: answer as the API server would, and log it
            LOG.exception("kube simulator failed on %s %s", request.method, request.path)
            response = _status(ApiError(500, "InternalError", f"Internal error occurred: {error}"))
        record: Obj = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "status": response.status,
            "sim_time": cluster.at.isoformat(),
            "wall_time": time.time(),
            "fault": fault.kind if fault else None,
        }
        if self.access is not None:
            record["user"] = user.name if user else None
        cluster.requests.append(record)
        return response

    async def _fault(
        self,
        request: web.Request,
        cluster: Cluster,
        raw: bytes,
        info: RequestInfo,
        fault: KubeFault,
    ) -> ApiError:
        """Serve an injected fault: the error it answers with, after holding the request for a
        timeout (and serving it first when the fault says it lands)."""
        if fault.kind == "timeout":
            if fault.applied:
                with contextlib.suppress(ApiError):  # whatever it answers, the client never hears
                    self._route(request, cluster, raw)
            await asyncio.sleep(fault.seconds)
        code, reason, message = fault.answer()
        if fault.kind == "conflict" and info.resource in BY_RESOURCE:
            return conflict(
                BY_RESOURCE[info.resource],
                info.name or "",
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        details = {"causes": [{"message": message}]} if code == 500 else None
        return ApiError(code, reason, message, details)

    # -- routing --------------------------------------------------------------------------------

    def _route(self, request: web.Request, cluster: Cluster, raw: bytes) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return web.Response(text="ok", content_type="text/plain")
        if parts == ["version"]:
            return _json(SERVER_VERSION)
        if parts == ["api"]:
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                    ],
                }
            )
        if parts == ["apis"]:
            return _json(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [_api_group(g) for g in self.groups],
                }
            )
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in self.groups:
            return _json({"kind": "APIGroup", "apiVersion": "v1", **_api_group(parts[1])})
        info = request_info(method, request.path, request.query)
        if (info.group, info.version, info.resource) == (
            REVIEW_GROUP,
            "v1",
            "selfsubjectaccessreviews",
        ):
            if info.name is not None or info.namespace is not None:
                return _not_found_page()
            if method != "POST":
                raise _method_not_allowed()
            return _json(review(self.access, request.get(USER_KEY), self._body(raw)), 201)
        if info.group not in ("", *self.groups) or info.version != "v1":
            return _not_found_page()
        if info.resource is None:
            return _json(_resource_list(info.group, info.version))
        namespace, name, sub = info.namespace, info.name, info.subresource
        kind = _BY_PATH.get((info.group, info.version, info.resource))
        if kind is None or (namespace is not None and not kind.namespaced) or info.extra:
            return _not_found_page()
        if kind.namespaced and name is not None and namespace is None:
            return _not_found_page()
        if name is None:
            if method != "GET":
                raise _method_not_allowed()
            return self._list(request, cluster, kind, namespace)
        key_namespace = namespace or ""
        if sub is None:
            return self._object(request, cluster, kind, key_namespace, name, raw)
        if sub == "status" and method == "GET":
            return self._render(
                request, cluster, kind, [cluster.get(kind.resource, key_namespace, name)], None
            )
        if kind.resource == "pods" and sub == "eviction":
            if method != "POST":
                raise _method_not_allowed()
            body = self._body(raw)
            answer = cluster.evict(key_namespace, name, body, self._dry_run(request, body))
            return _json(answer, answer.get("code", 201))
        return _not_found_page()

    def _object(
        self,
        request: web.Request,
        cluster: Cluster,
        kind: Kind,
        namespace: str,
        name: str,
        raw: bytes,
    ) -> web.StreamResponse:
        method = request.method
        if method == "GET":
            obj = cluster.get(kind.resource, namespace, name)
            return self._render(request, cluster, kind, [obj], None)
        verb = {"PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
        if verb is None or verb not in kind.verbs:
            raise _method_not_allowed()
        if method == "DELETE":
            options = self._body(raw) if raw.strip() else {}
            if not isinstance(options, dict):
                raise _bad_request("the body of a DELETE must be DeleteOptions")
            grace = request.query.get("gracePeriodSeconds")
            if grace is not None:
                try:
                    options["gracePeriodSeconds"] = int(grace)
                except ValueError:
                    raise _bad_request(f"invalid gracePeriodSeconds {grace!r}") from None
            dry_run = self._dry_run(request, options)
            if kind.resource == "nodes":
                return _json(cluster.delete_node(name, options, dry_run))
            return _json(self._typed(kind, cluster.delete_pod(namespace, name, options, dry_run)))
        body = self._body(raw)
        dry_run = self._dry_run(request, None)
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            node = cluster.patch_node(name, content_type, body, dry_run)
        else:
            node = cluster.replace_node(name, body, dry_run)
        return _json(self._typed(kind, node))

    @staticmethod
    def _body(raw: bytes) -> Any:
        try:
            return bodies.decode(raw, max_depth=MAX_DEPTH)
        except BodyError as error:
            raise _bad_request(f"the body of the request is not valid JSON: {error}") from None

    @staticmethod
    def _dry_run(request: web.Request, body: Any) -> bool:
        values = list(request.query.getall("dryRun", []))
        if isinstance(body, dict):
            options = body.get("deleteOptions") if "deleteOptions" in body else body
            values += list((options or {}).get("dryRun") or [])
        for value in values:
            if value != "All":
                raise _bad_request(f'Invalid dry run value "{value}"; supported: "All"')
        return bool(values)

    @staticmethod
    def _typed(kind: Kind, obj: Obj) -> Obj:
        return {"kind": kind.kind, "apiVersion": kind.api_version, **obj}

    # -- reading --------------------------------------------------------------------------------

    def _list(
        self, request: web.Request, cluster: Cluster, kind: Kind, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        if query.get("watch") in ("1", "true"):
            raise _bad_request("watch is not supported by the simulated API server")
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(kind.resource, query.get("fieldSelector"))
        except ValueError as error:
            raise _bad_request(str(error)) from None
        items = [
            obj
            for obj in cluster.objects(kind.resource, namespace)
            if labels(obj["metadata"].get("labels") or {}) and fields(obj)
        ]
        if query.get("continue"):
            start = _decode_continue(query["continue"])
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
            ]
        meta: Obj = {"resourceVersion": cluster.resource_version}
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise _bad_request(f"invalid limit {query.get('limit')!r}") from None
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(
                (last.get("namespace", ""), last["name"]), cluster.resource_version
            )
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return self._render(request, cluster, kind, items, meta)

    def _render(
        self,
        request: web.Request,
        cluster: Cluster,
        kind: Kind,
        items: list[Obj],
        list_meta: Obj | None,
    ) -> web.StreamResponse:
        """A list (list_meta given) or a single object; a Table when the client asks for one."""
        if tables.wants_table(request.headers.get("Accept", "")) and kind.resource in tables.TABLES:
            meta = list_meta or {"resourceVersion": items[0]["metadata"]["resourceVersion"]}
            return _json(tables.table(kind.resource, items, cluster.at, meta))
        if list_meta is None:
            return _json(self._typed(kind, items[0]))
        return _json(
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": list_meta,
                "items": [
                    {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items
                ],
            }
        )


def kube_app(current: Callable[[], Cluster], access: Access | None = None) -> web.Application:
    """The API server as an aiohttp application (mount at `/`): `current()` is called on every
    request, so a `Clusters` follower makes it follow scenario reloads; `access` (None: none)
    authenticates and authorizes each request."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", KubeApi(current, access).handle)
    return app
