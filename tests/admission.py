"""ValidatingAdmissionPolicy CEL, evaluated with cel-python the way the API server evaluates it:
the variables first, in order, then each validation. For infra/k8s's policies (no real API server
here to apply them to)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import yaml

K8S = Path(__file__).resolve().parents[1] / "infra" / "k8s"


def documents(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The policy and its binding, from infra/k8s/<name>."""
    policy, binding = yaml.safe_load_all((K8S / name).read_text())
    return policy, binding


def denials(policy: dict[str, Any], activation: dict[str, Any]) -> list[str]:
    """The messages of the validations that fail for a request (`object`, `oldObject`,
    `request`, `params`)."""
    env = celpy.Environment()
    cel = {k: celpy.json_to_cel(v) for k, v in activation.items()}
    variables = celpy.celtypes.MapType()
    for variable in policy["spec"].get("variables", []):
        program = env.program(env.compile(variable["expression"]))
        name = celpy.celtypes.StringType(variable["name"])
        variables[name] = program.evaluate(cel | {"variables": variables})
    cel["variables"] = variables
    return [
        check["message"]
        for check in policy["spec"]["validations"]
        if not env.program(env.compile(check["expression"])).evaluate(cel)
    ]
