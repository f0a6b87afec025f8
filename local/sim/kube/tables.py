"""Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for with
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, with the columns the real printers have.
Ages count simulated time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from local.sim.kube.objects import Obj, condition, node_ready, parse_ts, terminating

Column = tuple[str, str, str, int]  # name, type, format, priority (1: only with -o wide)
Row = Callable[[Obj, datetime], list[Any]]


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    total = int(seconds)
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        return f"{minutes}m" if total % 60 == 0 else f"{minutes}m{total % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d" if hours % 24 == 0 else f"{days}d{hours % 24}h"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        years = days // 365
        return f"{years}y" if days % 365 == 0 else f"{years}y{days % 365}d"
    return f"{days // 365}y"


def age(obj: Obj, now: datetime) -> str:
    created = obj["metadata"].get("creationTimestamp")
    return human_duration((now - parse_ts(created)).total_seconds()) if created else "<unknown>"


def _node_status(node: Obj) -> str:
    ready = condition(node, "Ready")
    state = (
        "Unknown"
        if ready is None or ready["status"] == "Unknown"
        else ("Ready" if node_ready(node) else "NotReady")
    )
    return state + (",SchedulingDisabled" if node["spec"].get("unschedulable") else "")


def _roles(node: Obj) -> str:
    labels = node["metadata"].get("labels") or {}
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    return ",".join(r for r in roles if r) or "<none>"


def _address(node: Obj, kind: str) -> str:
    for address in node["status"].get("addresses") or []:
        if address["type"] == kind:
            return str(address["address"])
    return "<none>"


def _node_row(node: Obj, now: datetime) -> list[Any]:
    info = node["status"].get("nodeInfo") or {}
    return [
        node["metadata"]["name"],
        _node_status(node),
        _roles(node),
        age(node, now),
        info.get("kubeletVersion", ""),
        _address(node, "InternalIP"),
        _address(node, "ExternalIP"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def pod_status(pod: Obj) -> str:
    """The STATUS column (`kubectl get pods`)."""
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if terminating(pod):
        return "Terminating"
    for box in status.get("containerStatuses") or []:
        state = box.get("state") or {}
        if "terminated" in state:
            return str(state["terminated"].get("reason") or "Completed")
        if "waiting" in state:
            return str(state["waiting"].get("reason") or "Waiting")
    if phase == "Pending" and pod["spec"].get("nodeName"):
        return "ContainerCreating"
    return str(status.get("reason") or phase)


def _pod_row(pod: Obj, now: datetime) -> list[Any]:
    boxes = pod.get("status", {}).get("containerStatuses") or []
    ready = sum(1 for b in boxes if b.get("ready"))
    restarts = sum(int(b.get("restartCount", 0)) for b in boxes)
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(pod['spec'].get('containers') or [])}",
        pod_status(pod),
        str(restarts),
        age(pod, now),
        pod.get("status", {}).get("podIP") or "<none>",
        pod["spec"].get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _int_or_none(value: Any) -> str:
    return "N/A" if value is None else str(value)


TABLES: dict[str, tuple[list[Column], Row]] = {
    "nodes": (
        [
            ("Name", "string", "name", 0),
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            ("Age", "string", "", 0),
            ("Version", "string", "", 0),
            ("Internal-IP", "string", "", 1),
            ("External-IP", "string", "", 1),
            ("OS-Image", "string", "", 1),
            ("Kernel-Version", "string", "", 1),
            ("Container-Runtime", "string", "", 1),
        ],
        _node_row,
    ),
    "pods": (
        [
            ("Name", "string", "name", 0),
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            ("Age", "string", "", 0),
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            ("Name", "string", "name", 0),
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Age", "string", "", 0),
        ],
        lambda o, now: [
            o["metadata"]["name"],
            f"{o['status'].get('readyReplicas', 0)}/{o['spec'].get('replicas', 1)}",
            o["status"].get("updatedReplicas", 0),
            o["status"].get("availableReplicas", 0),
            age(o, now),
        ],
    ),
    "replicasets": (
        [
            ("Name", "string", "name", 0),
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Age", "string", "", 0),
        ],
        lambda o, now: [
            o["metadata"]["name"],
            o["spec"].get("replicas", 1),
            o["status"].get("replicas", 0),
            o["status"].get("readyReplicas", 0),
            age(o, now),
        ],
    ),
    "daemonsets": (
        [
            ("Name", "string", "name", 0),
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Node Selector", "string", "", 0),
            ("Age", "string", "", 0),
        ],
        lambda o, now: [
            o["metadata"]["name"],
            o["status"].get("desiredNumberScheduled", 0),
            o["status"].get("currentNumberScheduled", 0),
            o["status"].get("numberReady", 0),
            o["status"].get("updatedNumberScheduled", 0),
            o["status"].get("numberAvailable", 0),
            ",".join(
                f"{k}={v}"
                for k, v in sorted(
                    (o["spec"]["template"]["spec"].get("nodeSelector") or {}).items()
                )
            )
            or "<none>",
            age(o, now),
        ],
    ),
    "poddisruptionbudgets": (
        [
            ("Name", "string", "name", 0),
            ("Min Available", "string", "", 0),
            ("Max Unavailable", "string", "", 0),
            ("Allowed Disruptions", "integer", "", 0),
            ("Age", "string", "", 0),
        ],
        lambda o, now: [
            o["metadata"]["name"],
            _int_or_none(o["spec"].get("minAvailable")),
            _int_or_none(o["spec"].get("maxUnavailable")),
            o["status"].get("disruptionsAllowed", 0),
            age(o, now),
        ],
    ),
    "namespaces": (
        [("Name", "string", "name", 0), ("Status", "string", "", 0), ("Age", "string", "", 0)],
        lambda o, now: [o["metadata"]["name"], o["status"].get("phase", "Active"), age(o, now)],
    ),
}


def table(resource: str, items: list[Obj], now: datetime, list_meta: Obj) -> Obj:
    columns, row = TABLES[resource]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": fmt,
                "description": f"{name} of the {resource} (simulated)",
                "priority": priority,
            }
            for name, kind, fmt, priority in columns
        ],
        "rows": [
            {
                "cells": row(item, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"],
                },
            }
            for item in items
        ],
    }


def wants_table(accept: str) -> bool:
    return "as=table" in accept.lower().replace(" ", "")
