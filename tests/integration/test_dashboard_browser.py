"""The status page in a real browser: headless Chromium (Debian's, driven by Playwright) against
the local host on function_app.py, the Azure simulator and Azurite. The counts it shows equal
`/api/pools`, and its charts are drawn. Its screenshot goes to the test's temp dir; `make
screenshots` runs this test with `--screenshots docs/img` to refresh the README's picture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.flows.capacity.evaluation import evaluate_capacity
from tests.debian import tool
from tests.integration.test_downscale_review import _history
from tests.integration.test_operator_api import World, _world
from tests.jobs_support import job
from tests.simulator import STOPPED

pytestmark = pytest.mark.integration

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STATES = ("live", "creating", "deleting", "failed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = tool("chromium", "chromium")  # Debian's, installed when missing; never a skip
    with sync_playwright() as playwright:
        # Playwright downloads no browser here: it drives the system's through executable_path.
        launched = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _run(world: World, kind: str, params: dict[str, Any] | None = None) -> str:
    """Submit a job dated by the product's clock (as the page shows it) and wait for its end."""
    message = job(kind, world.pool, params, created_at=world.services.clock.now().isoformat())
    response = world.post(message)
    assert response.status_code == 202, response.text
    assert world.finished(message["id"])["status"] == "done"
    return message["id"]


def _a_day_of_history(world: World, sim: Any) -> str:
    """Hours of changing load, each with a reconcile and a capacity evaluation (what the timers
    do), then a scale-up submitted as an operator would; returns the scale job's id."""
    for cpu in (30, 45, 62, 78, 55):
        sim.post("load", {"scale_set": "aks-apps-44444444-vmss", "cpu": cpu, "memory": cpu - 10})
        sim.advance(3600)
        _run(world, "reconcile")
        evaluated = {e["pool"]: e for e in evaluate_capacity(world.services)}[world.pool]
        assert evaluated["alerts"]["P1/group/apps"] == "ok", evaluated
    _history(world.services, world.pool, cpu=38, weekly_peak=71, days=150)
    return _run(world, "scale", {"delta": 1})


def _shown_counts(page: Any) -> dict[str, int]:
    return {
        name: int(page.locator(f'[data-count="{label}"] .value').inner_text())
        for name, label in [(s, s) for s in STATES]
        + [("capacity", "capacity"), ("ready", "ready nodes")]
    }


def test_status_page_in_chromium_shows_the_recorded_counts_and_its_charts(
    sim: Any,
    azurite: Any,
    start_host: Any,
    browser: Any,
    screenshot: Callable[[Any, str], Path],
) -> None:
    world = _world(
        sim,
        azurite,
        start_host,
        capacity=4,
        settings={
            "POOLKEEPER_METRICS_ENDPOINT": sim.info["metrics"],
            # Only what the test does changes the pool, so the page and /api/pools agree.
            "AzureWebJobs.evaluate_capacity.Disabled": "true",
            "AzureWebJobs.patch_timer.Disabled": "true",
            "AzureWebJobs.downscale_review.Disabled": "true",
            "AzureWebJobs.image_timer.Disabled": "true",
        },
    )
    scale_job = _a_day_of_history(world, sim)
    # The clock stops here: at 600x the page's last 24 h are 144 wall seconds, and on a loaded
    # machine the hours just recorded slid out of them before the browser got there.
    sim.post("clock", {"speed": STOPPED})
    recorded = world.get(f"pools/{world.pool}").json()
    expected = {state: recorded["counts"][state] for state in STATES} | {
        "capacity": recorded["capacity"],
        "ready": sum(1 for i in recorded["instances"].values() if i["ready"]),
    }
    assert expected["capacity"] == 5 and expected["ready"] == 5

    page = browser.new_page(viewport={"width": 1360, "height": 900})
    try:
        page.goto(f"{world.url}/api/dashboard/{world.pool}")
        page.wait_for_selector(f'section[data-pool="{world.pool}"] [data-count="live"]')
        assert _shown_counts(page) == expected
        assert (
            page.locator('[data-field="read_at"]')
            .inner_text()
            .startswith(recorded["read_at"][:19].replace("T", " "))
        )
        assert page.locator("tr[data-instance]").count() == len(recorded["instances"])
        charts = page.locator("figure[data-chart]")
        assert charts.count() == 5
        for index in range(charts.count()):  # every chart has a line: none is an empty state
            assert charts.nth(index).locator("polyline").count() >= 1, charts.nth(
                index
            ).inner_text()
        assert page.locator(".empty-text").count() == 0
        screenshot(page, "dashboard.png")

        # The job's link needs no key: the signed-in browser follows it to the ledger entry.
        page.click(f'tr[data-job="{scale_job}"] a')
        page.wait_for_selector("body")
        assert f'"id": "{scale_job}"' in page.content() or scale_job in page.inner_text("body")
        assert '"status": "done"' in page.inner_text("body")

        page.goto(f"{world.url}/api/dashboard")
        page.wait_for_selector(f'section[data-pool="{world.spare}"] [data-empty="pool"]')
        section = page.locator(f'section[data-pool="{world.pool}"]')
        assert {
            s: int(section.locator(f'[data-count="{s}"] .value').inner_text()) for s in STATES
        } == {s: expected[s] for s in STATES}
    finally:
        page.close()
