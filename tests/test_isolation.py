"""Tenant isolation: three organisations in one database, each its own Boeket, never meet.

Organisation A is on Slack workspace T_A, B on Slack workspace T_B — with the very same channel ids
and user ids as A, the realistic trap — and C on a Teams tenant. Each is reached over HTTP the way
its platform sends (Slack's signed requests; Teams activities with a token signed by the fake
Microsoft login) and talks to its own fake platform API. Every text people write, every name and
every department carries its organisation's marker (``ORGA-…``); after random sequences of answers,
shares, suggestions, clicks, digests, forget requests and misrouted Slack requests, no query, chat
message, digest, export, dashboard, personal page or privacy export of one organisation holds
another's marker, and no link one organisation gives opens anything of another's.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from adapters.slack.translate import encode_metadata
from adapters.teams.settings import TeamsSettings
from bot.app import Boeket, build, web_app
from bot.clock import ManualClock
from bot.config import OrgConfig, parse_config
from bot.contributions import SHARE_FORM
from bot.cycle import Texts
from bot.domain import Contribution, OccurrenceStatus, Step
from bot.embedders import LexicalEmbedder
from bot.export import FORMATS, export
from bot.overview import build_overview
from bot.settings import EXAMPLE_CONFIG, Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.repositories import (
    ContributionRepository,
    CrosspostRepository,
    OccurrenceRepository,
    PersonSettingsRepository,
    StateStore,
)
from storage.tables import CrosspostFeedbackRow, CrosspostRow
from tests.conftest import DatabaseFactory
from tests.fakes.microsoft_login import FakeLogin
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.teams_connector import FakeConnector
from tests.test_slack_http import SECRET, SlackEnv, reply_event
from tests.test_teams_http import APP_ID, TENANT, bearer, dialog_card, fixture, submit_data

# microsoft-agents-hosting-msteams 1.9 warns about its own deprecated BotClient on every turn.
pytestmark = pytest.mark.filterwarnings("ignore:The bot client is deprecated:DeprecationWarning")

KEYS = ("A", "B", "C")
T_A, T_B = "T0AAAAAAA", "T0BBBBBBB"
SLACK_CHANNELS = {"ok": "C1", "verpleging": "C2", "ict": "C3"}  # the same ids in A and B
SLACK_CROSS = "C9"
TEAMS_CHANNELS = {
    "ok": "19:c-ok@thread.tacv2",
    "verpleging": "19:c-verpleging@thread.tacv2",
    "ict": "19:c-ict@thread.tacv2",
}
TEAMS_CROSS = "19:c-leren@thread.tacv2"
DEPARTMENTS = tuple(SLACK_CHANNELS)
# Monday 1 March 2027, 08:00 in Amsterdam: every department's prompt (Tuesday's meeting) is due.
START = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
PERIOD = {"from": "2027-01-01", "to": "2029-12-31"}
MARKER = re.compile(r"ORG[ABC]-\w+")
SENTENCES = (
    "De overdracht aan het bed met een vast lijstje scheelt nabellen",
    "Een bufferuur in de middag vangt de pieken in de werkdruk op",
    "Nieuwe collega's krijgen een maatje voor de eerste zes weken",
    "Het ticketsysteem werkt beter met vaste categorieën voor storingen",
    "Samen plannen met de patiënt geeft minder afzeggingen",
    "We bespreken elke bijna-fout kort in de ochtendhuddle",
)
VERDICTS = ("boeket.crosspost.useful", "boeket.crosspost.not_relevant", "boeket.crosspost.talk")
FORGET = "boeket.privacy.forget"


def people(key: str) -> list[tuple[str, str]]:
    """(id, name) of the two people of an organisation; Slack ids collide between A and B."""
    if key == "C":
        return [("29:1carla", "Carla ORGC-naam1"), ("29:1cees", "Cees ORGC-naam2")]
    return [("U1", f"Anna ORG{key}-naam1"), ("U2", f"Bas ORG{key}-naam2")]


def org_config(key: str) -> OrgConfig:
    """Three departments of the example hospital, on this organisation's platform, all meeting
    on Tuesday, every name marked, every lesson allowed to travel everywhere."""
    platform, workspace = {"A": ("slack", T_A), "B": ("slack", T_B), "C": ("teams", TENANT)}[key]
    channels = SLACK_CHANNELS if platform == "slack" else TEAMS_CHANNELS
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["organisation"] = {"id": f"organisatie-{key.lower()}", "name": f"Zorg ORG{key}-org"}
    data["departments"] = [
        {
            **dept,
            "name": f"{dept['name']} ORG{key}-afdeling",
            "platform": platform,
            "channel": channels[dept["id"]],
            "workspace": workspace,
            "meeting": {"weekday": "dinsdag", "time": "07:30", "duration": "30m"},
            "share_from_private": True,
        }
        for dept in data["departments"]
        if dept["id"] in channels
    ]
    data["cross_department"] = {
        "platform": platform,
        "channel": SLACK_CROSS if platform == "slack" else TEAMS_CROSS,
        "workspace": workspace,
        "name": f"Leren ORG{key}-kanaal",
    }
    data["crossposting"] = {"quiet_hours": None, "threshold": 0.0, "max_per_week": 20}
    del data["local"]  # its people belong to departments left out here
    return parse_config(data, Path(f"{key}.yaml"))


@dataclass
class Tenant:
    """One organisation: its own Boeket on the shared database, its platform's fake, its URL."""

    key: str
    boeket: Boeket
    client: TestClient[Any, Any]
    db: Database
    slack: FakeSlack | None = None
    teams: FakeConnector | None = None
    token: str = ""  # the Bot Connector's token for Teams activities
    servers: list[TestServer] = field(default_factory=list)

    @property
    def org(self) -> str:
        return self.boeket.config.organisation.id

    @property
    def platform(self) -> str:
        return "slack" if self.slack is not None else "teams"

    @property
    def team(self) -> str:
        return {"A": T_A, "B": T_B}.get(self.key, TENANT)

    def channel(self, dept: str) -> str:
        return (SLACK_CHANNELS if self.slack is not None else TEAMS_CHANNELS)[dept]

    def received(self) -> str:
        """Everything this organisation's platform was sent, as one text."""
        if self.slack is not None:
            calls: list[Any] = [c.args for c in self.slack.calls]
        else:
            assert self.teams is not None
            calls = [c.body for c in self.teams.calls]
        return json.dumps(calls, ensure_ascii=False, default=str)

    async def settle(self) -> None:
        adapter = self.boeket.adapters.get("slack")
        if isinstance(adapter, SlackAdapter):
            await adapter.settle()
        await self.boeket.background.drain()

    async def contributions(self) -> list[Contribution]:
        return await ContributionRepository(self.db).all(self.org)

    async def prompts(self) -> dict[str, tuple[str, date]]:
        """Each department's latest prompt that was posted: its message id and round."""
        found: dict[str, tuple[str, date]] = {}
        for occ in await OccurrenceRepository(self.db).all(self.org):
            posted = occ.step is Step.PROMPT and occ.status is OccurrenceStatus.SENT
            if not posted or not occ.message_id:
                continue
            if occ.department_id not in found or found[occ.department_id][1] < occ.round_date:
                found[occ.department_id] = (occ.message_id, occ.round_date)
        return found


