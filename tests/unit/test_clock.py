"""Unit tests for shared/clock.py: wall time, scaled product time and the simulator's clock file."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared import clock
from shared.clock import (
    FileClock,
    ScaledTime,
    SystemClock,
    clock_from_settings,
    read_clock_file,
    visibility_timeout,
    write_clock_file,
)

NEW_YEAR = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def frozen_wall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make FileClock read the wall clock as exactly 1000.0 unix seconds."""
    monkeypatch.setattr(clock, "time", SimpleNamespace(time=lambda: 1000.0))


def write(path: Path, product_at: datetime, *, wall_at: float, speed: float, mtime_ns: int) -> None:
    write_clock_file(path, ScaledTime(product_at=product_at, wall_at=wall_at, speed=speed))
    os.utime(path, ns=(mtime_ns, mtime_ns))


# --- SystemClock ------------------------------------------------------------------------------


def test_system_clock_now_is_timezone_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    after = datetime.now(UTC)
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= after


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (timedelta(seconds=30), 30.0),
        (timedelta(minutes=10), 600.0),
        (timedelta(milliseconds=250), 0.25),
        (timedelta(0), 0.0),
        (timedelta(seconds=-5), 0.0),
    ],
    ids=["30s", "10min", "quarter-second", "zero", "negative-is-zero"],
)
def test_system_clock_real_seconds_equal_the_delay(delay: timedelta, expected: float) -> None:
    assert SystemClock().real_seconds(delay) == expected


# --- ScaledTime -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wall", "expected"),
    [
        (1000.0, NEW_YEAR),
        (1001.0, NEW_YEAR + timedelta(minutes=1)),
        (1010.0, NEW_YEAR + timedelta(minutes=10)),
        (1000.5, NEW_YEAR + timedelta(seconds=30)),
        (999.0, NEW_YEAR - timedelta(minutes=1)),
    ],
    ids=["at-anchor", "one-real-second-is-a-minute", "ten-seconds", "half-second", "before"],
)
def test_scaled_time_now_runs_speed_times_faster(wall: float, expected: datetime) -> None:
    scaled = ScaledTime(product_at=NEW_YEAR, wall_at=1000.0, speed=60)
    assert scaled.now(wall) == expected


@pytest.mark.parametrize(
    ("speed", "delay", "expected"),
    [
        (60, timedelta(minutes=10), 10.0),
        (60, timedelta(minutes=1), 1.0),
        (60, timedelta(hours=1), 60.0),
        (1, timedelta(seconds=42), 42.0),
        (0.5, timedelta(seconds=10), 20.0),
        (60, timedelta(minutes=-3), 0.0),
    ],
    ids=["10min-at-60x", "1min-at-60x", "1h-at-60x", "real-time", "slow-motion", "negative"],
)
def test_scaled_time_real_seconds_divide_by_speed(
    speed: float, delay: timedelta, expected: float
) -> None:
    scaled = ScaledTime(product_at=NEW_YEAR, wall_at=0.0, speed=speed)
    assert scaled.real_seconds(delay) == expected


# --- clock file -------------------------------------------------------------------------------


def test_clock_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    original = ScaledTime(
        product_at=datetime(2024, 3, 5, 7, 9, 11, 123456, tzinfo=UTC), wall_at=1234.5, speed=60.0
    )
    write_clock_file(path, original)
    assert read_clock_file(path) == original
    assert not (tmp_path / "clock.json.tmp").exists()


def test_clock_file_keeps_a_non_utc_offset(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    plus_two = datetime(2024, 3, 5, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    write_clock_file(path, ScaledTime(product_at=plus_two, wall_at=0.0, speed=1.0))
    loaded = read_clock_file(path)
    assert loaded.product_at == datetime(2024, 3, 5, 7, 0, tzinfo=UTC)
    assert loaded.product_at.utcoffset() == timedelta(hours=2)


VALID = {"product_at": "2024-01-01T00:00:00+00:00", "wall_at": 1000.0, "speed": 60}


def without(key: str) -> str:
    return json.dumps({name: value for name, value in VALID.items() if name != key})


def with_value(key: str, value: object) -> str:
    return json.dumps({**VALID, key: value})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(without("product_at"), id="missing-product_at"),
        pytest.param(without("wall_at"), id="missing-wall_at"),
        pytest.param(without("speed"), id="missing-speed"),
        pytest.param(with_value("product_at", "2024-01-01T00:00:00"), id="naive-datetime"),
        pytest.param(with_value("product_at", "new year"), id="not-a-datetime"),
        pytest.param(with_value("speed", 0), id="speed-zero"),
        pytest.param(with_value("speed", -60), id="speed-negative"),
        pytest.param(with_value("speed", "fast"), id="speed-not-a-number"),
        pytest.param(with_value("speed", "nan"), id="speed-nan"),
        pytest.param(with_value("wall_at", None), id="wall_at-null"),
        pytest.param("{not json", id="not-json"),
        pytest.param("", id="empty"),
        pytest.param("[1, 2, 3]", id="json-list"),
    ],
)
def test_read_clock_file_rejects_bad_content_naming_the_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "clock.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"clock file {path}")):
        read_clock_file(path)


