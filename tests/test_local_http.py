"""The local web chat and the health check end to end, over real HTTP and WebSockets.

Each test starts the one aiohttp application (`web_app`) on a free port with a Boeket built on
SQLite or PostgreSQL, drives the learning cycle with a manual clock and talks to the server the
way the browser does: JSON over HTTP, live messages over the WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.app import Boeket, build, web_app
from bot.cli import configure_logging
from bot.clock import ManualClock
from bot.config import OrgConfig
from bot.domain import Contribution, Kind, Source
from bot.embedders import LexicalEmbedder
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import ContributionRepository
from storage.tables import AdapterStateRow, ContributionRow

OK_PROMPT_AT = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)  # Operatiekamer's prompt is due 06:30
OK_HARVEST_AT = datetime(2027, 3, 2, 6, 30, tzinfo=UTC)  # Tuesday 07:30 in Amsterdam
OK_ROUND = "2027-03-02"
ICT_PROMPT_AT = datetime(2027, 3, 7, 9, 0, tzinfo=UTC)  # the day before Monday 8 March 10:00
ICT_ROUND = "2027-03-08"
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
DEPARTMENT_CHANNELS = {"operatiekamer", "verpleegafdeling", "ict", "hr", "spoedeisende-hulp"}
CROSS = "leren-over-grenzen"
SHARE_FIELDS = ["what", "preconditions", "effect", "goal", "theme", "not_shared", "anonymous"]
WS_TIMEOUT = 5


@dataclass
class Chat:
    """A running server and a client that speaks its HTTP API."""

    boeket: Boeket
    client: TestClient[Any, Any]
    clock: ManualClock
    db: Database

    @property
    def org(self) -> str:
        return self.boeket.config.organisation.id

    async def tick(self, at: datetime) -> None:
        self.clock.set(at)
        await self.boeket.cycle.tick(at)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        resp = await self.client.post(path, json=body)
        data = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, data

    async def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        status, data = await self.post(path, body)
        assert status == 200, data
        assert set(data) == {"response"}
        response: dict[str, Any] | None = data["response"]
        return response

    async def send(self, person: str, channel: str, text: str, **extra: str) -> Any:
        return await self.ok(
            "/local/api/send", {"person": person, "channel": channel, "text": text, **extra}
        )

    async def click(self, person: str, channel: str, action_id: str, value: str) -> Any:
        return await self.ok(
            "/local/api/click",
            {"person": person, "channel": channel, "action_id": action_id, "value": value},
        )

    async def submit(
        self,
        person: str,
        channel: str,
        form: dict[str, Any],
        values: dict[str, str],
        submission_id: str,
    ) -> Any:
        return await self.ok(
            "/local/api/submit",
            {
                "person": person,
                "channel": channel,
                "form_id": form["form_id"],
                "submission_id": submission_id,
                "values": values,
                "meta": form["meta"],
            },
        )

    async def state(self, person: str | None = None) -> dict[str, Any]:
        resp = await self.client.get(
            "/local/api/state", params={"person": person} if person else None
        )
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        return data

    async def messages(self, channel: str, person: str | None = None) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = (await self.state(person))["messages"][channel]
        return messages

    async def prompt(self, channel: str) -> dict[str, Any]:
        """The cycle's prompt in `channel`: the bot's top-level message with the answer button."""
        prompts = [
            m
            for m in await self.messages(channel)
            if m["author_id"] == "boeket"
            and m["thread_id"] is None
            and any(b["action_id"] == "boeket.answer" for b in m["buttons"])
        ]
        assert len(prompts) == 1, prompts
        return prompts[0]

    async def contributions(self) -> list[Contribution]:
        return await ContributionRepository(self.db).all(self.org)

    async def ws(self, person: str) -> ClientWebSocketResponse:
        """A live socket, registered with the server before this returns (ping → clock)."""
        ws = await self.client.ws_connect(f"/local/ws?person={person}")
        await ws.send_str("ping")
        first = await asyncio.wait_for(ws.receive_json(), WS_TIMEOUT)
        assert first["type"] == "clock"
        assert first["now"] == self.clock.now().isoformat()
        return ws


@pytest.fixture
async def chat(
    db: Database, example_config: OrgConfig, prompts: PromptLibrary, clock: ManualClock
) -> AsyncIterator[Chat]:
    boeket = build(
        Settings(database_url=db.url, worker_id="t", auto_migrate=True),
        example_config,
        clock=clock,
        prompts=prompts,
        db=db,
        embedder=LexicalEmbedder(),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False), port=0))
    await client.start_server()  # runs on_startup: migrations, adapters
    try:
        yield Chat(boeket, client, clock, db)
    finally:
        await client.close()  # runs on_cleanup: adapters stop, the engine is disposed


async def next_message(ws: ClientWebSocketResponse) -> dict[str, Any]:
    data: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), WS_TIMEOUT)
    return data


async def share_form(chat: Chat, person: str, channel: str) -> dict[str, Any]:
    response = await chat.send(person, channel, "/deel")
    assert response["type"] == "form"
    form: dict[str, Any] = response["form"]
    return form


# --- page, static files, health ------------------------------------------------------------


async def test_page_and_static_files_are_served(chat: Chat) -> None:
    page = await chat.client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert "<html" in (await page.text()).lower()

    js = await chat.client.get("/local/static/app.js")
    assert js.status == 200
    assert "javascript" in js.content_type
    assert len(await js.read()) > 0

    css = await chat.client.get("/local/static/app.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    assert len(await css.read()) > 0

    missing = await chat.client.get("/local/static/nope.js")
    assert missing.status == 404


@pytest.mark.parametrize("path", ["/local/static/../adapter.py", "/local/static/%2e%2e/adapter.py"])
async def test_static_route_does_not_serve_files_outside_its_folder(chat: Chat, path: str) -> None:
    resp = await chat.client.get(path)
    assert resp.status in {403, 404}
    assert "class LocalAdapter" not in await resp.text()


async def test_health_reports_the_database_backend(chat: Chat, db: Database) -> None:
    resp = await chat.client.get("/health")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["database"] == db.backend
    assert body["database"] in {"sqlite", "postgresql"}
    assert body["now"] == chat.clock.now().isoformat()


async def test_health_is_503_when_the_database_goes_away(chat: Chat) -> None:
    assert (await chat.client.get("/health")).status == 200
    # The database becomes unreachable while the server runs.
    chat.boeket.db = Database.connect(UNREACHABLE)
    resp = await chat.client.get("/health")
    assert resp.status == 503
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "unreachable"
    assert UNREACHABLE not in json.dumps(body)


# --- state ----------------------------------------------------------------------------------


async def test_state_lists_channels_people_texts_and_messages(
    chat: Chat, example_config: OrgConfig
) -> None:
    state = await chat.state()
    assert state["language"] == "nl"
    assert state["now"] == chat.clock.now().isoformat()
    channels = {c["id"]: c for c in state["channels"]}
    assert set(channels) == {*DEPARTMENT_CHANNELS, CROSS}
    assert channels["operatiekamer"] == {
        "id": "operatiekamer",
        "name": "Operatiekamer",
        "department": "ok",
    }
    assert channels[CROSS]["department"] is None
    assert channels[CROSS]["name"] == "Leren over grenzen"
    people = {p["id"]: p for p in state["people"]}
    assert set(people) == {p.id for p in example_config.local.people}
    assert people["fatima"] == {"id": "fatima", "name": "Fatima el Amrani", "department": "ok"}
    assert people["priya"]["department"] == "ict"
    assert state["ui"]["bot_name"] == "Boeket"
    assert state["ui"]["title"] == "Boeket — lokale chat"
    assert state["ui"]["replies"] == "{count} antwoorden"  # the page fills {count} itself
    assert set(state["messages"]) == set(channels)
    assert all(msgs == [] for msgs in state["messages"].values())

    await chat.tick(OK_PROMPT_AT)
    state = await chat.state()
    [prompt] = state["messages"]["operatiekamer"]
    assert prompt["author_name"] == "Boeket"
    assert "Antwoorden" in prompt["text"]


async def test_ephemerals_are_only_in_their_own_persons_state(chat: Chat) -> None:
    response = await chat.send("fatima", "operatiekamer", "/deel help")
    assert response["type"] == "ephemeral"

    own = await chat.messages("operatiekamer", "fatima")
    assert len(own) == 1
    assert own[0]["for_person"] == "fatima"
    assert own[0]["html"] == response["html"]
    assert await chat.messages("operatiekamer", "jeroen") == []
    assert await chat.messages("operatiekamer") == []


# --- the WebSocket --------------------------------------------------------------------------


async def test_websocket_receives_the_prompt_live(chat: Chat) -> None:
    ws = await chat.ws("fatima")
    await chat.tick(OK_PROMPT_AT)
    event = await next_message(ws)
    assert event["type"] == "message"
    msg = event["message"]
    assert msg["channel"] == "operatiekamer"
    assert msg["thread_id"] is None
    assert msg["for_person"] is None
    assert msg["author_id"] == "boeket"
    assert 'data-action="boeket.answer"' in msg["html"]
    assert f'data-value="{OK_ROUND}"' in msg["html"]
    assert ">Antwoorden</button>" in msg["html"]
    assert msg["buttons"] == [
        {"action_id": "boeket.answer", "label": "Antwoorden", "value": OK_ROUND}
    ]
    assert msg == await chat.prompt("operatiekamer")
    await ws.close()


async def test_websocket_ephemeral_reaches_only_its_person(chat: Chat) -> None:
    fatima = await chat.ws("fatima")
    jeroen = await chat.ws("jeroen")

    await chat.send("fatima", "operatiekamer", "/deel help")
    got = await next_message(fatima)
    assert got["type"] == "message"
    assert got["message"]["for_person"] == "fatima"
    assert "zo werkt het" in got["message"]["html"]

    # A public message afterwards: broadcasts go out in order, so if jeroen's socket had been
    # sent the ephemeral it would arrive before this one.
    await chat.send("jeroen", "operatiekamer", "Goedemorgen allemaal")
    for ws in (jeroen, fatima):
        public = await next_message(ws)
        assert public["message"]["author_id"] == "jeroen"
        assert public["message"]["for_person"] is None
        assert public["message"]["text"] == "Goedemorgen allemaal"
    await fatima.close()
    await jeroen.close()


# --- thread replies -------------------------------------------------------------------------


async def test_thread_reply_is_shown_and_stored_once_per_client_id(chat: Chat) -> None:
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    text = "De overdracht naar de recovery ging vandaag in twee minuten."

    response = await chat.send(
        "jeroen", "operatiekamer", text, thread_id=prompt["id"], client_id="c-1"
    )
    assert response["type"] == "ephemeral"
    assert "Dank je, je antwoord staat erbij" in response["html"]

    thread = [m for m in await chat.messages("operatiekamer") if m["thread_id"] == prompt["id"]]
    assert [(m["author_id"], m["author_name"], m["text"]) for m in thread] == [
        ("jeroen", "Jeroen de Vries", text)
    ]
    assert (await chat.prompt("operatiekamer"))["reply_count"] == 1

    [stored] = await chat.contributions()
    assert stored.text == text
    assert stored.department_id == "ok"
    assert stored.source is Source.REPLY
    assert stored.kind is Kind.SUCCES  # the first kind of the rotation
    assert stored.round_date.isoformat() == OK_ROUND
    assert stored.author is not None
    assert (stored.author.id, stored.author.name) == ("jeroen", "Jeroen de Vries")
    assert not stored.anonymous

    # The browser retries with the same client_id: still one contribution.
    await chat.send("jeroen", "operatiekamer", text, thread_id=prompt["id"], client_id="c-1")
    assert len(await chat.contributions()) == 1

    # A different client_id is a different answer.
    await chat.send("jeroen", "operatiekamer", text, thread_id=prompt["id"], client_id="c-2")
    assert len(await chat.contributions()) == 2


async def test_send_retry_with_the_same_client_id_shows_the_reply_once(chat: Chat) -> None:
    """The page retries a failed send with the same client_id ("the server stores it once")."""
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    for _ in range(2):
        await chat.send(
            "jeroen", "operatiekamer", "Twee keer verstuurd", thread_id=prompt["id"], client_id="r"
        )
    thread = [m for m in await chat.messages("operatiekamer") if m["thread_id"] == prompt["id"]]
    assert [m["text"] for m in thread] == ["Twee keer verstuurd"]
    assert (await chat.prompt("operatiekamer"))["reply_count"] == 1
    assert len(await chat.contributions()) == 1


async def test_user_html_is_escaped_in_the_chat(chat: Chat) -> None:
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    ws = await chat.ws("kees")
    evil = "<script>alert(1)</script><b>x</b>"

    await chat.send("fatima", "operatiekamer", evil, thread_id=prompt["id"])

    live = await next_message(ws)
    [shown] = [m for m in await chat.messages("operatiekamer") if m["thread_id"] == prompt["id"]]
    for html in (shown["html"], live["message"]["html"]):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in html
        assert "<script" not in html
        assert "<b>" not in html
    assert shown["text"] == evil  # plain text stays as typed; only the HTML is escaped
    [stored] = await chat.contributions()
    assert stored.text == evil
    await ws.close()


# --- /deel ----------------------------------------------------------------------------------


async def test_deel_opens_the_share_form(chat: Chat) -> None:
    form = await share_form(chat, "fatima", "operatiekamer")
    assert form["form_id"] == "boeket.share"
    assert [f["name"] for f in form["fields"]] == SHARE_FIELDS
    assert form["meta"] == {"department": "ok"}
    fields = {f["name"]: f for f in form["fields"]}
    assert fields["what"]["required"] and fields["preconditions"]["required"]
    assert not fields["effect"]["required"]
    assert fields["anonymous"]["kind"] == "checkbox"
    assert {o["value"] for o in fields["goal"]["options"]} == {
        "veilige-zorg",
        "gezond-werken",
        "samen-met-patient",
    }
    # The form opens in a dialog; nothing is posted in the channel.
    assert await chat.messages("operatiekamer", "fatima") == []

    ict = await share_form(chat, "priya", "ict")
    assert [f["name"] for f in ict["fields"]] == SHARE_FIELDS[:-1]  # ict allows no anonymity

    prefilled = await share_form(chat, "fatima", "operatiekamer")
    assert prefilled["fields"][0]["initial"] == ""
    words = await chat.send("fatima", "operatiekamer", "/deel Een maatje voor nieuwkomers")
    assert words["form"]["fields"][0]["initial"] == "Een maatje voor nieuwkomers"


async def test_deel_outside_a_department_says_so(chat: Chat) -> None:
    response = await chat.send("fatima", CROSS, "/deel")
    assert response["type"] == "ephemeral"
    assert "afdeling" in response["html"]
    assert "hoort (nog) niet bij een afdeling" in response["html"]
    [shown] = await chat.messages(CROSS, "fatima")
    assert shown["for_person"] == "fatima"
    assert await chat.contributions() == []


async def test_deel_help_is_an_ephemeral_help_text(chat: Chat) -> None:
    response = await chat.send("jeroen", "operatiekamer", "/deel help")
    assert response["type"] == "ephemeral"
    assert "Boeket — zo werkt het" in response["html"]
    assert "/deel mijn" in response["html"]
    assert "/deel verwijder" in response["html"]
    assert await chat.messages("operatiekamer") == []


# --- submitting the share form --------------------------------------------------------------


async def test_share_form_errors_then_done_then_already_received(chat: Chat) -> None:
    form = await share_form(chat, "fatima", "operatiekamer")

    errors = await chat.submit(
        "fatima", "operatiekamer", form, {"what": "", "preconditions": "  "}, "sub-1"
    )
    assert errors["type"] == "errors"
    assert set(errors["errors"]) == {"what", "preconditions"}
    assert all("Vul dit in" in e for e in errors["errors"].values())
    assert await chat.contributions() == []

    values = {
        "what": "Een vast maatje voor elke nieuwe collega",
        "preconditions": "Tijd in het rooster voor het maatje",
        "effect": "Nieuwe collega's blijven langer",
        "goal": "gezond-werken",
        "theme": "inwerken",
    }
    done = await chat.submit("fatima", "operatiekamer", form, values, "sub-2")
    assert done["type"] == "done"
    assert "Dank je voor het delen" in done["html"]
    [stored] = await chat.contributions()
    assert stored.source is Source.SHARE
    assert stored.text == values["what"]
    assert stored.fields == {k: values[k] for k in ("what", "preconditions", "effect")}
    assert (stored.goal_id, stored.theme) == ("gezond-werken", "inwerken")
    assert stored.author is not None
    assert stored.author.id == "fatima"
    assert stored.round_date.isoformat() == OK_ROUND  # the next meeting

    again = await chat.submit("fatima", "operatiekamer", form, values, "sub-2")
    assert again["type"] == "done"
    assert "al ontvangen" in again["html"]
    assert len(await chat.contributions()) == 1


async def test_share_form_refuses_unknown_choices(chat: Chat) -> None:
    form = await share_form(chat, "fatima", "operatiekamer")
    values = {"what": "Iets moois", "preconditions": "Goede planning", "goal": "world-peace"}
    response = await chat.submit("fatima", "operatiekamer", form, values, "sub-x")
    assert response["type"] == "errors"
    assert set(response["errors"]) == {"goal"}
    assert await chat.contributions() == []


async def test_anonymous_share_leaves_no_trace_of_the_person(
    chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    # Boeket's logging as BOEKET_LOG_LEVEL=DEBUG sets it up, and every logger of Boeket at DEBUG.
    configure_logging("DEBUG")
    for logger in ("", "bot", "adapters", "storage", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=logger)
    name = "Fatima el Amrani"
    await chat.tick(OK_PROMPT_AT)
    form = await share_form(chat, "fatima", "operatiekamer")
    values = {
        "what": "We bellen de afdeling voor elke overdracht",
        "preconditions": "Een vast telefoonnummer per afdeling",
        "anonymous": "true",
    }
    done = await chat.submit("fatima", "operatiekamer", form, values, "anon-1")
    assert done["type"] == "done"
    assert "Je deelde anoniem" in done["html"]  # with the code to delete it later

    [stored] = await chat.contributions()
    assert stored.anonymous
    assert stored.author is None
    async with chat.db.sessions() as session:
        [row] = (await session.scalars(select(ContributionRow))).all()
    assert row.author_id is None
    assert row.author_name is None
    columns = {c.key: getattr(row, c.key) for c in ContributionRow.__table__.columns}
    assert "fatima" not in json.dumps(columns, default=str).lower()
    assert "amrani" not in json.dumps(columns, default=str).lower()

    await chat.tick(OK_HARVEST_AT)
    public = await chat.messages("operatiekamer")
    [harvest] = [m for m in public if "De oogst voor het overleg" in m["text"]]
    assert "We bellen de afdeling voor elke overdracht." in harvest["text"]
    assert "— anoniem" in harvest["text"]
    assert "1 bijdragen, waarvan 1 anoniem" in harvest["text"]
    assert name not in json.dumps(public)
    assert "fatima" not in json.dumps(public)

    assert caplog.records  # the capture works: requests, SQL and the cycle log at DEBUG/INFO
    for record in caplog.records:
        logged = record.getMessage() + (record.exc_text or "")
        assert name not in logged, record


async def test_anonymous_delete_code_is_not_kept_in_the_database(chat: Chat) -> None:
    """The code is shown once; the page promises "wij kunnen hem niet terugvinden"."""
    form = await share_form(chat, "fatima", "operatiekamer")
    values = {"what": "Iets wat werkte", "preconditions": "Goede planning", "anonymous": "on"}
    done = await chat.submit("fatima", "operatiekamer", form, values, "anon-2")
    assert done["type"] == "done"
    code = done["html"].split("/deel verwijder ")[1].split(" ")[0]
    assert len(code) == 8

    async with chat.db.sessions() as session:
        rows = (await session.scalars(select(AdapterStateRow))).all()
    kept = json.dumps([row.value for row in rows])
    # Stored next to "for_person": "fatima", the code would tie her to her anonymous share.
    org = chat.boeket.config.organisation.id  # the chat is kept per organisation
    assert [(r.platform, r.key) for r in rows] == [("local", f"{org}/channel:operatiekamer")]
    assert code not in kept
    assert "fatima" not in kept


async def test_another_organisation_with_the_same_channel_ids_does_not_see_this_chat(
    chat: Chat, example_config: OrgConfig, prompts: PromptLibrary, clock: ManualClock
) -> None:
    await chat.send("fatima", "operatiekamer", "Onze huddle werkt.")
    assert await chat.messages("operatiekamer")
    other_config = example_config.model_copy(
        update={
            "organisation": example_config.organisation.model_copy(
                update={"id": "een-andere-organisatie"}
            )
        }
    )
    other = build(
        Settings(database_url=chat.db.url, worker_id="t2", auto_migrate=True),
        other_config,
        clock=clock,
        prompts=prompts,
        db=chat.db,
        embedder=LexicalEmbedder(),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(other, timer=False), port=0))
    await client.start_server()
    try:
        seen = Chat(other, client, clock, chat.db)
        shown = json.dumps(await seen.messages("operatiekamer"))
        assert "huddle" not in shown
    finally:
        await client.close()


# --- the prompt's answer button -------------------------------------------------------------


async def test_answer_button_opens_the_answer_form(chat: Chat) -> None:
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    [button] = prompt["buttons"]

    response = await chat.click("fatima", "operatiekamer", button["action_id"], button["value"])
    assert response["type"] == "form"
    form = response["form"]
    assert form["form_id"] == "boeket.answer"
    assert [f["name"] for f in form["fields"]] == ["text", "followup", "not_shared", "anonymous"]
    assert form["meta"] == {"department": "ok", "round": OK_ROUND}

    done = await chat.submit(
        "fatima", "operatiekamer", form, {"text": "Goed gegaan", "anonymous": "true"}, "a-1"
    )
    assert done["type"] == "done"
    [stored] = await chat.contributions()
    assert (stored.source, stored.anonymous, stored.author) == (Source.FORM, True, None)

    unknown = await chat.click("fatima", "operatiekamer", "boeket.answer", "2027-06-01")
    assert unknown["type"] == "ephemeral"
    assert "ronde die ik niet" in unknown["html"]


async def test_answer_form_has_no_anonymous_field_where_the_team_does_not_allow_it(
    chat: Chat,
) -> None:
    await chat.tick(ICT_PROMPT_AT)
    prompt = await chat.prompt("ict")
    assert prompt["buttons"] == [
        {"action_id": "boeket.answer", "label": "Antwoorden", "value": ICT_ROUND}
    ]
    assert "anoniem" not in prompt["text"].lower()

    response = await chat.click("priya", "ict", "boeket.answer", ICT_ROUND)
    assert response["type"] == "form"
    form = response["form"]
    assert [f["name"] for f in form["fields"]] == ["text", "followup", "not_shared"]

    # A forged "anonymous" value does not make the answer anonymous in this team.
    done = await chat.submit(
        "priya", "ict", form, {"text": "Uitrol ging goed", "anonymous": "true"}, "i-1"
    )
    assert done["type"] == "done"
    [stored] = await chat.contributions()
    assert not stored.anonymous
    assert stored.author is not None
    assert stored.author.id == "priya"


# --- bad input ------------------------------------------------------------------------------

GOOD_SEND = {"person": "fatima", "channel": "operatiekamer", "text": "Een goed antwoord"}
GOOD_SUBMIT = {
    "person": "fatima",
    "channel": "operatiekamer",
    "form_id": "boeket.share",
    "submission_id": "bad-1",
    "values": {"what": "Iets wat werkte", "preconditions": "Goede planning"},
    "meta": {"department": "ok"},
}


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


BAD_REQUESTS: list[tuple[str, str, Any, int]] = [
    ("send-not-json", "/local/api/send", b"{not json", 400),
    ("send-not-utf8", "/local/api/send", b'{"text": "\xff\xfe"}', 400),
    ("send-list", "/local/api/send", [GOOD_SEND], 400),
    ("send-string", "/local/api/send", "hallo", 400),
    ("send-unknown-person", "/local/api/send", {**GOOD_SEND, "person": "mallory"}, 400),
    ("send-person-not-text", "/local/api/send", {**GOOD_SEND, "person": 7}, 400),
    ("send-unknown-channel", "/local/api/send", {**GOOD_SEND, "channel": "geheim"}, 400),
    ("send-missing-text", "/local/api/send", _without(GOOD_SEND, "text"), 400),
    ("send-empty-text", "/local/api/send", {**GOOD_SEND, "text": ""}, 400),
    ("send-text-not-text", "/local/api/send", {**GOOD_SEND, "text": ["a"]}, 400),
    ("send-text-too-long", "/local/api/send", {**GOOD_SEND, "text": "x" * 10_001}, 400),
    ("send-body-too-big", "/local/api/send", {**GOOD_SEND, "pad": "x" * (64 * 1024)}, 413),
    (
        "click-unknown-person",
        "/local/api/click",
        {"person": "x", "channel": "ict", "action_id": "a"},
        400,
    ),
    ("click-missing-action", "/local/api/click", {"person": "tom", "channel": "ict"}, 400),
    ("submit-values-not-map", "/local/api/submit", {**GOOD_SUBMIT, "values": ["what"]}, 400),
    ("submit-values-not-text", "/local/api/submit", {**GOOD_SUBMIT, "values": {"what": 5}}, 400),
    (
        "submit-meta-not-text",
        "/local/api/submit",
        {**GOOD_SUBMIT, "meta": {"department": None}},
        400,
    ),
    ("submit-missing-submission", "/local/api/submit", _without(GOOD_SUBMIT, "submission_id"), 400),
    ("submit-unknown-channel", "/local/api/submit", {**GOOD_SUBMIT, "channel": "nope"}, 400),
]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [pytest.param(p, b, s, id=i) for i, p, b, s in BAD_REQUESTS],
)
async def test_bad_input_is_refused_and_stores_nothing(
    chat: Chat, path: str, body: Any, status: int
) -> None:
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    if isinstance(body, dict) and path == "/local/api/send":
        body = {**body, "thread_id": prompt["id"]}  # would be an answer if it were accepted
    before = await chat.state("fatima")

    if isinstance(body, bytes):
        resp = await chat.client.post(path, data=body, headers={"Content-Type": "application/json"})
    else:
        resp = await chat.client.post(path, json=body)
    assert resp.status == status
    if status == 400:
        error = await resp.json()
        assert isinstance(error["error"], str)
        assert error["error"]

    assert await chat.contributions() == []
    after = await chat.state("fatima")
    assert after["messages"] == before["messages"]


async def test_good_versions_of_the_bad_requests_are_accepted(chat: Chat) -> None:
    """The control for the test above: the same bodies without the defect do store."""
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    reply = await chat.send(**{**GOOD_SEND, "thread_id": prompt["id"]})
    assert reply["type"] == "ephemeral"
    done = await chat.ok("/local/api/submit", GOOD_SUBMIT)
    assert done is not None
    assert done["type"] == "done"
    assert len(await chat.contributions()) == 2


async def test_text_of_exactly_the_limit_reaches_the_core_which_refuses_it_kindly(
    chat: Chat,
) -> None:
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    response = await chat.send("fatima", "operatiekamer", "x" * 10_000, thread_id=prompt["id"])
    assert response["type"] == "ephemeral"
    assert "10000 tekens" in response["html"]
    assert await chat.contributions() == []


async def test_chunked_body_over_64_kib_is_refused(chat: Chat) -> None:
    """Without a Content-Length (chunked upload) the 64 KiB limit must hold as well."""
    await chat.tick(OK_PROMPT_AT)
    prompt = await chat.prompt("operatiekamer")
    payload = json.dumps(
        {**GOOD_SEND, "thread_id": prompt["id"], "pad": "x" * (100 * 1024)}
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    resp = await chat.client.post(
        "/local/api/send", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status == 413
    assert await chat.contributions() == []
