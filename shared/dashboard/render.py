"""The status page's HTML from the Jinja2 templates in shared/templates/. Pure: views in, text out.

Every value is escaped (autoescape): names, reasons and errors come from Azure, Kubernetes and
job submitters. Links are absolute under /api and carry no key: a browser is signed in (Easy
Auth), and a key in a URL ends up in histories, logs and Referer headers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.dashboard.view import PoolView, PreflightView

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
ROUTE_PREFIX = "/api"  # host.json's extensions.http.routePrefix


@functools.cache
def _environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt field is an error in the tests, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _context(
    now: datetime, pool_names: Sequence[str], viewer: str | None, mode: str = "act"
) -> dict[str, Any]:
    def link(path: str) -> str:
        return f"{ROUTE_PREFIX}/{quote(path, safe='/')}"

    return {
        "now": f"{now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        "pool_names": list(pool_names),
        "link": link,
        "mode": mode,
        "viewer": viewer,
    }


def overview_page(
    pools: Sequence[PoolView],
    now: datetime,
    *,
    viewer: str | None = None,
    mode: str = "act",
    clusters: Mapping[str, str] | None = None,
    preflight: PreflightView | None = None,
) -> str:
    """Every pool's summary: tiles, alerts and the counts chart, grouped by cluster, with a
    notice for each cluster that is not answering (`clusters`, see view.cluster_notices), and
    the last preflight's table."""
    names = [p.name for p in pools]
    template = _environment().get_template("overview.html.j2")
    return template.render(
        pools=pools,
        notices=clusters or {},
        preflight=preflight,
        **_context(now, names, viewer, mode),
    )


def pool_page(
    pool: PoolView,
    now: datetime,
    pool_names: Sequence[str],
    *,
    viewer: str | None = None,
    mode: str = "act",
    clusters: Mapping[str, str] | None = None,
) -> str:
    """One pool in full: nodes, jobs, charts and image lineage, and its cluster's notice."""
    template = _environment().get_template("pool_page.html.j2")
    return template.render(
        pool=pool, notices=clusters or {}, **_context(now, pool_names, viewer, mode)
    )


def error_page(
    status: int,
    message: str,
    now: datetime,
    pool_names: Sequence[str],
    *,
    viewer: str | None = None,
) -> str:
    """A 4xx/5xx answer for a browser, saying what is wrong and linking the pools."""
    template = _environment().get_template("error.html.j2")
    return template.render(status=status, message=message, **_context(now, pool_names, viewer))
