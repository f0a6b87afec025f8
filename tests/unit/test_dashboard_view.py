"""The status page's pure parts: times and ages, chart geometry, the pool view and its HTML."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.dashboard.charts import HEIGHT, LEFT, TOP, WIDTH, Rule, Series, line_chart
from shared.dashboard.formats import age, percent, when
from shared.dashboard.render import error_page, overview_page, pool_page
from shared.dashboard.view import NOT_RECONCILED, PoolData, pool_view, preflight_view
from shared.decide.capacity import Thresholds

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _at(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, "—"),
        (_at(seconds=0), "just now"),
        (_at(seconds=45), "45 s ago"),
        (_at(minutes=3, seconds=20), "3 min ago"),
        (_at(hours=2, minutes=5), "2 h 5 min ago"),
        (_at(hours=2), "2 h ago"),
        (_at(days=3, hours=4), "3 d 4 h ago"),
        (_at(minutes=-5), "in 5 min"),
        ("2026-11-02T11:00:00", "1 h ago"),  # no zone: read as UTC
    ],
)
def test_age(value: str | None, expected: str) -> None:
    assert age(value, NOW) == expected


def test_when_is_utc_with_its_age_and_keeps_unreadable_text() -> None:
    assert when("2026-11-02T13:15:00+02:00", NOW) == "2026-11-02 11:15:00 UTC (45 min ago)"
    assert when(None, NOW, never="never") == "never"
    assert when("yesterday-ish", NOW) == "yesterday-ish"
    assert (percent(None), percent(95.04)) == ("no data", "95.0 %")


def _chart(*series: Series, rules: tuple[Rule, ...] = (), y_max: float = 10) -> Any:
    return line_chart(
        "t",
        series,
        start=NOW - timedelta(hours=24),
        end=NOW,
        y_max=y_max,
        x_ticks=[(NOW - timedelta(hours=6), "06:00"), (NOW + timedelta(hours=1), "late")],
        rules=rules,
        empty="nothing yet",
    )


def test_chart_places_points_in_the_plot_and_breaks_lines_at_gaps() -> None:
    points = [
        (NOW - timedelta(hours=30), 5.0),  # before the span: dropped
        (NOW - timedelta(hours=24), 0.0),
        (NOW - timedelta(hours=12), 10.0),
        (NOW - timedelta(hours=6), None),
        (NOW, 5.0),
    ]
    chart = _chart(Series("a", points, "c-live"))
    (path,) = chart.paths
    plot_w, plot_h = chart.plot[2], chart.plot[3]
    runs = [[tuple(map(float, p.split(","))) for p in run.split()] for run in path.segments]
    assert runs == [
        [(LEFT, TOP + plot_h), (LEFT + plot_w / 2, TOP)],
        [(LEFT + plot_w, TOP + plot_h / 2)],
    ]
    assert path.latest == "5" and chart.empty is None
    assert [label for _, label in chart.x_ticks] == ["06:00"]  # ticks outside the span go
    assert (chart.width, chart.height) == (WIDTH, HEIGHT)


def test_step_series_hold_each_value_until_the_next_and_the_last_until_now() -> None:
    chart = _chart(
        Series("n", [(NOW - timedelta(hours=24), 2.0), (NOW - timedelta(hours=12), 4.0)], "c", True)
    )
    xs_ys = [tuple(map(float, p.split(","))) for p in chart.paths[0].segments[0].split()]
    assert [y for _, y in xs_ys] == [xs_ys[0][1], xs_ys[0][1], xs_ys[2][1], xs_ys[2][1]]
    assert xs_ys[-1][0] == LEFT + chart.plot[2]  # held to the right edge (now)


def test_rules_raise_the_scale_and_an_empty_chart_says_what_to_do() -> None:
    chart = _chart(Series("a", [], "c"), rules=(Rule("P1", 95, "r-p1"),), y_max=50)
    assert chart.empty == "nothing yet" and chart.paths[0].latest == "no data"
    assert chart.rules[0].y == TOP and chart.rules[0].label == "P1 95"
    assert chart.y_ticks[-1][1] == "95"


RECORD: dict[str, Any] = {
    "pool": "apps",
    "capacity": 5,
    "counts": {"live": 3, "creating": 1, "deleting": 0, "failed": 1, "stopped": 0, "total": 5},
    "instances": {
        "10": {"node": "n10", "state": "live", "ready": True, "cordoned": True, "zone": "2"},
        "2": {
            "node": "n2",
            "state": "live",
            "ready": True,
            "kernel": "6.8.0-1015-azure",
            "last_patched": _at(hours=3),
            "latest_model": True,
        },
        "3": {"node": "n<3>", "state": "live", "ready": False, "latest_model": False},
        "4": {"node": None, "state": "creating", "ready": None},
        "5": {"node": None, "state": "failed", "ready": None, "failure": "OSProvisioningTimedOut"},
    },
    "drift": [{"kind": "instance_without_node", "detail": "instance 4 has no node <yet>"}],
    "claims": {"n10": {"job": "patch-1", "kind": "patch", "since": _at(minutes=4)}},
    "read_at": _at(minutes=3),
    "by_job": "reconcile-1",
    "cluster_error": None,
}


def _data(record: dict[str, Any] | None = RECORD, **extra: Any) -> PoolData:
    return PoolData(
        name="apps",
        vmss_id="/subscriptions/s/resourceGroups/rg/providers/x/virtualMachineScaleSets/v",
        node_group="apps",
        min_nodes=2,
        max_nodes=8,
        thresholds=Thresholds(),
        record=record,
        **extra,
    )


def test_view_counts_states_capacity_and_ready_nodes_as_recorded() -> None:
    view = pool_view(_data(), NOW)
    assert view.counts == {
        "live": 3,
        "creating": 1,
        "deleting": 0,
        "failed": 1,
        "capacity": 5,
        "ready": 2,
    }
    tiles = {t.label: (t.value, t.note) for t in view.tiles}
    assert tiles["capacity"] == ("5", "limits 2 to 8")
    assert tiles["ready nodes"] == ("2", "of 3 live")
    assert view.read_at == "2026-11-02 11:57:00 UTC (3 min ago)"
    assert view.drift == ("instance 4 has no node <yet>",) and view.empty == ""


def test_nodes_show_readiness_kernel_patching_p1_and_claims_in_instance_order() -> None:
    alerts = [{"pool": "apps", "alert": "P1/node/2", "state": "firing", "since": _at(minutes=9)}]
    checks = {"n2": {"pending": 4, "reboot_required": True, "checked_at": _at(hours=1)}}
    rows = pool_view(_data(alerts=alerts, patch_checks=checks), NOW).nodes
    assert [r.instance for r in rows] == ["2", "3", "4", "5", "10"]
    two, three, four, _, ten = rows
    assert (two.ready, two.p1, two.kernel, two.model) == (
        "Ready",
        "firing",
        "6.8.0-1015-azure",
        "latest",
    )
    assert two.last_patched == "2026-11-02 09:00:00 UTC (3 h ago)"
    assert two.patch == "4 pending, reboot required (checked 1 h ago)"
    assert (three.ready, three.p1, three.patch, three.model) == (
        "NotReady",
        "not evaluated",
        "not checked",
        "behind",
    )
    assert (four.node, four.ready, four.last_patched) == ("no node", "—", "never")
    assert ten.ready == "Ready, cordoned" and ten.claim == "patch job patch-1 since 4 min ago"


def test_group_alerts_and_the_downscale_review_show_state_since_and_values() -> None:
    alerts = [
        {
            "pool": "apps",
            "alert": "P1/group/apps",
            "state": "ok",
            "since": _at(hours=1),
            "values": {"cpu": 41.25, "memory": None, "reason": "under"},
        },
        {
            "pool": "apps",
            "alert": "downscale-review",
            "state": "keep",
            "since": _at(days=2),
            "values": {"reason": "peak too high"},
        },
    ]
    rows = pool_view(_data(alerts=alerts), NOW).alerts
    assert [(r.name, r.state) for r in rows] == [
        ("P1 group (1 h)", "ok"),
        ("P2 group (24 h)", "not evaluated"),
        ("downscale review", "keep"),
    ]
    assert rows[0].detail == "CPU 41.2 %, memory no data — under"
    assert rows[2].since.endswith("(2 d ago)")


def test_jobs_list_steps_with_repeats_and_the_outcome() -> None:
    job = {
        "id": "scale-1",
        "kind": "scale",
        "status": "failed",
        "step": "raise",
        "created_at": _at(minutes=10),
        "updated_at": _at(minutes=8),
        "requested_by": "ops",
        "error": "quota",
        "outcome": {"capacity": 5, "drift": ["a"]},
        "steps": [{"step": "plan", "at": _at(minutes=9), "result": "wait", "repeats": 3}],
    }
    (row,) = pool_view(_data(jobs=[job]), NOW).jobs
    assert (row.status, row.updated, row.error) == ("failed", "8 min ago", "quota")
    assert row.outcome == 'capacity: 5, drift: ["a"]'
    assert row.steps[0].result == "wait x3"


def test_image_lineage_lists_the_ledgers_versions_newest_first() -> None:
    lineage = {
        "2026.1101.1": {"status": "rolled back", "reason": "canary never Ready"},
        "2026.1102.1": {
            "created_at": _at(hours=2),
            "source_node": "n2",
            "kernel": "6.8.0-1016-azure",
            "status": "in use",
            "canary": {"result": "passed", "node": "n9"},
            "job": "image-1",
        },
    }
    view = pool_view(_data(RECORD | {"model_image": {"id": "/g/v"}}, images=lineage), NOW)
    new, old = view.images
    assert (new.version, new.source, new.status, new.job) == (
        "2026.1102.1",
        "n2",
        "in use",
        "image-1",
    )
    assert new.canary == "result: passed, node: n9" and view.model_image == "/g/v"
    assert (old.source, old.status) == ("—", "rolled back: canary never Ready")
    html = pool_page(pool_view(_data(), NOW), NOW, ["apps"])
    assert 'data-empty="images"' in html and "no prototype images yet" in html


def test_a_pool_never_reconciled_says_so_and_what_to_do() -> None:
    view = pool_view(_data(None), NOW)
    assert view.empty == NOT_RECONCILED and not view.tiles and not view.nodes
    assert all(chart.empty for chart in view.charts)
    html = overview_page([view], NOW)
    assert NOT_RECONCILED in html and "the reconcile timer runs every 5 minutes" in html


def test_usage_charts_draw_each_hour_and_each_day_against_p1_and_p2() -> None:
    today, yesterday = NOW.date(), NOW.date() - timedelta(days=1)
    days = [
        {"day": yesterday.isoformat(), "cpu_avg": 40.0, "cpu_peak": 70.0, "memory_avg": None,
         "memory_peak": None, "cpu_by_hour": [50.0] * 24, "memory_by_hour": None},
        {"day": today.isoformat(), "cpu_avg": None, "cpu_peak": None, "memory_avg": None,
         "memory_peak": None, "cpu_by_hour": [60.0] * 12 + [None] * 12, "memory_by_hour": None},
    ]  # fmt: skip
    counts, cpu_day, memory_day, cpu_months, memory_months = pool_view(_data(days=days), NOW).charts
    assert [r.label for r in cpu_day.rules] == ["P1 95%", "P2 75%"]
    assert [r.label for r in memory_day.rules] == ["P1 85%", "P2 75%"]
    assert cpu_day.paths[0].latest == "60%" and memory_day.empty
    # Hours ending from yesterday 12:00 to today 12:00, both included: 25 points, one run.
    assert len(cpu_day.paths[0].segments) == 1
    assert len(cpu_day.paths[0].segments[0].split()) == 25
    assert [p.latest for p in cpu_months.paths] == ["40%", "70%"] and memory_months.empty
    assert counts.empty  # no history given


def _escaped_page() -> str:
    hostile = "<script>alert(1)</script>"
    record = RECORD | {"drift": [{"detail": hostile}], "cluster_error": hostile}
    job = {"id": 'j"><b>', "kind": hostile, "steps": [{"step": hostile}], "outcome": hostile}
    view = pool_view(_data(record, jobs=[job]), NOW)
    return pool_page(view, NOW, ["apps"], viewer=f"{hostile} (oid)")


def test_every_value_is_escaped_and_links_carry_no_key() -> None:
    html = _escaped_page()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>" not in html
    assert 'href="/api/jobs/j%22%3E%3Cb%3E"' in html
    assert 'href="/api/dashboard/apps"' in html
    assert "signed in as &lt;script&gt;" in html
    assert "code=" not in html


def test_the_page_fetches_nothing_from_elsewhere_and_has_its_charts() -> None:
    html = _escaped_page()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in html and "<link" not in html
    assert html.count("<svg") == 5


def test_error_page_escapes_the_message() -> None:
    html = error_page(404, "no pool named '<x>'", NOW, ["apps"])
    assert "no pool named &#39;&lt;x&gt;&#39;" in html and 'data-error="404"' in html


def test_the_instance_chart_has_whole_numbers_on_its_axis_and_steps_through_the_reads() -> None:
    history = [
        {"at": _at(hours=3), "counts": {"live": 4}, "capacity": 4, "ready": 3},
        {"at": _at(hours=1), "counts": {"live": 5, "creating": 1}, "capacity": 6, "ready": 5},
    ]
    chart = pool_view(replace(_data(history=history), max_nodes=5), NOW).charts[0]
    assert [label for _, label in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    latest = {path.label: path.latest for path in chart.paths}
    assert latest == {
        "capacity": "6",
        "live": "5",
        "ready": "5",
        "failed": "0",
        "creating + deleting": "1",
    }
    assert all(len(path.segments) == 1 for path in chart.paths)


def test_repairs_are_listed_newest_first_with_their_rung_and_result() -> None:
    repairs = [
        {
            "at": _at(hours=5),
            "node": "n3",
            "instance": "3",
            "problem": "not_ready",
            "status": "done",
        },
        {
            "at": _at(minutes=20),
            "node": "n2",
            "instance": "2",
            "detail": "NotReady for 12 min",
            "rung": "restart",
            "status": "failed",
            "result": "still NotReady",
            "job": "repair-1",
        },
    ]
    rows = pool_view(_data(repairs=repairs), NOW).repairs
    assert [(r.node, r.problem, r.rung, r.status) for r in rows] == [
        ("n2 (instance 2)", "NotReady for 12 min", "restart", "failed"),
        ("n3 (instance 3)", "not_ready", "—", "done"),
    ]
    html = pool_page(pool_view(_data(repairs=repairs), NOW), NOW, ["apps"])
    assert 'href="/api/jobs/repair-1"' in html and "still NotReady" in html
    assert 'data-empty="repairs"' in pool_page(pool_view(_data(), NOW), NOW, ["apps"])


def test_the_overview_groups_pools_by_cluster_and_shows_the_mode() -> None:
    views = [
        pool_view(replace(_data(), name=name, cluster=cluster), NOW)
        for name, cluster in (("apps", "capz-prod"), ("lab", "kubeadm-lab"), ("gpu", "capz-prod"))
    ]
    html = overview_page(views, NOW, mode="observe")
    assert (
        html.index("cluster capz-prod")
        < html.index('id="pool-apps"')
        < html.index('id="pool-gpu"')
        < html.index("cluster kubeadm-lab")
        < html.index('id="pool-lab"')
    )
    assert "observe mode: records what it would do, changes nothing" in html
    single = overview_page(views[:1], NOW)
    assert "cluster capz-prod</h2>" not in single and "act mode" in single


def test_the_preflight_table_puts_failures_first_and_says_what_passed() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert preflight_view(None, now) is None
    report = {
        "ok": False,
        "at": "2026-12-07T11:58:00+00:00",
        "clusters": {"capz": {"ok": True, "version": "v1.30.4"}},
        "resource_groups": {"sub/rg-a": {"ok": False, "error": "the identity lacks 1 action(s)"}},
        "pools": {
            "web": {
                "ok": True,
                "cluster": "capz",
                "instances": 3,
                "capacity": 3,
                "gallery": {"ok": True, "note": "exists"},
            },
            "batch": {"ok": False, "error": "scale set batch-vmss is managed by CAPZ"},
        },
    }
    view = preflight_view(report, now)
    assert view is not None and not view.ok
    assert view.at == "2026-12-07 11:58:00 UTC (2 min ago)"
    assert [(r.kind, r.name, r.ok) for r in view.rows] == [
        ("resource group", "sub/rg-a", False),
        ("pool", "batch", False),
        ("cluster", "capz", True),
        ("pool", "web", True),
    ]
    assert view.rows[2].detail == "version v1.30.4"
    assert view.rows[3].detail == "cluster capz, 3 instances, capacity 3; gallery exists"


def test_the_preflight_table_reports_the_usage_source() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    broken = {"ok": False, "source": "platform", "error": "usage source platform unavailable"}
    view = preflight_view({"ok": False, "usage": broken}, now)
    assert view is not None
    assert [(r.kind, r.name, r.ok, r.detail) for r in view.rows] == [
        ("usage source", "platform", False, "usage source platform unavailable")
    ]
    fine = {"ok": True, "source": "platform", "coverage": {"web": "complete"}}
    (row,) = preflight_view({"ok": True, "usage": fine}, now).rows  # type: ignore[union-attr]
    assert row.ok and row.detail == "answers; data: web complete"
