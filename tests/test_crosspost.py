"""Lessons travel, with restraint, in a realistic hospital: who receives what, and who does not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import Boeket, build
from bot.clock import ManualClock
from bot.config import OrgConfig, parse_config
from bot.contributions import SHARE_FORM, THEMES_ACTION, THEMES_FORM
from bot.crosspost import NOT_RELEVANT, TALK, USEFUL
from bot.domain import Kind, NewContribution, OccurrenceStatus, Person, Source
from bot.embedders import Embedder, LexicalEmbedder
from bot.messages import Ephemeral, FormDone, ShowForm
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import ContributionRepository, CrosspostRepository

ORG = "ziekenhuis-de-linde"
# Tuesday 2 March 2027, 10:00 in Amsterdam: no quiet hours.
NOW = datetime(2027, 3, 2, 9, 0, tzinfo=UTC)

HISTORY = {
    "verpleging": [
        "Bij de overdracht tussen dag- en avonddienst gaat informatie verloren; collega's blijven "
        "na hun dienst hangen om na te bellen en de werkdruk loopt op.",
        "Veel verzuim in de avonddiensten: collega's zijn uitgeput door de hoge werkdruk.",
    ],
    "ict": [
        "De migratie naar de nieuwe servers liep vertraging op door ontbrekende documentatie.",
        "Het ticketsysteem werkt beter sinds we vaste categorieën voor storingen gebruiken.",
    ],
    "hr": ["Nieuwe collega's vertrekken vaak binnen een jaar; het inwerken is te vrijblijvend."],
}

HANDOVER = {
    "what": "We hebben de overdracht na de operatie vernieuwd: een vast lijstje van vijf punten, "
    "aan het bed. Collega's hoeven minder na te bellen en de werkdruk aan het eind van de dienst "
    "is gedaald.",
    "preconditions": "Iedereen gebruikt hetzelfde lijstje en de overdracht duurt hooguit vijf "
    "minuten.",
    "effect": "Minder overwerk en minder misverstanden na de dienst.",
    "theme": "werkdruk",
    "goal": "gezond-werken",
}


# The same lesson with no theme picked: Boeket finds them.
UNTAGGED_HANDOVER = {k: v for k, v in HANDOVER.items() if k != "theme"}
THEME_GROUP = "overdracht-groep"  # the community of practice on handovers


def hospital(org_id: str = ORG, *, theme_group: bool = False, **crossposting: Any) -> OrgConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["organisation"]["id"] = org_id
    if theme_group:
        for theme in data["themes"]:
            if theme["id"] == "overdracht":
                theme["channel"] = THEME_GROUP
    for dept in data["departments"]:
        if dept["id"] == "verpleging":
            dept["themes"] = ["werkdruk", "verzuim", "inwerken"]
        if dept["id"] == "ict":
            dept["themes"] = ["innovatie"]
    data["crossposting"] = {"quiet_hours": None, **crossposting}
    return parse_config(data, Path("hospital.yaml"))


@dataclass
class World:
    boeket: Boeket
    clock: ManualClock
    db: Database

    @property
    def org(self) -> str:
        return self.boeket.config.organisation.id

    async def seed(self) -> None:
        """Each department's own recent lessons: the context a suggestion is matched against."""
        repo = ContributionRepository(self.db)
        for dept, texts in HISTORY.items():
            for i, text in enumerate(texts):
                stored, _ = await repo.add(
                    NewContribution(
                        organisation_id=self.org,
                        department_id=dept,
                        kind=Kind.LES,
                        source=Source.REPLY,
                        round_date=date(2027, 2, 20),
                        text=text,
                        anonymous=False,
                        author=Person(f"{dept}{i}", f"Collega {i}"),
                        platform="local",
                        event_key=f"seed:{dept}:{i}",
                        created_at=NOW - timedelta(days=10),
                    )
                )
                await self.boeket.matcher.index(stored)

    async def share(self, person: str, channel: str, values: dict[str, str]) -> None:
        form = await self.boeket.local.say(person, channel, "/deel")
        assert isinstance(form, ShowForm)
        done = await self.boeket.local.submit(
            person, channel, SHARE_FORM, values, meta=form.form.meta
        )
        assert isinstance(done, FormDone), done
        await self.boeket.background.drain()

    async def shares(self) -> list[Any]:
        repo = ContributionRepository(self.db)
        return [c for c in await repo.all(self.org) if c.source is Source.SHARE]

    async def crossposts(self) -> list[Any]:
        return await CrosspostRepository(self.db).all(self.org)

    def suggestions(self, channel: str) -> list[Any]:
        return [
            m
            for m in self.boeket.local.messages(channel)
            if m.author_id == "boeket" and any(b["action_id"] == USEFUL for b in m.buttons)
        ]