def next_digest(now: datetime) -> datetime:
    """A minute past the first digest moment (Friday 15:00 in Amsterdam) after `now`."""
    local = now.astimezone(ZoneInfo("Europe/Amsterdam"))
    moment = local.replace(hour=15, minute=1, second=0, microsecond=0)
    moment += timedelta(days=(4 - local.weekday()) % 7)
    if moment <= local:
        moment += timedelta(days=7)
    return moment.astimezone(UTC)


def foreign(key: str) -> tuple[str, ...]:
    return tuple(f"ORG{other}-" for other in KEYS if other != key)


def assert_own(key: str, text: str, where: str) -> None:
    leaked = [m for m in foreign(key) if m in text]
    assert not leaked, f"{where} of organisation {key} shows {leaked}: {text[:2000]}"


def marker_of(text: str) -> str:
    found = MARKER.search(text)
    assert found is not None, text
    return found.group(0)


# --- the world: three Boekets on one database -------------------------------------------------


class World:
    """The three organisations and their shared clock (not a dataclass: hypothesis prints the
    arguments of a failing example, and a dataclass in full)."""

    def __init__(self, tenants: dict[str, Tenant], clock: ManualClock) -> None:
        self.tenants = tenants
        self.clock = clock
        self.serial = itertools.count(1)

    def marker(self, key: str) -> str:
        return f"ORG{key}-{next(self.serial):05d}"

    def text(self, key: str, pick: int) -> str:
        return f"{SENTENCES[pick % len(SENTENCES)]} ({self.marker(key)})."

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self.tenants.values())

    def __repr__(self) -> str:
        return f"World({', '.join(self.tenants)})"


