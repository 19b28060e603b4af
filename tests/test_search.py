"""`/deel zoek`: a person looks up what other departments learned — found by meaning, and only
what may travel (shareable, not private, named only with consent, never their own department)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bot.domain import ChannelRef, Person, PersonSettings
from bot.embedders import Embedder, LexicalEmbedder
from bot.messages import CommandEvent, Ephemeral, Message
from bot.privacy import Visibility
from bot.search import MAX_QUERY, Search
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import ContributionRepository, PersonSettingsRepository

from .test_crosspost import HANDOVER, NOW, World, _world

# A question about the handover lesson in other words than the lesson's own.
QUESTION = "minder overwerk door een betere overdracht tussen diensten"


@pytest.fixture
async def hospital_world(
    db: Database, prompts: PromptLibrary, default_embedder: Embedder
) -> AsyncIterator[World]:
    w = await _world(db, prompts, default_embedder)
    try:
        yield w
    finally:
        await w.boeket.stop()


async def _search(world: World, channel: str, words: str, person: str = "ilse") -> Message:
    reply = await world.boeket.local.say(person, channel, f"/deel zoek {words}".rstrip())
    assert isinstance(reply, Ephemeral), reply  # only the person who asked sees it
    return reply.message


def _shown(message: Message) -> str:
    return json.dumps([repr(b) for b in message.blocks], ensure_ascii=False)


async def test_a_lesson_from_another_department_is_found_by_meaning(
    hospital_world: World,
) -> None:
    await hospital_world.share("fatima", "operatiekamer", HANDOVER)

    found = await _search(hospital_world, "ict", QUESTION)

    shown = _shown(found)
    assert "een vast lijstje van vijf punten" in shown
    assert "Operatiekamer" in shown
    assert "Iedereen gebruikt hetzelfde lijstje" in shown  # its crucial preconditions
    assert "Wat anderen leerden over" in found.text
    assert "Fatima" not in shown and "fatima" not in shown  # she did not agree to be named


async def test_never_the_askers_own_department(hospital_world: World) -> None:
    await hospital_world.share("fatima", "operatiekamer", HANDOVER)

    found = await _search(hospital_world, "operatiekamer", QUESTION)

    assert "een vast lijstje van vijf punten" not in _shown(found)


async def test_a_name_only_with_consent_and_never_for_anonymous(hospital_world: World) -> None:
    await PersonSettingsRepository(hospital_world.db).put(
        hospital_world.org, "local", "fatima", PersonSettings(named_elsewhere=True), NOW
    )
    await hospital_world.share("fatima", "operatiekamer", HANDOVER)

    named = _shown(await _search(hospital_world, "ict", QUESTION))

    person = hospital_world.boeket.local.person("fatima").name
    assert person in named
    await hospital_world.share("fatima", "operatiekamer", {**HANDOVER, "anonymous": "true"})
    found = await _search(hospital_world, "hr", QUESTION)
    blocks = [repr(b) for b in found.blocks]
    anonymous = [b for b in blocks if "vast lijstje" in b]
    assert len(anonymous) == 2  # the named share and the anonymous one
    assert sum(person in b for b in blocks) == 1  # one name line: the named share's


async def test_what_may_not_travel_is_not_found(hospital_world: World) -> None:
    await hospital_world.share("fatima", "operatiekamer", {**HANDOVER, "not_shared": "true"})

    found = await _search(hospital_world, "ict", QUESTION)

    assert "een vast lijstje van vijf punten" not in _shown(found)


async def test_a_private_departments_words_stay_unless_it_opted_in(
    hospital_world: World,
) -> None:
    """The local chat has no private channels: here the operating room's is private (an
    adapter that says so), as a Slack channel can be."""
    await hospital_world.share("fatima", "operatiekamer", HANDOVER)
    boeket = hospital_world.boeket

    class PrivateOperatingRoom:
        async def is_private(self, channel: ChannelRef) -> bool:
            return channel.channel == "operatiekamer"

    def search(opted_in: bool) -> Search:
        departments = [
            d.model_copy(update={"share_from_private": opted_in}) if d.id == "ok" else d
            for d in boeket.config.departments
        ]
        return Search(
            config=boeket.config.model_copy(update={"departments": departments}),
            texts=boeket.texts,
            matcher=boeket.matcher,
            contributions=ContributionRepository(hospital_world.db),
            settings=PersonSettingsRepository(hospital_world.db),
            crossposter=boeket.crossposter,
            visibility=Visibility({"local": PrivateOperatingRoom()}),  # type: ignore[dict-item]
        )

    ict = ChannelRef("local", "ict")
    asker = boeket.config.department_for_channel("local", "ict")
    event = CommandEvent("e1", ict, Person("ilse", "Ilse"), "deel", f"zoek {QUESTION}")

    closed = await search(False).find(QUESTION, asker=asker, event=event)
    opened = await search(True).find(QUESTION, asker=asker, event=event)

    assert "ok" not in {c.department_id for c, _ in closed}
    assert "ok" in {c.department_id for c, _ in opened}


async def test_empty_too_long_and_nothing_found_say_so(
    db: Database, prompts: PromptLibrary
) -> None:
    world = await _world(db, prompts, LexicalEmbedder())
    try:
        empty = await _search(world, "ict", "")
        too_long = await _search(world, "ict", "werkdruk " * (MAX_QUERY // 9 + 1))
        nothing = await _search(world, "ict", "tomatensoep stokbrood")
        help_text = await world.boeket.local.say("ilse", "ict", "/deel help")
    finally:
        await world.boeket.stop()

    assert "Waar wil je naar zoeken?" in empty.text
    assert "hoogstens 300" in too_long.text
    assert "Nog niets gevonden over “tomatensoep stokbrood”" in nothing.text
    assert isinstance(help_text, Ephemeral)
    assert (
        await world.boeket.search.handle(
            CommandEvent("e2", ChannelRef("local", "ict"), Person("ilse", "Ilse"), "help", "zoek x")
        )
        is None
    )  # only `deel zoek` is a search
    assert "/deel zoek WOORDEN" in _shown(help_text.message)


async def test_a_single_word_finds_the_lesson_about_it_and_no_more(hospital_world: World) -> None:
    """ "verzuim" is close to little; what is about it is still found, and a sentence's answer
    does not come with lessons that are only a little like it."""
    await hospital_world.share("fatima", "operatiekamer", HANDOVER)

    absence = _shown(await _search(hospital_world, "ict", "verzuim"))
    newcomers = _shown(await _search(hospital_world, "ict", "inwerken van nieuwe collega's"))

    assert "Veel verzuim in de avonddiensten" in absence
    assert "vast lijstje" not in absence
    assert "het inwerken is te vrijblijvend" in newcomers
    assert "vast lijstje" not in newcomers and "verzuim" not in newcomers
