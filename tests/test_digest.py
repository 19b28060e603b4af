"""The weekly digest: once a week, exactly once, in the cross-department channel; what it says, what
it never says, and that it fits Slack's and Teams' limits."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from aiohttp.test_utils import TestServer

from adapters.slack.settings import SlackSettings
from adapters.slack.translate import block_problems, message_payload
from adapters.teams import cards
from bot.app import Boeket, build
from bot.clock import ManualClock
from bot.config import OrgConfig, parse_config
from bot.digest import Week
from bot.domain import Kind, NewContribution, OccurrenceStatus, Person, Source
from bot.embedders import LexicalEmbedder
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.repositories import ContributionRepository, CrosspostRepository
from tests.conftest import DatabaseFactory
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.test_teams_http import card_problems

ORG = "ziekenhuis-de-linde"
CROSS = "leren-over-grenzen"
# Friday 5 March 2027, 15:00 in Amsterdam (UTC+1): the example's digest moment.
DUE = datetime(2027, 3, 5, 14, 0, tzinfo=UTC)


def hospital(**changes: Any) -> OrgConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["crossposting"] = {"quiet_hours": None}
    for key, value in changes.items():
        data[key] = value
    return parse_config(data, Path("hospital.yaml"))


@dataclass
class Org:
    boeket: Boeket
    clock: ManualClock
    db: Database
    _n: int = 0

    async def add(
        self,
        department: str,
        text: str,
        *,
        kind: Kind = Kind.LES,
        theme: str | None = None,
        themes: tuple[str, ...] = (),
        shareable: bool = True,
        goal: str | None = None,
        author: str | None = "Fatima el Amrani",
        anonymous: bool = False,
        at: datetime | None = None,
        source: Source = Source.REPLY,
        fields: dict[str, str] | None = None,
    ) -> Any:
        self._n += 1
        stored, _ = await ContributionRepository(self.db).add(
            NewContribution(
                organisation_id=ORG,
                department_id=department,
                kind=kind,
                source=source,
                round_date=date(2027, 3, 2),
                text=text,
                anonymous=anonymous,
                author=None if anonymous or author is None else Person(f"p{self._n}", author),
                platform="local",
                event_key=f"digest-test:{id(self)}:{self._n}",
                created_at=at or DUE - timedelta(days=2),
                fields=fields or {},
                goal_id=goal,
                theme=theme,
                themes=themes,
                shareable=shareable,
            )
        )
        return stored

    def posted(self) -> list[Any]:
        return [m for m in self.boeket.local.messages(CROSS) if m.author_id == "boeket"]

    def text(self) -> str:
        return "\n".join(self.boeket.local.transcript(CROSS).splitlines())


async def _org(db: Database, prompts: PromptLibrary, config: OrgConfig, worker: str) -> Org:
    clock = ManualClock(DUE - timedelta(hours=1))
    boeket = build(
        Settings(database_url=db.url, worker_id=worker, auto_migrate=False),
        config,
        clock=clock,
        prompts=prompts,
        db=db,
        embedder=LexicalEmbedder(),
    )
    await boeket.start(timer=False)
    return Org(boeket, clock, db)


@pytest.fixture
async def org(db: Database, prompts: PromptLibrary) -> AsyncIterator[Org]:
    o = await _org(db, prompts, hospital(), "digest")
    try:
        yield o
    finally:
        await o.boeket.stop()


async def a_week(org: Org) -> None:
    """A realistic week in the hospital, plus older lessons that make a pattern."""
    await org.add(
        "ok",
        "Een huddle van vijf minuten om half acht, met chirurg, anesthesie en OK-assistenten.",
        kind=Kind.SUCCES,
        theme="overdracht",
        source=Source.SHARE,
        fields={"what": "Een huddle van vijf minuten om half acht, met het hele team."},
    )
    await org.add(
        "verpleging",
        "De werkdruk in de avonddienst is te hoog: we schuiven de medicatieronde op.",
        theme="werkdruk",
        anonymous=True,
    )
    await org.add(
        "ict", "Een vast inloopspreekuur scheelt ons veel losse telefoontjes.", theme="werkdruk"
    )
    # Three weeks ago: the same theme in a third department — a pattern over four weeks.
    await org.add(
        "seh",
        "Bij piekdrukte zetten we een extra triageverpleegkundige in; de werkdruk daalde.",
        themes=("verzuim", "werkdruk"),  # werkdruk as its second theme
        at=DUE - timedelta(days=20),
    )
    await org.add(
        "hr",
        "Doen we de goede dingen? We meten verzuim, maar praten te weinig over plezier in werk.",
        kind=Kind.KOERS,
        goal="gezond-werken",
    )
    # Not quotable: a waardering (the digest quotes succes, les, koers) and an opt-out.
    await org.add("ict", "Dank aan Tom voor het nachtwerk!", kind=Kind.WAARDERING)
    await org.add("ok", "Iets wat alleen in ons team blijft.", theme="werkdruk", shareable=False)


async def test_the_digest_says_what_grew_this_week(org: Org) -> None:
    await a_week(org)
    org.clock.set(DUE + timedelta(minutes=1))
    assert await org.boeket.digest.tick() == 1
    [posted] = org.posted()
    text = org.text()
    assert "Het boeket van deze week" in text
    assert "26 februari t/m 5 maart" in text
    # Highlights per theme, with the department, never the person.
    assert "Werkdruk" in text and "Overdracht" in text
    assert "Een huddle van vijf minuten om half acht, met het hele team." in text
    assert "— Operatiekamer" in text and "— ICT" in text
    assert "Fatima" not in text
    # Patterns: werkdruk in OK? no — in verpleging, ict and seh within four weeks.
    assert "Werkdruk — in 3 afdelingen in vier weken" in text
    assert "ICT, Spoedeisende Hulp, Verpleegafdeling Interne Geneeskunde" in text
    assert "extra triageverpleegkundige" in text  # the lesson behind the pattern
    # Koers per goal.
    assert "Koers: doen we de goede dingen?" in text
    assert "Gezond en met plezier werken" in text and "plezier in werk" in text
    # Participation: counts, alphabetically, all departments, none ranked by people.
    lines = [line.strip() for line in text.splitlines()]
    counts = [
        line
        for line in lines
        if line.split(":")[0] in {d.name for d in org.boeket.config.departments}
    ]
    assert counts == [
        "HR: 1",
        "ICT: 2",
        "Operatiekamer: 2",
        "Spoedeisende Hulp: 0",
        "Verpleegafdeling Interne Geneeskunde: 1",
    ]
    # What may not be quoted is not.
    assert "Dank aan Tom" not in text
    assert "alleen in ons team" not in text
    assert posted.buttons == []


async def test_connections_useful_and_translated_appear(org: Org) -> None:
    lesson = await org.add(
        "ok",
        "Een vaste overdracht aan het bed met vijf punten: minder nabellen.",
        theme="werkdruk",
        at=DUE - timedelta(days=10),
    )
    translation = await org.add(
        "verpleging",
        "Wij proberen de vijf punten bij de overdracht van dag- naar avonddienst.",
        source=Source.TRANSLATION,
        fields={"translates": str(lesson.id)},
    )
    crossposts = CrosspostRepository(org.db)
    now = DUE - timedelta(days=3)
    for target in ("department:verpleging", "department:ict"):
        await crossposts.plan(ORG, lesson.id, "ok", target, 0.8, now, now)
    planned = {cp.target: cp for cp in await crossposts.all(ORG)}
    await crossposts.give_feedback(planned["department:ict"].id, "k1", "useful", now)
    await crossposts.give_feedback(planned["department:verpleging"].id, "k2", "useful", now)
    await crossposts.give_feedback(planned["department:verpleging"].id, "k3", "translated", now)
    org.clock.set(DUE)
    assert await org.boeket.digest.tick() == 1
    text = org.text()
    assert "Nieuwe verbindingen tussen afdelingen" in text
    assert "Operatiekamer → ICT: ‘Een vaste overdracht aan het bed" in text
    assert "Verpleegafdeling Interne Geneeskunde vertaalde ‘Een vaste overdracht" in text
    assert "‘Wij proberen de vijf punten" in text
    assert translation.text not in text.split("Hoogtepunten")[-1].split("Nieuwe")[0]


async def test_anonymous_and_named_people_never_appear(org: Org) -> None:
    await org.add("ok", "Anoniem: de werkdruk op maandag is niet te doen.", anonymous=True)
    await org.add("ok", "Op naam: de werkdruk zakt met de huddle.", author="Jeroen de Vries")
    org.clock.set(DUE)
    await org.boeket.digest.tick()
    text = org.text()
    assert "de werkdruk op maandag" in text and "de werkdruk zakt" in text
    assert "Jeroen" not in text and "anoniem" not in text.lower().replace("anoniem:", "")


async def test_posted_exactly_once_by_competing_workers(
    database_factory: DatabaseFactory, prompts: PromptLibrary
) -> None:
    workers = [
        await _org(database_factory.open(), prompts, hospital(), f"worker-{i}") for i in range(3)
    ]
    try:
        await workers[0].add("ok", "Een les over de overdracht.", theme="overdracht")
        for w in workers:
            w.clock.set(DUE + timedelta(seconds=30))
        results = await asyncio.gather(*(w.boeket.digest.tick() for w in workers))
        assert sorted(results) == [0, 0, 1]
        assert sum(len(w.posted()) for w in workers) == 1
        # Later ticks the same week post nothing more; next week's is a new one.
        for w in workers:
            w.clock.set(DUE + timedelta(hours=2))
            assert await w.boeket.digest.tick() == 0
        await workers[1].add(
            "ict", "Een les over inwerken.", theme="inwerken", at=DUE + timedelta(days=2)
        )
        workers[1].clock.set(DUE + timedelta(days=7))
        assert await workers[1].boeket.digest.tick() == 1
        digests = await DigestRepository(workers[0].db).all(ORG)
        assert [(d.week_start, d.status) for d in digests] == [
            (date(2027, 3, 1), OccurrenceStatus.SENT),
            (date(2027, 3, 8), OccurrenceStatus.SENT),
        ]
    finally:
        for w in workers:
            await w.boeket.stop()


async def test_quiet_weeks_and_downtime_post_nothing(org: Org) -> None:
    org.clock.set(DUE)
    assert await org.boeket.digest.tick() == 0  # nothing happened: no message
    assert org.posted() == []
    [quiet] = await DigestRepository(org.db).all(ORG)
    assert quiet.status is OccurrenceStatus.SKIPPED
    # Down over the next digest moment for longer than the grace window: not posted late.
    await org.add("ok", "Een les.", at=DUE + timedelta(days=3))
    org.clock.set(DUE + timedelta(days=7, hours=8))
    assert await org.boeket.digest.tick() == 0
    assert org.posted() == []


async def test_the_digest_moment_is_the_organisations_local_time(org: Org) -> None:
    engine = org.boeket.digest
    # Summer time: Friday 15:00 in Amsterdam is 13:00 UTC.
    summer = engine.week_ending(datetime(2027, 7, 2, 13, 0, tzinfo=UTC))
    assert summer.until == datetime(2027, 7, 2, 13, 0, tzinfo=UTC)
    assert summer.week_start == date(2027, 6, 28)
    before = engine.week_ending(datetime(2027, 7, 2, 12, 59, tzinfo=UTC))
    assert before.until == datetime(2027, 6, 25, 13, 0, tzinfo=UTC)
    assert before.since == datetime(2027, 6, 18, 13, 0, tzinfo=UTC)


async def test_disabled_digest_posts_nothing(db: Database, prompts: PromptLibrary) -> None:
    o = await _org(db, prompts, hospital(digest={"enabled": False}), "off")
    try:
        await o.add("ok", "Een les.")
        o.clock.set(DUE)
        assert await o.boeket.digest.tick() == 0
        assert await DigestRepository(db).all(ORG) == []
    finally:
        await o.boeket.stop()


async def test_english_organisation_in_its_symbolism(db: Database, prompts: PromptLibrary) -> None:
    o = await _org(db, prompts, hospital(language="en", symbolism="bouwstenen"), "en")
    try:
        await o.add("ok", "A five minute huddle at half past seven.", theme="overdracht")
        o.clock.set(DUE)
        await o.boeket.digest.tick()
        text = o.text()
        assert "This week's structure" in text
        assert "26 February to 5 March" in text
        assert "Participation per department" in text
    finally:
        await o.boeket.stop()


async def test_a_busy_week_fits_slack_and_teams(org: Org) -> None:
    """Twelve departments' worth of long texts: the digest stays within the platforms' limits."""
    long = "Een lange les over de overdracht en de werkdruk, " * 80  # ~4,000 characters
    themes = ["werkdruk", "verzuim", "innovatie", "klanttevredenheid", "overdracht", "inwerken"]
    depts = [d.id for d in org.boeket.config.departments]
    for i in range(60):
        await org.add(
            depts[i % len(depts)],
            f"{i}: {long}",
            kind=[Kind.LES, Kind.SUCCES, Kind.KOERS][i % 3],
            theme=themes[i % len(themes)],
            goal="gezond-werken" if i % 3 == 2 else None,
        )
    engine = org.boeket.digest
    content = await engine.compose(Week(date(2027, 3, 1), DUE - timedelta(days=7), DUE))
    message = engine.render(content)
    _, blocks = message_payload(message)
    assert block_problems(blocks, surface="message") == []
    assert len(blocks) <= 50
    card = cards.message_card(message)
    assert card_problems(card) == []
    assert len(json.dumps(card).encode()) < 28_000
    assert "…en nog" in json.dumps(blocks, ensure_ascii=False)  # the rest is counted, not dropped


# --- over real HTTP: the digest through the Slack adapter -------------------------------------


async def test_digest_is_posted_to_slack_as_valid_block_kit(
    db: Database, prompts: PromptLibrary
) -> None:
    fake = FakeSlack()
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    config = hospital(cross_department={"platform": "slack", "channel": "C0LEREN", "name": "Leren"})
    settings = Settings(
        database_url=db.url,
        worker_id="slack-digest",
        auto_migrate=False,
        slack=SlackSettings(
            signing_secret="s" * 32, bot_token=BOT_TOKEN, api_url=fake.api_url, pace_seconds=0
        ),
        public_url="https://boeket.example.nl",
    )
    clock = ManualClock(DUE)
    boeket = build(
        settings, config, clock=clock, prompts=prompts, db=db, embedder=LexicalEmbedder()
    )
    await boeket.start(timer=False)
    try:
        org = Org(boeket, clock, db)
        await a_week(org)
        assert await boeket.digest.tick() == 1
        [post] = [c for c in fake.of("chat.postMessage") if c.args.get("channel") == "C0LEREN"]
        blocks = post.args["blocks"]
        assert block_problems(blocks, surface="message") == []
        dumped = json.dumps(blocks, ensure_ascii=False)
        assert "Het boeket van deze week" in dumped
        # The rest of the week is one signed link away: it opens the dashboard, no login.
        [link] = re.findall(r"https://boeket\.example\.nl/dashboard\?access=[\w%-]+", dumped)
        token = unquote(link.split("access=")[1])
        signer = await boeket.dashboard._signer()
        assert signer.verify(token, DUE) == "dashboard"
        assert "Fatima" not in dumped
    finally:
        await boeket.stop()
        await server.close()
