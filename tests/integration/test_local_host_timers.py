"""Timer triggers: NCRONTAB with seconds, %SETTING% schedules, run_on_startup, past-due catch-up,
and the product clock (an accelerated simulator clock drives the timers too)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from azure.storage.blob import BlobServiceClient

from shared.clock import ScaledTime, write_clock_file

STATUS_BLOB = "timers/poolkeeper-local/Host.Functions.tick/status"


def _settings(azurite, schedule: str) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "TICK_SCHEDULE": schedule,
        "WORK_QUEUE": "unused-queue",
        "AzureFunctionsWebHost__hostid": "poolkeeper-local",
    }


def _ticks(records: list[dict]) -> list[dict]:
    return [r for r in records if r["function"] == "tick"]


def _clock(tmp_path: Path, start: datetime, speed: float) -> str:
    path = tmp_path / "clock.json"
    write_clock_file(path, ScaledTime(product_at=start, wall_at=time.time(), speed=speed))
    return str(path)


def test_six_field_schedule_from_a_setting_fires_every_second(start_host, azurite) -> None:
    host = start_host(settings=_settings(azurite, "*/1 * * * * *"))
    records = _ticks(host.wait_for_records(lambda r: len(_ticks(r)) >= 3, timeout=10))
    # More than one occurrence a minute: the host keeps no schedule status, so none is passed.
    assert all(r["past_due"] is False and r["status"] == {} for r in records)


def test_timers_run_on_the_product_clock(start_host, azurite, tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    clock = _clock(tmp_path, start, speed=120)  # one product minute every half second
    host = start_host(settings=_settings(azurite, "0 * * * * *") | {"POOLKEEPER_CLOCK_FILE": clock})
    began = time.monotonic()
    ticks = _ticks(host.wait_for_records(lambda r: len(_ticks(r)) >= 3, timeout=15))
    assert time.monotonic() - began < 10  # 3 product minutes, not 3 real ones
    lasts = [datetime.fromisoformat(t["status"]["Last"]) for t in ticks[1:3]]
    assert lasts[0].year == 2026 and lasts[0].month == 1 and lasts[0].second == 0
    assert lasts[1] - lasts[0] == timedelta(minutes=1)


def _status_container(azurite):
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.get_container_client("azure-webjobs-hosts")
    if not container.exists():
        container.create_container()
    return container


def _midnight(days_ago: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def test_missed_occurrence_runs_once_at_start_up_as_past_due(start_host, azurite) -> None:
    # Last ran two midnights ago; yesterday's midnight was missed (the host was down).
    container = _status_container(azurite)
    last, missed = _midnight(2), _midnight(1)
    recorded = {
        "Last": last.isoformat(),
        "Next": missed.isoformat(),
        "LastUpdated": last.isoformat(),
    }
    container.upload_blob(STATUS_BLOB, json.dumps(recorded), overwrite=True)

    host = start_host(settings=_settings(azurite, "0 0 0 * * *"))
    ticks = _ticks(host.wait_for_records(lambda r: len(_ticks(r)) >= 1, timeout=15))
    time.sleep(1)
    assert len(_ticks(host.records())) == 1
    assert ticks[0]["past_due"] is True
    assert ticks[0]["status"] == recorded  # the function sees the status from before the run
    status = json.loads(container.download_blob(STATUS_BLOB).readall())
    assert datetime.fromisoformat(status["Next"]) == _midnight(-1)
    assert datetime.fromisoformat(status["Last"]) > missed  # the invocation time
    container.delete_blob(STATUS_BLOB)


def test_changed_schedule_is_not_past_due_and_gets_a_fresh_next_run(start_host, azurite) -> None:
    # The status was written by a daily schedule; the setting now says every hour at :30.
    container = _status_container(azurite)
    recorded = {
        "Last": _midnight(2).isoformat(),
        "Next": _midnight(1).isoformat(),
        "LastUpdated": _midnight(2).isoformat(),
    }
    container.upload_blob(STATUS_BLOB, json.dumps(recorded), overwrite=True)

    host = start_host(settings=_settings(azurite, "0 30 * * * *"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = json.loads(container.download_blob(STATUS_BLOB).readall())
        if status != recorded:
            break
        time.sleep(0.1)
    upcoming = datetime.fromisoformat(status["Next"])
    assert upcoming > datetime.now(UTC) and upcoming.minute == 30
    assert _ticks(host.records()) == []
    container.delete_blob(STATUS_BLOB)


def test_run_on_startup_fires_once_before_the_schedule(start_host, azurite, tmp_path) -> None:
    app = tmp_path / "startup_app.py"
    app.write_text(
        "import json, os\n"
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.timer_trigger(schedule='0 0 0 1 1 *', arg_name='timer', run_on_startup=True)\n"
        "def tick(timer: func.TimerRequest) -> None:\n"
        "    with open(os.environ['RECORD_FILE'], 'a') as out:\n"
        "        out.write(json.dumps({'function': 'tick', 'past_due': timer.past_due}) + '\\n')\n"
    )
    host = start_host(
        app,
        settings={
            "AzureWebJobsStorage": azurite.connection_string,
            "AzureFunctionsWebHost__hostid": "startup-test",
        },
    )
    ticks = host.wait_for_records(lambda r: len(r) >= 1, timeout=15)
    assert ticks == [{"function": "tick", "past_due": False}]


def test_schedule_setting_that_is_not_set_stops_the_host_with_its_name(start_host, azurite) -> None:
    host = start_host(
        settings={"AzureWebJobsStorage": azurite.connection_string, "WORK_QUEUE": "q"}, wait=False
    )
    assert host.process.wait(timeout=30) == 2
    assert "'TICK_SCHEDULE' referenced as %TICK_SCHEDULE% is not set" in host.log.read_text()


def test_invalid_schedule_stops_the_host_naming_the_function(start_host, azurite) -> None:
    host = start_host(settings=_settings(azurite, "61 * * * * *"), wait=False)
    assert host.process.wait(timeout=30) == 2
    assert "timer 'tick'" in host.log.read_text()


def test_storage_outage_does_not_stop_timers_or_http(start_host, tmp_path) -> None:
    from local.azurite import Azurite

    clock = _clock(tmp_path, datetime(2026, 1, 1, tzinfo=UTC), speed=120)
    with Azurite() as own:
        host = start_host(settings=_settings(own, "0 * * * * *") | {"POOLKEEPER_CLOCK_FILE": clock})
        host.wait_for_records(lambda r: len(_ticks(r)) >= 1, timeout=15)
    # Azurite is gone: status writes fail, the schedule and the HTTP front door go on.
    before = len(_ticks(host.records()))
    host.wait_for_records(lambda r: len(_ticks(r)) >= before + 2, timeout=30)
    assert host.process.poll() is None
    assert requests.get(f"{host.url}/api/open", timeout=5).status_code == 200
    assert "Writing timer status" in host.log.read_text()