async def _world(
    db: Database, prompts: PromptLibrary, embedder: Embedder, config: OrgConfig | None = None
) -> World:
    clock = ManualClock(NOW)
    boeket = build(
        Settings(database_url=db.url, worker_id="travel", auto_migrate=True),
        config or hospital(),
        clock=clock,
        prompts=prompts,
        db=db,
        embedder=embedder,
    )
    await boeket.start(timer=False)
    world = World(boeket, clock, db)
    await world.seed()
    return world


@pytest.fixture
async def world(db: Database, prompts: PromptLibrary) -> AsyncIterator[World]:
    """The hospital on the no-model embedder: fast, and what every installation can run."""
    w = await _world(db, prompts, LexicalEmbedder())
    try:
        yield w
    finally:
        await w.boeket.stop()  # drains background work, stops adapters, closes connections


@pytest.fixture(params=["lexical", "model"])
async def any_world(
    request: pytest.FixtureRequest,
    db: Database,
    prompts: PromptLibrary,
    default_embedder: Embedder,
) -> AsyncIterator[World]:
    """The hospital on the no-model embedder, and on this installation's best one (the e5 model
    where it runs): lessons must travel right with either."""
    embedder = LexicalEmbedder() if request.param == "lexical" else default_embedder
    w = await _world(db, prompts, embedder)
    try:
        yield w
    finally:
        await w.boeket.stop()  # drains background work, stops adapters, closes connections


async def test_a_handover_lesson_reaches_the_ward_and_not_ict(any_world: World) -> None:
    world = any_world
    await world.share("fatima", "operatiekamer", HANDOVER)
    targets = {cp.target for cp in await world.crossposts()}
    assert "department:verpleging" in targets
    assert "department:ict" not in targets
    assert "department:ok" not in targets  # never the author's own department
    await world.boeket.crossposter.tick()
    [suggestion] = world.suggestions("verpleegafdeling")
    assert HANDOVER["preconditions"][:40] in suggestion.text
    assert "Operatiekamer" in suggestion.text
    assert "Hoe zou dit bij jullie kunnen werken?" in suggestion.text
    assert {b["action_id"] for b in suggestion.buttons} == {USEFUL, NOT_RELEVANT, TALK}
    assert world.suggestions("ict") == []
    assert "Fatima" not in suggestion.text  # she did not agree to be named elsewhere


async def test_a_handover_lesson_finds_its_own_themes_and_reaches_the_ward_and_not_ict(
    any_world: World,
) -> None:
    """The Operatiekamer's lesson on lowering workload through a new handover, with no theme
    picked: Boeket finds werkdruk, and the ward (verzuim, werkdruk) gets it; ICT does not."""
    world = any_world
    await world.share("fatima", "operatiekamer", UNTAGGED_HANDOVER)
    [lesson] = await world.shares()
    assert {"werkdruk", "overdracht"} <= set(lesson.themes) and not lesson.themes_chosen
    targets = {cp.target for cp in await world.crossposts()}
    assert "department:verpleging" in targets
    assert "department:ict" not in targets
    await world.boeket.crossposter.tick()
    [suggestion] = world.suggestions("verpleegafdeling")
    assert "Werkdruk" in suggestion.text and "Overdracht" in suggestion.text
    assert world.suggestions("ict") == []


async def test_a_lesson_marked_niet_delen_never_travels(world: World) -> None:
    await world.share("fatima", "operatiekamer", {**HANDOVER, "not_shared": "true"})
    [lesson] = await world.shares()
    assert not lesson.shareable
    assert await world.crossposts() == []
    assert await world.boeket.crossposter.tick() == 0
    for dept in world.boeket.config.departments:
        assert world.suggestions(dept.channel) == []
    # It stays home: in the Operatiekamer's own harvest, with her name.
    harvest_at = datetime(2027, 3, 9, 6, 30, tzinfo=UTC)  # Tuesday 9 March, 07:30 in Amsterdam
    world.clock.set(harvest_at)
    await world.boeket.cycle.tick()
    assert any(
        HANDOVER["what"][:40] in m.text and "Fatima" in m.text
        for m in world.boeket.local.messages("operatiekamer")
    )


