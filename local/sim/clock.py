"""The simulator's virtual clock: runs `speed` times faster than the wall and can jump forward.

It publishes itself in a clock file (`product_at`, `wall_at`, `speed`) so that the product and
the local host read the same time through `shared/clock.py`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path


class SimClock:
    def __init__(self, start: datetime, speed: float, publish_to: Path | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("clock start must carry a time zone, e.g. 2026-01-01T00:00:00Z")
        if speed <= 0:
            raise ValueError("clock speed must be > 0")
        self._anchor_sim = start
        self._anchor_wall = time.time()
        self.speed = speed
        self.publish_to = publish_to
        self._publish()

    def now(self) -> datetime:
        return self._anchor_sim + timedelta(seconds=(time.time() - self._anchor_wall) * self.speed)

    def advance(self, seconds: float) -> datetime:
        """Jump forward; whatever falls due in between happens at the next settle."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._anchor_sim = self.now() + timedelta(seconds=seconds)
        self._anchor_wall = time.time()
        self._publish()
        return self._anchor_sim

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be > 0")
        self._anchor_sim, self._anchor_wall, self.speed = self.now(), time.time(), speed
        self._publish()

    def real_seconds(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds / self.speed)

    def _publish(self) -> None:
        if self.publish_to is None:
            return
        tmp = self.publish_to.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "product_at": self._anchor_sim.isoformat(),
                    "wall_at": self._anchor_wall,
                    "speed": self.speed,
                }
            )
        )
        os.replace(tmp, self.publish_to)
