"""Timer schedules as the Functions host reads them: NCRONTAB (seconds first) or a TimeSpan.

Pure: `next_after(t)` on product time; used by `local.host.timers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from local.host.config import HostConfigError, parse_timespan


@dataclass(frozen=True)
class CronSchedule:
    expression: str

    def next_after(self, moment: datetime) -> datetime:
        # NCrontab requires day-of-month AND day-of-week to match (croniter defaults to OR).
        six = len(self.expression.split()) == 6
        # Azure evaluates NCRONTAB in UTC (unless WEBSITE_TIME_ZONE is set, which we do not model).
        moment = moment.astimezone(UTC)
        return croniter(self.expression, moment, day_or=False, second_at_beginning=six).get_next(
            datetime
        )


@dataclass(frozen=True)
class IntervalSchedule:
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval


Schedule = CronSchedule | IntervalSchedule


def parse_schedule(expression: str, *, function: str) -> Schedule:
    """A schedule from a resolved expression: 6-field (or 5-field) NCRONTAB, or hh:mm:ss."""
    text = " ".join(expression.split())
    fields = len(text.split(" "))
    if fields in (5, 6):
        if not croniter.is_valid(text, second_at_beginning=fields == 6):
            raise HostConfigError(
                f"timer {function!r}: {expression!r} is not a valid NCRONTAB expression "
                "({second} {minute} {hour} {day} {month} {day-of-week})"
            )
        return CronSchedule(text)
    if fields == 1 and ":" in text:
        seconds = parse_timespan(text, field=f"timer {function!r} schedule")
        if seconds <= 0:
            raise HostConfigError(f"timer {function!r}: interval {expression!r} must be positive")
        return IntervalSchedule(timedelta(seconds=seconds))
    raise HostConfigError(
        f"timer {function!r}: schedule {expression!r} must be a 6-field NCRONTAB expression "
        "like '0 */5 * * * *' or a TimeSpan like 00:05:00"
    )


def monitor_by_default(schedule: Schedule, now: datetime) -> bool:
    """Whether the host keeps a schedule status: not when it fires more than once a minute."""
    first = schedule.next_after(now)
    return schedule.next_after(first) - first >= timedelta(minutes=1)
