"""Several workspaces: installing through OAuth stores the installation in Boeket's own database
(slack_sdk's stores on tables Alembic created), and the cycle posts with that workspace's token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

from adapters.slack.settings import SlackSettings
from bot.app import Boeket, build, web_app
from bot.clock import ManualClock
from bot.config import parse_config
from bot.domain import OccurrenceStatus, Step
from bot.embedders import LexicalEmbedder
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import OccurrenceRepository
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

ORG = "ziekenhuis-de-linde"


@pytest.fixture
async def multi(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[tuple[FakeSlack, TestClient[Any, Any], Boeket]]:
    fake = FakeSlack()
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for dept in data["departments"]:
        if dept["id"] == "ok":
            dept.update(platform="slack", channel="C0OK", workspace="T0TEST")
        if dept["id"] == "ict":
            dept.update(platform="slack", channel="C0ICT", workspace="T0ELSEWHERE")
    config = parse_config(data, Path("multi.yaml"))
    settings = Settings(
        database_url=db.url,
        worker_id="oauth-test",
        auto_migrate=True,
        slack=SlackSettings(
            signing_secret="s3cr3t",
            client_id="111.222",
            client_secret="shh",
            api_url=fake.api_url,
            pace_seconds=0,
        ),
    )
    boeket = build(
        settings, config, clock=clock, prompts=prompts, db=db, embedder=LexicalEmbedder()
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()
    try:
        yield fake, client, boeket
    finally:
        await client.close()
        await server.close()


async def test_install_stores_the_workspace_and_posts_use_its_token(
    multi: tuple[FakeSlack, TestClient[Any, Any], Boeket], clock: ManualClock
) -> None:
    fake, client, boeket = multi
    page = await client.get("/slack/install")
    assert page.status == 200
    html = await page.text()
    state = re.search(r"state=([\w-]+)", html)
    assert state, html
    assert "client_id=111.222" in html and "chat%3Awrite" in html.replace(":", "%3A")

    # The state cookie is Secure (Boeket runs behind https); the browser sends it back.
    cookie = page.cookies["slack-app-oauth-state"]
    assert cookie["secure"]
    headers = {"Cookie": f"slack-app-oauth-state={cookie.value}"}
    done = await client.get(f"/slack/oauth_redirect?code=c0de&state={state[1]}", headers=headers)
    assert done.status == 200, await done.text()
    [access] = fake.of("oauth.v2.access")
    assert access.args["code"] == "c0de"
    async with boeket.db.engine.connect() as conn:
        bots = (await conn.execute(sa.text("SELECT team_id, bot_token FROM slack_bots"))).all()
    assert bots == [("T0TEST", BOT_TOKEN)]

    # A replayed redirect (same state) installs nothing more.
    again = await client.get(f"/slack/oauth_redirect?code=c0de&state={state[1]}", headers=headers)
    assert again.status != 200 or "error" in (await again.text()).lower()
    assert len(fake.of("oauth.v2.access")) == 1

    clock.set(datetime(2027, 3, 1, 7, 0, tzinfo=UTC))  # OK's prompt; ICT's harvest of 1 March
    await boeket.cycle.tick()
    [post] = [c for c in fake.of("chat.postMessage") if c.args["channel"] == "C0OK"]
    assert post.token == BOT_TOKEN
    repo = OccurrenceRepository(boeket.db)
    ok = await repo.get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert ok is not None and ok.status is OccurrenceStatus.SENT

    clock.set(
        datetime(2027, 3, 7, 9, 30, tzinfo=UTC)
    )  # ICT's prompt: its workspace never installed
    await boeket.cycle.tick()
    ict = await repo.get(ORG, "ict", Step.PROMPT, date(2027, 3, 8))
    assert ict is not None and ict.status is OccurrenceStatus.FAILED
    assert not [c for c in fake.of("chat.postMessage") if c.args["channel"] == "C0ICT"]


async def test_migrated_tables_match_slack_sdks_stores(db: Database) -> None:
    """Our migration writes slack_sdk's tables out; they must stay what its stores expect."""
    expected = sa.MetaData()
    SQLAlchemyInstallationStore.build_installations_table(expected, "slack_installations")
    SQLAlchemyInstallationStore.build_bots_table(expected, "slack_bots")
    SQLAlchemyOAuthStateStore.build_oauth_states_table(expected, "slack_oauth_states")

    def columns(conn: sa.Connection) -> dict[str, dict[str, tuple[str, bool]]]:
        inspector = sa.inspect(conn)
        return {
            table: {
                c["name"]: (type(c["type"]).__name__.upper(), c["nullable"])
                for c in inspector.get_columns(table)
            }
            for table in expected.tables
        }

    async with db.engine.connect() as conn:
        actual = await conn.run_sync(columns)
    for name, table in expected.tables.items():
        wanted = {c.name for c in table.columns}
        assert set(actual[name]) == wanted, name
        for column in table.columns:
            nullable = actual[name][column.name][1]
            assert nullable == (column.nullable and not column.primary_key), (name, column.name)
