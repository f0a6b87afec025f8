"""The demo's story, one function per step, each returning what it expected, what happened and
whether they match. Everything goes through the running stack: the world is changed through the
simulator's admin API (load, faults, clock jumps), the product is asked through its HTTP API and
answers through its timers, queues, ledger and notifications.

Called by `local.demo.__main__`; facts about the world come from the scenario file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import Any, TypeVar

from local.demo.clients import Cluster, Notifications, Product, World, live
from local.demo.report import Report
from local.demo.running import DemoError

T = TypeVar("T")

POOL = "workers"  # the pool the story is about; the scenario's other pool only looks on
HOT_CPU = 97.0  # above the default P1 threshold (95 %) on every node
HELD = timedelta(minutes=11)  # two runs of the capacity timer (every 5 minutes) after a scale-up
CANNOT_ALLOCATE = "CannotAllocateRemainingVMsInAvailabilitySet"
CAPACITY_WRITES = {"VirtualMachineScaleSets_Update", "VirtualMachineScaleSets_CreateOrUpdate"}
RESTART = "VirtualMachineScaleSetVMs_Restart"
IMAGE_AT = time_of_day(6, 0)  # after the patch window of demo.json (02:00-05:00)
# The timers' schedules the story is told against (the documented defaults, except the image
# timer's, moved after the patch window so the two never take the same nodes).
SCHEDULES = {
    "RECONCILE_SCHEDULE": "0 */5 * * * *",
    "CAPACITY_SCHEDULE": "0 */5 * * * *",
    "PATCH_SCHEDULE": "0 */15 * * * *",
    "IMAGE_SCHEDULE": f"0 {IMAGE_AT.minute} {IMAGE_AT.hour} * * *",
    "DOWNSCALE_SCHEDULE": "0 0 6 * * MON",
}
FINAL = ("done", "failed")


@dataclass(frozen=True)
class Seen:
    """What a step said it would do, what happened, and whether they match."""

    expected: str
    happened: str
    ok: bool


class StepFailed(Exception):
    """A step cannot go on; the message is what happened instead."""


@dataclass(frozen=True)
class Facts:
    """What the story needs to know of its scenario (local/scenarios/demo.json)."""

    scale_set: str
    base_cpu: float
    kernel: str  # the kernel the night's updates bring
    window_start: time_of_day
    pools: tuple[str, ...]

    @classmethod
    def read(cls, scenario: Path) -> Facts:
        """The facts, or a DemoError naming what the scenario lacks."""
        try:
            data = json.loads(scenario.read_text())
            pools = data["pools"]["pools"]
            pool = next(p for p in pools if p["name"] == POOL)
            name = pool["vmss_id"].rsplit("/", 1)[1]
            scale_set = next(s for s in data["scale_sets"] if s["name"] == name)
            return cls(
                scale_set=name,
                base_cpu=float(scale_set["load"]["cpu"]),
                kernel=data["os_updates"][-1]["kernel"],
                window_start=time_of_day.fromisoformat(pool["patch"]["window"]["start"]),
                pools=tuple(p["name"] for p in pools),
            )
        except (OSError, KeyError, IndexError, StopIteration, TypeError, ValueError) as error:
            raise DemoError(
                f"scenario {scenario} does not fit the story: it needs a pool {POOL!r} with a "
                f"patch window, its scale set with a load, and an os_updates kernel ({error!r})"
            ) from error


@dataclass
class Demo:
    """The story's hands and eyes on the running stack."""

    product: Product
    world: World
    cluster: Cluster
    notes: Notifications
    report: Report
    facts: Facts
    stack_alive: Callable[[], bool]
    said: set[str] = field(default_factory=set)  # what `once` has said
    used: set[int] = field(default_factory=set)  # notifications a step has taken, by index

    def say(self, text: str) -> None:
        self.report.say(self.world.now(), text)

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Poll `probe` until it gives a value; StepFailed after `timeout` wall seconds."""
        deadline = time.monotonic() + timeout
        with self.report.waiting(what):
            while True:
                found = probe()
                if found is not None:
                    return found
                if not self.stack_alive():
                    raise StepFailed(f"the stack stopped while waiting for {what}")
                if time.monotonic() > deadline:
                    raise StepFailed(f"gave up after {timeout:.0f} s waiting for {what}")
                time.sleep(0.25)

    def notification(
        self, what: str, match: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The first notification that matches and no step has taken yet."""

        def probe() -> dict[str, Any] | None:
            self.notes.poll()
            for index, note in enumerate(self.notes.seen):
                if index not in self.used and match(note):
                    self.used.add(index)
                    return note
            return None

        return self.wait(what, probe, timeout)

    def follow(
        self,
        job_id: str,
        timeout: float,
        progress: Callable[[dict[str, Any]], None] = lambda record: None,
    ) -> dict[str, Any]:
        """The job's ledger entry once it is done or failed, reporting progress meanwhile."""

        def probe() -> dict[str, Any] | None:
            record = self.product.job(job_id)
            if record is not None:
                progress(record)
            return record if record is not None and record["status"] in FINAL else None

        return self.wait(f"job {job_id}", probe, timeout)

    def once(self, key: str, text: str) -> None:
        """Say `text` the first time `key` comes up."""
        if key not in self.said:
            self.said.add(key)
            self.say(text)

    def timer_job(self, kind: str, moment: time_of_day) -> str:
        """Skip ahead to just before the next `moment` of the day, when the `kind` timer
        enqueues `<kind>-<pool>-<date>`; returns that job's id once the ledger knows it."""
        now = self.world.now()
        target = now.replace(hour=moment.hour, minute=moment.minute, second=0, microsecond=0)
        if target <= now:
            target += timedelta(days=1)
        if target - now > timedelta(minutes=1):
            self.world.advance(target - timedelta(seconds=30) - now)
            self.say(f"skip ahead to {target:%H:%M}, when the {kind} timer comes")
        # The patch timer dates its job by the window's end: the same day for demo.json's window.
        job_id = f"{kind}-{POOL}-{target:%Y%m%d}"
        self.wait(f"the {kind} timer's job {job_id}", lambda: self.product.job(job_id), 60)
        self.say(f"{kind} timer: job {job_id} enqueued")
        return job_id

    def writes_since(self, wall: float, operations: set[str]) -> list[dict[str, Any]]:
        """ARM calls of those operations on the story's scale set since a wall time."""
        return [
            c
            for c in self.world.calls()
            if c["wall_time"] >= wall
            and c["operation"] in operations
            and _scale_set_of(c["path"]) == self.facts.scale_set.lower()
        ]


