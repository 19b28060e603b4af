"""Headless Chromium (Debian's package; `make test` installs it) loads the dashboard and the poster
from a running Boeket with a seeded organisation, checks what matters and saves screenshots."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import BOEKET, build, web_app
from bot.clock import ManualClock
from bot.config import OrgConfig
from bot.embedders import LexicalEmbedder
from bot.messages import Ephemeral
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.db import Database
from tests.test_dashboard import NOW, seed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


async def chromium(profile: Path, *args: str) -> str:
    assert CHROMIUM is not None, (
        "Debian's chromium is required for the browser test: `make test` installs it "
        "(apt-get install chromium)"
    )
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


@pytest.mark.parametrize("database_factory", ["sqlite"], indirect=True)
async def test_dashboard_and_poster_in_a_real_browser(
    db: Database, prompts: PromptLibrary, example_config: OrgConfig, tmp_path: Path
) -> None:
    clock = ManualClock(NOW)
    server = TestServer(
        web_app(
            build(
                Settings(database_url=db.url, worker_id="browser", auto_migrate=False),
                example_config,
                clock=clock,
                prompts=prompts,
                db=db,
                embedder=LexicalEmbedder(),
            ),
            timer=False,
        ),
        host="127.0.0.1",
    )
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    try:
        await seed(db)
        app = server.app[BOEKET]
        reply = await app.local.say("tom", "ict", "/deel dashboard")
        assert isinstance(reply, Ephemeral)
        token = reply.message.text.split("access=")[1].split()[0]
        base = str(server.make_url("/"))[:-1]
        dashboard = f"{base}/dashboard?access={token}"

        dom = await chromium(tmp_path / "profile", "--dump-dom", dashboard)
        assert "Per afdeling" in dom
        for name in ("Operatiekamer", "ICT", "Verpleegafdeling Interne Geneeskunde"):
            assert name in dom
        assert "Werkdruk (3)" in dom
        assert "Verpleegafdeling Interne Geneeskunde — nuttig" in dom
        assert "Jeroen de Vries" not in dom  # not agreed to be named elsewhere
        assert "<script>alert(1)</script>" not in dom

        shot = tmp_path / "dashboard.png"
        await chromium(
            tmp_path / "profile",
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            dashboard,
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000  # a rendered page, not a blank one

        poster = f"{base}/dashboard/poster.svg?access={token}&from=2027-01-01&to=2027-03-05"
        svg = await chromium(tmp_path / "profile", "--dump-dom", poster)
        assert "<svg" in svg
        for name in ("Operatiekamer", "Spoedeisende Hulp"):
            assert name in svg
        assert "Fatima" not in svg and "Jeroen" not in svg
        poster_shot = tmp_path / "poster.png"
        await chromium(
            tmp_path / "profile", f"--screenshot={poster_shot}", "--window-size=1190,1684", poster
        )
        assert poster_shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        await client.close()