async def test_niet_delen_after_the_fact_withdraws_what_was_planned(world: World) -> None:
    await world.share("fatima", "operatiekamer", HANDOVER)
    [lesson] = await world.shares()
    assert [cp.target for cp in await world.crossposts()] == ["department:verpleging"]
    form = await world.boeket.local.click("fatima", "operatiekamer", THEMES_ACTION, str(lesson.id))
    assert isinstance(form, ShowForm)
    await world.boeket.local.submit(
        "fatima",
        "operatiekamer",
        THEMES_FORM,
        {"theme.werkdruk": "true", "not_shared": "true"},
        meta=form.form.meta,
    )
    await world.boeket.background.drain()
    assert await world.boeket.crossposter.tick() == 0
    assert world.suggestions("verpleegafdeling") == []
    [cp] = await world.crossposts()
    assert cp.status is OccurrenceStatus.SKIPPED


async def test_a_theme_channel_gets_a_lesson_on_its_second_theme_once(
    db: Database, prompts: PromptLibrary
) -> None:
    world = await _world(db, prompts, LexicalEmbedder(), hospital(theme_group=True))
    try:
        await world.share("fatima", "operatiekamer", UNTAGGED_HANDOVER)
        [lesson] = await world.shares()
        assert lesson.themes[0] == "werkdruk" and "overdracht" in lesson.themes[1:]
        assert "theme:overdracht" in {cp.target for cp in await world.crossposts()}
        await world.boeket.crossposter.tick()
        await world.boeket.crossposter.tick()
        [posted] = [m for m in world.boeket.local.messages(THEME_GROUP) if m.author_id == "boeket"]
        assert "Operatiekamer" in posted.text and HANDOVER["preconditions"][:40] in posted.text
        assert "Fatima" not in posted.text
    finally:
        await world.boeket.stop()


async def test_a_theme_the_person_adds_brings_the_lesson_to_its_channel(
    db: Database, prompts: PromptLibrary
) -> None:
    world = await _world(db, prompts, LexicalEmbedder(), hospital(theme_group=True))
    try:
        await world.share("fatima", "operatiekamer", HANDOVER)  # she picked werkdruk only
        [lesson] = await world.shares()
        assert lesson.themes == ("werkdruk",)
        assert "theme:overdracht" not in {cp.target for cp in await world.crossposts()}
        form = await world.boeket.local.click(
            "fatima", "operatiekamer", THEMES_ACTION, str(lesson.id)
        )
        assert isinstance(form, ShowForm)
        await world.boeket.local.submit(
            "fatima",
            "operatiekamer",
            THEMES_FORM,
            {"theme.werkdruk": "true", "theme.overdracht": "true"},
            meta=form.form.meta,
        )
        await world.boeket.background.drain()
        targets = [cp.target for cp in await world.crossposts()]
        assert sorted(targets) == ["department:verpleging", "theme:overdracht"]  # each once
        await world.boeket.crossposter.tick()
        assert len(world.boeket.local.messages(THEME_GROUP)) == 1
        assert len(world.suggestions("verpleegafdeling")) == 1
    finally:
        await world.boeket.stop()


async def test_scores_rank_the_ward_above_ict(any_world: World) -> None:
    world = any_world
    await world.share("fatima", "operatiekamer", HANDOVER)
    [lesson] = [
        c for c in await ContributionRepository(world.db).all(world.org) if c.source is Source.SHARE
    ]
    scores = {c.target: c.score for c in await world.boeket.crossposter.candidates(lesson)}
    assert scores["department:verpleging"] > scores["department:ict"]
    assert scores["department:verpleging"] >= world.boeket.config.crossposting.threshold
    assert scores["department:ict"] < world.boeket.config.crossposting.threshold


async def test_the_same_lesson_is_not_suggested_twice(world: World) -> None:
    await world.share("fatima", "operatiekamer", HANDOVER)
    await world.share("jeroen", "operatiekamer", HANDOVER)  # shared again, word for word
    to_ward = [cp for cp in await world.crossposts() if cp.target == "department:verpleging"]
    assert len(to_ward) == 1
    await world.boeket.crossposter.tick()
    assert len(world.suggestions("verpleegafdeling")) == 1