def _scale_set_of(path: str) -> str | None:
    """The scale set an ARM path is about (lower case, as ARM matches names)."""
    parts = path.lower().split("/")
    return (
        parts[parts.index("virtualmachinescalesets") + 1]
        if "virtualmachinescalesets" in parts
        else None
    )


def _hhmm(moment: str | None) -> str:
    return f"{datetime.fromisoformat(moment):%H:%M}" if moment else "?"


def capacity(demo: Demo) -> Seen:
    """Load rises on the workers group: P1, one scale-up, and no second one."""
    facts = demo.facts
    expected = f"CPU {HOT_CPU:.0f}% for an hour: a group P1, exactly one scale-up (+1 node)"
    first = demo.wait(
        "the reconcile timer's first read of the pool",
        lambda: (pool := demo.product.pool(POOL)).get("read_at") and pool,
        60,
    )
    nodes = first["capacity"]
    demo.say(f"{POOL}: {first['counts']['live']} live nodes, capacity {nodes}, read by the timer")
    began = time.time()
    demo.world.load(facts.scale_set, HOT_CPU)
    demo.say(f"load on {POOL} rises: CPU {facts.base_cpu:.0f}% -> {HOT_CPU:.0f}% on every node")
    demo.world.advance(timedelta(minutes=65))
    demo.say("skip ahead 65 minutes: the capacity timer's 1-hour window is all hot now")

    def ours(kind: str) -> Callable[[dict[str, Any]], bool]:
        return lambda n: n["pool"] == POOL and n["kind"] == kind

    def group_p1(note: dict[str, Any]) -> bool:
        return note["pool"] == POOL and note["message"].startswith("P1/group/")

    firing = demo.notification(
        "a P1 on the group", lambda n: group_p1(n) and n["kind"] == "alert_firing", 60
    )
    demo.say(f"notification {firing['severity']}: {firing['message']}")
    scale_up = demo.notification("the capacity timer's scale-up", ours("scale_up"), 30)
    demo.say(f"notification: {scale_up['message']}")
    found = re.search(r"\(job ([^)]+)\)", scale_up["message"])
    if found is None:
        raise StepFailed(f"the scale-up notification names no job: {scale_up['message']}")
    # Still hot for two more runs of the capacity timer: the P1 goes on firing, and only the
    # pool's cooldown (60 minutes in demo.json) stands between it and a second scale-up. Both
    # are product time, so however slow the machine, the load falls well within the cooldown.
    held_until = datetime.fromisoformat(scale_up["at"]) + HELD
    demo.wait("two more capacity evaluations", lambda: demo.world.now() >= held_until or None, 60)
    demo.notes.poll()
    # A P1 that stopped firing would have notified its transition (alert_ok or alert_unknown).
    still = [n["kind"] for n in demo.notes.seen if group_p1(n)][-1] == "alert_firing"
    demo.say(
        "the P1 still fires; the cooldown holds a second scale-up"
        if still
        else "the P1 stopped firing on its own: the cooldown was not put to the test"
    )
    demo.world.load(facts.scale_set, facts.base_cpu)
    demo.say(f"the peak passes: load on {POOL} back to {facts.base_cpu:.0f}%")
    job = demo.follow(found[1], 90)
    demo.say(f"job {job['id']}: {job['status']}, added instance {job['outcome'].get('added')}")
    demo.world.advance(timedelta(minutes=70))
    demo.say("skip ahead 70 minutes: past the cooldown, and the new node has a full hour of data")
    cleared = demo.notification(
        "the P1 to clear", lambda n: group_p1(n) and n["kind"] == "alert_ok", 60
    )
    demo.say(f"notification: {cleared['message']}")
    ups = [n for n in demo.notes.seen if ours("scale_up")(n)]
    writes = demo.writes_since(began, CAPACITY_WRITES)
    now = demo.world.scale_set(facts.scale_set)
    happened = (
        f"P1 fired at {_hhmm(firing['at'])}, {'still firing' if still else 'ok'} at "
        f"{held_until:%H:%M}, cleared at {_hhmm(cleared['at'])}; "
        f"{len(ups)} scale-up job ({job['id']}: {job['status']}), {len(writes)} capacity write; "
        f"capacity {nodes} -> {now['capacity']}, {live(now)} live"
    )
    ok = (
        still
        and len(ups) == 1
        and len(writes) == 1
        and job["status"] == "done"
        and now["capacity"] == live(now) == nodes + 1
    )
    return Seen(expected, happened, ok)


