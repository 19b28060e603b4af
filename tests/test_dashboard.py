"""The dashboard and "mijn bijdragen" over real HTTP: closed unless opened by the admin token or a
signed link from chat, what they show, and the names they never show."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import Boeket, build, web_app
from bot.clock import ManualClock
from bot.config import OrgConfig
from bot.domain import Kind, NewContribution, OccurrenceStatus, Person, PersonSettings, Source
from bot.embedders import LexicalEmbedder
from bot.messages import Ephemeral
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.repositories import (
    ContributionRepository,
    CrosspostRepository,
    PersonSettingsRepository,
)

ORG = "ziekenhuis-de-linde"
NOW = datetime(2027, 3, 5, 12, 0, tzinfo=UTC)
ADMIN = "admin-token-0123456789abcdef"


@dataclass
class Site:
    client: TestClient[Any, Any]
    boeket: Boeket
    clock: ManualClock

    async def link(self, person: str, channel: str, sub: str) -> str:
        reply = await self.boeket.local.say(person, channel, f"/deel {sub}")
        assert isinstance(reply, Ephemeral), reply
        [url] = re.findall(r"https?://\S+", reply.message.text)
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}"

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        async with self.client.get(path, allow_redirects=kw.pop("follow", True), **kw) as r:
            return r.status, await r.text(), r


def total(body: str, department: str) -> int:
    row = re.search(rf"<tr><td>{department}</td>(.*?)</tr>", body)
    assert row is not None, department
    return int(re.findall(r'<td class="n">(\d+)</td>', row.group(1))[-1])


async def seed(db: Database) -> None:
    repo = ContributionRepository(db)
    n = 0

    async def add(dept: str, text: str, author: Person | None, **kw: Any) -> int:
        nonlocal n
        n += 1
        stored, _ = await repo.add(
            NewContribution(
                organisation_id=ORG,
                department_id=dept,
                kind=kw.pop("kind", Kind.LES),
                source=kw.pop("source", Source.REPLY),
                round_date=date(2027, 3, 2),
                text=text,
                anonymous=author is None,
                author=author,
                platform="local",
                event_key=f"dash:{n}",
                created_at=kw.pop("at", NOW - timedelta(days=2)),
                **kw,
            )
        )
        return stored.id

    fatima = Person("fatima", "Fatima el Amrani")
    lesson = await add(
        "ok",
        "Een vaste overdracht aan het bed met vijf punten.",
        fatima,
        themes=("werkdruk", "overdracht"),
        goal_id="gezond-werken",
        kind=Kind.SUCCES,
    )
    await add("ok", "Fatima anoniem: de maandag is te vol.", None, theme="werkdruk")
    await add(
        "ict",
        "Jeroen: <script>alert(1)</script> het inloopspreekuur werkt.",
        Person("jeroen", "Jeroen de Vries"),
        theme="werkdruk",
    )
    await add("hr", "Niet delen: alleen voor HR.", Person("ilse", "Ilse Mulder"), shareable=False)
    await add("ok", "Fatima, lang geleden.", fatima, at=NOW - timedelta(days=200))
    await PersonSettingsRepository(db).put(
        ORG, "local", "fatima", PersonSettings(named_elsewhere=True), NOW
    )
    crossposts = CrosspostRepository(db)
    await crossposts.plan(ORG, lesson, "ok", "department:verpleging", 0.8, NOW, NOW)
    [cp] = await crossposts.all(ORG)
    await crossposts.claim(cp.id, "w", NOW, timedelta(minutes=5))
    await crossposts.finish(
        cp.id,
        "w",
        OccurrenceStatus.SENT,
        NOW,
        platform="local",
        channel="verpleegafdeling",
        message_id="m",
        thread_id="m",
    )
    await crossposts.give_feedback(cp.id, "k", "useful", NOW)
    await add(
        "verpleging",
        "Wij proberen de vijf punten bij de avondoverdracht.",
        Person("sanne", "Sanne Bakker"),
        source=Source.TRANSLATION,
        fields={"translates": str(lesson)},
    )


@pytest.fixture
async def site(
    db: Database, prompts: PromptLibrary, example_config: OrgConfig
) -> AsyncIterator[Site]:
    clock = ManualClock(NOW)
    boeket = build(
        Settings(
            database_url=db.url,
            worker_id="dash",
            auto_migrate=False,
            admin_token=ADMIN,
            public_url="http://boeket.test",  # plain http: the test client sends no Secure cookies
        ),
        example_config,
        clock=clock,
        prompts=prompts,
        db=db,
        embedder=LexicalEmbedder(),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(web_app(boeket, timer=False)))
    await client.start_server()
    await seed(db)
    try:
        yield Site(client, boeket, clock)
    finally:
        await client.close()


async def test_closed_without_token_or_link(site: Site) -> None:
    for path in ("/dashboard", "/dashboard/poster.svg", "/mijn"):
        status, body, _ = await site.get(path)
        assert status == 401, path
        assert "overdracht" not in body and "Fatima" not in body
    status, _, _ = await site.get(
        "/dashboard", headers={"Authorization": "Bearer wrong-token-000000"}
    )
    assert status == 401
    async with site.client.post("/dashboard/login", data={"token": "nope"}) as r:
        assert r.status == 401


async def test_admin_login_shows_the_dashboard(site: Site) -> None:
    async with site.client.post(
        "/dashboard/login", data={"token": ADMIN}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/dashboard"
        assert "HttpOnly" in r.headers["Set-Cookie"]
    status, body, response = await site.get("/dashboard")
    assert status == 200
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "Per afdeling" in body and "Operatiekamer" in body
    assert "Per thema" in body and "Werkdruk (3)" in body
    assert "Gezond en met plezier werken (1)" in body
    assert "De vijf disciplines van Senge" in body and "teamleren" in body
    # A journey: where the lesson went and what it became there.
    journeys = body.split('id="journeys"')[1]
    assert "Verpleegafdeling Interne Geneeskunde — nuttig" in journeys
    assert "Wij proberen de vijf punten" in journeys
    # Names: only who agreed to be named elsewhere; anonymous stays anonymous; words escaped.
    assert "Fatima el Amrani" in body
    assert "Jeroen de Vries" not in body and "Sanne" not in body
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "Niet delen" not in body and "1 bijdragen staan er niet bij" in body
    assert total(body, "Operatiekamer") == 2  # "lang geleden" lies outside the last four weeks
    # Filters: a period and a language.
    status, body, _ = await site.get("/dashboard?from=2026-08-01&to=2027-03-05&lang=en")
    assert status == 200 and "Per department" in body
    assert total(body, "Operatiekamer") == 3
    status, _, _ = await site.get("/dashboard?from=2027-03-05&to=2027-03-01")
    assert status == 400


async def test_bearer_token_for_scripts(site: Site) -> None:
    status, body, _ = await site.get("/dashboard", headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 200 and "Per afdeling" in body
    # The admin token never opens a person's own overview.
    status, _, _ = await site.get("/mijn", headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 401


async def test_a_signed_link_from_chat_opens_and_expires(site: Site) -> None:
    path = await site.link("tom", "ict", "dashboard")
    status, _, response = await site.get(path, follow=False)
    assert status == 303 and response.headers["Location"] == "/dashboard"  # token out of the URL
    status, body, _ = await site.get("/dashboard")
    assert status == 200 and "Per afdeling" in body
    # A tampered link is refused.
    site.client.session.cookie_jar.clear()
    status, _, _ = await site.get(path[:-3] + "AAA")
    assert status == 401
    # After fourteen days the link no longer opens anything.
    site.clock.set(NOW + timedelta(days=15))
    status, _, _ = await site.get(path)
    assert status == 401


async def test_my_contributions_only_for_me(site: Site) -> None:
    path = await site.link("fatima", "operatiekamer", "overzicht")
    status, body, _ = await site.get(path)
    assert status == 200
    own = body.split('id="own"')[1]
    assert "Een vaste overdracht aan het bed" in own
    assert "Gereisd naar: Verpleegafdeling Interne Geneeskunde" in own
    assert "Fatima, lang geleden" in own  # a year by default
    assert "de maandag is te vol" not in own  # anonymous: linked to nobody, not even her
    assert "Jeroen" not in own and "inloopspreekuur" not in own
    # Her link opens her page only: not the dashboard, and not someone else's.
    status, _, _ = await site.get("/dashboard")
    assert status == 401
    site.client.session.cookie_jar.clear()
    dashboard = await site.link("tom", "ict", "dashboard")
    status, _, _ = await site.get(dashboard.replace("/dashboard", "/mijn"))
    assert status == 401


async def test_the_link_secret_is_shared_through_the_database(
    site: Site, prompts: PromptLibrary, example_config: OrgConfig, db: Database
) -> None:
    """A link made by one replica opens on another: the secret lives in the shared database."""
    path = await site.link("tom", "ict", "dashboard")
    other = build(
        Settings(database_url=db.url, worker_id="other", auto_migrate=False),
        example_config,
        clock=site.clock,
        prompts=prompts,
        db=db,
        embedder=LexicalEmbedder(),
    )
    token = path.split("access=")[1]
    from urllib.parse import unquote

    signer = await other.dashboard._signer()
    assert signer.verify(unquote(token), NOW) == "dashboard"
