"""Teams end to end: activities as Teams sends them, posted over HTTP to Boeket's /api/messages,
with the real Agents SDK talking to a fake Bot Connector service on port 0."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import pytest
import sqlalchemy as sa
import yaml
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from adapters.teams.adapter import TeamsAdapter
from adapters.teams.settings import TeamsSettings
from bot.app import Boeket, build, web_app
from bot.clock import ManualClock
from bot.config import OrgConfig, parse_config
from bot.contributions import MAX_TEXT as MAX_ANSWER
from bot.domain import (
    Kind,
    NewContribution,
    OccurrenceStatus,
    Person,
    PersonSettings,
    Source,
    Step,
)
from bot.embedders import LexicalEmbedder
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import (
    ContributionRepository,
    OccurrenceRepository,
    PersonSettingsRepository,
    StateStore,
)
from tests.conftest import SHARED
from tests.fakes.microsoft_login import KID, FakeLogin, new_key
from tests.fakes.teams_connector import FakeConnector
from tests.test_observability import samples

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "teams"
ORG = "ziekenhuis-de-linde"
TENANT = "0f6d7e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
OTHER_TENANT = "9a8b7c6d-0000-4000-8000-000000000000"
APP_ID = "11111111-2222-4333-8444-555555555555"
TEAM = "19:team-general@thread.tacv2"
OK_CHANNEL = "19:operatiekamer@thread.tacv2"
ICT_CHANNEL = "19:ict@thread.tacv2"
OK_PROMPT_AT = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
OK_HARVEST_AT = datetime(2027, 3, 2, 6, 30, tzinfo=UTC)
CARD_SCHEMA = SHARED / "schemas" / "adaptive-card-1.5.schema.json"

# microsoft-agents-hosting-msteams 1.9 builds a microsoft_teams ApiClient on every Teams turn, and
# that constructor warns about its own deprecated BotClient (an SDK issue, not Boeket's code).
pytestmark = pytest.mark.filterwarnings("ignore:The bot client is deprecated:DeprecationWarning")


def card_problems(card: dict[str, Any]) -> list[str]:
    """What the Adaptive Card 1.5 schema refuses in `card` (shared/ must be there: no skip)."""
    assert CARD_SCHEMA.exists(), f"{CARD_SCHEMA} is missing: the shared schemas are required"
    schema = json.loads(CARD_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft6Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: "
        f"{jsonschema.exceptions.best_match(e.context or [e]).message}"
        for e in validator.iter_errors(card)
    ]


def teams_config(*, workspace: str = "", anonymous_answers: bool = True) -> OrgConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for dept in data["departments"]:
        if dept["id"] == "ok":
            dept.update(
                platform="teams",
                channel=OK_CHANNEL,
                workspace=workspace,
                anonymous_answers=anonymous_answers,
            )
        if dept["id"] == "ict":
            dept.update(platform="teams", channel=ICT_CHANNEL, workspace=workspace)
    return parse_config(data, Path("teams.yaml"))


def fixture(name: str, service_url: str, **subs: str) -> dict[str, Any]:
    text = (FIXTURES / f"{name}.json").read_text(encoding="utf-8")
    values = {
        "SERVICE_URL": service_url,
        "TENANT": TENANT,
        "BOT_APP_ID": APP_ID,
        "CHANNEL": OK_CHANNEL,
        **subs,
    }
    for key, value in values.items():
        text = text.replace(key, value)
    data: dict[str, Any] = json.loads(text)
    return data


@dataclass
class TeamsEnv:
    fake: FakeConnector
    client: TestClient[Any, Any]
    boeket: Boeket
    clock: ManualClock
    db: Database

    def load(self, name: str, **subs: str) -> dict[str, Any]:
        return fixture(name, self.fake.url, **subs)

    async def send(
        self, activity: dict[str, Any], headers: dict[str, str] | None = None
    ) -> ClientResponse:
        return await self.client.post("/api/messages", json=activity, headers=headers or {})

    async def tick(self, moment: datetime) -> None:
        self.clock.set(moment)
        await self.boeket.cycle.tick()

    async def settle(self) -> None:
        """Wait for what the adapter does after its answers (a card's answer count)."""
        adapter = self.boeket.adapters["teams"]
        assert isinstance(adapter, TeamsAdapter)
        await adapter.settle()

    async def contributions(self) -> list[Any]:
        return await ContributionRepository(self.db).all(ORG)

    async def install(self) -> None:
        for name in ("install_team", "channel_created"):
            response = await self.send(self.load(name))
            assert response.status in {200, 202}, await response.text()

    def prompt_post(self, channel: str = OK_CHANNEL) -> Any:
        posts = [
            c for c in self.fake.of("create") if c.body["channelData"]["channel"]["id"] == channel
        ]
        assert posts, "no prompt was posted"
        return posts[0]


async def _env(
    db: Database,
    prompts: PromptLibrary,
    clock: ManualClock,
    teams: TeamsSettings,
    config: OrgConfig | None = None,
) -> AsyncIterator[TeamsEnv]:
    fake = FakeConnector()
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    settings = Settings(database_url=db.url, worker_id="teams-test", auto_migrate=True, teams=teams)
    boeket = build(
        settings,
        config or teams_config(),
        clock=clock,
        prompts=prompts,
        db=db,
        embedder=LexicalEmbedder(),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()
    try:
        yield TeamsEnv(fake, client, boeket, clock, db)
    finally:
        await client.close()
        await server.close()


DEV = TeamsSettings(dev_mode=True, tenant_id=TENANT, backoff_seconds=0.05)


@pytest.fixture
async def teams(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[TeamsEnv]:
    async for env in _env(db, prompts, clock, DEV):
        yield env


def _created_ids(env: TeamsEnv) -> list[str]:
    """The activity ids of the new channel threads Boeket started, in order."""
    return [
        str(c.answer["activityId"])
        for c in env.fake.of("create")
        if c.body.get("channelData", {}).get("channel")
    ]


def card_of(call: Any) -> dict[str, Any]:
    body = call.body.get("activity", call.body)
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    return card


def actions_of(card: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(card.get("actions", []))
    for element in card["body"]:
        if element["type"] == "ActionSet":
            found += element["actions"]
    return found


def dialog_card(body: dict[str, Any]) -> dict[str, Any]:
    task = body["task"]
    assert task["type"] == "continue", body
    card: dict[str, Any] = task["value"]["card"]["content"]
    return card


def inputs_of(card: dict[str, Any]) -> list[str]:
    return [e["id"] for e in card["body"] if e["type"].startswith("Input.")]


def inline_inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The inputs of the form inside a posted card, by id."""
    [container] = [e for e in card["body"] if e.get("id") == "boeket-inline"]
    return {e["id"]: e for e in container["items"] if e["type"].startswith("Input.")}


def submit_data(card: dict[str, Any], **values: Any) -> dict[str, Any]:
    [submit] = [a for a in actions_of(card) if a["type"] == "Action.Submit"]
    return {**copy.deepcopy(submit["data"]), **values}


# --- install, then the cycle posts a prompt card proactively ----------------------------------


async def test_install_stores_references_and_the_prompt_is_posted_as_a_card(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    state = StateStore(teams.db, "teams")
    stored: dict[str, Any] | None = None
    for channel in (TEAM, OK_CHANNEL):
        stored = await state.get(f"ref:{channel}")
        assert stored is not None, channel
        reference = stored["reference"]
        assert reference["serviceUrl"] == teams.fake.url
        assert reference["conversation"]["id"] == channel
        assert "user" not in reference  # a channel's reference names no person
    assert stored is not None and stored["tenant"] == TENANT
    await teams.tick(OK_PROMPT_AT)
    post = teams.prompt_post()
    assert post.body["isGroup"] is True
    assert post.body["channelData"]["channel"]["id"] == OK_CHANNEL
    assert post.body["tenantId"] == TENANT
    card = card_of(post)
    assert card_problems(card) == []
    send, answer = actions_of(card)
    assert send["title"] == "Versturen" and send["data"]["verb"] == "boeket.inline"
    assert "msteams" not in send["data"]  # a plain submit: Teams sends it as a message
    assert answer["title"] == "Antwoorden"
    assert answer["data"]["verb"] == "boeket.answer"
    assert answer["data"]["msteams"] == {"type": "task/fetch"}
    assert answer["associatedInputs"] == "none"  # opens the dialog with the answer box empty
    inputs = inline_inputs(card)
    assert list(inputs) == ["text", "not_shared", "anonymous"]
    assert inputs["text"]["type"] == "Input.Text" and inputs["text"]["isMultiline"] is True
    assert inputs["text"]["maxLength"] == MAX_ANSWER
    assert inputs["anonymous"]["type"] == "Input.ChoiceSet"
    assert "value" not in inputs["anonymous"]  # nobody's choice is made for them
    assert post.authorization == ""  # development mode: no token, and none was asked for
    occ = await OccurrenceRepository(teams.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.SENT
    assert occ.message_id == _created_ids(teams)[0] == occ.thread_id


async def test_a_channel_never_announced_is_reached_through_the_tenants_reference(
    teams: TeamsEnv,
) -> None:
    await teams.send(teams.load("install_team"))  # ICT's channel was there before the install
    await teams.tick(datetime(2027, 3, 1, 7, 0, tzinfo=UTC))
    await teams.tick(datetime(2027, 3, 7, 9, 0, tzinfo=UTC))  # ICT's prompt for Monday the 8th
    assert teams.prompt_post(ICT_CHANNEL).body["channelData"]["channel"]["id"] == ICT_CHANNEL


async def test_without_any_reference_the_post_fails_once_with_advice(
    teams: TeamsEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await teams.tick(OK_PROMPT_AT)
    occ = await OccurrenceRepository(teams.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.FAILED
    assert teams.fake.calls == []
    assert any("Install the Boeket app" in r.getMessage() for r in caplog.records)


# --- a reply in the prompt's thread -------------------------------------------------------------


def reply(
    env: TeamsEnv, text: str, root: str, *, activity_id: str = "1700000100100"
) -> dict[str, Any]:
    activity = env.load("channel_reply", ROOT=root)
    activity["id"] = activity_id
    activity["text"] = f"<at>Boeket</at>&nbsp;{text}"
    return activity


async def test_mention_reply_in_the_prompt_thread_is_stored_once_and_thanked_privately(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    activity = reply(teams, "De huddle om half acht werkt &amp; helpt.", root)
    for _ in range(2):  # Teams retries a delivery it thinks was lost
        response = await teams.send(activity)
        assert response.status in {200, 202}
    [stored] = await teams.contributions()
    assert stored.text == "De huddle om half acht werkt & helpt."
    assert stored.author is not None and stored.author.name == "Fatima el Amrani"
    assert stored.round_date == date(2027, 3, 2)
    # The thanks and follow-up question go to her 1:1 chat, created once, not to the channel.
    [created] = [c for c in teams.fake.of("create") if not c.body.get("isGroup")]
    assert created.body["members"] == [{"id": "29:1fatima"}]
    thanks = teams.fake.of("send")
    assert [c.conversation for c in thanks] == ["a:1personal-29:1fatima"]
    assert all(not c.conversation.startswith("19:") for c in teams.fake.calls if c.kind != "create")


async def test_replies_elsewhere_are_not_contributions(teams: TeamsEnv) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    await teams.send(
        reply(teams, "Over iets anders.", "1699999999999", activity_id="1700000100200")
    )
    top = reply(teams, "Een nieuw onderwerp.", "1700000100300", activity_id="1700000100300")
    await teams.send(top)
    assert await teams.contributions() == []


# --- the answer dialog --------------------------------------------------------------------------


async def open_answer_dialog(env: TeamsEnv, root: str) -> dict[str, Any]:
    fetch = env.load("task_fetch", ROOT=root)
    fetch["value"]["data"] = {
        "verb": "boeket.answer",
        "value": "2027-03-02",
        "msteams": {"type": "task/fetch"},
    }
    response = await env.send(fetch)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def task_submit(
    env: TeamsEnv, root: str, data: dict[str, Any], *, user: str = "fatima"
) -> dict[str, Any]:
    activity = env.load("task_fetch", ROOT=root)
    activity.update(name="task/submit", id=f"f:submit-{time.monotonic_ns()}")
    activity["value"] = {"type": "task/submit", "data": data, "context": {"theme": "default"}}
    if user == "jeroen":
        activity["from"] = {"id": "29:1jeroen", "name": "Jeroen de Vries"}
    return activity


async def test_answer_button_opens_a_dialog_that_validates_and_stores_once(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    card = dialog_card(await open_answer_dialog(teams, root))
    assert card_problems(card) == []
    assert inputs_of(card) == ["text", "followup", "not_shared", "anonymous"]
    toggles = {e["id"]: e for e in card["body"] if e["type"] == "Input.Toggle"}
    assert set(toggles) == {"not_shared", "anonymous"}
    assert toggles["anonymous"]["valueOn"] == "true"

    bad = await teams.send(task_submit(teams, root, submit_data(card, text="", anonymous="false")))
    assert bad.status == 200
    again = dialog_card(await bad.json())
    assert card_problems(again) == []
    assert [e for e in again["body"] if e.get("color") == "Attention"], "no error shown"
    assert await teams.contributions() == []

    good = submit_data(again, text="De overdracht ging sneller.", followup="", anonymous="true")
    for _ in range(2):  # a double click submits the same dialog twice
        response = await teams.send(task_submit(teams, root, good))
        assert response.status == 200
        done = dialog_card(await response.json())
        assert card_problems(done) == []
    [stored] = await teams.contributions()
    assert stored.anonymous and stored.author is None
    assert stored.text == "De overdracht ging sneller."
    # Anonymous means no name anywhere: not stored, not sent to Teams, not in the harvest.
    await teams.tick(OK_HARVEST_AT)
    sent = json.dumps([c.body for c in teams.fake.calls], ensure_ascii=False)
    assert "Fatima" not in sent and "29:1fatima" not in sent
    harvest = teams.fake.of("create")[-1]
    assert "anoniem" in json.dumps(card_of(harvest), ensure_ascii=False).lower()


async def test_a_dialog_answer_marks_the_prompt_card_received_without_the_answer(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    prompt_card = card_of(teams.prompt_post())
    card = dialog_card(await open_answer_dialog(teams, root))
    bad = await teams.send(task_submit(teams, root, submit_data(card, text="")))
    again = dialog_card(await bad.json())
    await teams.settle()
    assert teams.fake.attempts("update") == []  # nothing was received yet
    teams.fake.fail("update", 429, retry_after=1)  # Teams is busy: the update arrives once
    answer = "Mijn anonieme zorg over de overdracht."
    good = submit_data(again, text=answer, followup="", anonymous="true")
    response = await teams.send(task_submit(teams, root, good))
    assert response.status == 200
    assert card_problems(dialog_card(await response.json())) == []
    await teams.settle()
    [update] = teams.fake.of("update")
    assert len(teams.fake.attempts("update")) == 2
    assert update.conversation == f"{OK_CHANNEL};messageid={root}"
    assert update.activity_id == root
    marked = card_of(update)
    assert card_problems(marked) == []
    texts = [e.get("text", "") for e in marked["body"]]
    assert "✓ 1 antwoord ontvangen" in texts
    # The prompt stays as it was, form, buttons and all, so others can still answer.
    assert [e for e in marked["body"] if e.get("id") != "boeket-received"] == prompt_card["body"]
    assert [a["title"] for a in actions_of(marked)] == ["Versturen", "Antwoorden"]
    # The whole channel sees this card: nothing of the answer, nor who gave it.
    shown = json.dumps(update.body, ensure_ascii=False)
    assert answer not in shown and "overdracht" not in shown
    assert "Fatima" not in shown and "29:1fatima" not in shown

    # The same dialog submitted again: stored once, counted once.
    assert (await teams.send(task_submit(teams, root, good))).status == 200
    await teams.settle()
    assert len(teams.fake.of("update")) == 1

    # A second person's named answer: stored, and the count goes up, without a name.
    card = dialog_card(await open_answer_dialog(teams, root))
    named = submit_data(card, text="Jeroens antwoord.", followup="", anonymous="false")
    response = await teams.send(task_submit(teams, root, named, user="jeroen"))
    assert response.status == 200
    assert len(await teams.contributions()) == 2
    await teams.settle()
    _, second = teams.fake.of("update")
    assert "✓ 2 antwoorden ontvangen" in [e.get("text") for e in card_of(second)["body"]]
    assert "Jeroen" not in json.dumps([c.body for c in teams.fake.of("update")])


async def test_an_anonymous_answer_leaves_no_trace_of_its_author_in_the_database(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    card = dialog_card(await open_answer_dialog(teams, root))
    good = submit_data(card, text="Stil gehouden.", followup="", anonymous="true")
    assert (await teams.send(task_submit(teams, root, good))).status == 200
    [stored] = await teams.contributions()
    assert stored.anonymous
    async with teams.db.engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM contributions"))).all()
    dumped = json.dumps([list(map(str, r)) for r in rows], ensure_ascii=False)
    assert "Stil gehouden." in dumped  # the right rows were read
    assert "fatima" not in dumped.lower() and "5b7a3c1e" not in dumped


async def test_a_dialog_cannot_mark_a_card_in_another_channel(teams: TeamsEnv) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    card = dialog_card(await open_answer_dialog(teams, root))
    good = submit_data(card, text="Een antwoord.", followup="", anonymous="false")
    good["boeket_form"]["k"] = "1600000000000"  # a card id Boeket never posted here
    assert (await teams.send(task_submit(teams, root, good))).status == 200
    assert len(await teams.contributions()) == 1
    await teams.settle()
    assert teams.fake.attempts("update") == []


# --- the answer form in the prompt card itself ---------------------------------------------------


def inline_submit(
    env: TeamsEnv,
    root: str,
    card: dict[str, Any],
    *,
    activity_id: str,
    user: str = "fatima",
    **values: Any,
) -> dict[str, Any]:
    """What Teams sends for the card's own Action.Submit in a channel: a message with `value`
    (the action's data and the inputs) and no text, in the prompt's thread."""
    activity = env.load("channel_reply", ROOT=root)
    for key in ("text", "entities", "attachments", "textFormat"):
        activity.pop(key)
    activity["id"] = activity_id
    activity["replyToId"] = root
    [send] = [a for a in actions_of(card) if a["data"].get("verb") == "boeket.inline"]
    activity["value"] = {**copy.deepcopy(send["data"]), **values}
    if user == "jeroen":
        activity["from"] = {"id": "29:1jeroen", "name": "Jeroen de Vries"}
    return activity


def personal_sends(env: TeamsEnv, person: str = "29:1fatima") -> list[dict[str, Any]]:
    return [card_of(c) for c in env.fake.of("send") if c.conversation == f"a:1personal-{person}"]


def unescaped(text: str) -> str:
    """Card text as a person reads it: without the backslashes that keep markdown literal."""
    return re.sub(r"\\(.)", r"\1", text)


def received_lines(card: dict[str, Any]) -> list[str]:
    return [e["text"] for e in card["body"] if e.get("id") == "boeket-received"]


async def test_an_answer_typed_in_the_prompt_card_is_stored_once_and_counted_on_the_card(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    prompt_card = card_of(teams.prompt_post())
    answer = "De huddle vóór de eerste patiënt scheelt ons een half uur."
    submit = inline_submit(
        teams, root, prompt_card, activity_id="1700000200100", text=answer, anonymous="true"
    )
    for _ in range(2):  # Teams delivers the same submit again when it missed our answer
        response = await teams.send(submit)
        assert response.status in {200, 202}, await response.text()
    [stored] = await teams.contributions()
    assert stored.text == answer and stored.round_date == date(2027, 3, 2)
    assert stored.anonymous and stored.author is None
    assert stored.source is Source.FORM and stored.shareable
    # The card is updated in place, once: the count, and the form stays for the others.
    await teams.settle()
    [update] = teams.fake.of("update")
    assert update.conversation == f"{OK_CHANNEL};messageid={root}"
    assert update.activity_id == root
    marked = card_of(update)
    assert card_problems(marked) == []
    assert received_lines(marked) == ["✓ 1 antwoord ontvangen"]
    assert [e for e in marked["body"] if e.get("id") != "boeket-received"] == prompt_card["body"]
    assert inline_inputs(marked) == inline_inputs(prompt_card)
    shown = json.dumps(update.body, ensure_ascii=False)
    assert "huddle" not in shown and "Fatima" not in shown and "29:1fatima" not in shown
    # She is thanked in her 1:1 chat (with her deletion code), never in the channel; the
    # delivery Teams repeated is answered as already received.
    thanks, repeated = (json.dumps(c, ensure_ascii=False) for c in personal_sends(teams))
    assert "Je antwoord is bewaard" in thanks and "deel verwijder" in thanks
    assert "al ontvangen" in repeated
    assert all(c.conversation.startswith("a:1personal-") for c in teams.fake.of("send"))

    # Jeroen answers on name, and the same card counts two.
    named = inline_submit(
        teams,
        root,
        marked,
        activity_id="1700000200200",
        user="jeroen",
        text="Wij bellen de IC voortaan vooraf.",
        anonymous="false",
        not_shared="true",
    )
    assert (await teams.send(named)).status in {200, 202}
    contributions = sorted(await teams.contributions(), key=lambda c: c.id)
    assert len(contributions) == 2
    second = contributions[1]
    assert second.author is not None and second.author.name == "Jeroen de Vries"
    assert not second.anonymous and not second.shareable
    await teams.settle()
    _, latest = teams.fake.of("update")
    assert received_lines(card_of(latest)) == ["✓ 2 antwoorden ontvangen"]
    assert "Jeroen" not in json.dumps(latest.body, ensure_ascii=False)


async def test_a_double_click_on_the_cards_submit_stores_one_answer(teams: TeamsEnv) -> None:
    """Two clicks are two messages with their own ids; the second repeats the first."""
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    prompt_card = card_of(teams.prompt_post())
    answer = "We bellen de IC voortaan vooraf."
    for n, user in enumerate(("fatima", "fatima", "jeroen")):
        click = inline_submit(
            teams, root, prompt_card, activity_id=f"17000002009{n}0", user=user, text=answer
        )
        assert (await teams.send(click)).status in {200, 202}

    stored = await teams.contributions()
    assert [c.text for c in stored] == [answer, answer]  # Fatima's once, and Jeroen's
    assert {c.author.name for c in stored if c.author} == {"Fatima el Amrani", "Jeroen de Vries"}
    thanks, repeated = (json.dumps(c, ensure_ascii=False) for c in personal_sends(teams))
    assert "Je antwoord is bewaard" in thanks and "al ontvangen" in repeated
    await teams.settle()
    latest = teams.fake.of("update")[-1]
    assert received_lines(card_of(latest)) == ["✓ 2 antwoorden ontvangen"]


async def test_answers_while_the_card_is_being_updated_are_shown_in_one_more_update(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    prompt_card = card_of(teams.prompt_post())
    teams.fake.fail("update", 429, retry_after=1)  # the first update has to wait a second
    people = ("fatima", "jeroen", "fatima")
    for n, user in enumerate(people):
        submit = inline_submit(
            teams, root, prompt_card, activity_id=f"17000003000{n}", user=user, text=f"Les {n}."
        )
        response = await teams.send(submit)  # answered at once, not after the update
        assert response.status in {200, 202}, await response.text()
    assert len(await teams.contributions()) == 3
    await teams.settle()
    updates = teams.fake.of("update")
    assert 1 <= len(updates) <= 2  # not one per answer
    assert received_lines(card_of(updates[-1])) == ["✓ 3 antwoorden ontvangen"]


async def test_an_empty_or_oversized_answer_in_the_card_stores_nothing_and_says_why(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    prompt_card = card_of(teams.prompt_post())
    blank = inline_submit(teams, root, prompt_card, activity_id="1700000200300", text="  \n ")
    assert (await teams.send(blank)).status in {200, 202}
    too_long = "x" * (MAX_ANSWER + 1)
    big = inline_submit(teams, root, prompt_card, activity_id="1700000200400", text=too_long)
    assert (await teams.send(big)).status in {200, 202}
    assert await teams.contributions() == []
    await teams.settle()
    assert teams.fake.attempts("update") == []  # nothing was received
    empty_note, long_note = personal_sends(teams)
    for note in (empty_note, long_note):
        assert card_problems(note) == []
        assert note["body"][0]["text"] == "Je antwoord is nog niet opgeslagen:"
        [again] = actions_of(note)  # opens the form again, in a dialog
        assert again["data"]["msteams"] == {"type": "task/fetch"}
    errors = [unescaped(e["text"]) for e in empty_note["body"] if e.get("color") == "Attention"]
    assert errors == ["Vul dit in (minstens 3 tekens)."]
    errors = [unescaped(e["text"]) for e in long_note["body"] if e.get("color") == "Attention"]
    assert errors == [f"Dit is {MAX_ANSWER + 1} tekens; het mag er hoogstens {MAX_ANSWER} zijn."]
    # The button opens the form with what she typed, to shorten it there.
    [again] = actions_of(long_note)
    fetch = teams.load("task_fetch", ROOT=root)
    fetch["value"]["data"] = again["data"]
    fetch["conversation"] = {"conversationType": "personal", "id": "a:1personal-29:1fatima"}
    fetch["channelData"] = {"tenant": {"id": TENANT}}
    response = await teams.send(fetch)
    assert response.status == 200
    dialog = dialog_card(await response.json())
    assert card_problems(dialog) == []
    [text] = [e for e in dialog["body"] if e.get("id") == "text"]
    assert text["value"] == too_long[:MAX_ANSWER]
    assert await teams.contributions() == []


async def test_no_choice_in_the_card_means_the_persons_own_anonymous_default(
    teams: TeamsEnv,
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    prompt_card = card_of(teams.prompt_post())
    await PersonSettingsRepository(teams.db).put(
        ORG, "teams", "29:1fatima", PersonSettings(anonymous_default=True), OK_PROMPT_AT
    )
    for activity_id, user, text in (
        ("1700000200500", "fatima", "Standaard anoniem, niets gekozen."),
        ("1700000200600", "jeroen", "Geen instelling, niets gekozen."),
    ):
        submit = inline_submit(
            teams, root, prompt_card, activity_id=activity_id, user=user, text=text, anonymous=""
        )
        assert (await teams.send(submit)).status in {200, 202}
    by_text = {c.text: c for c in await teams.contributions()}
    assert by_text["Standaard anoniem, niets gekozen."].anonymous
    assert by_text["Standaard anoniem, niets gekozen."].author is None
    assert not by_text["Geen instelling, niets gekozen."].anonymous


async def test_no_anonymity_choice_where_the_department_wants_names(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> None:
    async for env in _env(db, prompts, clock, DEV, teams_config(anonymous_answers=False)):
        await env.install()
        await env.tick(OK_PROMPT_AT)
        root = _created_ids(env)[0]
        card = card_of(env.prompt_post())
        assert card_problems(card) == []
        assert list(inline_inputs(card)) == ["text", "not_shared"]
        # Sending "anonymous" anyway does not make it so.
        submit = inline_submit(
            env, root, card, activity_id="1700000200700", text="Op naam.", anonymous="true"
        )
        assert (await env.send(submit)).status in {200, 202}
        [stored] = await env.contributions()
        assert not stored.anonymous
        assert stored.author is not None and stored.author.id == "29:1fatima"


# --- sharing a success --------------------------------------------------------------------------


async def test_share_dialog_from_the_message_extension(teams: TeamsEnv) -> None:
    teams.clock.set(OK_PROMPT_AT)
    await teams.install()
    response = await teams.send(teams.load("extension_fetch"))
    assert response.status == 200, await response.text()
    card = dialog_card(await response.json())
    assert card_problems(card) == []
    assert inputs_of(card) == [
        "what",
        "preconditions",
        "effect",
        "goal",
        "theme",
        "not_shared",
        "anonymous",
    ]

    submit = teams.load("extension_fetch")
    submit.update(name="composeExtension/submitAction", id="f:me-submit-1")
    submit["value"] = {
        "commandId": "deel",
        "commandContext": "compose",
        "data": submit_data(card, what="", preconditions="x"),
    }
    bad = await teams.send(submit)
    assert bad.status == 200
    again = dialog_card(await bad.json())
    errors = [e["text"] for e in again["body"] if e.get("color") == "Attention"]
    assert len(errors) == 2  # what is empty, preconditions too short
    assert await teams.contributions() == []

    submit["value"]["data"] = submit_data(
        again,
        what="Een bufferuur in de middag.",
        preconditions="Planners doen mee.",
        goal="gezond-werken",
        anonymous="false",
    )
    good = await teams.send(submit)
    assert good.status == 200
    assert card_problems(dialog_card(await good.json())) == []
    [share] = await teams.contributions()
    assert share.fields["preconditions"] == "Planners doen mee."
    assert share.author is not None and share.author.name == "Jeroen de Vries"


def personal(activity: dict[str, Any], card_id: str) -> dict[str, Any]:
    """`activity` as sent from Fatima's 1:1 chat with Boeket, on the card `card_id`."""
    activity["conversation"] = {
        "conversationType": "personal",
        "tenantId": TENANT,
        "id": "a:1personal-29:1fatima",
    }
    activity["channelData"] = {"tenant": {"id": TENANT}}
    activity["replyToId"] = card_id
    return activity


async def test_command_menu_deel_opens_the_share_dialog_from_a_button(teams: TeamsEnv) -> None:
    teams.clock.set(OK_PROMPT_AT)
    await teams.install()
    typed = reply(teams, "deel De nieuwe planning", "1700000100500", activity_id="1700000100500")
    assert (await teams.send(typed)).status in {200, 202}
    # A typed message cannot open a dialog: her 1:1 chat gets a card whose button can.
    [button_message] = teams.fake.of("send")
    assert button_message.conversation == "a:1personal-29:1fatima"
    assert not [c for c in teams.fake.calls if c.conversation.startswith("19:")]
    button_card = card_of(button_message)
    assert card_problems(button_card) == []
    assert inputs_of(button_card) == []
    [button] = actions_of(button_card)
    assert button["type"] == "Action.Submit" and button["title"] == "Deel een succes"
    assert button["data"]["msteams"] == {"type": "task/fetch"}

    # Her click arrives as a task/fetch invoke from the 1:1 chat: the share dialog opens.
    fetch = personal(teams.load("task_fetch", ROOT="x"), button_message.answer["id"])
    fetch["value"]["data"] = copy.deepcopy(button["data"])
    opened = await teams.send(fetch)
    assert opened.status == 200, await opened.text()
    dialog = await opened.json()
    assert dialog["task"]["value"]["title"] == "Deel een succes"
    card = dialog_card(dialog)
    assert card_problems(card) == []
    assert inputs_of(card) == [
        "what",
        "preconditions",
        "effect",
        "goal",
        "theme",
        "not_shared",
        "anonymous",
    ]
    [what] = [e for e in card["body"] if e.get("id") == "what"]
    assert what["value"] == "De nieuwe planning"  # what she typed after `deel`

    def submit(data: dict[str, Any]) -> dict[str, Any]:
        activity = personal(teams.load("task_fetch", ROOT="x"), button_message.answer["id"])
        activity.update(name="task/submit", id=f"f:submit-{time.monotonic_ns()}")
        activity["value"] = {"type": "task/submit", "data": data}
        return activity

    bad = await teams.send(submit(submit_data(card, what="", preconditions="Iedereen aan tafel.")))
    assert bad.status == 200
    again = dialog_card(await bad.json())
    assert card_problems(again) == []
    errors = [e["text"] for e in again["body"] if e.get("color") == "Attention"]
    assert len(errors) == 1, errors  # only "what" is missing
    assert [e.get("value") for e in again["body"] if e.get("id") == "preconditions"] == [
        "Iedereen aan tafel."
    ]
    assert await teams.contributions() == []

    good = submit_data(
        again,
        what="Samen plannen werkt.",
        preconditions="Iedereen aan tafel.",
        goal="gezond-werken",
        anonymous="false",
    )
    confirmations = []
    for _ in range(2):  # a double click submits the same dialog twice
        response = await teams.send(submit(good))
        assert response.status == 200
        done = dialog_card(await response.json())
        assert card_problems(done) == []
        confirmations.append(json.dumps(done, ensure_ascii=False))
    assert "Dank je voor het delen" in confirmations[0]
    assert "al ontvangen" in confirmations[1]  # the second one stored nothing, and says so
    [share] = await teams.contributions()
    assert (share.department_id, share.kind, share.source) == ("ok", Kind.SUCCES, Source.SHARE)
    assert share.text == "Samen plannen werkt."
    assert share.fields["preconditions"] == "Iedereen aan tafel."
    assert share.goal_id == "gezond-werken"
    assert share.author is not None and share.author.name == "Fatima el Amrani"
    # Everything happened in the dialog: nothing more in any chat or channel.
    await teams.settle()
    assert len(teams.fake.of("send")) == 1 and teams.fake.attempts("update") == []


async def test_a_form_card_submitted_in_the_1on1_chat_is_updated_in_place(
    teams: TeamsEnv,
) -> None:
    """A form card sent to the 1:1 chat as a whole (as older versions did) still works."""
    teams.clock.set(OK_PROMPT_AT)
    await teams.install()
    typed = reply(teams, "deel", "1700000100500", activity_id="1700000100500")
    assert (await teams.send(typed)).status in {200, 202}
    [button_message] = teams.fake.of("send")
    [button] = actions_of(card_of(button_message))
    fetch = personal(teams.load("task_fetch", ROOT="x"), button_message.answer["id"])
    fetch["value"]["data"] = button["data"]
    card = dialog_card(await (await teams.send(fetch)).json())

    submit = teams.load("channel_reply", ROOT="x")
    for key in ("text", "entities", "attachments"):
        submit.pop(key)
    submit = personal(submit, "1700000000999")
    submit["id"] = "1700000100600"
    submit["value"] = submit_data(
        card, what="Samen plannen werkt.", preconditions="Iedereen aan tafel.", anonymous="false"
    )
    assert (await teams.send(submit)).status in {200, 202}
    await teams.settle()
    [update] = teams.fake.of("update")
    assert update.conversation == "a:1personal-29:1fatima"
    assert update.activity_id == "1700000000999"
    assert card_problems(card_of(update)) == []
    [share] = await teams.contributions()
    assert share.text == "Samen plannen werkt."


async def test_help_goes_to_the_1on1_chat(teams: TeamsEnv) -> None:
    await teams.install()
    await teams.send(reply(teams, "help", "1700000100700", activity_id="1700000100700"))
    [help_] = teams.fake.of("send")
    assert "deel" in json.dumps(card_of(help_), ensure_ascii=False).lower()


async def test_zoek_from_the_menu_answers_in_the_1on1_chat(teams: TeamsEnv) -> None:
    await teams.install()
    await teams.send(reply(teams, "zoek tomatensoep", "1700000100800", activity_id="1700000100800"))
    [answer] = teams.fake.of("send")
    assert "Nog niets gevonden over" in json.dumps(card_of(answer), ensure_ascii=False)
    assert await teams.contributions() == []  # a search, not an answer


# --- lessons travelling between Teams channels ------------------------------------------------

WARD_CHANNEL = "19:verpleegafdeling@thread.tacv2"
TRAVEL_AT = datetime(2027, 3, 2, 9, 0, tzinfo=UTC)  # a Tuesday morning: no quiet hours


def travel_config() -> OrgConfig:
    """The operating theatre and the ward on Teams; what the theatre says may travel."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for dept in data["departments"]:
        if dept["id"] == "ok":
            dept.update(platform="teams", channel=OK_CHANNEL, share_from_private=True)
        if dept["id"] == "verpleging":
            dept.update(
                platform="teams", channel=WARD_CHANNEL, themes=["werkdruk", "verzuim", "inwerken"]
            )
    data["crossposting"] = {"quiet_hours": None}
    return parse_config(data, Path("travel.yaml"))


@pytest.fixture
async def travel(
    db: Database, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[TeamsEnv]:
    clock.set(TRAVEL_AT)
    async for env in _env(db, prompts, clock, DEV, travel_config()):
        yield env


async def share_in_teams(env: TeamsEnv, values: dict[str, str]) -> dict[str, Any]:
    """Jeroen shares a success with "Deel een succes" in the operating theatre's channel."""
    response = await env.send(env.load("extension_fetch"))
    card = dialog_card(await response.json())
    submit = env.load("extension_fetch")
    submit.update(name="composeExtension/submitAction", id=f"f:me-submit-{time.monotonic_ns()}")
    submit["value"] = {
        "commandId": "deel",
        "commandContext": "compose",
        "data": submit_data(card, anonymous="false", **values),
    }
    done = await env.send(submit)
    assert done.status == 200
    body: dict[str, Any] = await done.json()
    return body


def click(env: TeamsEnv, verb: str, value: str, message_id: str, who: str) -> dict[str, Any]:
    activity = env.load("task_fetch", CHANNEL=WARD_CHANNEL, ROOT=message_id)
    activity["id"] = f"f:click-{time.monotonic_ns()}"
    activity["from"] = {"id": f"29:1{who}", "name": who.title()}
    activity["value"]["data"] = {"verb": verb, "value": value, "msteams": {"type": "task/fetch"}}
    return activity


async def test_a_lesson_travels_to_another_teams_channel_with_its_three_buttons(
    travel: TeamsEnv,
) -> None:
    from tests.test_crosspost import HANDOVER, HISTORY

    await travel.install()
    repo = ContributionRepository(travel.db)
    for i, text in enumerate(HISTORY["verpleging"]):  # the ward's own recent lessons
        stored, _ = await repo.add(
            NewContribution(
                organisation_id=ORG,
                department_id="verpleging",
                kind=Kind.LES,
                source=Source.REPLY,
                round_date=date(2027, 2, 20),
                text=text,
                anonymous=False,
                author=Person(f"ward{i}", f"Collega {i}"),
                platform="teams",
                event_key=f"seed:ward:{i}",
                created_at=TRAVEL_AT - timedelta(days=10),
            )
        )
        await travel.boeket.matcher.index(stored)
    values = {k: HANDOVER[k] for k in ("what", "preconditions", "effect", "theme", "goal")}
    confirmed = await share_in_teams(travel, values)
    assert card_problems(dialog_card(confirmed)) == []
    await travel.boeket.background.drain()
    assert await travel.boeket.crossposter.tick() >= 1

    suggestion = travel.prompt_post(WARD_CHANNEL)
    card = card_of(suggestion)
    assert card_problems(card) == []
    buttons = actions_of(card)
    assert [b["title"] for b in buttons] == ["Nuttig", "Niet relevant", "Laten we praten"]
    assert all(b["data"]["msteams"] == {"type": "task/fetch"} for b in buttons)
    assert "vijf punten" in json.dumps(card, ensure_ascii=False)
    message_id = suggestion.answer["activityId"]
    value = buttons[0]["data"]["value"]

    answers = {}
    for verb, who in (
        ("boeket.crosspost.useful", "sanne"),
        ("boeket.crosspost.not_relevant", "sanne"),
        ("boeket.crosspost.talk", "kees"),
    ):
        response = await travel.send(click(travel, verb, value, message_id, who))
        assert response.status == 200, await response.text()
        shown = dialog_card(await response.json())
        assert card_problems(shown) == []
        answers[verb] = json.dumps(shown, ensure_ascii=False)
    assert "verder helpt" in answers["boeket.crosspost.useful"]
    assert "minder van dit soort" in answers["boeket.crosspost.not_relevant"]
    assert "doorpraten" in answers["boeket.crosspost.talk"]
    # Let's talk: the suggestion's thread hears it, and so does the theatre's channel.
    [in_thread] = travel.fake.of("reply")
    assert in_thread.conversation == f"{WARD_CHANNEL};messageid={message_id}"
    assert "Kees" in json.dumps(card_of(in_thread), ensure_ascii=False)
    home = [
        c
        for c in travel.fake.of("create")
        if c.body.get("channelData", {}).get("channel", {}).get("id") == OK_CHANNEL
    ]
    assert home and "Kees" in json.dumps(card_of(home[-1]), ensure_ascii=False)
    # The clicks are answers only the clicker sees: the suggestion card itself is unchanged.
    await travel.settle()
    assert travel.fake.attempts("update") == []


async def test_a_click_on_a_stale_suggestion_is_answered_without_a_crash(
    travel: TeamsEnv,
) -> None:
    await travel.install()
    response = await travel.send(
        click(travel, "boeket.crosspost.useful", "999999", "1700000000999", "sanne")
    )
    assert response.status == 200
    body = await response.json()
    assert body["task"]["type"] == "message"  # a short "received", no dialog, no error
    assert travel.fake.calls == []


# --- rate limits and permanent errors -----------------------------------------------------------


async def rate_limited(teams: TeamsEnv) -> float:
    async with teams.client.get("/metrics") as r:
        return samples(await r.text())[("boeket_rate_limited_total", (("platform", "teams"),))]


async def test_rate_limited_post_arrives_once_after_retry_after(teams: TeamsEnv) -> None:
    await teams.install()
    teams.fake.fail("create", 429, retry_after=1)
    refused_before = await rate_limited(teams)
    started = time.monotonic()
    await teams.tick(OK_PROMPT_AT)
    assert len(teams.fake.attempts("create")) == 2
    assert len(teams.fake.of("create")) == 1
    assert time.monotonic() - started >= 1.0
    assert await rate_limited(teams) == refused_before + 1  # an admin sees it in /metrics
    occ = await OccurrenceRepository(teams.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.SENT


async def test_gateway_errors_are_retried_with_backoff(teams: TeamsEnv) -> None:
    await teams.install()
    teams.fake.fail("create", 502)
    teams.fake.fail("create", 412)
    teams.fake.fail("create", 504)
    await teams.tick(OK_PROMPT_AT)
    assert [c.status for c in teams.fake.attempts("create")] == [502, 412, 504, 200]
    assert len(teams.fake.of("create")) == 1  # posted once


async def test_blocked_app_is_reported_once_and_not_retried(
    teams: TeamsEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await teams.install()
    teams.fake.fail("create", 403, times=99)
    await teams.tick(OK_PROMPT_AT)
    await teams.tick(datetime(2027, 3, 1, 7, 30, tzinfo=UTC))
    occ = await OccurrenceRepository(teams.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.FAILED
    assert len(teams.fake.attempts("create")) == 1
    reported = [
        r
        for r in caplog.records
        if r.name.startswith(("bot", "adapters"))
        and r.levelno >= logging.ERROR
        and "403" in r.getMessage()
    ]
    assert len(reported) == 1
    assert "Add the app to the team again" in reported[0].getMessage()


# --- security -----------------------------------------------------------------------------------


async def test_activity_from_another_tenant_is_refused(teams: TeamsEnv) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    calls = len(teams.fake.calls)
    foreign = reply(teams, "Van buiten de organisatie.", root)
    foreign["conversation"]["tenantId"] = OTHER_TENANT
    foreign["channelData"]["tenant"]["id"] = OTHER_TENANT
    response = await teams.send(foreign)
    assert response.status == 403
    assert await teams.contributions() == []
    assert len(teams.fake.calls) == calls


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


@pytest.fixture
async def secured(
    db: Database, prompts: PromptLibrary, clock: ManualClock, login: FakeLogin
) -> AsyncIterator[TeamsEnv]:
    settings = TeamsSettings(
        client_id=APP_ID,
        client_secret="s3cret",
        tenant_id=TENANT,
        openid_metadata_url=login.metadata_url,
        login_url=login.url,
        backoff_seconds=0.05,
    )
    async for env in _env(db, prompts, clock, settings):
        yield env


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_validly_signed_token_is_accepted_and_boeket_signs_its_own_calls(
    secured: TeamsEnv, login: FakeLogin
) -> None:
    token = login.token(service_url=secured.fake.url)
    for name in ("install_team", "channel_created"):
        response = await secured.send(secured.load(name), bearer(token))
        assert response.status in {200, 202}, await response.text()
    await secured.tick(OK_PROMPT_AT)
    post = secured.prompt_post()
    root = _created_ids(secured)[0]
    response = await secured.send(reply(secured, "Getekend en bezorgd.", root), bearer(token))
    assert response.status in {200, 202}
    [stored] = await secured.contributions()
    assert stored.text == "Getekend en bezorgd."
    # Every call to the connector carries the app's token from Microsoft Entra, got with the
    # app's own id and secret from its own tenant, and reused while it is valid.
    assert login.issued and all(
        c.authorization == f"Bearer {login.issued[0]}" for c in secured.fake.calls
    )
    assert post.authorization == f"Bearer {login.issued[0]}"
    assert len(secured.fake.calls) >= 3  # the prompt, her 1:1 chat, the thanks
    assert {r.tenant for r in login.token_requests} == {TENANT}
    assert all(r.status == 200 for r in login.token_requests)
    assert {r.form["scope"] for r in login.token_requests} == {
        "https://api.botframework.com/.default"
    }
    assert len(login.issued) == 1
    assert login.key_fetches == 1  # the key set is cached, not fetched per request


@pytest.mark.parametrize(
    "bad",
    [
        "wrong audience",
        "expired",
        "bad signature",
        "unknown key",
        "wrong issuer",
        "no expiry",
        "HS256 with the public key",
        "unsigned",
    ],
)
async def test_tokens_that_are_not_valid_get_401_and_change_nothing(
    secured: TeamsEnv, login: FakeLogin, bad: str
) -> None:
    url = secured.fake.url
    match bad:
        case "wrong audience":
            token = login.token(audience="22222222-2222-4333-8444-555555555555", service_url=url)
        case "expired":
            token = login.token(service_url=url, lifetime=-3600)  # past the 5 minutes of skew
        case "bad signature":
            token = login.token(service_url=url, key=new_key())  # same key id, another key
        case "unknown key":
            token = login.token(service_url=url, kid="rotated-away")
        case "wrong issuer":
            token = login.token(service_url=url, issuer="https://sts.windows.net/" + TENANT + "/")
        case "no expiry":
            token = jwt.encode(
                {"iss": "https://api.botframework.com", "aud": APP_ID, "serviceurl": url},
                login.key,
                algorithm="RS256",
                headers={"kid": KID},
            )
        case "HS256 with the public key":
            good = login.token(service_url=url)
            claims = jwt.decode(good, options={"verify_signature": False})
            public = json.dumps(jwt.algorithms.RSAAlgorithm.to_jwk(login.key.public_key()))
            token = _hs256(claims, public.encode())
        case "unsigned":
            good = login.token(service_url=url)
            header, payload, _ = good.split(".")
            token = f"{header}.{payload}."
    for name in ("install_team", "channel_created"):
        response = await secured.send(secured.load(name), bearer(token))
        assert response.status == 401, (bad, await response.text())
    response = await secured.send(reply(secured, "Vals.", "1700000000001"), bearer(token))
    assert response.status == 401
    assert await secured.contributions() == []
    assert secured.fake.calls == []
    # Nothing was remembered: the cycle has no conversation reference to post with.
    await secured.tick(OK_PROMPT_AT)
    occ = await OccurrenceRepository(secured.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.FAILED
    assert secured.fake.calls == []


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """A token 'signed' with HMAC, using the public key as the secret (the classic confusion)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = part(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{part(signature)}"


async def test_a_valid_token_does_not_let_another_tenant_in(
    secured: TeamsEnv, login: FakeLogin
) -> None:
    token = login.token(service_url=secured.fake.url)
    await secured.send(secured.load("install_team"), bearer(token))
    await secured.send(secured.load("channel_created"), bearer(token))
    calls = len(secured.fake.calls)
    foreign = reply(secured, "Van buiten de organisatie.", "1700000000001")
    foreign["conversation"]["tenantId"] = OTHER_TENANT
    foreign["channelData"]["tenant"]["id"] = OTHER_TENANT
    response = await secured.send(foreign, bearer(token))
    assert response.status == 403
    foreign_install = secured.load("install_team", TENANT=OTHER_TENANT)
    foreign_install["channelData"]["team"]["id"] = "19:foreign-team@thread.tacv2"
    assert (await secured.send(foreign_install, bearer(token))).status == 403
    assert await secured.contributions() == []
    assert len(secured.fake.calls) == calls
    stored = await StateStore(secured.db, "teams").keys()
    assert not any("foreign" in key or OTHER_TENANT in key for key in stored)


async def test_a_token_for_another_service_url_or_channel_is_refused(
    secured: TeamsEnv, login: FakeLogin
) -> None:
    elsewhere = login.token(service_url="https://smba.trafficmanager.net/emea/")
    response = await secured.send(secured.load("install_team"), bearer(elsewhere))
    assert response.status == 403  # its serviceUrl is not the one the token was issued for
    nameless = login.token()  # a token that names no serviceUrl at all
    assert (await secured.send(secured.load("install_team"), bearer(nameless))).status == 403
    token = login.token(service_url=secured.fake.url)
    webchat = secured.load("install_team")
    webchat["channelId"] = "webchat"  # the key is endorsed for msteams only
    assert (await secured.send(webchat, bearer(token))).status == 401
    assert await StateStore(secured.db, "teams").keys() == []
    assert secured.fake.calls == []


async def test_unreachable_signing_keys_refuse_requests_and_say_why(
    db: Database,
    prompts: PromptLibrary,
    clock: ManualClock,
    login: FakeLogin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = TeamsSettings(
        client_id=APP_ID,
        client_secret="s3cret",
        tenant_id=TENANT,
        openid_metadata_url=login.url + "/no-such-metadata",
        login_url=login.url,
    )
    async for env in _env(db, prompts, clock, settings):
        token = login.token(service_url=env.fake.url)
        response = await env.send(env.load("install_team"), bearer(token))
        assert response.status == 503
        assert await StateStore(env.db, "teams").keys() == []
    assert any("signing keys are unavailable" in r.getMessage() for r in caplog.records)


async def test_with_credentials_a_request_without_a_valid_token_gets_401(
    secured: TeamsEnv,
) -> None:
    activity = reply(secured, "Zonder token.", "1700000000001")
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-jwt"},
    ):
        response = await secured.send(activity, headers)
        assert response.status == 401, headers
    install = await secured.send(secured.load("install_team"))
    assert install.status == 401
    assert await secured.contributions() == []
    assert secured.fake.calls == []
    # Nothing was remembered either: the cycle has no reference to post with.
    await secured.tick(OK_PROMPT_AT)
    occ = await OccurrenceRepository(secured.db).get(ORG, "ok", Step.PROMPT, date(2027, 3, 2))
    assert occ is not None and occ.status is OccurrenceStatus.FAILED
    assert secured.fake.calls == []


async def test_development_mode_says_so_in_the_log(
    db: Database, prompts: PromptLibrary, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async for _ in _env(db, prompts, clock, DEV):
        warnings = [r for r in caplog.records if "DEVELOPMENT MODE" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


async def test_turn_errors_are_logged_not_posted_into_the_chat(
    teams: TeamsEnv, caplog: pytest.LogCaptureFixture
) -> None:
    await teams.install()
    await teams.tick(OK_PROMPT_AT)
    root = _created_ids(teams)[0]
    teams.fake.fail("create", 500, times=5)  # her 1:1 chat cannot be created
    response = await teams.send(reply(teams, "Een antwoord dat wel bewaard wordt.", root))
    assert response.status in {200, 202}
    assert len(await teams.contributions()) == 1
    assert not [c for c in teams.fake.calls if "Exception" in json.dumps(c.body)]
    assert any(r.levelno == logging.ERROR and "failed" in r.getMessage() for r in caplog.records)
