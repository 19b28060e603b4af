"""Shared fixtures: databases on SQLite and PostgreSQL, the example config, a running Boeket."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from bot.app import Boeket, build
from bot.clock import ManualClock
from bot.config import OrgConfig, load_config
from bot.embedders import Embedder, best_available
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
POSTGRES_URL = os.environ.get(
    "BOEKET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


async def _postgres_problem() -> str | None:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(POSTGRES_URL), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc})"
    await conn.close()
    return None


def need_postgres(problem: str | None) -> None:
    """Skip on a laptop without PostgreSQL; fail under CI=true, where it must be there."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{problem}; CI=true requires it (.ci/run starts it)")
    pytest.skip(f"{problem}; set BOEKET_TEST_POSTGRES_URL or start PostgreSQL to run this test")


class PostgresSchema:
    """A fresh schema per test, dropped afterwards, so tests never see each other's rows."""

    def __init__(self) -> None:
        self.name = f"boeket_test_{secrets.token_hex(4)}"

    async def create(self) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'CREATE SCHEMA "{self.name}"')
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseFactory]:
    """Opens any number of connections (engines) to one fresh, migrated database."""
    schema: PostgresSchema | None = None
    if request.param == "sqlite":
        factory = DatabaseFactory(f"sqlite:///{tmp_path / 'boeket.sqlite3'}", None)
    else:
        need_postgres(await _postgres_problem())
        schema = PostgresSchema()
        await schema.create()
        factory = DatabaseFactory(POSTGRES_URL, schema.name)
    first = factory.open()
    await first.upgrade()
    try:
        yield factory
    finally:
        await factory.close_all()
        if schema is not None:
            await schema.drop()


class DatabaseFactory:
    def __init__(self, url: str, schema: str | None) -> None:
        self.url = url
        self.schema = schema
        self._opened: list[Database] = []

    def open(self) -> Database:
        db = Database.connect(self.url, schema=self.schema)
        self._opened.append(db)
        return db

    async def close_all(self) -> None:
        for db in self._opened:
            await db.dispose()


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    return database_factory.open()


@pytest.fixture(scope="session")
def default_embedder() -> Embedder:
    """This installation's best embedder, loaded once: a model takes seconds to load."""
    return best_available()


@pytest.fixture(scope="session")
def prompts() -> PromptLibrary:
    return PromptLibrary.load()


@pytest.fixture(scope="session")
def example_config() -> OrgConfig:
    return load_config(EXAMPLE_CONFIG)


# A Monday, before the example hospital's first meetings of the week.
START = datetime(2027, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def boeket(
    db: Database,
    example_config: OrgConfig,
    prompts: PromptLibrary,
    clock: ManualClock,
    default_embedder: Embedder,
) -> AsyncIterator[Boeket]:
    """The example hospital on the local adapter, without the timer: tests drive `cycle.tick`."""
    app = build(
        Settings(database_url=db.url, worker_id="test", auto_migrate=False),
        example_config,
        clock=clock,
        prompts=prompts,
        db=db,
        embedder=default_embedder,
    )
    await app.start(timer=False)
    try:
        yield app
    finally:
        await app.stop()  # background work drained, adapters stopped, connections closed
