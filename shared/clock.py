"""The one clock seam: product time, and how a delay in product time becomes a real wait.

Flows and the local host read time here; pure decisions are given `now` by their caller.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

CLOCK_FILE_SETTING = "POOLKEEPER_CLOCK_FILE"
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600  # Azure Storage queues: visibility timeout at most 7 days


class ClockError(ValueError):
    """The clock file named by POOLKEEPER_CLOCK_FILE is missing or malformed."""


class Clock(Protocol):
    def now(self) -> datetime: ...

    def real_seconds(self, delay: timedelta) -> float: ...


class SystemClock:
    """Wall-clock time in UTC; a product delay is the same real delay."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds(self, delay: timedelta) -> float:
        return max(0.0, delay.total_seconds())


@dataclass(frozen=True)
class ScaledTime:
    """Product time that was `product_at` at wall time `wall_at` and runs `speed` times faster."""

    product_at: datetime
    wall_at: float
    speed: float

    def now(self, wall: float) -> datetime:
        return self.product_at + timedelta(seconds=(wall - self.wall_at) * self.speed)

    def real_seconds(self, delay: timedelta) -> float:
        return max(0.0, delay.total_seconds() / self.speed)


class FileClock:
    """Accelerated product time published by the local simulator in a small JSON file.

    The simulator rewrites the file when its clock jumps or changes speed; reading it again
    only when its mtime changes keeps `now()` cheap.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._time: ScaledTime | None = None

    def _current(self) -> ScaledTime:
        try:
            # The writer replaces the file (new inode) each time: two publishes within one
            # mtime tick must still be seen.
            info = os.stat(self._path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError as error:
            raise ClockError(f"clock file {self._path} is unreadable: {error}") from error
        if stamp != self._stamp or self._time is None:
            self._time = read_clock_file(self._path)
            self._stamp = stamp
        return self._time

    def now(self) -> datetime:
        return self._current().now(time.time())

    def real_seconds(self, delay: timedelta) -> float:
        return self._current().real_seconds(delay)


def read_clock_file(path: Path) -> ScaledTime:
    """Parse a clock file: {"product_at": ISO-8601, "wall_at": unix seconds, "speed": > 0}."""
    try:
        data = json.loads(path.read_text())
        product_at = datetime.fromisoformat(data["product_at"])
        speed = float(data["speed"])
        wall_at = float(data["wall_at"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClockError(f"clock file {path} is unreadable: {error}") from error
    if product_at.tzinfo is None or not math.isfinite(speed) or speed <= 0:
        raise ClockError(f"clock file {path} needs a timezone-aware product_at and a speed > 0")
    return ScaledTime(product_at=product_at, wall_at=wall_at, speed=speed)


def write_clock_file(path: Path, scaled: ScaledTime) -> None:
    """Publish product time atomically, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "product_at": scaled.product_at.isoformat(),
                "wall_at": scaled.wall_at,
                "speed": scaled.speed,
            }
        )
    )
    os.replace(tmp, path)


def visibility_timeout(clock: Clock, delay: timedelta) -> int:
    """A product-time delay as a queue visibility timeout: whole seconds, rounded up, at most 7
    days. Rounding up keeps a short delay at a high clock speed from becoming "now"."""
    return min(MAX_VISIBILITY_SECONDS, math.ceil(clock.real_seconds(delay)))


def product_delay(clock: Clock, wall_seconds: float) -> timedelta:
    """The product-time delay that lasts `wall_seconds` of real time (e.g. Azure's Retry-After)."""
    per_product_second = clock.real_seconds(timedelta(seconds=1))
    return timedelta(seconds=wall_seconds / per_product_second if per_product_second else 0)


def clock_from_settings(settings: Mapping[str, str]) -> Clock:
    """The wall clock, or the simulator's clock when `POOLKEEPER_CLOCK_FILE` names one."""
    path = settings.get(CLOCK_FILE_SETTING)
    if not path:
        return SystemClock()
    clock = FileClock(Path(path))
    clock.now()  # fail at start-up, not at the first timer, when the file is wrong
    return clock
