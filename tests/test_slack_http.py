"""Slack end to end: Slack's requests signed and sent over HTTP to Boeket, the real slack_sdk client
talking to a fake Slack Web API on port 0."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.signature import SignatureVerifier

from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from adapters.slack.translate import block_problems
from bot.app import Boeket, build, web_app
from bot.clock import ManualClock
from bot.config import OrgConfig, parse_config
from bot.domain import ChannelRef, OccurrenceStatus, Step
from bot.embedders import LexicalEmbedder
from bot.messages import Message, ShowForm
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import ContributionRepository, OccurrenceRepository, StateStore
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.test_observability import samples

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ORG = "ziekenhuis-de-linde"
OK_CHANNEL = "C0OPERATIE"
ICT_CHANNEL = "C0ICT"
OK_PROMPT_AT = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
OK_HARVEST_AT = datetime(2027, 3, 2, 6, 30, tzinfo=UTC)


def slack_config() -> OrgConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for dept in data["departments"]:
        if dept["id"] == "ok":
            dept.update(platform="slack", channel=OK_CHANNEL)
        if dept["id"] == "ict":
            dept.update(platform="slack", channel=ICT_CHANNEL)
    return parse_config(data, Path("slack.yaml"))


def sign(secret: str, timestamp: str, body: str) -> str:
    """Slack's request signature: v0= HMAC-SHA256 over "v0:{timestamp}:{body}"."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def test_signing_matches_slacks_published_test_vector() -> None:
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        "G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
        "collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F39770"
        "0885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10"
        "d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(SECRET, "1531420618", body) == expected

    class Frozen:
        def now(self) -> float:
            return 1531420618.0

    verifier = SignatureVerifier(SECRET, clock=Frozen())  # type: ignore[arg-type]
    headers = {"x-slack-request-timestamp": "1531420618", "x-slack-signature": expected}
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + "x", headers)


@dataclass
class SlackEnv:
    fake: FakeSlack
    client: TestClient[Any, Any]
    boeket: Boeket
    clock: ManualClock
    db: Database

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        retry: int | None = None,
    ) -> ClientResponse:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret, ts, body),
        }
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return await self.client.post("/slack/events", data=body.encode(), headers=headers)

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str = "Ev001",
        retry: int | None = None,
        **kwargs: Any,
    ) -> ClientResponse:
        envelope = {
            "token": "legacy",
            "team_id": "T0TEST",
            "api_app_id": "A0BOEKET",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
        }
        return await self.post(json.dumps(envelope), "application/json", retry=retry, **kwargs)

    async def command(
        self, text: str, *, channel: str = OK_CHANNEL, user: str = "U1"
    ) -> ClientResponse:
        form = {
            "token": "legacy",
            "team_id": "T0TEST",
            "team_domain": "test",
            "channel_id": channel,
            "channel_name": "ok",
            "user_id": user,
            "user_name": "fatima",
            "command": "/deel",
            "text": text,
            "api_app_id": "A0BOEKET",
            "response_url": self.fake.response_url,
            "trigger_id": f"trig-{time.monotonic_ns()}",
        }
        return await self.post(urlencode(form), "application/x-www-form-urlencoded")

    async def interactive(self, payload: dict[str, Any]) -> ClientResponse:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def tick(self, moment: datetime) -> None:
        self.clock.set(moment)
        await self.boeket.cycle.tick()

    async def settle(self) -> None:
        """Wait for what Boeket does after its acknowledgements (thread replies, modals)."""
        adapter = self.boeket.adapters["slack"]
        assert isinstance(adapter, SlackAdapter)
        await adapter.settle()

    async def contributions(self) -> list[Any]:
        """The stored contributions, once the requests sent so far have been worked off."""
        await self.settle()
        return await ContributionRepository(self.db).all(ORG)


