"""A claim taken over after its post went out: found by its idempotency key, never posted twice.

A worker that dies between the platform accepting a post and recording it leaves the row claimed.
These tests leave exactly that behind (a claim by "dead" plus the message it posted, with its
key), then let a live worker take the claim over after the lease: it must record the message that
is there instead of posting a second one. On the local adapter and on Slack (a fake Web API).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from adapters.local.adapter import LocalAdapter
from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from bot.app import Boeket
from bot.clock import ManualClock
from bot.crosspost import CATCH_UP_AFTER
from bot.cycle import LEASE
from bot.domain import ChannelRef, OccurrenceStatus, PostedMessage, Step
from bot.embedders import LexicalEmbedder
from bot.messages import Message
from prompts.library import PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.repositories import (
    ContributionRepository,
    CrosspostRepository,
    OccurrenceRepository,
    PlannedOccurrence,
)
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.test_crosspost import HANDOVER, World, _world
from tests.test_digest import CROSS, DUE, _org, hospital

TAKEN_OVER = LEASE + timedelta(minutes=1)


def keyed(local: LocalAdapter, channel: str, key: str) -> list[Any]:
    return [m for m in local.messages(channel) if m.key == key]


# --- find_posted --------------------------------------------------------------------------------


async def test_local_finds_a_post_and_a_reply_by_key_also_after_a_restart(
    boeket: Boeket, clock: ManualClock
) -> None:
    local = boeket.local
    channel = ChannelRef("local", "operatiekamer")
    since = clock.now()
    first = await local.post(channel, Message(text="Vraag van de week"), key="occurrence:1")
    reply = await local.reply(first, Message(text="Herinnering"), key="occurrence:2")
    await local.post(channel, Message(text="Zonder sleutel"))
    assert await local.find_posted(channel, "occurrence:1", since) == first
    assert await local.find_posted(channel, "occurrence:2", since, thread_id=first.thread_id) == (
        reply
    )
    # A key is looked for where it was posted: not in the channel for a reply, nor elsewhere.
    assert await local.find_posted(channel, "occurrence:2", since) is None
    assert await local.find_posted(channel, "occurrence:3", since) is None
    other = ChannelRef("local", "ict")
    assert await local.find_posted(other, "occurrence:1", since) is None
    # The history is kept in the database: a new process finds what the old one posted.
    again = LocalAdapter(local._settings, clock=clock, state=local._state)
    assert await again.find_posted(channel, "occurrence:1", since) == first


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    try:
        yield fake
    finally:
        await server.close()


async def test_slack_finds_a_post_by_its_metadata_in_history_and_a_reply_in_its_thread(
    fake_slack: FakeSlack,
) -> None:
    slack = SlackAdapter(
        SlackSettings(
            signing_secret="s" * 32, bot_token=BOT_TOKEN, api_url=fake_slack.api_url, pace_seconds=0
        )
    )
    channel = ChannelRef("slack", "C0OPERATIE")
    since = datetime.now(UTC)
    first = await slack.post(channel, Message(text="Vraag van de week"), key="occurrence:7")
    [call] = fake_slack.of("chat.postMessage")
    assert call.args["metadata"] == {
        "event_type": "boeket_post",
        "event_payload": {"key": "occurrence:7"},
    }
    reply = await slack.reply(first, Message(text="Herinnering"), key="occurrence:8")
    # Enough later messages that the key is on the second page of the history.
    for i in range(250):
        await slack.post(channel, Message(text=f"later {i}"), key=f"other:{i}")
    assert await slack.find_posted(channel, "occurrence:7", since) == first
    history = fake_slack.of("conversations.history")
    assert len(history) == 2 and history[-1].args.get("cursor")
    assert history[0].args["include_all_metadata"] in {"1", "true", True}
    assert await slack.find_posted(channel, "occurrence:8", since, thread_id=first.thread_id) == (
        reply
    )
    assert fake_slack.of("conversations.replies")[0].args["ts"] == first.message_id
    assert await slack.find_posted(channel, "occurrence:9", since) is None
    # Messages from before `since` (less Slack's clock skew) are not searched.
    assert await slack.find_posted(channel, "occurrence:7", since + timedelta(hours=1)) is None
    await slack.stop()


# --- the cycle, cross-posts and the digest take a claim over ------------------------------------


async def test_the_cycle_records_the_prompt_a_dead_worker_posted_instead_of_posting_it_again(
    boeket: Boeket, db: Database, clock: ManualClock
) -> None:
    occurrences = OccurrenceRepository(db)
    org = boeket.config.organisation.id
    dept = boeket.config.department("ok")
    rnd = boeket.cycle.current_round(dept, clock.now() + timedelta(days=1))
    due = rnd.due[Step.PROMPT]
    await occurrences.plan([PlannedOccurrence(org, dept.id, Step.PROMPT, rnd.round_date, due)])
    occ = await occurrences.get(org, dept.id, Step.PROMPT, rnd.round_date)
    assert occ is not None
    assert await occurrences.claim(occ.id, "dead", due, LEASE)
    channel = ChannelRef("local", dept.channel)
    posted = await boeket.local.post(channel, Message(text="De vraag"), key=f"occurrence:{occ.id}")
    # The worker died here. Within the lease nobody touches the claim; after it, one takes over.
    clock.set(due + LEASE / 2)
    await boeket.cycle.tick()
    assert (await occurrences.get(org, dept.id, Step.PROMPT, rnd.round_date)).status is (  # type: ignore[union-attr]
        OccurrenceStatus.CLAIMED
    )
    clock.set(due + TAKEN_OVER)
    await boeket.cycle.tick()
    after = await occurrences.get(org, dept.id, Step.PROMPT, rnd.round_date)
    assert after is not None and after.status is OccurrenceStatus.SENT
    assert after.message_id == posted.message_id and after.attempts == 2
    assert [m.id for m in keyed(boeket.local, dept.channel, f"occurrence:{occ.id}")] == [
        posted.message_id
    ]
    assert [m.key for m in boeket.local.messages(dept.channel) if m.author_id == "boeket"] == [
        f"occurrence:{occ.id}"
    ]


async def test_a_claim_taken_over_whose_post_never_went_out_is_posted_once(
    boeket: Boeket, db: Database, clock: ManualClock
) -> None:
    occurrences = OccurrenceRepository(db)
    org = boeket.config.organisation.id
    dept = boeket.config.department("ok")
    rnd = boeket.cycle.current_round(dept, clock.now() + timedelta(days=1))
    due = rnd.due[Step.PROMPT]
    await occurrences.plan([PlannedOccurrence(org, dept.id, Step.PROMPT, rnd.round_date, due)])
    occ = await occurrences.get(org, dept.id, Step.PROMPT, rnd.round_date)
    assert occ is not None and await occurrences.claim(occ.id, "dead", due, LEASE)
    clock.set(due + TAKEN_OVER)
    await boeket.cycle.tick()
    [message] = keyed(boeket.local, dept.channel, f"occurrence:{occ.id}")
    after = await occurrences.get(org, dept.id, Step.PROMPT, rnd.round_date)
    assert after is not None and after.message_id == message.id


async def test_a_suggestion_a_dead_worker_posted_is_recorded_not_posted_again(
    db: Database, prompts: PromptLibrary
) -> None:
    world: World = await _world(db, prompts, LexicalEmbedder())
    try:
        await world.share("fatima", "operatiekamer", HANDOVER)
        crossposts = CrosspostRepository(db)
        [cp] = [c for c in await world.crossposts() if c.target == "department:verpleging"]
        now = world.clock.now()
        assert await crossposts.claim(cp.id, "dead", now, LEASE)
        channel = ChannelRef("local", "verpleegafdeling")
        posted = await world.boeket.local.post(
            channel, Message(text="Een les van de OK"), key=f"crosspost:{cp.id}"
        )
        world.clock.set(now + TAKEN_OVER)
        await world.boeket.crossposter.tick()
        after = await crossposts.get(world.org, cp.id)
        assert after is not None and after.status is OccurrenceStatus.SENT
        assert after.message_id == posted.message_id
        assert len(keyed(world.boeket.local, "verpleegafdeling", f"crosspost:{cp.id}")) == 1
        assert world.suggestions("verpleegafdeling") == []  # no second, rendered suggestion
    finally:
        await world.boeket.stop()


async def test_a_digest_a_dead_worker_posted_is_recorded_not_posted_again(
    db: Database, prompts: PromptLibrary
) -> None:
    org = await _org(db, prompts, hospital(), "alive")
    try:
        await org.add("ok", "Een les over de overdracht.", theme="overdracht")
        week = org.boeket.digest.week_ending(DUE + timedelta(seconds=1))
        digests = DigestRepository(db)
        await digests.plan(org.boeket.config.organisation.id, week.week_start, week.until)
        [digest] = await digests.all(org.boeket.config.organisation.id)
        assert await digests.claim(digest.id, "dead", DUE, LEASE)
        posted: PostedMessage = await org.boeket.local.post(
            ChannelRef("local", CROSS), Message(text="De week"), key=f"digest:{digest.id}"
        )
        org.clock.set(DUE + TAKEN_OVER)
        assert await org.boeket.digest.tick() == 1
        [after] = await digests.all(org.boeket.config.organisation.id)
        assert after.status is OccurrenceStatus.SENT and after.message_id == posted.message_id
        assert len(org.posted()) == 1
    finally:
        await org.boeket.stop()


async def test_a_lesson_stored_by_a_process_that_died_before_planning_still_travels_once(
    db: Database, prompts: PromptLibrary
) -> None:
    """The outbox: a shared lesson is stored (and acknowledged) with its suggestions still to
    plan. The process dies before its background work runs; a later tick plans and posts them."""
    world: World = await _world(db, prompts, LexicalEmbedder())
    try:
        lost: list[str] = []

        def die(work: Any, name: str) -> None:
            work.close()  # the process is gone: this work never runs
            lost.append(name)

        world.boeket.background.spawn = die  # type: ignore[method-assign]
        await world.share("fatima", "operatiekamer", HANDOVER)
        assert lost and await world.crossposts() == []
        now = world.clock.now()
        await world.boeket.crossposter.tick()  # the background task may still be doing it
        assert await world.crossposts() == []
        world.clock.set(now + CATCH_UP_AFTER + timedelta(seconds=1))
        await world.boeket.crossposter.tick()
        assert "department:verpleging" in {cp.target for cp in await world.crossposts()}
        assert len(world.suggestions("verpleegafdeling")) == 1
        world.clock.set(now + timedelta(hours=1))
        await world.boeket.crossposter.tick()
        assert len(world.suggestions("verpleegafdeling")) == 1
        [lesson] = await world.shares()
        assert (
            await ContributionRepository(db).unconsidered(
                world.org, now - timedelta(days=1), now + timedelta(days=1)
            )
            == []
        )
        assert lesson.id in {cp.contribution_id for cp in await world.crossposts()}
    finally:
        await world.boeket.stop()
