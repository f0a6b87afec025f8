"""Poolkeeper's Azure Functions bindings: each function parses its input, calls `shared`, answers.

This file is the table of contents of the app; all logic lives in `shared/`.
"""

from __future__ import annotations

import json
import os

import azure.functions as func

from shared.auth import ALERT_SENDER, OPERATOR, READER, Caller, Refusal, authorize
from shared.flows.health import HealthCache
from shared.logs import quote_safely

quote_safely()
health_cache = HealthCache()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(body: object, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _signed_in(req: func.HttpRequest, role: str) -> Caller | func.HttpResponse:
    """The caller Easy Auth signed in, holding `role`; else the 401/403 to answer."""
    got = authorize(req.headers, os.environ, role)
    return _json({"error": got.error}, got.status) if isinstance(got, Refusal) else got


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Version, configuration, clock and storage reachability; 503 names what failed. Answered
    from a 10 s cache: the route is anonymous."""
    report = health_cache.report(os.environ)
    return _json(report.body, 200 if report.ok else 503)


@app.queue_trigger(
    arg_name="msg", queue_name="%POOLKEEPER_SCALE_QUEUE%", connection="AzureWebJobsStorage"
)
def scale_jobs(msg: func.QueueMessage) -> None:
    """Scale a pool up (a capacity write) or in (drain, then delete named instances)."""
    from shared.flows import api

    api.run_message("POOLKEEPER_SCALE_QUEUE", msg.get_body())


@app.queue_trigger(
    arg_name="msg", queue_name="%POOLKEEPER_DRAIN_QUEUE%", connection="AzureWebJobsStorage"
)
def drain_jobs(msg: func.QueueMessage) -> None:
    """Cordon and drain one node."""
    from shared.flows import api

    api.run_message("POOLKEEPER_DRAIN_QUEUE", msg.get_body())


@app.queue_trigger(
    arg_name="msg", queue_name="%POOLKEEPER_RECONCILE_QUEUE%", connection="AzureWebJobsStorage"
)
def reconcile_jobs(msg: func.QueueMessage) -> None:
    """Re-read a pool in full and record its truth and drift."""
    from shared.flows import api

    api.run_message("POOLKEEPER_RECONCILE_QUEUE", msg.get_body())


@app.timer_trigger(schedule="%RECONCILE_SCHEDULE%", arg_name="timer")
def reconcile_timer(timer: func.TimerRequest) -> None:
    """Enqueue one reconcile job per configured pool."""
    from shared.flows import api

    api.enqueue_reconciles()


# People's routes are anonymous to the Functions host: Easy Auth signs the caller in, and the
# app checks the app role (docs/deploy.md, "Security model").
@app.route(route="jobs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def submit_job(req: func.HttpRequest) -> func.HttpResponse:
    """Accept a job envelope (validated as the queues do): 202 with its id, or 4xx saying why.
    Operators only; the job records who submitted it."""
    from shared.flows import api

    caller = _signed_in(req, OPERATOR)
    if isinstance(caller, func.HttpResponse):
        return caller
    status, body = api.submit_job(req.get_body(), req.headers.get("content-type"), caller.label())
    return _json(body, status)


@app.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    """A page of jobs: ?pool=&kind=&status=&since=&limit=&continuation= (docs/jobs.md)."""
    from shared.flows import api

    caller = _signed_in(req, READER)
    if isinstance(caller, func.HttpResponse):
        return caller
    status, body = api.jobs(dict(req.params))
    return _json(body, status)


@app.route(route="jobs/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    """The job's ledger entry: status, steps, outcome, errors."""
    from shared.flows import api

    caller = _signed_in(req, READER)
    if isinstance(caller, func.HttpResponse):
        return caller
    status, body = api.job(req.route_params["id"])
    return _json(body, status)


@app.route(route="pools/{name?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_pools(req: func.HttpRequest) -> func.HttpResponse:
    """Each pool's recorded truth (counts, capacity, ETag, drift, last reconcile)."""
    from shared.flows import api

    caller = _signed_in(req, READER)
    if isinstance(caller, func.HttpResponse):
        return caller
    status, body = api.pools(req.route_params.get("name"))
    return _json(body, status)


@app.route(route="preflight", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def preflight(req: func.HttpRequest) -> func.HttpResponse:
    """Per cluster and pool: reachable, authenticated, permitted, no other capacity writer."""
    from shared.flows import api

    caller = _signed_in(req, READER)
    if isinstance(caller, func.HttpResponse):
        return caller
    status, body = api.preflight_report()
    return _json(body, status)


@app.route(route="dashboard/{pool?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """The status page: every pool, or one in full; HTML for a signed-in reader."""
    from shared.flows import api, dashboard

    accept = req.headers.get("accept", "")
    got = authorize(req.headers, os.environ, READER)
    page = (
        dashboard.refused(got.status, got.error, accept=accept)
        if isinstance(got, Refusal)
        else dashboard.page(
            api.intake(), req.route_params.get("pool"), viewer=got.label(), accept=accept
        )
    )
    return func.HttpResponse(
        page.body,
        status_code=page.status,
        headers=page.headers,
        mimetype=page.content_type,
        charset="utf-8",
    )


@app.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor (common alert schema) and Alertmanager (v4) webhooks, from a sender signed
    in with the app role Poolkeeper.AlertSender."""
    from shared.flows import api

    caller = _signed_in(req, ALERT_SENDER)
    if isinstance(caller, func.HttpResponse):
        return caller
    status, body = api.alerts(
        req.get_body(), req.headers.get("x-poolkeeper-signature"), req.headers.get("content-type")
    )
    return _json(body, status)


@app.queue_trigger(
    arg_name="msg", queue_name="%POOLKEEPER_WEBHOOK_QUEUE%", connection="AzureWebJobsStorage"
)
def notification_webhook(msg: func.QueueMessage) -> None:
    """POST one notification to the team's webhook (Teams, Slack); retried by the host."""
    from shared.flows import api

    api.deliver_notification(msg.get_body())


@app.timer_trigger(schedule="%PRUNE_SCHEDULE%", arg_name="timer")
def prune_timer(timer: func.TimerRequest) -> None:
    """Daily: delete Poolkeeper's own records past their keep windows."""
    from shared.flows import api

    api.prune_records()


@app.timer_trigger(schedule="%CAPACITY_SCHEDULE%", arg_name="timer")
def evaluate_capacity(timer: func.TimerRequest) -> None:
    """P1/P2 evaluation of every pool; alerts recorded and notified; scale-ups per policy."""
    from shared.flows import api

    api.evaluate_capacity()


@app.timer_trigger(schedule="%DOWNSCALE_SCHEDULE%", arg_name="timer")
def downscale_review(timer: func.TimerRequest) -> None:
    """Weekly: may a pool lose a node, from months of its own daily summaries?"""
    from shared.flows import api

    api.review_downscale()


@app.queue_trigger(
    arg_name="msg", queue_name="%POOLKEEPER_PATCH_QUEUE%", connection="AzureWebJobsStorage"
)
def patch_jobs(msg: func.QueueMessage) -> None:
    """Patch a pool's nodes: check, drain, install updates, reboot, verify, node by node."""
    from shared.flows import api

    api.run_message("POOLKEEPER_PATCH_QUEUE", msg.get_body())


@app.timer_trigger(schedule="%PATCH_SCHEDULE%", arg_name="timer")
def patch_timer(timer: func.TimerRequest) -> None:
    """Enqueue one patch job per pool whose maintenance window is open (once per window)."""
    from shared.flows import api

    api.enqueue_patches()


@app.queue_trigger(
    arg_name="msg", queue_name="%POOLKEEPER_IMAGE_QUEUE%", connection="AzureWebJobsStorage"
)
def image_jobs(msg: func.QueueMessage) -> None:
    """Capture a prototype image from a patched node, prove it on a canary, roll it out."""
    from shared.flows import api

    api.run_message("POOLKEEPER_IMAGE_QUEUE", msg.get_body())


@app.timer_trigger(schedule="%IMAGE_SCHEDULE%", arg_name="timer")
def image_timer(timer: func.TimerRequest) -> None:
    """Enqueue one image job per pool with image.automatic (once a day)."""
    from shared.flows import api

    api.enqueue_images()