async def test_weekly_cap_holds(world: World) -> None:
    lessons = [
        "Een vaste overdracht aan het bed met vijf punten verlaagde de werkdruk na de dienst.",
        "Een vaste belronde om vijf uur: wie na de dienst nog moest nabellen over de overdracht, "
        "doet dat nu binnen de dienst; de werkdruk aan het eind van de dag is gedaald.",
        "Sinds de avond- en nachtdienst een kwartier overlappen voor de overdracht, blijft "
        "niemand na de dienst hangen en is de werkdruk in de avond gedaald.",
    ]
    for i, what in enumerate(lessons):
        await world.share(
            "fatima" if i % 2 else "jeroen",
            "operatiekamer",
            {
                "what": what,
                "preconditions": "Afspraken die iedereen kent.",
                "theme": "werkdruk",
            },
        )
    to_ward = [cp for cp in await world.crossposts() if cp.target == "department:verpleging"]
    assert len(to_ward) == 3
    await world.boeket.crossposter.tick()
    assert len(world.suggestions("verpleegafdeling")) == 2  # max_per_week
    statuses = sorted(
        cp.status.value for cp in await world.crossposts() if cp.target == "department:verpleging"
    )
    assert statuses == ["sent", "sent", "skipped"]


async def test_anonymous_lessons_travel_without_a_name(world: World) -> None:
    await world.share("fatima", "operatiekamer", {**HANDOVER, "anonymous": "true"})
    await world.boeket.crossposter.tick()
    [suggestion] = world.suggestions("verpleegafdeling")
    assert "Fatima" not in suggestion.text and "Amrani" not in suggestion.text
    assert "Operatiekamer" in suggestion.text


async def test_a_named_lesson_shows_the_name_only_when_the_person_agreed(world: World) -> None:
    await world.boeket.local.click("fatima", "operatiekamer", "boeket.settings.named", "on")
    await world.share("fatima", "operatiekamer", HANDOVER)
    await world.boeket.crossposter.tick()
    [suggestion] = world.suggestions("verpleegafdeling")
    assert "Fatima el Amrani" in suggestion.text


async def test_not_relevant_lowers_what_a_department_receives(world: World) -> None:
    await world.share("fatima", "operatiekamer", HANDOVER)
    await world.boeket.crossposter.tick()
    [suggestion] = world.suggestions("verpleegafdeling")
    [cp] = [c for c in await world.crossposts() if c.target == "department:verpleging"]
    before = await _score(world, HANDOVER["what"] + " Ook 's nachts.", "department:verpleging")
    response = await world.boeket.local.click(
        "sanne", "verpleegafdeling", NOT_RELEVANT, str(cp.id), message_id=suggestion.id
    )
    assert isinstance(response, Ephemeral)
    after = await _score(world, HANDOVER["what"] + " Ook 's nachts.", "department:verpleging")
    assert after < before - 0.1
    # Clicking again replaces her vote instead of counting twice.
    await world.boeket.local.click("sanne", "verpleegafdeling", USEFUL, str(cp.id))
    assert (
        await _score(world, HANDOVER["what"] + " Ook 's nachts.", "department:verpleging") > after
    )


async def _score(world: World, text: str, target: str) -> float:
    repo = ContributionRepository(world.db)
    probe, _ = await repo.add(
        NewContribution(
            organisation_id=world.org,
            department_id="ok",
            kind=Kind.LES,
            source=Source.SHARE,
            round_date=NOW.date(),
            text=text,
            anonymous=True,
            author=None,
            platform="local",
            event_key=f"probe:{datetime.now(UTC).timestamp()}",
            created_at=world.clock.now(),
            fields={"what": text},
        )
    )
    await world.boeket.matcher.index(probe)
    scores = {c.target: c.score for c in await world.boeket.crossposter.candidates(probe)}
    return scores[target]


