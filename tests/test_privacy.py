"""A person's rights (AVG/GDPR): their data exported, forgotten everywhere Boeket can reach —
database, vectors, votes, settings and the lessons it posted — retention, and the audit log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bot.app import Boeket, build
from bot.cli import main
from bot.clock import ManualClock
from bot.config import OrgConfig, parse_config
from bot.domain import (
    ChannelRef,
    Kind,
    NewContribution,
    OccurrenceStatus,
    Person,
    PersonSettings,
    Source,
)
from bot.embedders import LexicalEmbedder
from bot.messages import Ephemeral, Message, Section
from bot.privacy import person_key, subject_hash
from bot.selfservice import FORGET, KEEP
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.privacy import PrivacyRepository
from storage.repositories import (
    ContributionRepository,
    CrosspostRepository,
    PersonSettingsRepository,
)
from storage.tables import ContributionVectorRow, CrosspostFeedbackRow, CrosspostRow

ORG = "ziekenhuis-de-linde"
NOW = datetime(2027, 3, 3, 9, 0, tzinfo=UTC)


def hospital(**changes: Any) -> OrgConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data.update(changes)
    return parse_config(data, Path("hospital.yaml"))


@dataclass
class World:
    boeket: Boeket
    clock: ManualClock
    db: Database
    n: int = 0

    async def add(self, text: str, author: Person | None, **kw: Any) -> Any:
        self.n += 1
        stored, _ = await ContributionRepository(self.db).add(
            NewContribution(
                organisation_id=ORG,
                department_id=kw.pop("department", "ok"),
                kind=kw.pop("kind", Kind.LES),
                source=Source.REPLY,
                round_date=date(2027, 3, 2),
                text=text,
                anonymous=author is None,
                author=author,
                platform="local",
                event_key=f"privacy:{self.n}",
                created_at=kw.pop("at", NOW - timedelta(days=1)),
                **kw,
            )
        )
        await self.boeket.matcher.index(stored)
        return stored

    async def count(self, table: Any) -> int:
        async with self.db.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def _world(db: Database, prompts: PromptLibrary, config: OrgConfig) -> World:
    clock = ManualClock(NOW)
    boeket = build(
        Settings(database_url=db.url, worker_id="privacy", auto_migrate=False),
        config,
        clock=clock,
        prompts=prompts,
        db=db,
        embedder=LexicalEmbedder(),
    )
    await boeket.start(timer=False)
    return World(boeket, clock, db)


@pytest.fixture
async def world(db: Database, prompts: PromptLibrary) -> AsyncIterator[World]:
    w = await _world(db, prompts, hospital())
    try:
        yield w
    finally:
        await w.boeket.stop()


async def a_travelled_lesson(world: World) -> tuple[Any, Any]:
    """Fatima's lesson, suggested to the Verpleegafdeling and posted there; Sanne voted on it."""
    fatima = Person("fatima", "Fatima el Amrani")
    lesson = await world.add("Een vaste overdracht aan het bed met vijf punten.", fatima)
    posted = await world.boeket.local.post(
        ChannelRef("local", "verpleegafdeling"),
        Message(text="Een les uit Operatiekamer", blocks=(Section(lesson.text),)),
    )
    crossposts = CrosspostRepository(world.db)
    await crossposts.plan(ORG, lesson.id, "ok", "department:verpleging", 0.8, NOW, NOW)
    [cp] = await crossposts.all(ORG)
    await crossposts.claim(cp.id, "w", NOW, timedelta(minutes=5))
    await crossposts.finish(
        cp.id,
        "w",
        OccurrenceStatus.SENT,
        NOW,
        platform="local",
        channel="verpleegafdeling",
        message_id=posted.message_id,
        thread_id=posted.thread_id,
    )
    await crossposts.give_feedback(cp.id, person_key("local", "sanne"), "useful", NOW)
    await crossposts.give_feedback(cp.id, person_key("local", "fatima"), "talk", NOW)
    await PersonSettingsRepository(world.db).put(
        ORG, "local", "fatima", PersonSettings(named_elsewhere=True), NOW
    )
    return lesson, posted


