"""The database: engine set-up for SQLite (default) and PostgreSQL, migrations, health check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DatabaseUrlError(ValueError):
    """The database URL names no backend Boeket supports."""


def normalise_url(url: str) -> str:
    """Pick the async driver: ``sqlite:///x`` → aiosqlite, ``postgresql://`` → asyncpg."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(str(exc)) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise DatabaseUrlError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and transactions that SQLAlchemy (not pysqlite) begins.

    synchronous=NORMAL, as SQLite advises for WAL: a commit is written to the WAL file but not
    flushed to the disk (a flush took 4-9 ms here, on every write). A killed or crashed Boeket
    loses nothing; a power cut or an operating-system crash may lose the last commits before
    the next checkpoint. Production runs on PostgreSQL, which flushes every commit.

    Every write transaction in `storage/` starts with its write, so it waits for the lock
    (busy_timeout) instead of failing; read-only transactions never block a writer under WAL.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


@dataclass(frozen=True, slots=True)
class Database:
    """An engine and its session factory. Create with `Database.connect`, close with `dispose`."""

    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[Any]

    @classmethod
    def connect(cls, url: str, *, schema: str | None = None) -> Database:
        """Open an engine for `url`; on PostgreSQL, `schema` sets the search path."""
        full = normalise_url(url)
        parsed = make_url(full)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # hide_parameters: errors and logs never carry people's words or ids. One connection
            # per engine: SQLite has one writer anyway, and queueing in the pool is far cheaper
            # than many connections busy-waiting on the file lock.
            engine = create_async_engine(
                full, hide_parameters=True, pool_size=1, max_overflow=0, pool_timeout=60
            )
            _sqlite_pragmas(engine)
        else:
            connect_args: dict[str, Any] = {}
            if schema:
                connect_args["server_settings"] = {"search_path": schema}
            engine = create_async_engine(
                full,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=10,
                connect_args=connect_args,
                hide_parameters=True,
            )
        return cls(full, engine, async_sessionmaker(engine, expire_on_commit=False))

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to `revision` on this database."""

        def run(connection: Connection) -> None:
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        async with self.engine.begin() as conn:
            await conn.run_sync(run)

    async def current_revision(self) -> str | None:
        def read(connection: Connection) -> str | None:
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(connection).get_current_revision()

        async with self.engine.connect() as conn:
            return await conn.run_sync(read)

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
