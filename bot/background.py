"""Work that follows a request but must not hold up its answer (embedding, crossposting).

Nothing here may be the only copy of anything: what matters is in the database before the task
starts, and what a lost task would have done is redone at start (contributions without a vector are
embedded by `Matcher.load`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

# Works running at once; the rest wait their turn. A burst of contributions would otherwise start
# as many embeddings and database round trips at once, and the requests still being answered
# (on SQLite: behind the same single connection) would queue behind all of them.
LIMIT = 4


class Background:
    def __init__(self, *, limit: int = LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(limit)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(self._run(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            async with self._slots:
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
