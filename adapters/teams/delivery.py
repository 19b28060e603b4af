"""Pacing and retrying calls to the Bot Connector: the Agents SDK does neither.

Teams allows a bot, per conversation, 7 messages a second, 8 in 2 seconds, 60 in 30 seconds and
1800 an hour. `Pacer` keeps the send times of each conversation and lets a message go only when
every one of those windows has room — a sliding window, exact, where a token bucket lets up to
twice its size through in one period. A refused call (429, 412) or a gateway error (502, 504)
raises `aiohttp.ClientResponseError` after one attempt; `retry_delay` says how long to wait
before the next: `Retry-After` when Teams sends it, else exponential backoff with jitter.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from bot.observability import note_rate_limited

RETRYABLE = frozenset({412, 429, 502, 504})
MAX_RETRY_AFTER = 60.0


def next_slot(sent: deque[float], now: float, limits: Sequence[tuple[int, float]]) -> float:
    """The earliest moment at or after `now` when one more message fits every (n, seconds) limit.

    `sent` holds the moments of earlier messages (and reserved slots) in order; the slot found is
    appended, so a caller queued behind it gets the next one. Moments older than the longest
    window are dropped.
    """
    longest = max((seconds for _, seconds in limits), default=0.0)
    while sent and sent[0] <= now - longest:
        sent.popleft()
    slot = max(now, sent[-1]) if sent else now
    moved = True
    while moved:
        moved = False
        for count, seconds in limits:
            if len(sent) < count:
                continue
            # The count-th latest message must be a full window before the new one.
            earliest = sent[-count] + seconds
            if earliest > slot:
                slot = earliest
                moved = True
    sent.append(slot)
    return slot


def retry_delay(
    attempt: int, headers: Mapping[str, str] | None, *, base: float, jitter: float | None = None
) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based).

    `Retry-After` (seconds) wins, capped at a minute; otherwise `base * 2**attempt`, scaled by a
    random factor between 0.5 and 1 so several senders do not retry in step.
    """
    raw = (headers or {}).get("Retry-After", "")
    try:
        after = float(raw)
    except ValueError:
        after = -1.0
    if after >= 0:
        return min(after, MAX_RETRY_AFTER)
    factor = 0.5 + (secrets.randbelow(1000) / 2000 if jitter is None else jitter / 2)
    return base * (2.0**attempt) * factor


class Pacer:
    """The send times of each conversation, and a wait until the next message may go."""

    def __init__(
        self,
        limits: Sequence[tuple[int, float]],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limits = tuple(limits)
        self._longest = max((seconds for _, seconds in self._limits), default=0.0)
        self._monotonic = monotonic
        self._sleep = sleep
        self._sent: dict[str, deque[float]] = {}

    async def wait(self, conversation: str) -> None:
        if not self._limits:
            return
        now = self._monotonic()
        # No await between reading and reserving: one event loop, so no lock is needed.
        slot = next_slot(self._sent.setdefault(conversation, deque()), now, self._limits)
        if len(self._sent) > 10_000:  # forget conversations quiet for a whole window
            idle = [k for k, d in self._sent.items() if not d or d[-1] <= now - self._longest]
            for key in idle:
                del self._sent[key]
        if slot > now:
            await self._sleep(slot - now)


async def with_retries[T](
    call: Callable[[], Awaitable[T]],
    *,
    status_of: Callable[[BaseException], tuple[int, Mapping[str, str] | None] | None],
    attempts: int,
    base: float,
    before: Callable[[], Awaitable[None]] | None = None,
    retryable: Collection[int] = RETRYABLE,
) -> T:
    """Run `call`, again after a failure with a `retryable` status, at most `attempts` times."""
    for attempt in range(attempts):
        if before is not None:
            await before()
        try:
            return await call()
        except Exception as exc:
            found = status_of(exc)
            if found is not None and found[0] == 429:
                note_rate_limited("teams")
            if found is None or found[0] not in retryable or attempt == attempts - 1:
                raise
            await asyncio.sleep(retry_delay(attempt, found[1], base=base))
    raise AssertionError("unreachable")  # pragma: no cover