async def test_forget_from_chat_removes_her_words_everywhere(world: World) -> None:
    lesson, posted = await a_travelled_lesson(world)
    other = await world.add("Fatima's collega: een les van Jeroen.", Person("jeroen", "Jeroen"))
    anonymous = await world.add("Anoniem: de maandag is te vol.", None)
    fatima_vote_elsewhere = await world.add("Iets van Sanne.", Person("sanne", "Sanne"))
    crossposts = CrosspostRepository(world.db)
    await crossposts.plan(ORG, fatima_vote_elsewhere.id, "ok", "department:ict", 0.7, NOW, NOW)
    [cp2] = [c for c in await crossposts.all(ORG) if c.contribution_id == fatima_vote_elsewhere.id]
    await crossposts.give_feedback(cp2.id, person_key("local", "fatima"), "useful", NOW)

    ask = await world.boeket.local.say("fatima", "operatiekamer", "/deel vergeet")
    assert isinstance(ask, Ephemeral)
    buttons = [b for block in ask.message.blocks for b in getattr(block, "buttons", ())]
    assert [b.action_id for b in buttons] == [FORGET, KEEP]
    kept = await world.boeket.local.click("fatima", "operatiekamer", KEEP)
    assert isinstance(kept, Ephemeral) and "niets" in kept.message.text
    assert len(await ContributionRepository(world.db).all(ORG)) == 4

    done = await world.boeket.local.click("fatima", "operatiekamer", FORGET)
    assert isinstance(done, Ephemeral)
    assert "1 bijdragen" in done.message.text and "1 geplaatste" in done.message.text
    left = {c.id for c in await ContributionRepository(world.db).all(ORG)}
    assert left == {other.id, anonymous.id, fatima_vote_elsewhere.id}
    # Her vector is gone from the database and from the matcher.
    assert world.boeket.matcher.vector(ORG, lesson.id) is None
    async with world.db.sessions() as session:
        vectors = set((await session.scalars(select(ContributionVectorRow.contribution_id))).all())
        votes = (await session.execute(select(CrosspostFeedbackRow.person_key))).scalars().all()
        posts = (await session.scalars(select(CrosspostRow.contribution_id))).all()
    assert lesson.id not in vectors and other.id in vectors
    assert person_key("local", "fatima") not in votes  # her votes, on her lesson and elsewhere
    assert lesson.id not in posts
    settings = await PersonSettingsRepository(world.db).get(ORG, "local", "fatima")
    assert settings == PersonSettings()
    # The lesson Boeket posted in the Verpleegafdeling now says it was withdrawn.
    [message] = [
        m for m in world.boeket.local.messages("verpleegafdeling") if m.id == posted.message_id
    ]
    assert "vijf punten" not in message.text
    assert "op verzoek van de maker verwijderd" in message.text
    # The audit log says what happened, without her id.
    log = await PrivacyRepository(world.db).audit_log(ORG)
    assert [(e.actor, e.action) for e in log] == [("self", "privacy.forget")]
    assert log[0].subject == subject_hash(ORG, "fatima")
    assert "fatima" not in json.dumps([e.detail for e in log]) + (log[0].subject or "")


async def test_privacy_summary_in_chat(world: World) -> None:
    await a_travelled_lesson(world)
    reply = await world.boeket.local.say("fatima", "operatiekamer", "/deel privacy")
    assert isinstance(reply, Ephemeral)
    assert "1 bijdragen op jouw naam" in reply.message.text
    assert "/mijn?access=" in reply.message.text and "/deel vergeet" in reply.message.text
    [entry] = await PrivacyRepository(world.db).audit_log(ORG)
    assert entry.action == "privacy.export" and entry.actor == "self"


