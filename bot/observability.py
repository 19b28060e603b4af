"""What an admin sees of a running Boeket: `/metrics`, `/ready`, request ids and JSON logs.

- `GET /metrics` in Prometheus' text format. Counts of what Boeket did (prompts posted, answers,
  shares, cross-posts, digests) are read from the shared database when scraped, so every replica
  reports the same truth; request latency, rate-limited calls (429) and the in-process queue are per
  process.
- `GET /health` (liveness, in `bot.app`) and `GET /ready` (readiness: the database answers and every
  adapter has started).
- Every request gets an id (a caller's `X-Request-Id` when it is sane, else a new one), echoed in
  the response and added to every log line written while handling it. `BOEKET_LOG_FORMAT=json`
  writes one JSON object per line for log collectors.
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from bot.domain import OccurrenceStatus, Source, Step
from storage.tables import ContributionRow, CrosspostRow, DigestRow, OccurrenceRow

if TYPE_CHECKING:
    from bot.app import Boeket

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


# Platform calls answered with 429, per platform, in this process. Adapters call
# `note_rate_limited`; every Metrics registry reports the same process-wide counts.
_rate_limited: collections.Counter[str] = collections.Counter()


def note_rate_limited(platform: str) -> None:
    """An adapter's call was answered with 429 (it will be retried after Retry-After)."""
    _rate_limited[platform] += 1


class _RateLimitedCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "boeket_rate_limited",
            "Platform calls answered with 429 (Too Many Requests), by platform.",
            labels=["platform"],
        )
        for platform in sorted({"slack", "teams", *_rate_limited}):
            family.add_metric([platform], _rate_limited[platform])
        yield family


class Metrics:
    """One registry per Boeket (tests run many in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram(
            "boeket_request_seconds",
            "HTTP request latency, by route and status class.",
            ["route", "method", "status"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        r.register(_RateLimitedCollector())
        self.prompts = Gauge(
            "boeket_prompts_posted", "Prompts posted, all time (database).", registry=r
        )
        self.steps = Gauge(
            "boeket_cycle_steps",
            "Cycle steps by step and status (database).",
            ["step", "status"],
            registry=r,
        )
        self.contributions = Gauge(
            "boeket_contributions",
            "Contributions by source: reply, form (answers), share, translation (database).",
            ["source"],
            registry=r,
        )
        self.crossposts = Gauge(
            "boeket_crossposts", "Suggested lessons by status (database).", ["status"], registry=r
        )
        self.digests = Gauge(
            "boeket_digests", "Weekly digests by status (database).", ["status"], registry=r
        )
        self.queue = Gauge(
            "boeket_queue_depth",
            "Work waiting: due cycle steps and suggestions (database), background tasks (process).",
            ["queue"],
            registry=r,
        )

    async def refresh(self, boeket: Boeket) -> None:
        """Read the shared counts from the database; one query per table."""
        org = boeket.config.organisation.id
        now = boeket.clock.now()
        async with boeket.db.sessions() as session:
            steps = (
                await session.execute(
                    select(OccurrenceRow.step, OccurrenceRow.status, func.count())
                    .where(OccurrenceRow.organisation_id == org)
                    .group_by(OccurrenceRow.step, OccurrenceRow.status)
                )
            ).all()
            sources = (
                await session.execute(
                    select(ContributionRow.source, func.count())
                    .where(ContributionRow.organisation_id == org)
                    .group_by(ContributionRow.source)
                )
            ).all()
            posts = (
                await session.execute(
                    select(CrosspostRow.status, func.count())
                    .where(CrosspostRow.organisation_id == org)
                    .group_by(CrosspostRow.status)
                )
            ).all()
            digests = (
                await session.execute(
                    select(DigestRow.status, func.count())
                    .where(DigestRow.organisation_id == org)
                    .group_by(DigestRow.status)
                )
            ).all()
            due_steps = await session.scalar(
                select(func.count()).where(
                    OccurrenceRow.organisation_id == org,
                    OccurrenceRow.status == OccurrenceStatus.PENDING.value,
                    OccurrenceRow.due_at <= now,
                )
            )
            due_posts = await session.scalar(
                select(func.count()).where(
                    CrosspostRow.organisation_id == org,
                    CrosspostRow.status == OccurrenceStatus.PENDING.value,
                    CrosspostRow.due_at <= now,
                )
            )
        sent_prompts = 0
        for step, status, count in steps:
            self.steps.labels(step, status).set(count)
            if step == Step.PROMPT.value and status == OccurrenceStatus.SENT.value:
                sent_prompts = count
        self.prompts.set(sent_prompts)
        for source in Source:
            self.contributions.labels(source.value).set(0)
        for source, count in sources:
            self.contributions.labels(source).set(count)
        for status, count in posts:
            self.crossposts.labels(status).set(count)
        for status, count in digests:
            self.digests.labels(status).set(count)
        self.queue.labels("cycle").set(due_steps or 0)
        self.queue.labels("crossposts").set(due_posts or 0)
        self.queue.labels("background").set(len(boeket.background))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def middleware(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Request id in, request id out, latency measured; an error never shows a stack trace."""

    @web.middleware
    async def observe(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                status = exc.status
                exc.headers["X-Request-Id"] = rid
                raise
            except Exception:
                logging.getLogger("bot.http").exception(
                    "%s %s failed", request.method, request.path
                )
                response = web.json_response(
                    {"error": "internal error", "request_id": rid}, status=500
                )
            status = response.status
            if not response.prepared:
                response.headers["X-Request-Id"] = rid
            return response
        finally:
            metrics.requests.labels(_route(request), request.method, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )
            request_id.reset(token)

    return observe


async def metrics_handler(request: web.Request) -> web.Response:
    from bot.app import BOEKET

    boeket = request.app[BOEKET]
    await boeket.metrics.refresh(boeket)
    return web.Response(body=boeket.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def ready_handler(request: web.Request) -> web.Response:
    from bot.app import BOEKET

    boeket = request.app[BOEKET]
    checks: dict[str, str] = {}
    try:
        await boeket.db.ping()
        checks["database"] = "ok"
    except Exception as exc:  # reported, not raised: this is the answer
        logging.getLogger(__name__).warning("readiness: database unreachable: %s", exc)
        checks["database"] = "unreachable"
    for name in boeket.adapters:
        checks[name] = "ok" if boeket.started else "starting"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
