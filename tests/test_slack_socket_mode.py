"""Slack over Socket Mode, end to end: Boeket asks the fake Web API for a socket
(`apps.connections.open`, with the app-level token), connects to a fake Socket Mode server over a
real WebSocket, and gets Slack's envelopes there instead of HTTP requests. Every envelope must be
acknowledged with its `envelope_id`; what it carries must have its effect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from adapters.slack.translate import block_problems
from bot.app import Boeket, build, web_app
from bot.clock import ManualClock
from bot.embedders import LexicalEmbedder
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import ContributionRepository
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.test_slack_http import (
    OK_CHANNEL,
    OK_PROMPT_AT,
    ORG,
    prompt_ts,
    reply_event,
    slack_config,
)

WAIT = 10.0  # seconds: generous, the machine may be busy; a missing ack fails, it never hangs


@dataclass
class FakeSocketMode:
    """Slack's side of a Socket Mode connection: says hello, pushes envelopes, collects acks."""

    connected: asyncio.Event = field(default_factory=asyncio.Event)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_ack: asyncio.Condition = field(default_factory=asyncio.Condition)
    connections: int = 0
    _socket: web.WebSocketResponse | None = None

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._socket = socket
        self.connections += 1
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": "A0BOEKET"},
                "debug_info": {"host": "fake-socket-mode"},
            }
        )
        self.connected.set()
        async for message in socket:
            if message.type is WSMsgType.TEXT:
                ack = json.loads(message.data)
                async with self.new_ack:
                    self.acks[str(ack.get("envelope_id"))] = ack
                    self.new_ack.notify_all()
        return socket

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/link", self.handler)
        return app

    async def push(self, envelope: dict[str, Any]) -> None:
        await asyncio.wait_for(self.connected.wait(), WAIT)
        assert self._socket is not None
        await self._socket.send_json(envelope)

    async def ack_of(self, envelope_id: str) -> dict[str, Any]:
        async def arrived() -> dict[str, Any]:
            async with self.new_ack:
                await self.new_ack.wait_for(lambda: envelope_id in self.acks)
                return self.acks[envelope_id]

        try:
            return await asyncio.wait_for(arrived(), WAIT)
        except TimeoutError:
            raise AssertionError(f"Boeket did not acknowledge envelope {envelope_id}") from None


@dataclass
class SocketEnv:
    fake: FakeSlack
    socket: FakeSocketMode
    client: TestClient[Any, Any]
    boeket: Boeket
    clock: ManualClock
    db: Database

    @property
    def adapter(self) -> SlackAdapter:
        adapter = self.boeket.adapters["slack"]
        assert isinstance(adapter, SlackAdapter)
        return adapter

    async def contributions(self) -> list[Any]:
        await self.adapter.settle()
        return await ContributionRepository(self.db).all(ORG)


@pytest.fixture
async def socket_mode(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[SocketEnv]:
    fake = FakeSlack(users={"U1": {"name": "fatima", "profile": {"display_name": "Fatima"}}})
    fake_server = TestServer(fake.app())
    await fake_server.start_server()
    fake.server = fake_server
    socket = FakeSocketMode()
    socket_server = TestServer(socket.app())
    await socket_server.start_server()
    fake.socket_url = str(socket_server.make_url("/link")).replace("http://", "ws://")
    settings = Settings(
        database_url=db.url,
        worker_id="socket-test",
        auto_migrate=True,
        # No signing secret: over a socket, Slack's requests are not signed.
        slack=SlackSettings(
            signing_secret="",
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            api_url=fake.api_url,
            pace_seconds=0,
        ),
    )
    boeket = build(
        settings, slack_config(), clock=clock, prompts=prompts, db=db, embedder=LexicalEmbedder()
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()  # Boeket starts: the adapter opens its socket
    try:
        yield SocketEnv(fake, socket, client, boeket, clock, db)
    finally:
        await client.close()
        await socket_server.close()
        await fake_server.close()


def events_api(envelope_id: str, event: dict[str, Any], event_id: str, retry: int = 0) -> Any:
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": retry,
        "retry_reason": "timeout" if retry else "",
        "payload": {
            "token": "legacy",
            "team_id": "T0TEST",
            "api_app_id": "A0BOEKET",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
        },
    }


def slash_command(envelope_id: str, text: str, trigger_id: str) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "slash_commands",
        "accepts_response_payload": True,
        "payload": {
            "token": "legacy",
            "team_id": "T0TEST",
            "team_domain": "test",
            "channel_id": OK_CHANNEL,
            "channel_name": "ok",
            "user_id": "U1",
            "user_name": "fatima",
            "command": "/deel",
            "text": text,
            "api_app_id": "A0BOEKET",
            "is_enterprise_install": "false",
            "response_url": "https://hooks.slack.com/commands/T0TEST/1/x",
            "trigger_id": trigger_id,
        },
    }


async def test_the_socket_is_opened_with_the_app_level_token(socket_mode: SocketEnv) -> None:
    await asyncio.wait_for(socket_mode.socket.connected.wait(), WAIT)
    [opened] = socket_mode.fake.of("apps.connections.open")
    assert opened.token == APP_TOKEN
    # Nothing arrives over HTTP in Socket Mode, and with no signing secret nothing could be
    # verified there: the endpoint is not served at all.
    response = await socket_mode.client.post("/slack/events", data=b"{}")
    assert response.status in {404, 405}


async def test_a_thread_reply_over_the_socket_is_acked_and_stored_once(
    socket_mode: SocketEnv,
) -> None:
    socket_mode.clock.set(OK_PROMPT_AT)
    await socket_mode.boeket.cycle.tick()
    thread = prompt_ts(socket_mode)  # type: ignore[arg-type]
    event = reply_event("De overdracht aan het bed werkt beter met vijf vaste punten.", thread)

    await socket_mode.socket.push(events_api("env-1", event, "Ev0SOCK"))
    assert await socket_mode.socket.ack_of("env-1") == {"envelope_id": "env-1"}
    # Slack delivers again when an ack was late: the same event in a new envelope.
    await socket_mode.socket.push(events_api("env-2", event, "Ev0SOCK", retry=1))
    assert (await socket_mode.socket.ack_of("env-2"))["envelope_id"] == "env-2"

    [stored] = await socket_mode.contributions()
    assert stored.text == "De overdracht aan het bed werkt beter met vijf vaste punten."
    assert stored.round_date == date(2027, 3, 2)
    assert stored.author is not None and stored.author.name == "Fatima"
    [nudge] = socket_mode.fake.of("chat.postEphemeral")  # the follow-up question, once
    assert nudge.args["user"] == "U1" and nudge.args["thread_ts"] == thread


async def test_deel_over_the_socket_is_acked_and_opens_the_share_modal(
    socket_mode: SocketEnv,
) -> None:
    await socket_mode.socket.push(slash_command("env-3", "", "trig-socket"))
    ack = await socket_mode.socket.ack_of("env-3")
    assert ack["envelope_id"] == "env-3"
    assert not ack.get("payload")  # a bare ack: the modal is the answer
    await socket_mode.adapter.settle()
    [opened] = socket_mode.fake.of("views.open")
    assert opened.token == BOT_TOKEN
    assert opened.args["trigger_id"] == "trig-socket"
    view = opened.args["view"]
    assert view["type"] == "modal" and view["callback_id"] == "boeket.share"
    assert block_problems(view["blocks"], surface="modal") == []
