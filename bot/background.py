"""Work that follows a request but must not hold up its answer (embedding, crossposting).

Nothing here may be the only copy of anything: what matters is in the database before the task
starts, and what a lost task would have done is redone at start (contributions without a vector are
embedded by `Matcher.load`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# Works running at once; the rest wait their turn. A burst of contributions would otherwise start
# as many embeddings and database round trips at once, and the requests still being answered
# (on SQLite: behind the same single connection) would queue behind all of them.
LIMIT = 4

# How long work after an answer waits, at most, for a moment without requests being answered.
# Slack's trigger for opening a modal lasts 3 s, so the modal after `/deel` must not wait long.
PATIENCE = 1.0
# How long without any request counts as a quiet moment. Between the requests of a burst there
# are gaps of a fraction of a millisecond; at a steady 40 requests a second, of about 20 ms, in
# which the work should go on (50 ms held it back for its whole patience at such a rate).
CALM = 0.005


class InFlight:
    """The requests being answered right now, so that work after an answer can let them go first.

    One event loop serves both the requests (Slack wants its answer within 3 s, Teams within 15)
    and the work that follows them (storing, embedding, crossposting, opening a modal). Started
    as soon as its request is answered, that work would share the loop with the next requests of
    a burst and slow every answer; `quiet` makes it wait until no request is being answered, or
    `patience` seconds at most, so under a steady stream it still goes on, only later. A quiet
    moment is `calm` seconds without a request.
    Long-lived connections (the local chat's WebSocket) are not requests being answered.
    """

    def __init__(self, *, patience: float = PATIENCE, calm: float = CALM) -> None:
        if patience < 0 or calm < 0:
            raise ValueError(f"patience and calm must not be negative, got {patience}, {calm}")
        self.patience = patience
        self.calm = calm
        self._count = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return self._count

    def started(self) -> None:
        self._count += 1
        self._quiet.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def finished(self) -> None:
        self._count = max(0, self._count - 1)
        if self._count == 0 and self._timer is None:
            # Quiet once no request has come in for `calm` seconds: between the requests of a
            # burst there are moments with none, which are not the end of it.
            self._timer = asyncio.get_running_loop().call_later(self.calm, self._calmed)

    def _calmed(self) -> None:
        self._timer = None
        if self._count == 0:
            self._quiet.set()

    async def quiet(self, since: float) -> None:
        """Return once no request has been answered for a moment, or `patience` seconds after
        `since` (a `time.monotonic()` reading: when the work was queued)."""
        left = since + self.patience - time.monotonic()
        if self._quiet.is_set() or left <= 0:
            return
        try:
            async with asyncio.timeout(left):
                await self._quiet.wait()
        except TimeoutError:
            pass

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Counts every request of the aiohttp application while it is being answered."""

        @web.middleware
        async def answering(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await handler(request)
            self.started()
            try:
                return await handler(request)
            finally:
                self.finished()

        return answering


class Background:
    def __init__(self, *, limit: int = LIMIT, in_flight: InFlight | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(limit)
        self._in_flight = in_flight

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(self._run(work, name, time.monotonic()), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Coroutine[Any, Any, Any], name: str, queued: float) -> None:
        try:
            async with self._slots:
                if self._in_flight is not None:  # on getting a turn, as the Slack adapter does
                    await self._in_flight.quiet(queued)
                await work
        except asyncio.CancelledError:
            work.close()  # cancelled while waiting its turn: it never started
            raise
        except Exception:
            log.exception("background work %s failed", name)

    async def drain(self) -> None:
        """Wait for everything spawned so far (and what it spawns)."""
        while self._tasks:
            tasks = list(self._tasks)
            await asyncio.gather(*tasks)
            # Remove them here: their done-callbacks may not have run yet, and awaiting
            # finished tasks again would never yield to the loop.
            self._tasks.difference_update(tasks)

    def __len__(self) -> int:
        return len(self._tasks)