async def eventually(check: Callable[[], Any], within: float = 5.0) -> Any:
    """Lazy listeners run after the acknowledgement: wait for their effect."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("the expected Slack call did not happen")
        await asyncio.sleep(0.02)


@pytest.fixture
async def slack(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[SlackEnv]:
    fake = FakeSlack(
        users={
            "U1": {
                "name": "fatima",
                "real_name": "Fatima el Amrani",
                "profile": {"display_name": "Fatima el Amrani"},
            },
            "U2": {"name": "jeroen", "real_name": "Jeroen de Vries", "profile": {}},
        }
    )
    fake_server = TestServer(fake.app())
    await fake_server.start_server()
    fake.server = fake_server
    boeket = slack_boeket(db, prompts, clock, fake)
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()
    try:
        yield SlackEnv(fake, client, boeket, clock, db)
    finally:
        await client.close()
        await fake_server.close()


def slack_boeket(
    db: Database, prompts: PromptLibrary, clock: ManualClock, fake: FakeSlack
) -> Boeket:
    settings = Settings(
        database_url=db.url,
        worker_id="slack-test",
        auto_migrate=True,
        slack=SlackSettings(
            signing_secret=SECRET, bot_token=BOT_TOKEN, api_url=fake.api_url, pace_seconds=0
        ),
    )
    return build(
        settings, slack_config(), clock=clock, prompts=prompts, db=db, embedder=LexicalEmbedder()
    )


def prompt_ts(env: SlackEnv, channel: str = OK_CHANNEL) -> str:
    posts = [c for c in env.fake.of("chat.postMessage") if c.args.get("channel") == channel]
    assert posts, "no prompt was posted"
    return "1700000000.000001" if not posts else _ts_of(env, posts[0])


def _ts_of(env: SlackEnv, call: Any) -> str:
    index = env.fake.calls.index(call)
    posted = [c for c in env.fake.calls[: index + 1] if c.method == "chat.postMessage"]
    return f"1700000000.{len(posted):06d}"


def reply_event(
    text: str,
    thread_ts: str,
    *,
    user: str = "U1",
    ts: str = "1700000100.000100",
    channel: str = OK_CHANNEL,
) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        "channel_type": "channel",
        "event_ts": ts,
    }


def button_click(
    action_id: str,
    value: str,
    *,
    user: str = "U1",
    trigger_id: str | None = None,
    message_ts: str | None = None,
    response_url: str | None = None,
) -> dict[str, Any]:
    """A `block_actions` payload: a button clicked in a message in the OK channel (`message_ts`,
    with the `response_url` Slack gives for it), or without one, on the person's App Home."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": "T0TEST"},
        "trigger_id": trigger_id or f"trig-{value}",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0TEST"},
        "api_app_id": "A0BOEKET",
        "token": "legacy",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": "1700000500.1",
                "text": {"type": "plain_text", "text": "x"},
            }
        ],
    }
    if message_ts is None:
        payload["container"] = {"type": "view", "view_id": "V0HOME"}
        payload["view"] = {"id": "V0HOME", "type": "home", "blocks": []}
    else:
        payload["response_url"] = response_url
        payload["container"] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": OK_CHANNEL,
        }
        payload["channel"] = {"id": OK_CHANNEL, "name": "ok"}
        payload["message"] = {"ts": message_ts, "text": "x"}
    return payload


# --- the cycle posts Block Kit ----------------------------------------------------------------