def count_truth(demo: Demo) -> Seen:
    """A scale-in whose delete Azure accepts and then fails: nothing is counted as gone."""
    facts = demo.facts
    expected = (
        f"a scale-in by 1 whose delete fails with {CANNOT_ALLOCATE}: the job fails saying so, "
        "nothing is deleted, the recorded count equals the simulator's"
    )
    before = demo.world.scale_set(facts.scale_set)
    demo.world.fault(
        {
            "operation": "VirtualMachineScaleSets_DeleteInstances",
            "scale_set": facts.scale_set,
            "kind": "lro_failed",
            "error": CANNOT_ALLOCATE,
            "count": 1,
        }
    )
    demo.say(f"fault: Azure accepts the next delete on {POOL}, then fails it ({CANNOT_ALLOCATE})")
    now = demo.world.now()
    job_id = demo.product.submit(
        "scale", POOL, {"delta": -1}, job_id=f"demo-scale-in-{now:%Y%m%dT%H%M%S}", now=now
    )
    demo.say(f"an operator asks for one node fewer: POST /api/jobs -> {job_id}")

    def progress(record: dict[str, Any]) -> None:
        victims = (record.get("state") or {}).get("plan", {}).get("nodes")
        if victims:
            demo.once(f"{job_id} victims", f"drain and delete: {', '.join(victims)}")

    job = demo.follow(job_id, 120, progress)
    demo.say(f"job {job_id}: {job['status']}: {job['error']}")
    outcome = job.get("outcome") or {}
    recorded = demo.product.pool(POOL)
    truth = demo.world.scale_set(facts.scale_set)
    lowered = before["capacity"] - 1
    demo.report.table(
        "the count after the failed delete",
        ["", "live", "capacity"],
        [
            [
                "recorded by Poolkeeper (GET /api/pools/workers)",
                str(recorded["counts"]["live"]),
                str(recorded["capacity"]),
            ],
            ["the simulator (GET /_sim/state)", str(live(truth)), str(truth["capacity"])],
            ["a count lowered when the delete was asked", str(lowered), str(lowered)],
        ],
    )
    gone = {i["instance_id"] for i in before["instances"]} - {
        i["instance_id"] for i in truth["instances"]
    }
    said = CANNOT_ALLOCATE if CANNOT_ALLOCATE in (job["error"] or "") else job["error"]
    happened = (
        f"job {job['status']} ({said}); {len(gone)} instances gone, "
        f"{', '.join(sorted(outcome.get('uncordoned') or [])) or 'no node'} uncordoned; "
        f"live / capacity: recorded {recorded['counts']['live']} / {recorded['capacity']}, "
        f"simulator {live(truth)} / {truth['capacity']}"
    )
    ok = (
        job["status"] == "failed"
        and CANNOT_ALLOCATE in (job["error"] or "")
        and outcome.get("deleted") == []
        and not gone
        and recorded["counts"]["live"] == live(truth) == live(before)
        and recorded["capacity"] == truth["capacity"] == before["capacity"]
    )
    return Seen(expected, happened, ok)