async def _slack_tenant(
    key: str, factory: DatabaseFactory, prompts: PromptLibrary, clock: ManualClock
) -> Tenant:
    fake = FakeSlack(
        users={uid: {"name": uid, "real_name": name, "profile": {}} for uid, name in people(key)}
    )
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    db = factory.open()
    settings = Settings(
        database_url=db.url,
        worker_id=f"isolation-{key}",
        auto_migrate=False,
        admin_token=f"admin-{key}",
        # One Slack app installed in both workspaces: its signing secret is the same.
        slack=SlackSettings(
            signing_secret=SECRET, bot_token=BOT_TOKEN, api_url=fake.api_url, pace_seconds=0
        ),
    )
    boeket = build(
        settings, org_config(key), clock=clock, prompts=prompts, db=db, embedder=LexicalEmbedder()
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()
    return Tenant(key, boeket, client, db, slack=fake, servers=[server])


async def _teams_tenant(
    factory: DatabaseFactory, prompts: PromptLibrary, clock: ManualClock
) -> Tenant:
    login = FakeLogin(tenant=TENANT, client_id=APP_ID, client_secret="s3cret")
    login_server = TestServer(login.app())
    await login_server.start_server()
    login.server = login_server
    fake = FakeConnector()
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    db = factory.open()
    teams = TeamsSettings(
        client_id=APP_ID,
        client_secret="s3cret",
        tenant_id=TENANT,
        openid_metadata_url=login.metadata_url,
        login_url=login.url,
        backoff_seconds=0.05,
    )
    settings = Settings(
        database_url=db.url,
        worker_id="isolation-C",
        auto_migrate=False,
        admin_token="admin-C",
        teams=teams,
    )
    boeket = build(
        settings, org_config("C"), clock=clock, prompts=prompts, db=db, embedder=LexicalEmbedder()
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()
    tenant = Tenant(
        "C",
        boeket,
        client,
        db,
        teams=fake,
        token=login.token(service_url=fake.url),
        servers=[server, login_server],
    )
    installed = await teams_send(tenant, fixture("install_team", fake.url))
    assert installed.status in {200, 202}, await installed.text()
    return tenant


@pytest.fixture
async def world(database_factory: DatabaseFactory, prompts: PromptLibrary) -> AsyncIterator[World]:
    clock = ManualClock(START)
    tenants = {
        "A": await _slack_tenant("A", database_factory, prompts, clock),
        "B": await _slack_tenant("B", database_factory, prompts, clock),
        "C": await _teams_tenant(database_factory, prompts, clock),
    }
    w = World(tenants, clock)
    try:
        for tenant in w:
            await tenant.boeket.tick()  # every department's prompt goes out
            assert len(await tenant.prompts()) == len(DEPARTMENTS), tenant.key
        yield w
    finally:
        for tenant in w:
            await tenant.client.close()
            for server in tenant.servers:
                await server.close()


# --- Slack, as Slack sends it -----------------------------------------------------------------


def _slack(via: Tenant) -> SlackEnv:
    """The signing sender of test_slack_http, aimed at `via`'s Boeket."""
    assert via.slack is not None
    return SlackEnv(via.slack, via.client, via.boeket, ManualClock(START), via.db)


async def slack_event(
    via: Tenant, team: str, event: dict[str, Any], *, event_id: str
) -> ClientResponse:
    envelope = {
        "token": "legacy",
        "team_id": team,
        "api_app_id": "A0BOEKET",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
    }
    return await _slack(via).post(json.dumps(envelope), "application/json")


async def slack_command(
    via: Tenant, team: str, channel: str, user: str, text: str, response_url: str
) -> ClientResponse:
    form = {
        "token": "legacy",
        "team_id": team,
        "team_domain": team.lower(),
        "channel_id": channel,
        "channel_name": "afdeling",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/deel",
        "text": text,
        "api_app_id": "A0BOEKET",
        "response_url": response_url,
        "trigger_id": f"trig-{time.monotonic_ns()}",
    }
    return await _slack(via).post(urlencode(form), "application/x-www-form-urlencoded")


async def slack_click(
    via: Tenant,
    team: str,
    user: str,
    action_id: str,
    value: str,
    *,
    channel: str,
    message_ts: str,
    response_url: str,
) -> ClientResponse:
    payload = {
        "type": "block_actions",
        "team": {"id": team},
        "trigger_id": f"trig-{time.monotonic_ns()}",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A0BOEKET",
        "token": "legacy",
        "response_url": response_url,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel, "name": "afdeling"},
        "message": {"ts": message_ts, "text": "x"},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": f"{time.time():.6f}",
                "text": {"type": "plain_text", "text": "x"},
            }
        ],
    }
    return await _slack(via).interactive(payload)


