"""Anonymous means anonymous everywhere: a person who answers anonymously appears by name in no
output Boeket makes — not the digest, the dashboard, the poster, the exports, nor the logs — even
when that person agreed to be named elsewhere."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import poster
from bot.app import BOEKET, build, web_app
from bot.cli import configure_logging
from bot.clock import ManualClock
from bot.config import OrgConfig
from bot.contributions import SHARE_FORM
from bot.domain import PersonSettings
from bot.embedders import LexicalEmbedder
from bot.export import export
from bot.messages import FormDone, ShowForm
from bot.overview import build_overview
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.repositories import ContributionRepository, PersonSettingsRepository

ORG = "ziekenhuis-de-linde"
# Wednesday 3 March 2027, 10:00 in Amsterdam; the digest follows on Friday at 15:00.
NOW = datetime(2027, 3, 3, 9, 0, tzinfo=UTC)
DIGEST = datetime(2027, 3, 5, 14, 0, tzinfo=UTC)
NAME = "Sanne Bakker"


async def test_an_anonymous_share_names_nobody_anywhere(
    db: Database,
    prompts: PromptLibrary,
    example_config: OrgConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Boeket's own logging set-up, at its most talkative: drivers stay at WARNING.
    drivers = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool")
    before = {name: logging.getLogger(name).level for name in drivers}
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    for name in drivers:
        logging.getLogger(name).setLevel(logging.WARNING)
    clock = ManualClock(NOW)
    admin = "admin-token-for-anonymity-test"
    app = web_app(
        build(
            Settings(database_url=db.url, worker_id="anon", auto_migrate=False, admin_token=admin),
            example_config,
            clock=clock,
            prompts=prompts,
            db=db,
            embedder=LexicalEmbedder(),
        ),
        timer=False,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    boeket = app[BOEKET]
    try:
        # Sanne agreed to be named elsewhere, and still chooses anonymity for this one.
        await PersonSettingsRepository(db).put(
            ORG, "local", "sanne", PersonSettings(named_elsewhere=True), NOW
        )
        form = await boeket.local.say("sanne", "verpleegafdeling", "/deel")
        assert isinstance(form, ShowForm)
        done = await boeket.local.submit(
            "sanne",
            "verpleegafdeling",
            SHARE_FORM,
            {
                "what": "Elke nieuwe collega krijgt zes weken een vaste buddy, ook in de "
                "avonddienst; de werkdruk voor nieuwe mensen daalt.",
                "preconditions": "Buddy's samen ingeroosterd.",
                "theme": "werkdruk",
                "goal": "gezond-werken",
                "anonymous": "true",
            },
            meta=form.form.meta,
        )
        assert isinstance(done, FormDone), done
        await boeket.background.drain()
        [stored] = await ContributionRepository(db).all(ORG)
        assert stored.anonymous and stored.author is None

        outputs: dict[str, str] = {}
        # The weekly digest.
        clock.set(DIGEST)
        assert await boeket.digest.tick() == 1
        outputs["digest"] = boeket.local.transcript("leren-over-grenzen")
        assert "vaste buddy" in outputs["digest"]
        # Every channel Boeket posted in (cross-posts included).
        outputs["channels"] = "\n".join(
            boeket.local.transcript(c.id) for c in boeket.local.channels
        )
        # The dashboard.
        async with client.get(
            "/dashboard?from=2027-03-01&to=2027-03-05",
            headers={"Authorization": f"Bearer {admin}"},
        ) as r:
            assert r.status == 200
            outputs["dashboard"] = await r.text()
        assert "vaste buddy" in outputs["dashboard"]
        # The poster, as SVG.
        data = await poster.collect(
            example_config, DigestRepository(db), start=date(2027, 3, 1), end=date(2027, 3, 5)
        )
        outputs["poster"] = poster.render_svg(data, prompts)
        # The exports.
        overview = await build_overview(
            config=example_config,
            texts=boeket.texts,
            digests=DigestRepository(db),
            settings=PersonSettingsRepository(db),
            since=date(2027, 3, 1),
            until=date(2027, 3, 5),
        )

        def t(key: str, **params: str) -> str:
            return prompts.text("nl", key, **params)

        for fmt in ("md", "csv", "json"):
            outputs[f"export.{fmt}"] = export(overview, fmt, t)
        assert json.loads(outputs["export.json"])["contributions"][0]["author"] is None
        # Her own overview holds only what is on her name: nothing.
        own = await build_overview(
            config=example_config,
            texts=boeket.texts,
            digests=DigestRepository(db),
            settings=PersonSettingsRepository(db),
            since=date(2027, 3, 1),
            until=date(2027, 3, 5),
            own=("local", "sanne"),
        )
        assert own.entries == []
        outputs["logs"] = "\n".join(r.getMessage() for r in caplog.records)

        for where, text in outputs.items():
            assert NAME not in text and "Sanne" not in text, where
            assert "sanne" not in text.replace("Sanne", ""), where
    finally:
        await client.close()
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
