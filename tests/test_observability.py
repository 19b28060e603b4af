"""What an admin sees: /metrics in Prometheus' format, /ready, request ids, JSON logs, and errors
that never show a stack trace to the caller."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.app import BOEKET, Boeket, build, web_app
from bot.clock import ManualClock
from bot.config import OrgConfig
from bot.contributions import SHARE_FORM
from bot.embedders import LexicalEmbedder
from bot.messages import FormDone, ShowForm
from bot.observability import (
    JsonFormatter,
    Metrics,
    RequestIdFilter,
    middleware,
    note_rate_limited,
)
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.db import Database

# Monday 1 March 2027, 10:00 in Amsterdam: the Operatiekamer's prompt for Tuesday is out.
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
ADMIN = "observability-admin-token"


@pytest.fixture
async def client(
    db: Database, prompts: PromptLibrary, example_config: OrgConfig
) -> AsyncIterator[TestClient[Any, Any]]:
    app = web_app(
        build(
            Settings(database_url=db.url, worker_id="obs", auto_migrate=False, admin_token=ADMIN),
            example_config,
            clock=ManualClock(NOW),
            prompts=prompts,
            db=db,
            embedder=LexicalEmbedder(),
        ),
        timer=False,
    )
    c: TestClient[Any, Any] = TestClient(TestServer(app))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_what_boeket_did(client: TestClient[Any, Any]) -> None:
    assert client.app is not None
    boeket: Boeket = client.app[BOEKET]
    await boeket.cycle.tick()
    form = await boeket.local.say("fatima", "operatiekamer", "/deel")
    assert isinstance(form, ShowForm)
    done = await boeket.local.submit(
        "fatima",
        "operatiekamer",
        SHARE_FORM,
        {"what": "Een huddle van vijf minuten elke ochtend.", "preconditions": "Iedereen op tijd."},
        meta=form.form.meta,
    )
    assert isinstance(done, FormDone), done
    await boeket.background.drain()
    before = samples((await (await client.get("/metrics")).read()).decode())
    note_rate_limited("slack")
    async with client.get("/health") as r:
        assert r.status == 200
    async with client.get("/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        found = samples(await r.text())
    assert found[("boeket_prompts_posted", ())] >= 1
    assert found[("boeket_contributions", (("source", "share"),))] == 1
    assert found[("boeket_contributions", (("source", "reply"),))] == 0
    slack_429 = ("boeket_rate_limited_total", (("platform", "slack"),))
    assert found[slack_429] == before[slack_429] + 1
    assert ("boeket_queue_depth", (("queue", "background"),)) in found
    health = (
        "boeket_request_seconds_count",
        (("method", "GET"), ("route", "/health"), ("status", "2xx")),
    )
    assert found[health] == 1


async def test_ready_checks_the_database_and_adapters(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client.get("/ready") as r:
        assert r.status == 200
        body = await r.json()
    assert body == {"status": "ready", "checks": {"database": "ok", "local": "ok"}}

    async def down(self: Database) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(Database, "ping", down)
    async with client.get("/ready") as r:
        assert r.status == 503
        assert (await r.json())["checks"]["database"] == "unreachable"
    async with client.get("/health") as r:
        assert r.status == 503


async def test_request_ids_are_echoed_and_in_every_log_line(
    client: TestClient[Any, Any],
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        async with client.post(
            "/dashboard/login", data={"token": "wrong"}, headers={"X-Request-Id": "abc-123"}
        ) as r:
            assert r.status == 401
            assert r.headers["X-Request-Id"] == "abc-123"
        async with client.get("/health", headers={"X-Request-Id": "<script>"}) as r:
            generated = r.headers["X-Request-Id"]
            assert generated != "<script>" and len(generated) == 32
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = [x for x in lines if "wrong admin token" in x["message"]]
    assert refused and refused[0]["request_id"] == "abc-123"
    assert refused[0]["level"] == "WARNING" and refused[0]["logger"] == "bot.dashboard"


async def test_an_error_answers_without_a_stack_trace() -> None:
    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("secret detail of the failure")

    app = web.Application(middlewares=[middleware(Metrics())])
    app.router.add_get("/broken", broken)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        async with client.get("/broken", headers={"X-Request-Id": "req-9"}) as r:
            assert r.status == 500
            body = await r.json()
        assert body == {"error": "internal error", "request_id": "req-9"}
        assert "secret detail" not in json.dumps(body) and "Traceback" not in json.dumps(body)
        async with client.get("/nowhere") as r:
            assert r.status == 404 and "X-Request-Id" in r.headers
    finally:
        await client.close()
