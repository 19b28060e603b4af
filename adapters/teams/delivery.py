"""Pacing and retrying calls to the Bot Connector: the Agents SDK does neither.

Teams allows a bot about 7 messages a second per conversation and 60 in 30 seconds; a token
bucket per conversation keeps Boeket inside that. A refused call (429, 412) or a gateway error
(502, 504) raises `aiohttp.ClientResponseError` after one attempt; `retry_delay` says how long to
wait before the next: `Retry-After` when Teams sends it, else exponential backoff with jitter.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

RETRYABLE = frozenset({412, 429, 502, 504})
MAX_RETRY_AFTER = 60.0


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


def take(bucket: Bucket, now: float, *, capacity: int, rate: float) -> float:
    """Take one token from `bucket` at `now`; return how long to wait before sending.

    A wait reserves its token (the count goes below zero), so callers queued behind it wait their
    turn instead of all waking at once.
    """
    bucket.tokens = min(float(capacity), bucket.tokens + (now - bucket.updated) * rate)
    bucket.updated = now
    bucket.tokens -= 1.0
    return 0.0 if bucket.tokens >= 0 else -bucket.tokens / rate


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
    """One token bucket per conversation."""

    def __init__(self, *, capacity: int, rate: float) -> None:
        self._capacity = capacity
        self._rate = rate
        self._buckets: dict[str, Bucket] = {}
        self._lock = asyncio.Lock()

    async def wait(self, conversation: str) -> None:
        if self._rate <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            bucket = self._buckets.setdefault(conversation, Bucket(float(self._capacity), now))
            delay = take(bucket, now, capacity=self._capacity, rate=self._rate)
            if len(self._buckets) > 10_000:  # forget idle conversations
                full = [k for k, b in self._buckets.items() if b.tokens >= self._capacity]
                for key in full[:5_000]:
                    del self._buckets[key]
        if delay > 0:
            await asyncio.sleep(delay)


async def with_retries[T](
    call: Callable[[], Awaitable[T]],
    *,
    status_of: Callable[[BaseException], tuple[int, Mapping[str, str] | None] | None],
    attempts: int,
    base: float,
    before: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Run `call`, again after a retryable failure, at most `attempts` times in all."""
    for attempt in range(attempts):
        if before is not None:
            await before()
        try:
            return await call()
        except Exception as exc:
            found = status_of(exc)
            if found is None or found[0] not in RETRYABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(retry_delay(attempt, found[1], base=base))
    raise AssertionError("unreachable")  # pragma: no cover