def _state(view: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """A modal's `view.state.values` as Slack sends them, filled in with `values`."""
    state: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        name, element = block["block_id"], block["element"]
        value = values.get(name, "")
        match element["type"]:
            case "plain_text_input":
                entry: dict[str, Any] = {"type": "plain_text_input", "value": value or None}
            case "checkboxes":
                chosen = element["options"] if value == "true" else []
                entry = {"type": "checkboxes", "selected_options": chosen}
            case _:
                entry = {"type": element["type"], "selected_option": None}
        state[name] = {name: entry}
    return state


async def slack_submit(
    via: Tenant, team: str, user: str, view: dict[str, Any], values: dict[str, str]
) -> ClientResponse:
    payload = {
        "type": "view_submission",
        "team": {"id": team},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A0BOEKET",
        "token": "legacy",
        "trigger_id": f"trig-{time.monotonic_ns()}",
        "view": {
            "id": f"V{time.monotonic_ns()}",
            "team_id": team,
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {"values": _state(view, values)},
            "hash": "h",
            "blocks": view["blocks"],
        },
    }
    return await _slack(via).interactive(payload)


async def slack_modal(tenant: Tenant, since: int) -> dict[str, Any] | None:
    """The modal Boeket opened after call number `since`, if it opened one."""
    await tenant.settle()
    assert tenant.slack is not None
    opened = [c for c in tenant.slack.calls[since:] if c.method == "views.open"]
    return opened[-1].args["view"] if opened else None


# --- Teams, as Teams sends it -----------------------------------------------------------------


async def teams_send(tenant: Tenant, activity: dict[str, Any]) -> ClientResponse:
    return await tenant.client.post("/api/messages", json=activity, headers=bearer(tenant.token))


def _teams_activity(
    tenant: Tenant, name: str, channel: str, person: tuple[str, str], root: str = ""
) -> dict[str, Any]:
    assert tenant.teams is not None
    activity = fixture(name, tenant.teams.url, CHANNEL=channel, ROOT=root or "0")
    activity["from"] = {"id": person[0], "name": person[1]}
    activity["id"] = f"17{time.monotonic_ns()}"
    return activity


async def teams_dialog(
    tenant: Tenant, channel: str, person: tuple[str, str], root: str, data: dict[str, Any]
) -> ClientResponse:
    """A card button that opens a dialog (or answers at once), clicked in `channel`."""
    fetch = _teams_activity(tenant, "task_fetch", channel, person, root)
    fetch["value"]["data"] = {**data, "msteams": {"type": "task/fetch"}}
    return await teams_send(tenant, fetch)


# --- what people do ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One thing someone does; each kind uses the fields it needs."""

    kind: str
    org: str
    department: str
    person: int
    anonymous: bool
    not_shared: bool
    pick: int


# What people do most (answer, share, react to suggestions) comes up most.
KINDS = (
    *("reply", "answer", "share", "share", "tick", "tick", "click", "click"),
    *("digest", "forget", "links", "misrouted"),
)
actions = st.builds(
    Action,
    kind=st.sampled_from(KINDS),
    org=st.sampled_from(KEYS),
    department=st.sampled_from(DEPARTMENTS),
    person=st.integers(0, 1),
    anonymous=st.booleans(),
    not_shared=st.booleans(),
    pick=st.integers(0, 99),
)


async def perform(world: World, action: Action) -> None:
    tenant = world.tenants[action.org]
    if action.kind == "misrouted":
        await misrouted(world, action)
    elif action.kind in {"tick", "digest"}:
        # Every Boeket's timer beats: a few minutes on (suggestions are posted), or on to the
        # next digest moment (the cycle's next steps go out too).
        later = world.clock.now() + timedelta(minutes=3)
        world.clock.set(next_digest(later) if action.kind == "digest" else later)
        for each in world:
            await each.boeket.tick()
            await each.settle()
    elif action.kind == "forget":
        await forget(world, tenant, action)
    elif tenant.slack is not None:
        await slack_action(world, tenant, action)
    else:
        await teams_action(world, tenant, action)
    await tenant.settle()


async def slack_action(world: World, tenant: Tenant, action: Action) -> None:
    assert tenant.slack is not None
    user, _ = people(tenant.key)[action.person]
    channel = tenant.channel(action.department)
    respond = tenant.slack.response_url
    root, round_date = (await tenant.prompts())[action.department]
    since = len(tenant.slack.calls)
    if action.kind == "reply":
        ts = f"{time.time():.6f}"
        event = reply_event(world.text(tenant.key, action.pick), root, user=user, ts=ts)
        event["channel"] = channel
        response = await slack_event(tenant, tenant.team, event, event_id=f"Ev{ts}")
    elif action.kind == "answer":
        response = await slack_click(
            tenant,
            tenant.team,
            user,
            "boeket.answer",
            round_date.isoformat(),
            channel=channel,
            message_ts=root,
            response_url=respond,
        )
        view = await slack_modal(tenant, since)
        assert view is not None, "the answer button opened no modal"
        values = {
            "text": world.text(tenant.key, action.pick),
            "followup": f"Volgende keer ({world.marker(tenant.key)})",
            "anonymous": str(action.anonymous).lower(),
            "not_shared": str(action.not_shared).lower(),
        }
        response = await slack_submit(tenant, tenant.team, user, view, values)
    elif action.kind == "share":
        response = await slack_command(tenant, tenant.team, channel, user, "", respond)
        view = await slack_modal(tenant, since)
        assert view is not None, "/deel opened no modal"
        values = {
            "what": world.text(tenant.key, action.pick),
            "preconditions": f"Als iedereen meedoet ({world.marker(tenant.key)})",
            "effect": f"Minder gedoe ({world.marker(tenant.key)})",
            "anonymous": str(action.anonymous).lower(),
        }
        response = await slack_submit(tenant, tenant.team, user, view, values)
    elif action.kind == "click":
        sent = await sent_suggestions(tenant)
        if not sent:
            return
        cp = sent[action.pick % len(sent)]
        assert cp.channel is not None and cp.message_id is not None
        response = await slack_click(
            tenant,
            tenant.team,
            user,
            VERDICTS[action.pick % len(VERDICTS)],
            str(cp.id),
            channel=cp.channel,
            message_ts=cp.message_id,
            response_url=respond,
        )
    else:  # links: the person asks for the dashboard and their own overview
        for sub in ("dashboard", "overzicht"):
            response = await slack_command(tenant, tenant.team, channel, user, sub, respond)
            assert response.status == 200
    assert response.status == 200, await response.text()


async def teams_action(world: World, tenant: Tenant, action: Action) -> None:
    assert tenant.teams is not None
    person = people(tenant.key)[action.person]
    channel = tenant.channel(action.department)
    root, round_date = (await tenant.prompts())[action.department]
    if action.kind == "reply":
        activity = _teams_activity(tenant, "channel_reply", channel, person, root)
        text = html.escape(world.text(tenant.key, action.pick), quote=False)
        activity["text"] = f"<at>Boeket</at>&nbsp;{text}"
        response = await teams_send(tenant, activity)
    elif action.kind == "answer":
        opened = await teams_dialog(
            tenant, channel, person, root, {"verb": "boeket.answer", "value": str(round_date)}
        )
        assert opened.status == 200, await opened.text()
        card = dialog_card(await opened.json())
        data = submit_data(
            card,
            text=world.text(tenant.key, action.pick),
            followup=f"Volgende keer ({world.marker(tenant.key)})",
            anonymous=str(action.anonymous).lower(),
            not_shared=str(action.not_shared).lower(),
        )
        submit = _teams_activity(tenant, "task_fetch", channel, person, root)
        submit["name"] = "task/submit"
        submit["value"] = {"type": "task/submit", "data": data}
        response = await teams_send(tenant, submit)
    elif action.kind == "share":
        fetch = _teams_activity(tenant, "extension_fetch", channel, person)
        opened = await teams_send(tenant, fetch)
        assert opened.status == 200, await opened.text()
        card = dialog_card(await opened.json())
        submit = _teams_activity(tenant, "extension_fetch", channel, person)
        submit["name"] = "composeExtension/submitAction"
        submit["value"] = {
            "commandId": "deel",
            "commandContext": "compose",
            "data": submit_data(
                card,
                what=world.text(tenant.key, action.pick),
                preconditions=f"Als iedereen meedoet ({world.marker(tenant.key)})",
                effect=f"Minder gedoe ({world.marker(tenant.key)})",
                anonymous=str(action.anonymous).lower(),
            ),
        }
        response = await teams_send(tenant, submit)
    elif action.kind == "click":
        sent = await sent_suggestions(tenant)
        if not sent:
            return
        cp = sent[action.pick % len(sent)]
        assert cp.channel is not None and cp.message_id is not None
        verdict = VERDICTS[action.pick % len(VERDICTS)]
        response = await teams_dialog(
            tenant, cp.channel, person, cp.message_id, {"verb": verdict, "value": str(cp.id)}
        )
    else:  # links, from the command menu
        for sub in ("dashboard", "overzicht"):
            typed = _teams_activity(tenant, "channel_reply", channel, person)
            typed["conversation"]["id"] = channel
            typed.pop("replyToId", None)
            typed["text"] = f"<at>Boeket</at>&nbsp;deel {sub}"
            response = await teams_send(tenant, typed)
            assert response.status in {200, 202}, await response.text()
    assert response.status in {200, 202}, await response.text()


async def sent_suggestions(tenant: Tenant) -> list[Any]:
    return [
        cp
        for cp in await CrosspostRepository(tenant.db).all(tenant.org)
        if cp.status is OccurrenceStatus.SENT
    ]


async def votes(tenant: Tenant) -> list[tuple[int, str, str]]:
    stmt = (
        select(
            CrosspostFeedbackRow.crosspost_id,
            CrosspostFeedbackRow.person_key,
            CrosspostFeedbackRow.verdict,
        )
        .join(CrosspostRow, CrosspostRow.id == CrosspostFeedbackRow.crosspost_id)
        .where(CrosspostRow.organisation_id == tenant.org)
        .order_by(CrosspostFeedbackRow.id)
    )
    async with tenant.db.sessions() as session:
        return [(int(a), str(b), str(c)) for a, b, c in (await session.execute(stmt)).all()]


async def forget(world: World, tenant: Tenant, action: Action) -> None:
    """A person asks to be forgotten; the others' contributions and votes stay as they were."""
    others = [t for t in world if t is not tenant]
    before = [([c.id for c in await t.contributions()], await votes(t)) for t in others]
    person = people(tenant.key)[action.person]
    channel = tenant.channel(action.department)
    root, _ = (await tenant.prompts())[action.department]
    if tenant.slack is not None:
        response = await slack_click(
            tenant,
            tenant.team,
            person[0],
            FORGET,
            "",
            channel=channel,
            message_ts=root,
            response_url=tenant.slack.response_url,
        )
    else:
        response = await teams_dialog(tenant, channel, person, root, {"verb": FORGET, "value": ""})
    assert response.status == 200, await response.text()
    await tenant.settle()
    mine = [c for c in await tenant.contributions() if c.author and c.author.id == person[0]]
    assert mine == [], "the person was not forgotten"
    after = [([c.id for c in await t.contributions()], await votes(t)) for t in others]
    assert after == before, "forgetting in one organisation changed another's"


async def misrouted(world: World, action: Action) -> None:
    """A request from one Slack workspace that reaches the other organisation's Boeket (one Slack
    app in both workspaces): the same channel and user ids, the receiver's own prompt thread."""
    receiver = world.tenants["B" if action.org == "B" else "A"]
    sender = world.tenants["A" if receiver.key == "B" else "B"]
    assert sender.slack is not None and receiver.slack is not None
    user, _ = people(sender.key)[action.person]
    channel = SLACK_CHANNELS[action.department]
    root, _ = (await receiver.prompts())[action.department]
    before = len(await receiver.contributions())
    answered = len(sender.slack.of("response_url"))
    kind = ("reply", "share", "dashboard", "overzicht")[action.pick % 4]
    if kind == "reply":
        ts = f"{time.time():.6f}"
        event = reply_event(world.text(sender.key, action.pick), root, user=user, ts=ts)
        event["channel"] = channel
        response = await slack_event(receiver, sender.team, event, event_id=f"Ev{ts}")
    elif kind == "share":
        view = {
            "callback_id": SHARE_FORM,
            "private_metadata": encode_metadata(
                SHARE_FORM, channel, {"department": action.department}
            ),
            "blocks": [
                {"type": "input", "block_id": name, "element": {"type": "plain_text_input"}}
                for name in ("what", "preconditions")
            ],
        }
        values = {"what": world.text(sender.key, action.pick), "preconditions": "Meedoen."}
        response = await slack_submit(receiver, sender.team, user, view, values)
    else:
        response = await slack_command(
            receiver, sender.team, channel, user, kind, sender.slack.response_url
        )
    assert response.status == 200, await response.text()
    await receiver.settle()
    assert len(await receiver.contributions()) == before
    assert len(sender.slack.of("response_url")) == answered, "another workspace got an answer"


# --- what must hold ---------------------------------------------------------------------------


async def check_isolation(world: World) -> None:
    stored = {t.key: await t.contributions() for t in world}
    for t in world:
        await check_storage_and_matcher(world, t, stored)
        assert_own(t.key, t.received(), "what the platform was sent")
        await check_digest_and_export(t, stored[t.key])
        await check_pages(t, stored[t.key])
    await check_links(world)


async def check_storage_and_matcher(
    world: World, t: Tenant, stored: dict[str, list[Contribution]]
) -> None:
    own = stored[t.key]
    own_ids = {c.id for c in own}
    for c in own:
        assert_own(t.key, repr(c), f"contribution {c.id}")
        assert marker_of(c.text).startswith(f"ORG{t.key}-")
    probes = [c for cs in stored.values() for c in cs[-8:]]
    for c in probes:
        query = await t.boeket.matcher.embed_query(c.text)
        found = {hit.contribution_id for hit in t.boeket.matcher.search(t.org, query, 200)}
        assert found <= own_ids, f"{t.key}'s matcher found {found - own_ids}"
        for other in world:
            if other is not t:
                assert t.boeket.matcher.search(other.org, query, 200) == []
                assert t.boeket.matcher.vector(other.org, c.id) is None


async def check_digest_and_export(t: Tenant, own: list[Contribution]) -> None:
    digest = t.boeket.digest
    content = await digest.compose(digest.week_ending(next_digest(t.boeket.clock.now())))
    assert_own(t.key, repr(digest.render(content)), "the digest")
    prompts = t.boeket.texts.prompts
    config = t.boeket.config
    overview = await build_overview(
        config=config,
        texts=Texts(config, prompts),
        digests=DigestRepository(t.db),
        settings=PersonSettingsRepository(t.db),
        since=date.fromisoformat(PERIOD["from"]),
        until=date.fromisoformat(PERIOD["to"]),
    )

    def text(key: str, **params: object) -> str:
        return prompts.text(config.language, key, symbolism=config.symbolism, **params)

    for fmt in FORMATS:
        assert_own(t.key, export(overview, fmt, text), f"the {fmt} export")
    exported = json.loads(export(overview, "json", text))
    shareable = {c.id for c in own if c.shareable and c.fields.get("private") != "true"}
    assert {c["id"] for c in exported["contributions"]} == shareable


async def check_pages(t: Tenant, own: list[Contribution]) -> None:
    dashboard = await t.client.get(
        "/dashboard", params=PERIOD, headers={"Authorization": f"Bearer admin-{t.key}"}
    )
    assert dashboard.status == 200
    page = await dashboard.text()
    assert f"ORG{t.key}-org" in page
    assert_own(t.key, page, "the dashboard")
    for person_id, _ in people(t.key):
        link = await t.boeket.dashboard.own_link(t.platform, person_id)
        own_page = await open_link(t, link)
        assert own_page is not None, "a person's own link did not open their page"
        assert_own(t.key, own_page, "a person's own page")
        theirs = [
            c
            for c in own
            if c.author
            and c.author.id == person_id
            and not c.anonymous
            and c.platform == t.platform
        ]
        assert all(marker_of(c.fields.get("what", c.text)) in own_page for c in theirs)
        data = await t.boeket.personal.export(person_id, t.platform, actor="isolation-test")
        assert_own(t.key, json.dumps(data, ensure_ascii=False), "a privacy export")
        assert {c["id"] for c in data["contributions"]} == {
            c.id for c in own if c.author and c.author.id == person_id
        }


async def open_link(t: Tenant, link: str) -> str | None:
    """The page a chat link opens at `t`'s Boeket (the token moves into a cookie), or None
    when it is refused."""
    url = urlparse(link)
    [token] = parse_qs(url.query)["access"]
    first = await t.client.get(url.path, params={"access": token}, allow_redirects=False)
    if first.status != 303:
        assert first.status == 401, await first.text()
        return None
    cookie = "boeket_dashboard" if url.path == "/dashboard" else "boeket_mijn"
    page = await t.client.get(url.path, params=PERIOD, headers={"Cookie": f"{cookie}={token}"})
    assert page.status == 200
    return await page.text()


LINK = re.compile(r"(/(?:dashboard|mijn)\?access=[A-Za-z0-9_-]+)")


async def check_links(world: World) -> None:
    """Every link an organisation handed out in chat, and fresh ones, open nothing elsewhere."""
    for t in world:
        fresh = {
            await t.boeket.dashboard.dashboard_link(),
            await t.boeket.dashboard.own_link(t.platform, people(t.key)[0][0]),
        }
        for link in fresh:  # at home they work
            assert await open_link(t, link) is not None, (t.key, link)
        for link in fresh | set(LINK.findall(t.received())):
            for other in world:
                if other is not t:
                    assert await open_link(other, link) is None, (t.key, other.key, link)


# --- the tests --------------------------------------------------------------------------------


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # The examples share one world, which grows: an example does not fail alone, so shrinking
    # one would chase a moving target. The failing steps are printed as they were.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(steps=st.lists(actions, min_size=3, max_size=10))
async def test_no_organisation_ever_sees_anothers_data(world: World, steps: list[Action]) -> None:
    for step in steps:
        await perform(world, step)
    await check_isolation(world)


async def test_a_reply_from_another_workspace_in_a_same_named_channel_is_not_stored(
    world: World,
) -> None:
    a, b = world.tenants["A"], world.tenants["B"]
    root, _ = (await a.prompts())["ok"]  # A's prompt thread in C1; B has a channel C1 too
    event = reply_event("Van de buren (ORGB-00000).", root, user="U1", ts="1700000900.000001")
    event["channel"] = SLACK_CHANNELS["ok"]
    response = await slack_event(a, T_B, event, event_id="Ev0FROMB")
    assert response.status == 200
    await a.settle()
    assert await a.contributions() == [] and await b.contributions() == []
    # The same reply from A's own workspace is A's.
    response = await slack_event(a, T_A, event, event_id="Ev0FROMA")
    await a.settle()
    assert [c.text for c in await a.contributions()] == ["Van de buren (ORGB-00000)."]
    assert await b.contributions() == []


async def test_a_slack_command_from_another_workspace_gets_no_link(world: World) -> None:
    a, b = world.tenants["A"], world.tenants["B"]
    assert b.slack is not None and a.slack is not None
    for sub in ("dashboard", "overzicht", "privacy", "mijn"):
        response = await slack_command(a, T_B, "C1", "U1", sub, b.slack.response_url)
        assert response.status == 200
    await a.settle()
    assert b.slack.of("response_url") == []
    # From A's own workspace the same command gets A's dashboard link.
    await slack_command(a, T_A, "C1", "U1", "dashboard", a.slack.response_url)
    await a.settle()
    [answer] = a.slack.of("response_url")
    [link] = set(LINK.findall(json.dumps(answer.args)))
    assert await open_link(a, link) is not None
    assert await open_link(b, link) is None


async def restart(
    key: str, factory: DatabaseFactory, prompts: PromptLibrary, clock: ManualClock
) -> None:
    """Start a second Boeket of a Slack organisation, let it work off its inbox, stop it."""
    again = await _slack_tenant(key, factory, prompts, clock)
    try:
        await again.settle()
    finally:
        await again.client.close()
        for server in again.servers:
            await server.close()


async def test_a_thread_reply_left_in_one_organisations_inbox_is_not_taken_by_another(
    world: World, prompts: PromptLibrary, database_factory: DatabaseFactory
) -> None:
    a, b = world.tenants["A"], world.tenants["B"]
    root, _ = (await a.prompts())["ok"]
    envelope = {
        "type": "event_callback",
        "event_id": "Ev0CRASH",
        "team_id": T_A,
        "event": reply_event("Bewaard voor A (ORGA-00000).", root, channel=SLACK_CHANNELS["ok"]),
    }
    # A acknowledged this reply and died before handing it on.
    await StateStore(a.db, "slack", namespace=a.org).add_many({"inbox:Ev0CRASH": envelope}, START)
    await restart("B", database_factory, prompts, world.clock)
    assert await b.contributions() == []
    assert await StateStore(a.db, "slack", namespace=a.org).keys("inbox:") == ["inbox:Ev0CRASH"]
    await restart("A", database_factory, prompts, world.clock)
    assert [c.text for c in await a.contributions()] == ["Bewaard voor A (ORGA-00000)."]


async def test_forgetting_a_person_keeps_the_votes_in_another_organisation(world: World) -> None:
    a = world.tenants["A"]
    for kind in ("share", "tick", "click"):
        await perform(world, Action(kind, "A", "ok", 0, False, False, 0))
    assert [verdict for *_, verdict in await votes(a)] == ["useful"]
    # B's U1 (the same user id as A's U1, in another workspace) asks to be forgotten.
    await perform(world, Action("forget", "B", "ok", 0, False, False, 0))
    assert [verdict for *_, verdict in await votes(a)] == ["useful"]