async def test_prompt_is_block_kit_with_an_answer_button(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    [post] = [c for c in slack.fake.of("chat.postMessage") if c.args["channel"] == OK_CHANNEL]
    assert post.token == BOT_TOKEN
    blocks = post.args["blocks"]
    assert block_problems(blocks, surface="message") == []
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Antwoorden"]
    assert post.args.get("unfurl_links") in {False, "false", "0"}
    occ = await OccurrenceRepository(slack.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.SENT
    assert occ.message_id == prompt_ts(slack)


# --- thread replies, retries, escaping --------------------------------------------------------


async def test_retried_event_stores_one_contribution(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    event = reply_event("De huddle om half acht werkt.", thread)
    for retry in (None, 1, 2):
        response = await slack.event(event, event_id="Ev0RETRY", retry=retry)
        assert response.status == 200
    [stored] = await slack.contributions()
    assert stored.text == "De huddle om half acht werkt."
    assert stored.author is not None and stored.author.name == "Fatima el Amrani"
    assert stored.round_date == date(2027, 3, 2)
    # The follow-up question is whispered once, to her only, in the thread.
    [nudge] = slack.fake.of("chat.postEphemeral")
    assert nudge.args["user"] == "U1" and nudge.args.get("thread_ts") == thread


async def test_deliveries_arriving_together_store_one_contribution(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    event = reply_event("De huddle om half acht werkt.", prompt_ts(slack))
    responses = await asyncio.gather(
        *(slack.event(event, event_id="Ev0TWICE", retry=retry) for retry in (None, 1, 2))
    )
    assert [r.status for r in responses] == [200, 200, 200]
    assert len(await slack.contributions()) == 1
    assert len(slack.fake.of("chat.postEphemeral")) == 1


async def test_a_reply_acknowledged_before_a_crash_is_stored_at_the_next_start(
    slack: SlackEnv, prompts: PromptLibrary
) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    # What the inbox holds when Boeket died after its acknowledgement, before the core.
    envelope = {
        "type": "event_callback",
        "event_id": "Ev0CRASH",
        "team_id": "T0TEST",
        "event": reply_event("Na de herstart nog steeds bewaard.", thread),
    }
    inbox = StateStore(slack.db, "slack", namespace=ORG)  # the organisation's own inbox
    await inbox.add_many({"inbox:Ev0CRASH": envelope}, OK_PROMPT_AT)
    assert await slack.contributions() == []

    restarted = slack_boeket(slack.db, prompts, slack.clock, slack.fake)
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(restarted, timer=False)))
    await client.start_server()
    try:
        adapter = restarted.adapters["slack"]
        assert isinstance(adapter, SlackAdapter)
        await adapter.settle()
    finally:
        await client.close()
    [stored] = await ContributionRepository(slack.db).all(ORG)
    assert stored.text == "Na de herstart nog steeds bewaard."
    assert stored.author is not None and stored.author.name == "Fatima el Amrani"
    assert await inbox.keys("inbox:") == []


async def test_bot_messages_and_edits_are_not_contributions(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    bot = {**reply_event("automatisch", thread), "bot_id": "B999", "subtype": "bot_message"}
    await slack.event(bot, event_id="Ev0BOT")
    edit = {
        "type": "message",
        "subtype": "message_changed",
        "channel": OK_CHANNEL,
        "message": {"text": "x", "ts": "1.2"},
        "ts": "1700000200.0",
    }
    await slack.event(edit, event_id="Ev0EDIT")
    assert await slack.contributions() == []


async def test_user_text_never_pings_or_links_when_repeated(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    text = "<!channel> Kijk <@U999> en <https://evil.example|klik hier> &amp; <!here>"
    await slack.event(reply_event(text, thread), event_id="Ev0ESC")
    [stored] = await slack.contributions()
    assert "<!channel>" not in stored.text and "<!here>" not in stored.text
    await slack.tick(OK_HARVEST_AT)
    harvest = [c for c in slack.fake.of("chat.postMessage") if c.args["channel"] == OK_CHANNEL][-1]
    rendered = json.dumps(harvest.args["blocks"]) + harvest.args.get("text", "")
    for dangerous in ("<!channel>", "<!here>", "<@U999>", "<https://evil.example"):
        assert dangerous not in rendered
    assert "klik hier" in rendered
    assert harvest.args.get("link_names") in {None, False, "false", "0"}
    assert block_problems(harvest.args["blocks"], surface="message") == []


# --- security ---------------------------------------------------------------------------------


async def test_bad_signature_and_replay_are_refused(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    wrong = await slack.event(reply_event("x" * 10, thread), event_id="Ev0BAD", secret="wrong")
    assert wrong.status == 401
    stale = await slack.event(
        reply_event("y" * 10, thread), event_id="Ev0OLD", timestamp=int(time.time()) - 301
    )
    assert stale.status == 401
    unsigned = await slack.client.post(
        "/slack/events", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert unsigned.status == 401
    assert await slack.contributions() == []


# --- /deel ------------------------------------------------------------------------------------


async def test_deel_acks_at_once_and_opens_the_share_modal(slack: SlackEnv) -> None:
    response = await slack.command("")
    assert response.status == 200
    [opened] = await eventually(lambda: slack.fake.of("views.open"))
    view = opened.args["view"]
    assert view["type"] == "modal" and view["callback_id"] == "boeket.share"
    assert block_problems(view["blocks"], surface="modal") == []
    block_ids = [b.get("block_id") for b in view["blocks"] if b["type"] == "input"]
    assert block_ids == [
        "what",
        "preconditions",
        "effect",
        "goal",
        "theme",
        "not_shared",
        "anonymous",
    ]


async def test_work_after_acks_lets_the_requests_being_answered_go_first(
    slack: SlackEnv,
) -> None:
    """In a burst, opening the modal waits until no other request is being answered, so that
    every acknowledgement of the burst goes out first; within its patience, it opens anyway."""
    in_flight = slack.boeket.in_flight
    in_flight.started()  # another request of the burst is being answered
    try:
        response = await slack.command("")
        assert response.status == 200
        await asyncio.sleep(0.3)
        assert slack.fake.of("views.open") == []
    finally:
        in_flight.finished()
    await eventually(lambda: slack.fake.of("views.open"), within=2.0)

    in_flight.started()  # a stream that never pauses: the modal opens after the patience
    try:
        await slack.command("")
        await eventually(lambda: len(slack.fake.of("views.open")) == 2, within=3.0)
    finally:
        in_flight.finished()


async def test_deel_help_and_outside_a_department(slack: SlackEnv) -> None:
    await slack.command("help")
    [help_] = await eventually(lambda: slack.fake.of("response_url"))
    assert help_.args["response_type"] == "ephemeral"
    assert "/deel mijn" in json.dumps(help_.args, ensure_ascii=False)
    await slack.command("", channel="C0RANDOM")
    calls = await eventually(
        lambda: len(slack.fake.of("response_url")) == 2 and slack.fake.of("response_url")
    )
    assert "niet bij een afdeling" in json.dumps(calls[1].args, ensure_ascii=False)
    assert slack.fake.of("views.open") == []


async def test_deel_zoek_answers_the_person_alone_and_never_pings(slack: SlackEnv) -> None:
    await slack.command("zoek <!channel> tomatensoep")
    [answer] = await eventually(lambda: slack.fake.of("response_url"))

    assert answer.args["response_type"] == "ephemeral"
    shown = json.dumps(answer.args, ensure_ascii=False)
    assert "Nog niets gevonden over" in shown and "tomatensoep" in shown
    assert "<!channel>" not in shown
    assert slack.fake.of("views.open") == [] and slack.fake.of("chat.postMessage") == []


def share_submission(view_id: str, values: dict[str, Any], *, user: str = "U2") -> dict[str, Any]:
    state = {
        "what": {"what": {"type": "plain_text_input", "value": values.get("what")}},
        "preconditions": {
            "preconditions": {"type": "plain_text_input", "value": values.get("preconditions")}
        },
        "effect": {"effect": {"type": "plain_text_input", "value": values.get("effect")}},
        "goal": {
            "goal": {
                "type": "static_select",
                "selected_option": (
                    {"value": values["goal"], "text": {"type": "plain_text", "text": "g"}}
                    if values.get("goal")
                    else None
                ),
            }
        },
        "theme": {"theme": {"type": "static_select", "selected_option": None}},
        "anonymous": {
            "anonymous": {
                "type": "checkboxes",
                "selected_options": (
                    [{"value": "true", "text": {"type": "plain_text", "text": "a"}}]
                    if values.get("anonymous")
                    else []
                ),
            }
        },
    }
    from adapters.slack.translate import encode_metadata

    return {
        "type": "view_submission",
        "team": {"id": "T0TEST", "domain": "test"},
        "user": {"id": user, "username": "jeroen", "name": "jeroen", "team_id": "T0TEST"},
        "api_app_id": "A0BOEKET",
        "token": "legacy",
        "trigger_id": "t.1",
        "view": {
            "id": view_id,
            "team_id": "T0TEST",
            "type": "modal",
            "callback_id": "boeket.share",
            "private_metadata": encode_metadata("boeket.share", OK_CHANNEL, {"department": "ok"}),
            "state": {"values": state},
            "hash": "h",
            "blocks": [],
        },
    }


async def test_share_modal_validates_inline_and_stores_once(slack: SlackEnv) -> None:
    slack.clock.set(OK_PROMPT_AT)
    bad = await slack.interactive(share_submission("V0SHARE", {"what": "", "preconditions": ""}))
    assert bad.status == 200
    body = await bad.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"what", "preconditions"}
    assert await slack.contributions() == []

    values = {
        "what": "Een bufferuur in de middag.",
        "preconditions": "Planners doen mee.",
        "goal": "gezond-werken",
    }
    for _ in range(2):  # a double click submits the same view twice
        good = await slack.interactive(share_submission("V0SHARE", values))
        assert good.status == 200
        assert (await good.text()) in {"", "{}"} or "errors" not in await good.text()
    [share] = await slack.contributions()
    assert share.fields["preconditions"] == "Planners doen mee."
    assert share.author is not None and share.author.name == "Jeroen de Vries"
    confirmations = await eventually(lambda: slack.fake.of("chat.postEphemeral"))
    assert confirmations[0].args["user"] == "U2"


async def test_answer_button_opens_the_answer_modal(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    payload = button_click(
        "boeket.answer",
        "2027-03-02",
        trigger_id="trig-answer",
        message_ts=thread,
        response_url=slack.fake.response_url,
    )
    response = await slack.interactive(payload)
    assert response.status == 200
    [opened] = await eventually(lambda: slack.fake.of("views.open"))
    assert opened.args["trigger_id"] == "trig-answer"
    inputs = [b["block_id"] for b in opened.args["view"]["blocks"] if b["type"] == "input"]
    assert inputs == ["text", "followup", "not_shared", "anonymous"]


# --- rate limits and permanent errors ---------------------------------------------------------


async def rate_limited(slack: SlackEnv) -> float:
    async with slack.client.get("/metrics") as r:
        return samples(await r.text())[("boeket_rate_limited_total", (("platform", "slack"),))]


async def test_rate_limited_post_arrives_once_later(slack: SlackEnv) -> None:
    slack.fake.fail("chat.postMessage", status=429, retry_after=1, channel=OK_CHANNEL)
    refused_before = await rate_limited(slack)
    started = time.monotonic()
    await slack.tick(OK_PROMPT_AT)
    posts = [c for c in slack.fake.of("chat.postMessage") if c.args["channel"] == OK_CHANNEL]
    assert len(posts) == 2  # the refused attempt and the one that arrived
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert await rate_limited(slack) == refused_before + 1  # an admin sees it in /metrics
    occ = await OccurrenceRepository(slack.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.SENT
    assert occ.message_id == "1700000000.000001"  # the 429 consumed no message


async def test_a_refused_post_queues_again_within_the_workspace_rate() -> None:
    """The retry of a 429 takes a paced slot: it never pushes the workspace over its rate."""
    fake = FakeSlack()
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    adapter = SlackAdapter(
        SlackSettings(
            signing_secret=SECRET,
            bot_token=BOT_TOKEN,
            api_url=fake.api_url,
            workspace_rate=10.0,
        )
    )

    async def nothing(event: object) -> None:
        return None

    await adapter.start(nothing)
    try:
        fake.fail("chat.postMessage", status=429, retry_after=1, channel="C00")
        channels = [f"C{i:02d}" for i in range(25)]
        await asyncio.gather(
            *(adapter.post(ChannelRef("slack", c), Message("Hallo")) for c in channels)
        )
    finally:
        await adapter.stop()
        await server.close()
    calls = fake.of("chat.postMessage")
    assert sorted(str(c.args["channel"]) for c in calls) == sorted([*channels, "C00"])
    moments = sorted(c.at for c in calls)
    # Ten a second, the refused attempt and its retry included: never eleven within 0.95 s.
    assert max(sum(1 for m in moments if start <= m < start + 0.95) for start in moments) <= 10


async def test_channel_not_found_is_reported_once_and_the_run_goes_on(
    slack: SlackEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    slack.fake.fail("chat.postMessage", error="channel_not_found", channel=OK_CHANNEL, times=99)
    # Monday 1 March 09:00: the OK prompt fails; ICT's harvest of 1 March has nothing to show.
    await slack.tick(OK_PROMPT_AT)
    await slack.tick(datetime(2027, 3, 1, 7, 30, tzinfo=UTC))
    occ = await OccurrenceRepository(slack.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.FAILED
    attempts = [c for c in slack.fake.of("chat.postMessage") if c.args["channel"] == OK_CHANNEL]
    assert len(attempts) == 1
    errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and "channel_not_found" in r.getMessage()
    ]
    assert len(errors) == 1 and "organisation config" in errors[0].getMessage()
    # Other departments still get their steps.
    await slack.tick(datetime(2027, 3, 3, 13, 0, tzinfo=UTC))
    assert [m for m in slack.boeket.local.messages("verpleegafdeling")]


# --- App Home ---------------------------------------------------------------------------------


def home_opened(user: str = "U1") -> dict[str, Any]:
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0HOME",
        "tab": "home",
        "event_ts": "1700000400.1",
    }


async def test_app_home_shows_own_contributions_settings_and_overview(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    await slack.event(reply_event("De huddle om half acht werkt.", thread), event_id="Ev0H1")
    await slack.event(
        reply_event("Iets van iemand anders.", thread, user="U2", ts="1700000100.000200"),
        event_id="Ev0H2",
    )
    await slack.settle()  # both replies are stored
    assert (await slack.event(home_opened(), event_id="Ev0HOME")).status == 200
    await slack.settle()  # the page follows the acknowledgement
    [published] = slack.fake.of("views.publish")
    assert published.args["user_id"] == "U1"
    view = published.args["view"]
    assert view["type"] == "home"
    assert block_problems(view["blocks"], surface="home") == []
    shown = json.dumps(view["blocks"], ensure_ascii=False)
    assert "Jouw Boeket" in shown and "ontwikkelgesprek" in shown
    assert "De huddle om half acht werkt." in shown
    assert "Iets van iemand anders." not in shown  # only her own
    assert "boeket.settings.language" in shown and "boeket.settings.anonymous" in shown


async def test_settings_from_app_home_change_language_and_anonymity(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    await slack.interactive(button_click("boeket.settings.language", "en"))
    published = await eventually(lambda: slack.fake.of("views.publish"))
    assert "Your Boeket" in json.dumps(published[-1].args["view"]["blocks"])
    await slack.interactive(button_click("boeket.settings.anonymous", "on"))
    await eventually(lambda: len(slack.fake.of("views.publish")) == 2)
    assert "anonymous by default" in json.dumps(slack.fake.of("views.publish")[-1].args["view"])

    # Her next form speaks English and starts anonymous.
    thread = prompt_ts(slack)
    payload = button_click(
        "boeket.answer",
        "2027-03-02",
        trigger_id="trig-answer-en",
        message_ts=thread,
        response_url=slack.fake.response_url,
    )
    await slack.interactive(payload)
    [opened] = await eventually(lambda: slack.fake.of("views.open"))
    view = opened.args["view"]
    assert view["title"]["text"] == "Your answer"
    [anonymous] = [b for b in view["blocks"] if b.get("block_id") == "anonymous"]
    assert anonymous["element"].get("initial_options")
    # The channel itself still speaks Dutch: the harvest is for the whole team.
    await slack.tick(OK_HARVEST_AT)
    harvest = [c for c in slack.fake.of("chat.postMessage") if c.args["channel"] == OK_CHANNEL][-1]
    assert "oogst" in json.dumps(harvest.args["blocks"], ensure_ascii=False).lower()


async def test_delete_from_app_home_refreshes_the_page(slack: SlackEnv) -> None:
    await slack.tick(OK_PROMPT_AT)
    await slack.event(reply_event("Weg ermee.", prompt_ts(slack)), event_id="Ev0DEL")
    [mine] = await slack.contributions()
    await slack.interactive(button_click("boeket.delete", str(mine.id), user="U2"))
    await eventually(lambda: slack.fake.of("chat.postMessage")[-1].args["channel"] == "DU2")
    assert len(await slack.contributions()) == 1  # not hers to delete: told so in a DM
    await slack.interactive(button_click("boeket.delete", str(mine.id)))
    await eventually(lambda: slack.fake.of("views.publish"))
    assert await slack.contributions() == []


# --- workspaces -------------------------------------------------------------------------------


async def test_events_from_another_workspace_touch_no_department(
    db: Database, prompts: PromptLibrary, clock: ManualClock, slack: SlackEnv
) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for dept in data["departments"]:
        if dept["id"] == "ok":
            dept.update(platform="slack", channel=OK_CHANNEL, workspace="T0TEST")
    config = parse_config(data, Path("ws.yaml"))
    slack.boeket.contributions._config = config  # the same Boeket, now bound to workspace T0TEST
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    envelope = reply_event("Van buiten.", thread)
    body = {
        "token": "legacy",
        "team_id": "T0OTHER",
        "api_app_id": "A0BOEKET",
        "event": envelope,
        "type": "event_callback",
        "event_id": "Ev0OTHER",
        "event_time": int(time.time()),
    }
    await slack.post(json.dumps(body), "application/json")
    assert await slack.contributions() == []
    await slack.event(reply_event("Van binnen.", thread), event_id="Ev0SAME")
    assert len(await slack.contributions()) == 1


# --- private channels -------------------------------------------------------------------------


async def test_private_channel_content_stays_unless_the_department_opts_in(slack: SlackEnv) -> None:
    from bot.domain import ChannelRef
    from bot.privacy import Visibility

    slack.fake.private_channels.add(OK_CHANNEL)
    config = slack_config()
    ok, ict = config.department("ok"), config.department("ict")
    visibility = Visibility(slack.boeket.adapters)
    elsewhere = ChannelRef("slack", "C0PUBLIC")
    assert not await visibility.may_show(ok, elsewhere)
    assert not await visibility.may_show(ok, ChannelRef("local", "leren-over-grenzen"))
    assert await visibility.may_show(ok, ChannelRef("slack", OK_CHANNEL))  # its own channel
    assert await visibility.may_show(ict, elsewhere)  # a public channel may be quoted
    opted_in = ok.model_copy(update={"share_from_private": True})
    assert await visibility.may_show(opted_in, elsewhere)
    asked = [c.args["channel"] for c in slack.fake.of("conversations.info")]
    assert sorted(asked) == sorted({OK_CHANNEL, ICT_CHANNEL})  # remembered, asked once each
    # When Slack cannot say, the channel counts as private.
    slack.fake.fail("conversations.info", error="channel_not_found", times=5)
    unknown = ict.model_copy(update={"channel": "C0GONE"})
    assert not await visibility.may_show(unknown, elsewhere)


async def test_reminder_and_followup_go_in_the_prompts_thread_harvest_in_the_channel(
    slack: SlackEnv,
) -> None:
    await slack.tick(OK_PROMPT_AT)
    thread = prompt_ts(slack)
    await slack.event(reply_event("Een goed begin.", thread), event_id="Ev0CYCLE")
    await slack.settle()  # the reply is stored after the acknowledgement
    for moment in (
        datetime(2027, 3, 2, 3, 30, tzinfo=UTC),  # reminder, three hours before 07:30 CET
        OK_HARVEST_AT,  # harvest at the meeting's start
        datetime(2027, 3, 2, 9, 0, tzinfo=UTC),  # follow-up, two hours after it ends
    ):
        await slack.tick(moment)
    posts = [c for c in slack.fake.of("chat.postMessage") if c.args["channel"] == OK_CHANNEL]
    assert len(posts) == 4
    prompt, reminder, harvest, followup = posts
    assert "thread_ts" not in prompt.args and "thread_ts" not in harvest.args
    assert reminder.args["thread_ts"] == thread and followup.args["thread_ts"] == thread
    assert "Fatima" not in json.dumps(reminder.args, ensure_ascii=False)  # no names, no shaming
    assert "Fatima el Amrani" in json.dumps(harvest.args["blocks"], ensure_ascii=False)
    for post in posts:
        assert block_problems(post.args["blocks"], surface="message") == []


# --- lessons from elsewhere -------------------------------------------------------------------


async def test_a_suggested_lesson_is_block_kit_with_working_feedback_buttons(
    slack: SlackEnv,
) -> None:
    from bot.domain import Kind, NewContribution, Person, Source
    from storage.repositories import CrosspostRepository

    slack.clock.set(OK_PROMPT_AT)
    repo = ContributionRepository(slack.db)
    own, _ = await repo.add(
        NewContribution(
            organisation_id=ORG,
            department_id="ok",
            kind=Kind.LES,
            source=Source.REPLY,
            round_date=date(2027, 2, 23),
            text="De overdracht aan het bed gaat zonder vaste punten, daardoor bellen collega's na "
            "en loopt de werkdruk aan het eind van de dienst op.",
            anonymous=False,
            author=Person("U1", "Fatima"),
            platform="slack",
            event_key="seed:ok",
            created_at=OK_PROMPT_AT - timedelta(days=7),
        )
    )
    await slack.boeket.matcher.index(own)
    form = await slack.boeket.local.say("sanne", "verpleegafdeling", "/deel")
    assert isinstance(form, ShowForm)
    await slack.boeket.local.submit(
        "sanne",
        "verpleegafdeling",
        "boeket.share",
        {
            "what": "Een vaste overdracht aan het bed met vijf punten: minder nabellen, minder "
            "werkdruk aan het eind van de dienst.",
            "preconditions": "Iedereen gebruikt hetzelfde lijstje.",
            "theme": "werkdruk",
        },
        meta=form.form.meta,
    )
    await slack.boeket.background.drain()
    await slack.boeket.crossposter.tick()
    [post] = [
        c
        for c in slack.fake.of("chat.postMessage")
        if c.args["channel"] == OK_CHANNEL and "boeket.crosspost" in json.dumps(c.args["blocks"])
    ]
    blocks = post.args["blocks"]
    assert block_problems(blocks, surface="message") == []
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == [
        "boeket.crosspost.useful",
        "boeket.crosspost.not_relevant",
        "boeket.crosspost.talk",
    ]
    assert "Sanne" not in json.dumps(blocks)  # she did not agree to be named elsewhere

    click = button_click(
        buttons[0]["action_id"],
        buttons[0]["value"],
        user="U2",
        trigger_id="trig-useful",
        message_ts="1.1",
        response_url=slack.fake.response_url,
    )
    assert (await slack.interactive(click)).status == 200
    [thanks] = await eventually(lambda: slack.fake.of("response_url"))
    assert thanks.args["response_type"] == "ephemeral"
    [cp] = [c for c in await CrosspostRepository(slack.db).all(ORG) if c.target == "department:ok"]
    assert await CrosspostRepository(slack.db).verdicts_by_target(ORG) == {
        "department:ok": [(cp.contribution_id, "useful")]
    }


async def test_a_body_that_is_no_slack_payload_gets_400_not_500(slack: SlackEnv) -> None:
    for body, content_type in (
        ("{", "application/json"),
        ("[]", "application/json"),
        ("null", "application/json"),
        ("payload=%7B", "application/x-www-form-urlencoded"),
    ):
        response = await slack.post(body, content_type)
        assert response.status in {400, 401}, body
        assert "Traceback" not in await response.text()
    assert await slack.contributions() == []
