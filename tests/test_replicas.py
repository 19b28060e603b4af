"""Three Boeket processes on one PostgreSQL, a wave over 200 Slack departments: each prompt once.

Real `boeket run` processes (the console entry point, real HTTP, the real timer) share a fresh
PostgreSQL schema and one fake Slack Web API; each replica is given its own API path so the fake
knows who posted. The wave is due as the replicas start (every meeting is tomorrow at this
minute, the prompt a day before). The fake holds the first posts until every replica has one in
flight, so all three share the wave. One test kills a replica with SIGKILL the moment Slack has
accepted one of its posts and before it could record it: the survivors take its claims over after
the lease, find that post (and any other it had in flight) by its key, and post nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import yaml
from aiohttp.test_utils import TestServer

from storage.db import Database
from tests.conftest import POSTGRES_URL, ROOT, PostgresSchema, _postgres_problem, need_postgres
from tests.fakes.slack_api import BOT_TOKEN, Call, FakeSlack

pytestmark = pytest.mark.postgres

DEPARTMENTS = 200
REPLICAS = 3
ZONE = ZoneInfo("Europe/Amsterdam")
WEEKDAYS = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
LEASE_SECONDS = 4
WITHIN = 90.0  # seconds the whole wave may take, start-up included


def wave_config(now: datetime) -> dict[str, object]:
    """200 Slack departments whose meeting is tomorrow at this minute: the prompt is due now."""
    meeting = (now.astimezone(ZONE) + timedelta(days=1)).replace(second=0, microsecond=0)
    return {
        "organisation": {"id": "golf", "name": "Golf"},
        "language": "nl",
        "timezone": str(ZONE),
        "goals": [{"id": "leren", "title": "Leren"}],
        "departments": [
            {
                "id": f"d{i:03d}",
                "name": f"Afdeling {i}",
                "platform": "slack",
                "channel": f"C{i:07d}",
                "meeting": {
                    "weekday": WEEKDAYS[meeting.weekday()],
                    "time": f"{meeting:%H:%M}",
                    "duration": "30m",
                },
            }
            for i in range(DEPARTMENTS)
        ],
        "cross_department": {"platform": "local", "channel": "leren", "name": "Leren"},
        "digest": {"enabled": False},
        "cycle": {"lead_time": "1d", "reminder": "3h", "followup": "2h", "grace": "6h"},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    log: Path


@dataclass
class Wave:
    fake: FakeSlack
    schema: str
    replicas: list[Replica]
    on_post: Callable[[Call], None] | None = None
    opened: float = 0.0  # when every replica had a post in flight (time.monotonic)

    def posts(self) -> Counter[str]:
        return Counter(m.channel for m in self.fake.messages)

    def posts_by(self) -> Counter[str]:
        return Counter(c.via for c in self.fake.of("chat.postMessage"))

    async def occurrences(self) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": self.schema})
        try:
            return list(
                await conn.fetch(
                    "SELECT department_id, status, message_id, attempts, claimed_by"
                    " FROM occurrences ORDER BY department_id"
                )
            )
        finally:
            await conn.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {r.name} ---\n{r.log.read_text(errors='replace')[-3000:]}" for r in self.replicas
        )


async def _wave(tmp_path: Path, *, post_delay: float) -> AsyncIterator[Wave]:
    need_postgres(await _postgres_problem())
    schema = PostgresSchema()
    await schema.create()
    db = Database.connect(POSTGRES_URL, schema=schema.name)
    await db.upgrade()  # once, before the replicas start: they do not race to migrate
    await db.dispose()
    # The first posts wait until every replica has one in flight: all three share the wave.
    fake = FakeSlack(post_delay=post_delay, post_gate=asyncio.Event())
    server = TestServer(fake.app())
    await server.start_server()
    fake.server = server
    config = tmp_path / "golf.yaml"
    config.write_text(yaml.safe_dump(wave_config(datetime.now(ZONE))), encoding="utf-8")
    replicas: list[Replica] = []
    try:
        for i in range(REPLICAS):
            name = f"r{i}"
            env = {
                **os.environ,
                "BOEKET_DATABASE_URL": POSTGRES_URL,
                "BOEKET_DATABASE_SCHEMA": schema.name,
                "BOEKET_CONFIG": str(config),
                "BOEKET_PORT": str(free_port()),
                "BOEKET_WORKER_ID": name,
                "BOEKET_TICK_SECONDS": "0.5",
                "BOEKET_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
                "BOEKET_AUTO_MIGRATE": "false",
                "BOEKET_EMBEDDER": "lexical",
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
                "BOEKET_SLACK_API_URL": fake.api_url_for(name),
            }
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot.cli",
                    "run",
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
            replicas.append(Replica(name, process, log))
        wave = Wave(fake, schema.name, replicas)
        posting: set[str] = set()

        def on_post(call: Call) -> None:
            posting.add(call.via)
            if len(posting) == REPLICAS and fake.post_gate and not fake.post_gate.is_set():
                wave.opened = time.monotonic()
                fake.post_gate.set()
            if wave.on_post is not None:
                wave.on_post(call)

        fake.on_post = on_post
        yield wave
    finally:
        for r in replicas:
            if r.process.returncode is None:
                r.process.send_signal(signal.SIGTERM)
        for r in replicas:
            try:
                await asyncio.wait_for(r.process.wait(), 15)
            except TimeoutError:
                r.process.kill()
                await r.process.wait()
        await server.close()
        await schema.drop()


@pytest.fixture
async def wave(tmp_path: Path) -> AsyncIterator[Wave]:
    async for w in _wave(tmp_path, post_delay=0.05):
        yield w


@pytest.fixture
async def slow_wave(tmp_path: Path) -> AsyncIterator[Wave]:
    """Slack takes a while to answer a post: a replica always has posts in flight."""
    async for w in _wave(tmp_path, post_delay=0.3):
        yield w


async def until(wave: Wave, check: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:g}s\n{wave.logs()}")
        await asyncio.sleep(0.1)


async def test_three_replicas_post_a_wave_of_200_prompts_exactly_once(wave: Wave) -> None:
    begun = time.monotonic()
    await until(wave, lambda: len(wave.posts()) == DEPARTMENTS, "the whole wave")
    done = time.monotonic()
    took, posting = done - begun, done - wave.opened
    await asyncio.sleep(2)  # a few more ticks of every replica: nothing more is posted
    assert wave.posts() == Counter({f"C{i:07d}": 1 for i in range(DEPARTMENTS)}), wave.logs()
    by = wave.posts_by()
    assert set(by) == {r.name for r in wave.replicas} and all(by.values()), by
    rows = await wave.occurrences()
    assert len(rows) == DEPARTMENTS
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["message_id"] for r in rows} == {m.ts for m in wave.fake.messages}
    assert all(r.process.returncode is None for r in wave.replicas), wave.logs()
    print(
        f"\nwave of {DEPARTMENTS} on {REPLICAS} replicas: {took:.1f}s from start, {posting:.1f}s"
        f" from the first posts of all three; posts by {dict(by)}"
    )


async def test_a_replica_killed_mid_wave_right_after_slack_accepted_its_post(
    slow_wave: Wave,
) -> None:
    wave = slow_wave
    victim = wave.replicas[0]
    killed: list[Call] = []
    posts_at_kill: list[int] = []
    killed_at: list[float] = []

    def on_post(call: Call) -> None:
        # Slack has accepted (recorded) this post; its replica dies before the answer arrives.
        mine = [c for c in wave.fake.of("chat.postMessage") if c.via == victim.name]
        if not killed and len(mine) == 10:
            killed.append(call)
            posts_at_kill.append(len(wave.fake.of("chat.postMessage")))
            killed_at.append(time.monotonic())
            os.kill(victim.process.pid, signal.SIGKILL)

    wave.on_post = on_post
    begun = time.monotonic()
    await until(wave, lambda: bool(killed), "the kill")
    assert await asyncio.wait_for(victim.process.wait(), 10) == -signal.SIGKILL
    rows = await wave.occurrences()
    held = [r for r in rows if r["status"] == "claimed" and r["claimed_by"] == victim.name]
    assert held, "the victim held claims when it died"

    async def all_sent() -> bool:
        return all(r["status"] == "sent" for r in await wave.occurrences())

    deadline = time.monotonic() + WITHIN
    while not await all_sent():
        assert time.monotonic() < deadline, wave.logs()
        await asyncio.sleep(0.2)
    took, after_kill = time.monotonic() - begun, time.monotonic() - killed_at[0]
    await asyncio.sleep(2)
    assert wave.posts() == Counter({f"C{i:07d}": 1 for i in range(DEPARTMENTS)}), wave.logs()
    rows = await wave.occurrences()
    by_channel = {m.channel: m.ts for m in wave.fake.messages}
    taken = {r["department_id"] for r in rows if r["attempts"] > 1}
    assert {r["department_id"] for r in held} <= taken
    # The post Slack accepted just before the kill was found by its key and recorded.
    killed_channel = str(killed[0].args["channel"])
    [row] = [r for r in rows if _channel(r) == killed_channel]
    assert row["message_id"] == by_channel[killed_channel] and row["attempts"] == 2
    assert row["claimed_by"] != victim.name
    lookups = [c for c in wave.fake.of("conversations.history") if c.via != victim.name]
    assert {c.args["channel"] for c in lookups} >= {killed_channel}
    # Every post the victim got through to Slack is recorded as it was, none posted again.
    victims_posts = {
        str(c.args["channel"]) for c in wave.fake.of("chat.postMessage") if c.via == victim.name
    }
    found = [r for r in rows if r["department_id"] in taken and _channel(r) in victims_posts]
    assert found
    print(
        f"\nSIGKILL after {posts_at_kill[0]} posts in all; {len(held)} claims held by the dead"
        f" replica, taken over after the {LEASE_SECONDS}s lease, {len(found)} of them already"
        f" posted and found by key ({len(lookups)} history look-ups); wave done {after_kill:.1f}s"
        f" after the kill, {took:.1f}s from start; posts by {dict(wave.posts_by())}"
    )


def _channel(row: asyncpg.Record) -> str:
    return f"C{int(row['department_id'][1:]):07d}"