def nightly_patch(demo: Demo) -> Seen:
    """The patch timer opens the night's window; every node gets the new kernel."""
    facts = demo.facts
    expected = (
        f"the patch timer at {facts.window_start:%H:%M}: every {POOL} node on {facts.kernel}, "
        "one restart each, none left cordoned"
    )
    began = time.time()
    job_id = demo.timer_job("patch", facts.window_start)

    def progress(record: dict[str, Any]) -> None:
        for name, node in ((record.get("state") or {}).get("nodes") or {}).items():
            for entry in node.get("history") or []:
                what = entry.partition(" ")[2]
                if what.startswith(("taken down", "patched")):
                    demo.once(f"{job_id} {name} {what}", f"{name}: {what}")

    job = demo.follow(job_id, 300, progress)
    truth = demo.world.scale_set(facts.scale_set)
    kernels = {i["computer_name"]: i["os"]["running_kernel"] for i in truth["instances"]}
    on_new = sorted(n for n, k in kernels.items() if k == facts.kernel)
    pending = [i["computer_name"] for i in truth["instances"] if i["os"]["reboot_required"]]
    cordoned = demo.cluster.cordoned()
    restarts = len(demo.writes_since(began, {RESTART}))
    outcome = job.get("outcome") or {}
    happened = (
        f"job {job['status']}{': ' + job['error'] if job['error'] else ''}; "
        f"{len(outcome.get('patched') or {})} patched, {len(on_new)}/{len(kernels)} on "
        f"{facts.kernel}, {restarts} restarts, {len(cordoned)} cordoned"
    )
    ok = (
        job["status"] == "done"
        and len(on_new) == len(kernels) == restarts
        and not pending
        and not cordoned
    )
    return Seen(expected, happened, ok)


