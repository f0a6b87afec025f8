"""Poolkeeper's Azure Functions bindings: each function parses its input, calls `shared`, answers.

This file is the table of contents of the app; all logic lives in `shared/`.
"""

from __future__ import annotations

import json
import os

import azure.functions as func

from shared.flows.health import health_report

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(body: object, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Version, configuration and storage reachability; 503 names what failed."""
    report = health_report(os.environ)
    return _json(report.body, 200 if report.ok else 503)
