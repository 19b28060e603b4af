"""Storage on SQLite and PostgreSQL: migrations, idempotent contributions, privacy, ownership."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from bot.domain import Kind, NewContribution, Person, Source
from storage.db import Database, DatabaseUrlError, alembic_config, normalise_url
from storage.repositories import ContributionRepository, StateStore
from storage.tables import ContributionRow
from tests.conftest import DatabaseFactory

ORG = "org-a"
NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)
FATIMA = Person("U1", "Fatima el Amrani")


def contribution(
    event_key: str, *, anonymous: bool = False, org: str = ORG, text_: str = "De huddle werkt."
) -> NewContribution:
    return NewContribution(
        organisation_id=org,
        department_id="ok",
        kind=Kind.SUCCES,
        source=Source.FORM,
        round_date=date(2027, 3, 2),
        text=text_,
        anonymous=anonymous,
        author=FATIMA,
        platform="local",
        event_key=event_key,
        created_at=NOW,
        fields={"followup": "Tijd."},
    )


async def test_migrations_create_every_table(db: Database) -> None:
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {
        "occurrences",
        "contributions",
        "adapter_state",
        "crossposts",
        "digests",
        "alembic_version",
    } <= tables
    head = ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()
    assert head is not None and int(head) >= 6
    assert await db.current_revision() == head
    await db.upgrade()  # a second upgrade is a no-op, not an error
    assert await db.current_revision() == head


async def test_the_same_event_stores_one_contribution(db: Database) -> None:
    repo = ContributionRepository(db)
    first, created = await repo.add(contribution("local:form:abc"))
    again, created_again = await repo.add(contribution("local:form:abc", text_="Anders"))
    assert created and not created_again
    assert again.id == first.id and again.text == "De huddle werkt."
    assert len(await repo.all(ORG)) == 1


async def test_concurrent_deliveries_of_one_event_store_one(
    database_factory: DatabaseFactory,
) -> None:
    repos = [ContributionRepository(database_factory.open()) for _ in range(6)]
    results = await asyncio.gather(*(r.add(contribution("local:message:retry")) for r in repos))
    assert sum(created for _, created in results) == 1
    assert len({c.id for c, _ in results}) == 1


async def test_event_keys_are_per_organisation(db: Database) -> None:
    repo = ContributionRepository(db)
    await repo.add(contribution("slack:message:Ev1", org="org-a"))
    _, created = await repo.add(contribution("slack:message:Ev1", org="org-b"))
    assert created
    assert len(await repo.all("org-a")) == 1
    assert len(await repo.all("org-b")) == 1
    only_a = await repo.all("org-a")
    assert await repo.get("org-b", only_a[0].id) is None  # no reading across organisations


async def test_anonymous_contribution_keeps_no_link_to_the_person(db: Database) -> None:
    repo = ContributionRepository(db)
    stored, _ = await repo.add(contribution("local:form:anon", anonymous=True))
    assert stored.author is None and stored.anonymous
    async with db.sessions() as session:
        row = (await session.scalars(select(ContributionRow))).one()
        dump = " ".join(str(getattr(row, c.key)) for c in ContributionRow.__table__.columns)
    assert row.author_id is None and row.author_name is None
    assert "U1" not in dump and "Fatima" not in dump
    assert await repo.by_author(ORG, "local", "U1") == []


async def test_people_edit_and_delete_only_their_own(db: Database) -> None:
    repo = ContributionRepository(db)
    mine, _ = await repo.add(contribution("local:form:1"))
    assert await repo.update_own(ORG, mine.id, "local", "U2", "gekaapt", None, NOW) is None
    assert not await repo.delete_own(ORG, mine.id, "local", "U2")
    assert not await repo.delete_own(ORG, mine.id, "slack", "U1")  # same id, other platform
    edited = await repo.update_own(ORG, mine.id, "local", "U1", "Beter verwoord.", None, NOW)
    assert edited is not None and edited.text == "Beter verwoord."
    assert edited.fields == {"followup": "Tijd."}
    assert await repo.delete_own(ORG, mine.id, "local", "U1")
    assert await repo.get(ORG, mine.id) is None


async def test_several_themes_are_kept_best_first_with_the_first_as_theme(db: Database) -> None:
    repo = ContributionRepository(db)
    new = contribution("local:form:themes")
    stored, _ = await repo.add(replace(new, themes=("werkdruk", "overdracht", "werkdruk")))
    assert stored.themes == ("werkdruk", "overdracht") and stored.theme == "werkdruk"
    assert not stored.themes_chosen and stored.shareable
    # A single `theme` is a list of one; no theme at all is an empty list.
    one, _ = await repo.add(replace(new, event_key="k1", theme="x"))
    assert (one.theme, one.themes) == ("x", ("x",))
    none, _ = await repo.add(replace(new, event_key="k2"))
    assert (none.theme, none.themes) == (None, ())
    # Editing the text re-tags; the person's correction is kept as chosen, with "niet delen".
    edited = await repo.update_own(
        ORG, stored.id, "local", "U1", "Anders.", None, NOW, themes=("verzuim",)
    )
    assert edited is not None and edited.themes == ("verzuim",) and edited.theme == "verzuim"
    assert (
        await repo.correct_own(ORG, stored.id, "local", "U2", themes=(), shareable=False, now=NOW)
        is None
    )  # not hers
    corrected = await repo.correct_own(
        ORG, stored.id, "local", "U1", themes=("overdracht", "werkdruk"), shareable=False, now=NOW
    )
    assert corrected is not None
    assert corrected.themes == ("overdracht", "werkdruk") and corrected.theme == "overdracht"
    assert corrected.themes_chosen and not corrected.shareable
    assert (await repo.get(ORG, stored.id)) == corrected


async def test_migration_0007_keeps_each_existing_theme(db: Database) -> None:
    def downgrade(connection: Connection) -> None:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")

    async with db.engine.begin() as conn:
        await conn.run_sync(downgrade)
        for key, theme in (("a", "werkdruk"), ("b", None)):
            await conn.execute(
                text(
                    "INSERT INTO contributions (organisation_id, department_id, kind, source, "
                    "round_date, text, fields, goal_id, theme, anonymous, platform, event_key, "
                    "created_at, updated_at) VALUES ('org-a', 'ok', 'les', 'share', "
                    "'2027-03-02', 'Een les.', '{}', NULL, :theme, false, 'local', :key, "
                    "'2027-03-01 12:00:00', '2027-03-01 12:00:00')"
                ),
                {"theme": theme, "key": key},
            )
    await db.upgrade()
    by_key = {c.event_key: c for c in await ContributionRepository(db).all(ORG)}
    assert by_key["a"].themes == ("werkdruk",) and by_key["a"].theme == "werkdruk"
    assert by_key["a"].themes_chosen  # before, only the person could set a theme
    assert by_key["b"].themes == () and not by_key["b"].themes_chosen
    assert by_key["a"].shareable and by_key["b"].shareable


async def test_state_store_keeps_json_per_platform(db: Database) -> None:
    teams = StateStore(db, "teams")
    local = StateStore(db, "local")
    await teams.put("conversation:19:abc", {"serviceUrl": "http://x", "n": 1}, NOW)
    await teams.put("conversation:19:abc", {"serviceUrl": "http://x", "n": 2}, NOW)
    assert await teams.get("conversation:19:abc") == {"serviceUrl": "http://x", "n": 2}
    assert await local.get("conversation:19:abc") is None
    assert list(await teams.keys("conversation:")) == ["conversation:19:abc"]


async def test_state_store_add_many_keeps_only_new_keys_and_says_which(db: Database) -> None:
    inbox = StateStore(db, "slack", namespace="org-a")
    assert await inbox.add_many({"inbox:1": {"n": 1}, "inbox:2": {"n": 2}}, NOW) == {
        "inbox:1",
        "inbox:2",
    }
    # A retry of 2 among new ones: only the new are reported, and 2 keeps its first value.
    assert await inbox.add_many({"inbox:2": {"n": 99}, "inbox:3": {"n": 3}}, NOW) == {"inbox:3"}
    assert await inbox.get("inbox:2") == {"n": 2}
    assert await inbox.add_many({}, NOW) == set()
    # The same key in another organisation's namespace is another entry.
    assert await StateStore(db, "slack", namespace="org-b").add_many({"inbox:1": {}}, NOW) == {
        "inbox:1"
    }
    assert sorted(await inbox.keys("inbox:")) == ["inbox:1", "inbox:2", "inbox:3"]


async def test_health_ping(db: Database) -> None:
    await db.ping()
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1


def test_database_urls_pick_async_drivers() -> None:
    assert normalise_url("sqlite:///x.sqlite3") == "sqlite+aiosqlite:///x.sqlite3"
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+asyncpg://u@h/db")
    assert normalise_url("postgres://u@h/db").startswith("postgresql+asyncpg://")
    with pytest.raises(DatabaseUrlError):
        normalise_url("mysql://u@h/db")
    with pytest.raises(DatabaseUrlError):
        normalise_url("not a url")