def image_run(demo: Demo) -> Seen:
    """The image timer: a patched donor captured, the version proven on a canary, kept."""
    facts = demo.facts
    expected = (
        f"the image timer at {IMAGE_AT:%H:%M}: a donor on {facts.kernel} captured, the version "
        "proven on a canary, the scale set's model on it, the canary removed"
    )
    before = demo.world.scale_set(facts.scale_set)
    job_id = demo.timer_job("image", IMAGE_AT)

    def progress(record: dict[str, Any]) -> None:
        for entry in record.get("steps") or []:
            demo.once(f"{job_id} {entry['step']}", f"image job: {entry['step']}")

    job = demo.follow(job_id, 300, progress)
    outcome = job.get("outcome") or {}
    donor = outcome.get("donor") or {}
    donor = donor if isinstance(donor, dict) else {"name": donor}
    canary = outcome.get("canary") or {}
    version = outcome.get("version") or ""
    truth = demo.world.scale_set(facts.scale_set)
    model = truth.get("model_image") or {}
    name = version.rsplit("/", 1)[-1]
    listed = any(v.get("version") == name for v in demo.product.pool(POOL).get("images") or [])
    if canary.get("verdict"):
        demo.say(f"canary: {canary['verdict']}")
    happened = (
        f"job {job['status']}{': ' + job['error'] if job['error'] else ''}; donor "
        f"{donor.get('name')} on {donor.get('kernel')}; version {name} (in the lineage: {listed}); "
        f"canary proven: {canary.get('proven')}, {canary.get('removed')}; model on it: "
        f"{model.get('id') == version}; {len(truth['instances'])} instances"
    )
    ok = (
        job["status"] == "done"
        and donor.get("kernel") == facts.kernel
        and canary.get("proven") is True
        and bool(version)
        and model.get("id") == version
        and len(truth["instances"]) == len(before["instances"])
        and listed
    )
    return Seen(expected, happened, ok)


def record_is_truth(demo: Demo) -> Seen:
    """A reconcile of every pool, then the records, the simulator and the status page agree."""
    expected = "after a reconcile, GET /api/pools shows the simulator's counts; the page answers"
    now = demo.world.now()
    jobs = [
        demo.product.submit(
            "reconcile", pool, {}, job_id=f"demo-reconcile-{pool}-{now:%Y%m%dT%H%M%S}", now=now
        )
        for pool in demo.facts.pools
    ]
    for job_id in jobs:
        demo.follow(job_id, 60)
    rows, agree = [], True
    for pool in demo.facts.pools:
        recorded = demo.product.pool(pool)
        truth = demo.world.scale_set(recorded["vmss_id"].rsplit("/", 1)[1])
        pair = (recorded["counts"]["live"], recorded["capacity"], recorded["counts"]["total"])
        real = (live(truth), truth["capacity"], len(truth["instances"]))
        agree = agree and pair == real
        rows.append([pool, *(f"{a} / {b}" for a, b in zip(pair, real, strict=True))])
    demo.report.table("recorded / simulator", ["pool", "live", "capacity", "instances"], rows)
    page = demo.product.dashboard()
    shown = all(f'data-pool="{pool}"' in page.text for pool in demo.facts.pools)
    happened = (
        f"{'; '.join(f'{r[0]}: live {r[1]}, capacity {r[2]}' for r in rows)}; "
        f"status page {page.status_code}{'' if shown else ' without every pool'}"
    )
    return Seen(expected, happened, agree and page.ok and shown)


@dataclass(frozen=True)
class Chapter:
    """One step of the story: its name in the summary, its title and what the viewer is about
    to see, the step itself, and whether `--short` tells it."""

    name: str
    title: str
    plan: str
    step: Callable[[Demo], Seen]
    short: bool


STORY = [
    Chapter(
        "capacity",
        "Load rises: P1, one scale-up",
        "The capacity timer reads Azure Monitor metrics every 5 minutes. We push the workers "
        "group's CPU above the P1 threshold and watch for the alert and the scale-up.",
        capacity,
        short=True,
    ),
    Chapter(
        "count truth",
        "A delete that Azure fails: the count stays true",
        "The cluster-autoscaler bug: a cache lowered when a delete is asked. Here the delete fails "
        "and Poolkeeper re-reads the scale set before it counts anything.",
        count_truth,
        short=True,
    ),
    Chapter(
        "nightly patch",
        "The nightly patch run",
        "OS updates with a new kernel are out. The pool's patch window opens at night: nodes are "
        "drained, updated and restarted two at a time, within the PDBs and the pool's headroom.",
        nightly_patch,
        short=False,
    ),
    Chapter(
        "image",
        "The image run",
        "A freshly patched node donates its disk: a gallery image version, proven on a canary, "
        "so new nodes boot patched.",
        image_run,
        short=False,
    ),
    Chapter(
        "record = truth",
        "The record is the truth",
        "One more full read of every pool, compared with the simulator's own state.",
        record_is_truth,
        short=True,
    ),
]
