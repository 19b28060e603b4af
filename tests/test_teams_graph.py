"""Teams posts exactly once after a crash: a post is found again by its key with Microsoft Graph.

Boeket with real credentials (a fake Microsoft login), the real Agents SDK talking to a fake Bot
Connector, and a fake Graph that lists what that connector accepted. A replica that dies
between Teams accepting a post and recording it leaves the claim behind; the replica that takes
it over finds the post (resource-specific consent `ChannelMessage.Read.Group`) and records it
instead of posting a second one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from adapters.teams.adapter import TeamsAdapter
from adapters.teams.settings import TeamsSettings, TeamsSettingsError
from bot.app import build
from bot.clock import ManualClock
from bot.cycle import LEASE
from bot.domain import ChannelRef, OccurrenceStatus, Step
from bot.embedders import LexicalEmbedder
from bot.messages import Actions, Button, Message
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import OccurrenceRepository, PlannedOccurrence, StateStore
from tests.conftest import DatabaseFactory
from tests.fakes.graph import FakeGraph
from tests.fakes.microsoft_login import FakeLogin
from tests.fakes.teams_connector import FakeConnector
from tests.test_teams_http import (
    APP_ID,
    ICT_CHANNEL,
    OK_CHANNEL,
    ORG,
    TENANT,
    TeamsEnv,
    _env,
    card_of,
    card_problems,
    teams_config,
)

pytestmark = pytest.mark.filterwarnings("ignore:The bot client is deprecated:DeprecationWarning")

GROUP = "8f2e0c9a-0000-4000-8000-00000000b001"  # the team's aadGroupId in the install fixtures
TAKEN_OVER = LEASE + timedelta(minutes=1)


@pytest.fixture
async def login() -> AsyncIterator[FakeLogin]:
    fake = FakeLogin(tenant=TENANT, client_id=APP_ID, client_secret="s3cret")
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    try:
        yield fake
    finally:
        await server.close()


def secured_settings(login: FakeLogin, graph_url: str) -> TeamsSettings:
    return TeamsSettings(
        client_id=APP_ID,
        client_secret="s3cret",
        tenant_id=TENANT,
        openid_metadata_url=login.metadata_url,
        login_url=login.url,
        graph_url=graph_url,
        limits=(),  # pacing is tested elsewhere; here it would only make the tests slow
        backoff_seconds=0.01,
    )


@dataclass
class GraphEnv:
    env: TeamsEnv
    graph: FakeGraph
    login: FakeLogin
    settings: TeamsSettings

    @property
    def adapter(self) -> TeamsAdapter:
        adapter = self.env.boeket.adapters["teams"]
        assert isinstance(adapter, TeamsAdapter)
        return adapter

    async def install(self) -> None:
        token = self.login.token(service_url=self.env.fake.url)
        for name in ("install_team", "channel_created"):
            response = await self.env.send(
                self.env.load(name), {"Authorization": f"Bearer {token}"}
            )
            assert response.status in {200, 202}, await response.text()


@pytest.fixture
async def rsc(
    db: Database, prompts: PromptLibrary, clock: ManualClock, login: FakeLogin
) -> AsyncIterator[GraphEnv]:
    graph = FakeGraph(FakeConnector(), login, APP_ID, {GROUP: {OK_CHANNEL, ICT_CHANNEL}})
    server = TestServer(graph.app())
    await server.start_server()
    graph.server = server
    settings = secured_settings(login, graph.url)
    try:
        async for env in _env(db, prompts, clock, settings):
            env.fake.clock = clock.now  # Teams stamps a message with the time it got it
            graph.connector = env.fake
            yield GraphEnv(env, graph, login, settings)
    finally:
        await server.close()


def prompt_like(text: str) -> Message:
    return Message(text=text, blocks=(Actions((Button("answer", "Antwoorden", "1"),)),))


# --- find_posted --------------------------------------------------------------------------------


async def test_finds_a_post_and_a_reply_by_key_in_graph(rsc: GraphEnv, clock: ManualClock) -> None:
    await rsc.install()
    state = StateStore(rsc.env.db, "teams")
    stored = await state.get(f"ref:{OK_CHANNEL}")
    assert stored is not None and stored["team"] == GROUP  # from the install's aadGroupId
    teams = rsc.adapter
    channel = ChannelRef("teams", OK_CHANNEL, TENANT)
    since = clock.now()
    first = await teams.post(channel, prompt_like("Vraag van de week"), key="occurrence:7")
    card = card_of(rsc.env.fake.of("create")[-1])
    assert card_problems(card) == []
    [marker] = [e for e in card["body"] if str(e.get("id", "")).startswith("boeket-key:")]
    assert marker["isVisible"] is False and marker["items"] == []  # nothing anyone sees
    clock.advance(timedelta(minutes=1))
    reply = await teams.reply(first, Message(text="Herinnering"), key="occurrence:8")
    # Enough later posts that the key is on Graph's second page.
    for i in range(60):
        clock.advance(timedelta(seconds=1))
        await teams.post(channel, Message(text=f"later {i}"), key=f"other:{i}")
    assert await teams.find_posted(channel, "occurrence:7", since) == first
    pages = [r for r in rsc.graph.requests if r.path.endswith("/messages")]
    assert len(pages) == 2 and pages[0].query["$top"] == "50"
    assert pages[0].path == f"/v1.0/teams/{GROUP}/channels/{OK_CHANNEL}/messages"
    assert (
        await teams.find_posted(channel, "occurrence:8", since, thread_id=first.thread_id) == reply
    )
    assert rsc.graph.requests[-1].path.endswith(f"/messages/{first.message_id}/replies")
    # A reply's key is not a post's; another key, another channel, or after `since`: not there.
    assert await teams.find_posted(channel, "occurrence:8", since) is None
    assert await teams.find_posted(channel, "occurrence:9", since) is None
    ict = ChannelRef("teams", ICT_CHANNEL, TENANT)
    assert await teams.find_posted(ict, "occurrence:7", since) is None
    later = clock.now() + timedelta(hours=1)
    assert await teams.find_posted(channel, "occurrence:7", later) is None
    # Every Graph call carries an app-only token for Graph, not the one for the connector.
    assert all(r.status == 200 for r in rsc.graph.requests)
    assert {
        rsc.login.scopes[r.authorization.removeprefix("Bearer ")] for r in rsc.graph.requests
    } == {f"{rsc.graph.url}/.default"}


async def test_an_update_keeps_the_key_in_the_card(rsc: GraphEnv, clock: ManualClock) -> None:
    await rsc.install()
    channel = ChannelRef("teams", OK_CHANNEL, TENANT)
    since = clock.now()
    posted = await rsc.adapter.post(channel, prompt_like("Vraag"), key="occurrence:3")
    clock.advance(timedelta(minutes=2))
    await rsc.adapter.update(posted, prompt_like("Vraag, aangepast"))
    assert rsc.env.fake.of("update")
    assert await rsc.adapter.find_posted(channel, "occurrence:3", since) == posted


async def test_without_consent_graph_403_is_logged_once_with_advice(
    rsc: GraphEnv, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await rsc.install()
    channel = ChannelRef("teams", OK_CHANNEL, TENANT)
    since = clock.now()
    await rsc.adapter.post(channel, Message(text="Vraag"), key="occurrence:1")
    rsc.graph.fail(403, times=2)
    assert await rsc.adapter.find_posted(channel, "occurrence:1", since) is None
    assert await rsc.adapter.find_posted(channel, "occurrence:1", since) is None
    assert [r.status for r in rsc.graph.requests] == [403, 403]  # not retried
    advice = [r for r in caplog.records if "ChannelMessage.Read.Group" in r.getMessage()]
    assert len(advice) == 1 and advice[0].levelno == logging.WARNING
    assert GROUP in advice[0].getMessage() and "boeket teams package" in advice[0].getMessage()


async def test_throttling_is_retried_and_other_refusals_give_none(
    rsc: GraphEnv, clock: ManualClock
) -> None:
    await rsc.install()
    channel = ChannelRef("teams", OK_CHANNEL, TENANT)
    since = clock.now()
    posted = await rsc.adapter.post(channel, Message(text="Vraag"), key="occurrence:2")
    rsc.graph.fail(429)
    rsc.graph.fail(503)
    assert await rsc.adapter.find_posted(channel, "occurrence:2", since) == posted
    assert [r.status for r in rsc.graph.requests] == [429, 503, 200]
    rsc.graph.fail(400)
    assert await rsc.adapter.find_posted(channel, "occurrence:2", since) is None
    # Lasting throttling: the post waits for a later attempt instead of risking a second copy.
    rsc.graph.fail(429, times=rsc.settings.max_attempts)
    with pytest.raises(Exception, match="429"):
        await rsc.adapter.find_posted(channel, "occurrence:2", since)


async def test_in_development_mode_nothing_is_asked_of_graph(
    db: Database, prompts: PromptLibrary, clock: ManualClock, login: FakeLogin
) -> None:
    graph = FakeGraph(FakeConnector(), login, APP_ID, {GROUP: {OK_CHANNEL}})
    dev = TeamsSettings(dev_mode=True, tenant_id=TENANT, graph_url="http://127.0.0.1:9")
    async for env in _env(db, prompts, clock, dev):
        await env.install()
        teams = env.boeket.adapters["teams"]
        channel = ChannelRef("teams", OK_CHANNEL, TENANT)
        await teams.post(channel, Message(text="Vraag"), key="occurrence:5")
        assert await teams.find_posted(channel, "occurrence:5", clock.now()) is None
    assert graph.requests == []


async def test_channel_messages_not_for_boeket_are_ignored(rsc: GraphEnv) -> None:
    """With the consent, Teams sends every channel message; only @mentions are for Boeket."""
    await rsc.install()
    token = rsc.login.token(service_url=rsc.env.fake.url)
    chatter = rsc.env.load("channel_reply", ROOT="1700000000001")
    chatter["conversation"]["id"] = OK_CHANNEL  # a new post in the channel, not a reply
    chatter["text"] = "help"  # a command word, said to colleagues
    chatter["entities"] = [e for e in chatter["entities"] if e["type"] != "mention"]
    calls = len(rsc.env.fake.calls)
    response = await rsc.env.send(chatter, {"Authorization": f"Bearer {token}"})
    assert response.status in {200, 202}
    assert await rsc.env.contributions() == []
    assert len(rsc.env.fake.calls) == calls  # no help sent to anyone's 1:1 chat
    mention = rsc.env.load("channel_reply", ROOT="1700000000001")
    mention["conversation"]["id"] = OK_CHANNEL
    mention["id"] = "1700000100999"
    mention["text"] = "<at>Boeket</at> help"
    response = await rsc.env.send(mention, {"Authorization": f"Bearer {token}"})
    assert response.status in {200, 202}
    assert len(rsc.env.fake.calls) > calls  # said to Boeket: the help goes to the 1:1 chat


# --- a crash between posting and recording ------------------------------------------------------


async def _dead_replicas_prompt(rsc: GraphEnv, clock: ManualClock) -> tuple[Any, Any, Any]:
    """A prompt claimed by a replica that posted it in Teams and died before recording it."""
    boeket = rsc.env.boeket
    occurrences = OccurrenceRepository(rsc.env.db)
    dept = boeket.config.department("ok")
    rnd = boeket.cycle.current_round(dept, clock.now() + timedelta(days=1))
    due = rnd.due[Step.PROMPT]
    await occurrences.plan([PlannedOccurrence(ORG, dept.id, Step.PROMPT, rnd.round_date, due)])
    occ = await occurrences.get(ORG, dept.id, Step.PROMPT, rnd.round_date)
    assert occ is not None and await occurrences.claim(occ.id, "dead", due, LEASE)
    clock.set(due)
    posted = await rsc.adapter.post(
        ChannelRef("teams", OK_CHANNEL, dept.workspace),
        prompt_like("De vraag"),
        key=f"occurrence:{occ.id}",
    )
    return occ, rnd, posted


async def _other_replica_ticks(
    rsc: GraphEnv, database_factory: DatabaseFactory, prompts: PromptLibrary, clock: ManualClock
) -> None:
    settings = Settings(
        database_url=rsc.env.db.url, worker_id="replica-2", auto_migrate=True, teams=rsc.settings
    )
    other = build(
        settings,
        teams_config(),
        clock=clock,
        prompts=prompts,
        db=database_factory.open(),
        embedder=LexicalEmbedder(),
    )
    try:
        await other.cycle.tick()
    finally:
        await other.stop()


async def test_a_prompt_a_dead_replica_posted_in_teams_is_recorded_not_posted_twice(
    rsc: GraphEnv, database_factory: DatabaseFactory, prompts: PromptLibrary, clock: ManualClock
) -> None:
    await rsc.install()
    occ, rnd, posted = await _dead_replicas_prompt(rsc, clock)
    clock.set(occ.due_at + TAKEN_OVER)
    await _other_replica_ticks(rsc, database_factory, prompts, clock)
    after = await OccurrenceRepository(rsc.env.db).get(ORG, "ok", Step.PROMPT, rnd.round_date)
    assert after is not None and after.status is OccurrenceStatus.SENT
    assert after.message_id == posted.message_id == after.thread_id
    prompts_posted = [
        c for c in rsc.env.fake.of("create") if c.body["channelData"]["channel"]["id"] == OK_CHANNEL
    ]
    assert len(prompts_posted) == 1
    assert rsc.graph.requests and all(r.status == 200 for r in rsc.graph.requests)


async def test_without_consent_the_dead_replicas_prompt_is_posted_again(
    rsc: GraphEnv, database_factory: DatabaseFactory, prompts: PromptLibrary, clock: ManualClock
) -> None:
    """The caveat that remains: no consent in the team, so at least once (not lost)."""
    await rsc.install()
    occ, rnd, posted = await _dead_replicas_prompt(rsc, clock)
    rsc.graph.fail(403, times=9)
    clock.set(occ.due_at + TAKEN_OVER)
    await _other_replica_ticks(rsc, database_factory, prompts, clock)
    after = await OccurrenceRepository(rsc.env.db).get(ORG, "ok", Step.PROMPT, rnd.round_date)
    assert after is not None and after.status is OccurrenceStatus.SENT
    assert after.message_id != posted.message_id
    assert len(rsc.env.fake.of("create")) == 2


def test_graph_url_is_a_setting_for_sovereign_clouds() -> None:
    base = {"TEAMS_CLIENT_ID": APP_ID, "TEAMS_CLIENT_SECRET": "s", "TEAMS_TENANT_ID": TENANT}
    public = TeamsSettings.from_env(base)
    assert public is not None and public.graph_url == "https://graph.microsoft.com"
    gov = TeamsSettings.from_env({**base, "TEAMS_GRAPH_URL": "https://graph.microsoft.us/"})
    assert gov is not None and gov.graph_url == "https://graph.microsoft.us"
    with pytest.raises(TeamsSettingsError) as refused:
        TeamsSettings.from_env({**base, "TEAMS_GRAPH_URL": "http://graph.example.com"})
    assert refused.value.name == "TEAMS_GRAPH_URL"