async def test_her_export_holds_her_clicks_and_nobody_elses(world: World) -> None:
    lesson, _ = await a_travelled_lesson(world)  # she said "let's talk", Sanne "useful"
    digests = DigestRepository(world.db)
    other = await world.add("Iets van Sanne.", Person("sanne", "Sanne"))
    assert await digests.vote(ORG, other.id, person_key("local", "fatima"), "useful", NOW)
    assert await digests.vote(ORG, other.id, person_key("local", "sanne"), "talk", NOW)
    data = await world.boeket.personal.export("fatima", None, "self")
    assert data["feedback"] == [
        {
            "on": "suggestion",
            "suggestion": data["feedback"][0]["suggestion"],
            "contribution": lesson.id,
            "verdict": "talk",
            "at": NOW.isoformat(),
        },
        {"on": "digest", "contribution": other.id, "verdict": "useful", "at": NOW.isoformat()},
    ]
    sanne = await world.boeket.personal.export("sanne", "local", "self")
    assert [(f["on"], f["verdict"]) for f in sanne["feedback"]] == [
        ("suggestion", "useful"),
        ("digest", "talk"),
    ]


async def test_retention_deletes_what_is_older(db: Database, prompts: PromptLibrary) -> None:
    w = await _world(db, prompts, hospital(retention_months=12))
    try:
        old = await w.add("Van lang geleden.", Person("a", "A"), at=NOW - timedelta(days=400))
        recent = await w.add("Van vorige maand.", None, at=NOW - timedelta(days=30))
        await w.boeket.tick()
        left = [c.id for c in await ContributionRepository(db).all(ORG)]
        assert left == [recent.id]
        assert w.boeket.matcher.vector(ORG, old.id) is None
        [entry] = await PrivacyRepository(db).audit_log(ORG)
        assert entry.actor == "retention" and entry.detail["contributions"] == "1"
        # The next tick within the hour does not query again; nothing more to delete anyway.
        await w.boeket.tick()
        assert len(await PrivacyRepository(db).audit_log(ORG)) == 1
    finally:
        await w.boeket.stop()


def test_retention_must_be_sensible() -> None:
    from bot.config import ConfigError

    with pytest.raises(ConfigError):
        hospital(retention_months=0)


def test_the_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'boeket.sqlite3'}"

    async def prepare() -> None:
        db = Database.connect(url)
        await db.upgrade()
        repo = ContributionRepository(db)
        for i, (who, text) in enumerate(
            [("fatima", "Mijn les over de overdracht."), ("jeroen", "Zijn les.")]
        ):
            await repo.add(
                NewContribution(
                    organisation_id=ORG,
                    department_id="ok",
                    kind=Kind.LES,
                    source=Source.REPLY,
                    round_date=date(2027, 3, 2),
                    text=text,
                    anonymous=False,
                    author=Person(who, who.title()),
                    platform="local",
                    event_key=f"cli:{i}",
                    created_at=NOW,
                )
            )
        await db.dispose()

    asyncio.run(prepare())
    base = ["--database", url, "--config", str(EXAMPLE_CONFIG), "--actor", "admin:els"]
    assert main(["privacy", "export", "--user", "fatima", *base]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["text"] for c in data["contributions"]] == ["Mijn les over de overdracht."]
    out = tmp_path / "fatima.json"
    assert main(["privacy", "export", "--user", "fatima", "--out", str(out), *base]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["person"] == "fatima"
    assert main(["privacy", "forget", "--user", "fatima", "--platform", "local", *base]) == 0
    assert "1 bijdragen gewist" in capsys.readouterr().out

    async def check() -> list[Any]:
        db = Database.connect(url)
        try:
            left = await ContributionRepository(db).all(ORG)
            log = await PrivacyRepository(db).audit_log(ORG)
        finally:
            await db.dispose()
        assert [c.text for c in left] == ["Zijn les."]
        return log

    log = asyncio.run(check())
    assert [(e.actor, e.action) for e in log] == [
        ("admin:els", "privacy.export"),
        ("admin:els", "privacy.export"),
        ("admin:els", "privacy.forget"),
    ]
