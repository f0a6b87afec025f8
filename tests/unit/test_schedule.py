"""Unit tests for local/host/schedule.py and setting references: timer schedules read as the
Functions host reads them (NCRONTAB seconds first, day-of-month AND day-of-week, TimeSpans)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.host.config import HostConfigError, resolve_setting_refs
from local.host.schedule import (
    CronSchedule,
    IntervalSchedule,
    monitor_by_default,
    parse_schedule,
)

# Saturday 1 June 2024, 12:00:07 UTC.
SATURDAY = datetime(2024, 6, 1, 12, 0, 7, tzinfo=UTC)


def next_times(expression: str, start: datetime, count: int) -> list[datetime]:
    schedule = parse_schedule(expression, function="tick")
    times = []
    moment = start
    for _ in range(count):
        moment = schedule.next_after(moment)
        times.append(moment)
    return times


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        pytest.param(
            "*/15 * * * * *",
            datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC),
            [
                datetime(2024, 6, 1, 12, 0, 15, tzinfo=UTC),
                datetime(2024, 6, 1, 12, 0, 30, tzinfo=UTC),
                datetime(2024, 6, 1, 12, 0, 45, tzinfo=UTC),
                datetime(2024, 6, 1, 12, 1, 0, tzinfo=UTC),
            ],
            id="every-15-seconds-seconds-first",
        ),
        pytest.param(
            "0 */5 * * * *",
            SATURDAY,
            [
                datetime(2024, 6, 1, 12, 5, 0, tzinfo=UTC),
                datetime(2024, 6, 1, 12, 10, 0, tzinfo=UTC),
            ],
            id="every-5-minutes",
        ),
        pytest.param(
            "0 30 9 * * MON-FRI",
            SATURDAY,
            [
                datetime(2024, 6, 3, 9, 30, tzinfo=UTC),
                datetime(2024, 6, 4, 9, 30, tzinfo=UTC),
            ],
            id="weekdays-by-name-from-saturday-is-monday",
        ),
        pytest.param(
            "0 30 9 * * 1-5",
            SATURDAY,
            [datetime(2024, 6, 3, 9, 30, tzinfo=UTC)],
            id="weekdays-by-number",
        ),
        pytest.param(
            "0 0 9 13 * FRI",
            datetime(2024, 1, 1, tzinfo=UTC),
            [
                datetime(2024, 9, 13, 9, 0, tzinfo=UTC),
                datetime(2024, 12, 13, 9, 0, tzinfo=UTC),
            ],
            id="day-of-month-and-day-of-week-both-required",
        ),
        pytest.param(
            "*/5 * * * *",
            SATURDAY,
            [
                datetime(2024, 6, 1, 12, 5, 0, tzinfo=UTC),
                datetime(2024, 6, 1, 12, 10, 0, tzinfo=UTC),
            ],
            id="five-fields-minute-first",
        ),
        pytest.param(
            "  0   */5  *  * * *  ",
            SATURDAY,
            [datetime(2024, 6, 1, 12, 5, 0, tzinfo=UTC)],
            id="extra-whitespace",
        ),
        pytest.param(
            "00:00:30",
            SATURDAY,
            [SATURDAY + timedelta(seconds=30), SATURDAY + timedelta(seconds=60)],
            id="timespan-interval",
        ),
        pytest.param(
            "01:00:00",
            SATURDAY,
            [SATURDAY + timedelta(hours=1)],
            id="timespan-hour",
        ),
    ],
)
def test_next_after_fires_at_the_expected_times(
    expression: str, start: datetime, expected: list[datetime]
) -> None:
    assert next_times(expression, start, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "kind"),
    [
        ("0 */5 * * * *", CronSchedule),
        ("*/5 * * * *", CronSchedule),
        ("00:00:30", IntervalSchedule),
        ("1.00:00:00", IntervalSchedule),
    ],
)
def test_parse_schedule_picks_cron_or_interval(expression: str, kind: type) -> None:
    assert isinstance(parse_schedule(expression, function="tick"), kind)


def test_timespan_schedule_is_an_interval_of_that_length() -> None:
    assert parse_schedule("00:00:30", function="tick") == IntervalSchedule(timedelta(seconds=30))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * * *", "not a valid NCRONTAB expression"),
        ("0 0 25 * * *", "not a valid NCRONTAB expression"),
        ("0 0 9 * * FUNDAY", "not a valid NCRONTAB expression"),
        ("* * * *", "must be a 6-field NCRONTAB expression"),
        ("* * * * * * *", "must be a 6-field NCRONTAB expression"),
        ("every minute", "must be a 6-field NCRONTAB expression"),
        ("", "must be a 6-field NCRONTAB expression"),
        ("00:00:00", "must be positive"),
        ("5:00", "expected a TimeSpan"),
    ],
    ids=[
        "second-61",
        "hour-25",
        "bad-day-name",
        "four-fields",
        "seven-fields",
        "words",
        "empty",
        "zero-timespan",
        "short-timespan",
    ],
)
def test_invalid_schedules_raise_naming_the_function(expression: str, message: str) -> None:
    with pytest.raises(HostConfigError, match=message) as raised:
        parse_schedule(expression, function="nightly_patch")
    assert "'nightly_patch'" in str(raised.value)


@pytest.mark.parametrize(
    ("expression", "monitored"),
    [
        ("*/10 * * * * *", False),
        ("* * * * * *", False),
        ("00:00:30", False),
        ("0 * * * * *", True),
        ("0 */5 * * * *", True),
        ("*/5 * * * *", True),
        ("00:01:00", True),
        ("0 30 9 * * MON-FRI", True),
    ],
    ids=[
        "every-10-seconds",
        "every-second",
        "interval-30s",
        "every-minute",
        "every-5-minutes",
        "five-field-every-5-minutes",
        "interval-1min",
        "weekday-mornings",
    ],
)
def test_monitor_by_default_only_when_firing_at_most_once_a_minute(
    expression: str, monitored: bool
) -> None:
    schedule = parse_schedule(expression, function="tick")
    assert monitor_by_default(schedule, SATURDAY) is monitored


# --- %SETTING% references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "settings", "expected"),
    [
        ("%A%", {"A": "0 * * * * *"}, "0 * * * * *"),
        ("no references", {}, "no references"),
        ("%QUEUE%-poison", {"QUEUE": "work"}, "work-poison"),
        ("%A%/%B%", {"A": "x", "B": "y"}, "x/y"),
        ("%A%", {"A": ""}, ""),
    ],
    ids=["whole", "none", "prefix", "two", "empty-value"],
)
def test_resolve_setting_refs_substitutes_app_settings(
    text: str, settings: dict[str, str], expected: str
) -> None:
    assert resolve_setting_refs(text, settings, where="x") == expected


def test_resolve_setting_refs_missing_setting_names_setting_and_where() -> None:
    with pytest.raises(HostConfigError) as raised:
        resolve_setting_refs("%TIMER_SCHEDULE%", {"OTHER": "1"}, where="timer 'nightly_patch'")
    message = str(raised.value)
    assert "'TIMER_SCHEDULE'" in message
    assert "%TIMER_SCHEDULE%" in message
    assert message.startswith("timer 'nightly_patch':")
