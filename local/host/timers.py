"""Timer triggers on product time, with the host's schedule monitor for past-due runs.

The schedule status lives where the Functions host keeps it (blob container `azure-webjobs-hosts`,
`timers/<hostId>/Host.Functions.<name>/status`), so a host that was down catches up once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.functions.timer import TimerRequest

from local.host.functions import HostedFunction
from local.host.schedule import Schedule, monitor_by_default
from shared.adapters.storage import StorageAccount
from shared.clock import Clock

log = logging.getLogger("Host.Timers")

CONTAINER = "azure-webjobs-hosts"
NEVER = "0001-01-01T00:00:00"
MAX_SLEEP = 0.5  # re-read the clock at least this often: the simulator's clock can jump


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# A status write must never hold up the schedule for long: one attempt, short timeouts.
STORE_OPTIONS: dict[str, Any] = {"connection_timeout": 2, "read_timeout": 2, "retry_total": 0}


@dataclass
class StatusStore:
    """Reads and writes one timer's schedule status blob; storage trouble never stops a timer."""

    account: StorageAccount
    blob_name: str

    def _client(self) -> Any:
        service = self.account.blob_service(**STORE_OPTIONS)
        return service.get_blob_client(CONTAINER, self.blob_name)

    def read(self) -> dict[str, str] | None:
        """The stored status, or None when there is none or it cannot be read (as the host's
        GetSafeStatusAsync: the timer then runs as if it had no history)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data = json.loads(self._client().download_blob().readall())
            return {key: data[key] for key in ("Last", "Next", "LastUpdated")}
        except ResourceNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - logged; a timer must keep its schedule
            log.warning("Reading timer status %s failed: %s", self.blob_name, error)
            return None

    def write(self, status: dict[str, str]) -> None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        try:
            try:
                self._client().upload_blob(json.dumps(status), overwrite=True)
            except ResourceNotFoundError:  # the container, on first use: create it, write again
                with contextlib.suppress(ResourceExistsError):
                    self.account.blob_service(**STORE_OPTIONS).create_container(CONTAINER)
                self._client().upload_blob(json.dumps(status), overwrite=True)
        except Exception as error:  # noqa: BLE001 - logged; a timer must keep its schedule
            log.warning("Writing timer status %s failed: %s", self.blob_name, error)


def past_due(schedule: Schedule, status: dict[str, str] | None, now: datetime) -> bool:
    """The host's CheckPastDueAsync: the recorded next run has passed, and the schedule is the
    one that recorded it (a changed schedule, whose Next is not what Last implies, is not)."""
    if status is None:
        return False
    recorded = datetime.fromisoformat(status["Next"])
    basis = next(
        (
            datetime.fromisoformat(status[key])
            for key in ("Last", "LastUpdated")
            if status.get(key) and status[key] != NEVER
        ),
        None,
    )
    if basis is not None and schedule.next_after(basis) != recorded:
        return False
    return now > recorded


class TimerRunner:
    """Fires one timer function on its schedule until stopped."""

    def __init__(
        self,
        function: HostedFunction,
        schedule: Schedule,
        *,
        clock: Clock,
        account: StorageAccount,
        host_id: str,
        timeout: float | None,
    ) -> None:
        self.function = function
        self.schedule = schedule
        self.clock = clock
        self.timeout = timeout
        use_monitor = function.trigger.use_monitor
        self.store = (
            StatusStore(account, f"timers/{host_id}/Host.Functions.{function.name}/status")
            if (monitor_by_default(schedule, clock.now()) if use_monitor is None else use_monitor)
            else None
        )

    async def _fire(self, *, past_due: bool, status: dict[str, str] | None, reason: str) -> None:
        request = TimerRequest(
            past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True}
        )
        # A failed run is logged by invoke; the host keeps the schedule going.
        with contextlib.suppress(Exception):
            await self.function.invoke(request, reason=reason, timeout=self.timeout)

    async def _record(self, last: str, upcoming: datetime) -> dict[str, str] | None:
        if self.store is None:
            return None
        status = {"Last": last, "Next": _iso(upcoming), "LastUpdated": _iso(self.clock.now())}
        await asyncio.to_thread(self.store.write, status)
        return status

    async def _sleep_until(self, moment: datetime) -> None:
        while (now := self.clock.now()) < moment:
            await asyncio.sleep(min(MAX_SLEEP, self.clock.real_seconds(moment - now)))

    async def run(self) -> None:
        """Past-due catch-up or run-on-startup first, then every occurrence of the schedule."""
        now = self.clock.now()
        status = await asyncio.to_thread(self.store.read) if self.store else None
        if past_due(self.schedule, status, now):
            assert status is not None
            log.info(
                "Timer 'Functions.%s' is past due (was due %s)", self.function.name, status["Next"]
            )
            await self._fire(past_due=True, status=status, reason="Timer fired late (past due)")
            status = await self._record(_iso(now), self.schedule.next_after(self.clock.now()))
        else:
            if self.store is not None and (
                status is None or datetime.fromisoformat(status["Next"]) <= now
            ):
                # No history, or a changed schedule: record the next run from now, not past due.
                last = status["Last"] if status else NEVER
                status = await self._record(last, self.schedule.next_after(now))
            if self.function.trigger.run_on_startup:
                await self._fire(past_due=False, status=status, reason="RunOnStartup")
                status = await self._record(_iso(now), self.schedule.next_after(self.clock.now()))
        upcoming = self.schedule.next_after(self.clock.now())
        while True:
            log.info("Timer 'Functions.%s' next occurrence %s", self.function.name, _iso(upcoming))
            await self._sleep_until(upcoming)
            await self._fire(
                past_due=False, status=status, reason=f"Timer fired at {_iso(self.clock.now())}"
            )
            # Occurrences missed while the function ran are skipped, as the host does.
            fired, upcoming = upcoming, self.schedule.next_after(max(upcoming, self.clock.now()))
            status = await self._record(_iso(fired), upcoming)
