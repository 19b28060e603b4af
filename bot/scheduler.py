"""The per-replica timer that drives the learning cycle.

APScheduler 3 cannot share a job store between processes, so it is used only as a local timer:
every tick asks the cycle engine what is due, and the database claim decides who posts it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


def tick_interval(tick_seconds: float, speed: float) -> float:
    """Real seconds between ticks: with a fast clock, tick often enough to keep up."""
    return max(0.2, min(tick_seconds, 60.0 / speed))


class Ticker:
    """Calls `tick` every `interval` seconds; a slow tick is never run twice at once."""

    def __init__(self, tick: Callable[[], Awaitable[object]], interval: float) -> None:
        self._tick = tick
        self._interval = interval
        self._scheduler = AsyncIOScheduler()

    async def _run(self) -> None:
        try:
            await self._tick()
        except Exception:
            log.exception("cycle tick failed; the next tick tries again")

    def start(self) -> None:
        self._scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=self._interval),
            id="cycle-tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.start()
        log.info("cycle timer started: a tick every %.1f s", self._interval)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