async def test_the_receiving_team_translates_and_can_ask_to_talk(world: World) -> None:
    await world.share("fatima", "operatiekamer", HANDOVER)
    await world.boeket.crossposter.tick()
    [suggestion] = world.suggestions("verpleegafdeling")
    answer = "Bij ons zou het werken bij de overdracht van de avond- naar de nachtdienst."
    response = await world.boeket.local.say(
        "sanne", "verpleegafdeling", answer, thread_id=suggestion.id
    )
    assert isinstance(response, Ephemeral)
    await world.boeket.background.drain()
    [translation] = [
        c
        for c in await ContributionRepository(world.db).all(world.org)
        if c.source is Source.TRANSLATION
    ]
    assert translation.department_id == "verpleging" and translation.text == answer
    # About what the lesson was about, and what the ward's own words add.
    assert translation.themes[0] == "werkdruk" and "overdracht" in translation.themes
    original = int(translation.fields["translates"])
    assert (await ContributionRepository(world.db).get(world.org, original)) is not None
    # A translation is the ward's own; it does not travel back as a suggestion.
    assert not [cp for cp in await world.crossposts() if cp.contribution_id == translation.id]

    [cp] = [c for c in await world.crossposts() if c.target == "department:verpleging"]
    await world.boeket.local.click("kees", "verpleegafdeling", TALK, str(cp.id))
    thread = world.boeket.local.thread("verpleegafdeling", suggestion.id)
    assert any("Kees Jansen" in m.text and "Operatiekamer" in m.text for m in thread)
    home = world.boeket.local.messages("operatiekamer")
    assert any("Kees Jansen" in m.text and "Verpleegafdeling" in m.text for m in home)


async def test_quiet_hours_hold_a_suggestion_until_morning(
    db: Database, prompts: PromptLibrary
) -> None:
    late = datetime(2027, 3, 2, 21, 0, tzinfo=UTC)  # 22:00 in Amsterdam
    clock = ManualClock(late)
    boeket = build(
        Settings(database_url=db.url, worker_id="quiet"),
        hospital(quiet_hours={"start": "18:00", "end": "08:00"}),
        clock=clock,
        prompts=prompts,
        db=db,
    )
    await boeket.start(timer=False)
    world = World(boeket, clock, db)
    await world.seed()
    await world.share("fatima", "operatiekamer", HANDOVER)
    [cp] = [c for c in await world.crossposts() if c.target == "department:verpleging"]
    assert cp.due_at == datetime(2027, 3, 3, 7, 0, tzinfo=UTC)  # 08:00 in Amsterdam
    assert await boeket.crossposter.tick() == 0
    clock.set(cp.due_at)
    assert await boeket.crossposter.tick() >= 1
    assert len(world.suggestions("verpleegafdeling")) == 1
    await boeket.stop()


async def test_two_organisations_in_one_database_never_meet(
    db: Database, prompts: PromptLibrary
) -> None:
    clock = ManualClock(NOW)
    first = build(
        Settings(database_url=db.url, worker_id="a"),
        hospital("ziekenhuis-a"),
        clock=clock,
        prompts=prompts,
        db=db,
    )
    second = build(
        Settings(database_url=db.url, worker_id="b", auto_migrate=False),
        hospital("ziekenhuis-b"),
        clock=clock,
        prompts=prompts,
        db=db,
    )
    await first.start(timer=False)
    await second.start(timer=False)
    a, b = World(first, clock, db), World(second, clock, db)
    await b.seed()  # only B has history
    await a.share("fatima", "operatiekamer", HANDOVER)
    await first.crossposter.tick()
    await second.crossposter.tick()
    assert await b.crossposts() == []
    assert all(cp.organisation_id == "ziekenhuis-a" for cp in await a.crossposts())
    assert b.suggestions("verpleegafdeling") == []
    a_ids = {c.id for c in await ContributionRepository(db).all("ziekenhuis-a")}
    b_ids = {c.id for c in await ContributionRepository(db).all("ziekenhuis-b")}
    assert a_ids and b_ids and not a_ids & b_ids
    probe = await second.matcher.embed_query(HANDOVER["what"])
    found = {hit.contribution_id for hit in second.matcher.search("ziekenhuis-b", probe, 50)}
    assert found and found <= b_ids
    await first.stop()
    await second.stop()


async def test_suggestions_are_posted_once_across_workers(
    world: World, prompts: PromptLibrary
) -> None:
    await world.share("fatima", "operatiekamer", HANDOVER)
    replica = build(
        Settings(database_url=world.db.url, worker_id="replica", auto_migrate=False),
        world.boeket.config,
        clock=world.clock,
        prompts=prompts,
        db=world.db,
    )
    await replica.start(timer=False)
    sent = await asyncio.gather(world.boeket.crossposter.tick(), replica.crossposter.tick())
    planned = [cp for cp in await world.crossposts() if cp.status is OccurrenceStatus.SENT]
    assert sum(sent) == len(planned) >= 1
    everywhere = world.suggestions("verpleegafdeling") + [
        m for m in replica.local.messages("verpleegafdeling") if m.author_id == "boeket"
    ]
    assert len(everywhere) == 1
    await replica.stop()
