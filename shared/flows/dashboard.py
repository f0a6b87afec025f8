"""The status page (`GET /api/dashboard[/{pool}]`): read the records, build the views, render.

Reads only: the truth record, alerts, the count history, daily summaries, patch checks, the
ledger's recent jobs, and the clusters' states and last preflight. Called by function_app.py;
the view and the HTML are pure (shared/dashboard/).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.checks import Checks
from shared.adapters.history import CountHistory
from shared.adapters.ledger import AlertLog, DailySummaries
from shared.adapters.repair_log import RepairLog
from shared.adapters.storage import StorageUnavailable, unavailable_as_error
from shared.config import Pool, PoolNotFound
from shared.dashboard.history_charts import DAY
from shared.dashboard.render import error_page, overview_page, pool_page
from shared.dashboard.view import PoolData, cluster_notices, pool_view, preflight_view
from shared.flows.capacity.evaluation import pool_thresholds

log = logging.getLogger("poolkeeper.dashboard")

RECENT_JOBS = timedelta(days=7)
REPAIRS_SHOWN = 10


# On every answer of the page's route: it may not be framed (clickjacking), loads nothing from
# elsewhere and runs no script (its only inline part is its stylesheet), leaks no URL in a
# Referer, and is never cached (it carries the pools' state).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Page:
    status: int
    content_type: str  # "text/html" or "application/json"
    body: str

    @property
    def headers(self) -> dict[str, str]:
        """What every answer carries besides its body: SECURITY_HEADERS."""
        return dict(SECURITY_HEADERS)


def _data(
    services: Any, pool: Pool, alerts: list[dict[str, Any]], now: datetime, full: bool
) -> PoolData:
    tables = services.tables
    return PoolData(
        name=pool.name,
        cluster=pool.cluster,
        vmss_id=pool.vmss_id,
        node_group=pool.node_group,
        min_nodes=pool.min_nodes,
        max_nodes=pool.max_nodes,
        thresholds=pool_thresholds(pool),
        record=tables.pool_status(pool.name),
        alerts=[a for a in alerts if a["pool"] == pool.name],
        history=CountHistory(tables).since(pool.name, now - DAY),
        patch_checks=tables.patch_status(pool.name) if full else {},
        jobs=tables.recent_jobs(pool.name, now - RECENT_JOBS, except_kind="reconcile")
        if full
        else [],
        days=DailySummaries(tables).days(pool.name) if full else [],
        images=tables.image_lineage(pool.name) if full else {},
        repairs=RepairLog(tables).entries(pool.name)[-REPAIRS_SHOWN:] if full else [],
    )


def _error(
    status: int, message: str, *, html: bool, now: datetime, names: list[str], viewer: str | None
) -> Page:
    if html:
        return Page(status, "text/html", error_page(status, message, now, names, viewer=viewer))
    return Page(status, "application/json", json.dumps({"error": message}))


def refused(status: int, message: str, *, accept: str) -> Page:
    """A 401/403 from the sign-in check: no pool names, nothing read from storage."""
    now = datetime.now(UTC)
    return _error(status, message, html="text/html" in accept, now=now, names=[], viewer=None)


def page(services: Any, pool: str | None, *, viewer: str | None, accept: str) -> Page:
    """The overview (pool None) or one pool's page; 404 for a pool not configured, 503 when
    storage does not answer. Errors are HTML for a browser (Accept: text/html), else JSON."""
    now = services.clock.now()
    names = [p.name for p in services.config.pools]
    html = "text/html" in accept
    chosen = list(services.config.pools)
    if pool is not None:
        try:
            chosen = [services.config.pool(pool)]
        except PoolNotFound as error:
            return _error(404, str(error), html=html, now=now, names=names, viewer=viewer)
    try:
        with unavailable_as_error():
            alerts = AlertLog(services.tables).alerts()
            views = [
                pool_view(_data(services, p, alerts, now, pool is not None), now) for p in chosen
            ]
            checks = Checks(services.tables)
            clusters = {p.cluster for p in services.config.pools}
            notices = cluster_notices(checks.cluster_states(), now, clusters)
            checked = preflight_view(checks.last_preflight(), now) if pool is None else None
    except StorageUnavailable as error:
        log.warning("Storage did not answer the status page: %s", error)
        message = f"storage is unavailable, try again shortly: {error}"
        return _error(503, message, html=html, now=now, names=names, viewer=viewer)
    if pool is None:
        return Page(
            200,
            "text/html",
            overview_page(
                views, now, viewer=viewer, mode=services.mode, clusters=notices, preflight=checked
            ),
        )
    return Page(
        200,
        "text/html",
        pool_page(views[0], now, names, viewer=viewer, mode=services.mode, clusters=notices),
    )