def test_read_clock_file_rejects_a_missing_file_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ValueError, match=re.escape(f"clock file {path} is unreadable")):
        read_clock_file(path)


# --- FileClock --------------------------------------------------------------------------------


def test_file_clock_reads_product_time_from_the_file(tmp_path: Path, frozen_wall: None) -> None:
    path = tmp_path / "clock.json"
    write(path, NEW_YEAR, wall_at=990.0, speed=60, mtime_ns=1_000_000_000)
    file_clock = FileClock(path)
    assert file_clock.now() == NEW_YEAR + timedelta(minutes=10)
    assert file_clock.real_seconds(timedelta(minutes=10)) == 10.0


def test_file_clock_picks_up_a_rewritten_file(tmp_path: Path, frozen_wall: None) -> None:
    path = tmp_path / "clock.json"
    write(path, NEW_YEAR, wall_at=1000.0, speed=60, mtime_ns=1_000_000_000)
    file_clock = FileClock(path)
    assert file_clock.now() == NEW_YEAR

    jumped = NEW_YEAR + timedelta(days=3)
    write(path, jumped, wall_at=1000.0, speed=120, mtime_ns=2_000_000_000)
    assert file_clock.now() == jumped
    assert file_clock.real_seconds(timedelta(minutes=10)) == 5.0


def test_file_clock_sees_a_replaced_file_even_within_one_mtime_tick(
    tmp_path: Path, frozen_wall: None
) -> None:
    # The simulator publishes by os.replace (a new inode); two publishes may share an mtime.
    path = tmp_path / "clock.json"
    write(path, NEW_YEAR, wall_at=1000.0, speed=60, mtime_ns=1_000_000_000)
    file_clock = FileClock(path)
    assert file_clock.now() == NEW_YEAR

    jumped = NEW_YEAR + timedelta(days=3)
    write(path, jumped, wall_at=1000.0, speed=60, mtime_ns=1_000_000_000)
    assert file_clock.now() == jumped


def test_file_clock_does_not_reread_an_unchanged_file(
    tmp_path: Path, frozen_wall: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clock.json"
    write(path, NEW_YEAR, wall_at=1000.0, speed=60, mtime_ns=1_000_000_000)
    file_clock = FileClock(path)
    file_clock.now()
    reads: list[Path] = []
    monkeypatch.setattr(clock, "read_clock_file", lambda p: reads.append(p) or None)
    for _ in range(3):
        assert file_clock.now() == NEW_YEAR
    assert reads == []


def test_visibility_timeout_rounds_up_and_caps_at_seven_days() -> None:
    fast = ScaledTime(product_at=NEW_YEAR, wall_at=0.0, speed=60)
    assert visibility_timeout(fast, timedelta(seconds=30)) == 1  # 0.5 s is not "now"
    assert visibility_timeout(fast, timedelta(minutes=10)) == 10
    assert visibility_timeout(SystemClock(), timedelta(days=30)) == 7 * 24 * 3600
    assert visibility_timeout(SystemClock(), timedelta(0)) == 0


# --- clock_from_settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{}, {"POOLKEEPER_CLOCK_FILE": ""}, {"UNRELATED": "x"}],
    ids=["empty", "blank-setting", "other-settings"],
)
def test_clock_from_settings_without_a_clock_file_is_the_system_clock(
    settings: dict[str, str],
) -> None:
    assert isinstance(clock_from_settings(settings), SystemClock)


def test_clock_from_settings_with_a_clock_file_is_a_file_clock(
    tmp_path: Path, frozen_wall: None
) -> None:
    path = tmp_path / "clock.json"
    write(path, NEW_YEAR, wall_at=1000.0, speed=60, mtime_ns=1_000_000_000)
    made = clock_from_settings({"POOLKEEPER_CLOCK_FILE": str(path)})
    assert isinstance(made, FileClock)
    assert made.now() == NEW_YEAR


@pytest.mark.parametrize(
    "text",
    [with_value("speed", 0), with_value("product_at", "2024-01-01T00:00:00"), "{not json"],
    ids=["speed-zero", "naive-datetime", "not-json"],
)
def test_clock_from_settings_fails_at_creation_when_the_file_is_bad(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "clock.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"clock file {path}")):
        clock_from_settings({"POOLKEEPER_CLOCK_FILE": str(path)})


def test_clock_from_settings_fails_at_creation_when_the_file_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    # FileClock stats the file before read_clock_file can wrap the error, so this surfaces as an
    # OSError rather than the ValueError read_clock_file gives; either way it names the path.
    with pytest.raises((ValueError, OSError), match=re.escape(str(path))):
        clock_from_settings({"POOLKEEPER_CLOCK_FILE": str(path)})
