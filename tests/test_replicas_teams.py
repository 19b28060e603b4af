"""Two Boeket processes on one PostgreSQL post a wave of 40 Teams prompts: each exactly once.

Real `boeket run` processes with Teams credentials talk to a fake Bot Connector, a fake
Microsoft login and a fake Microsoft Graph, all served by this test over real HTTP. Boeket is
first added to the team and its 40 channels are announced (by a process whose prompts are not
due yet), so the conversation references and the team's Graph id are stored. Then two replicas
start with the wave due. The connector holds the first posts until both replicas have claims,
and the moment it has accepted a post of one replica, that replica is killed with SIGKILL,
before the answer reaches it. After the lease the survivor takes the dead replica's claims
over, finds the posts Teams had accepted by the key hidden in their cards (with Graph), and
posts nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from storage.db import Database
from tests.conftest import POSTGRES_URL, ROOT, PostgresSchema, _postgres_problem, need_postgres
from tests.fakes.graph import FakeGraph
from tests.fakes.microsoft_login import FakeLogin
from tests.fakes.teams_connector import Call, FakeConnector
from tests.test_replicas import WEEKDAYS, ZONE, Replica, free_port
from tests.test_teams_graph import GROUP
from tests.test_teams_http import APP_ID, TENANT, fixture

pytestmark = pytest.mark.postgres

CHANNELS = 40
REPLICAS = 2
SECRET = "replica-s3cret"
POST_DELAY = 0.3  # seconds Teams takes to answer a post: a replica always has posts in flight
WITHIN = 60.0
# Longer than the spread of the replicas' first ticks on a busy machine: the posts held until
# both have claims are not taken over before they are answered.
LEASE_SECONDS = 8


def channel(i: int) -> str:
    return f"19:afdeling-{i:02d}@thread.tacv2"


def teams_wave(now: datetime, *, days_ahead: int = 1) -> dict[str, object]:
    """40 departments in the channels of one team, meeting `days_ahead` days from now at this
    minute: with 1 the prompt (a day before) is due now, with more it is not due yet."""
    meeting = (now.astimezone(ZONE) + timedelta(days=days_ahead)).replace(second=0, microsecond=0)
    return {
        "organisation": {"id": "golf-teams", "name": "Golf"},
        "language": "nl",
        "timezone": str(ZONE),
        "goals": [{"id": "leren", "title": "Leren"}],
        "departments": [
            {
                "id": f"d{i:02d}",
                "name": f"Afdeling {i}",
                "platform": "teams",
                "channel": channel(i),
                "workspace": TENANT,
                "meeting": {
                    "weekday": WEEKDAYS[meeting.weekday()],
                    "time": f"{meeting:%H:%M}",
                    "duration": "30m",
                },
            }
            for i in range(CHANNELS)
        ],
        "cross_department": {"platform": "local", "channel": "leren", "name": "Leren"},
        "digest": {"enabled": False},
        "cycle": {"lead_time": "1d", "reminder": None, "followup": None, "grace": "6h"},
    }


class HeldConnector(FakeConnector):
    """The fake Bot Connector, with new posts held at a gate, then accepted (recorded, so Graph
    lists them) and answered `POST_DELAY` later; `on_accept` runs in between."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.on_accept: Callable[[Call], Awaitable[None]] | None = None

    async def _create(self, request: web.Request) -> web.Response:
        await self.gate.wait()
        answer = await super()._create(request)
        # No await between recording the call and returning: the last call is this one.
        call = self.calls[-1]
        if self.on_accept is not None:
            await self.on_accept(call)
        await asyncio.sleep(POST_DELAY)
        return answer


def channel_of(call: Call) -> str:
    return str(call.body["channelData"]["channel"]["id"])


async def serve(app: web.Application, servers: list[TestServer]) -> TestServer:
    server = TestServer(app)
    await server.start_server()
    servers.append(server)
    return server


async def spawn(name: str, env: dict[str, str], tmp: Path) -> asyncio.subprocess.Process:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            cwd=ROOT,
            env={**env, "BOEKET_WORKER_ID": name},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )


async def stop(replicas: list[Replica]) -> None:
    for r in replicas:
        if r.process.returncode is None:
            r.process.send_signal(signal.SIGTERM)
    for r in replicas:
        try:
            await asyncio.wait_for(r.process.wait(), 15)
        except TimeoutError:
            r.process.kill()
            await r.process.wait()


def logs(replicas: list[Replica]) -> str:
    return "\n".join(
        f"--- {r.name} ---\n{r.log.read_text(errors='replace')[-3000:]}" for r in replicas
    )


class Teams:
    """The fakes of Microsoft's side and the PostgreSQL schema the replicas share."""

    def __init__(self, schema: str, tmp: Path) -> None:
        self.schema, self.tmp = schema, tmp
        self.connector = HeldConnector()
        self.login = FakeLogin(tenant=TENANT, client_id=APP_ID, client_secret=SECRET)
        self.graph = FakeGraph(
            self.connector, self.login, APP_ID, {GROUP: {channel(i) for i in range(CHANNELS)}}
        )
        self.replicas: list[Replica] = []

    def env(self, config: Path) -> dict[str, str]:
        env = {
            **os.environ,
            "BOEKET_DATABASE_URL": POSTGRES_URL,
            "BOEKET_DATABASE_SCHEMA": self.schema,
            "BOEKET_CONFIG": str(config),
            "BOEKET_TICK_SECONDS": "0.5",
            "BOEKET_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
            "BOEKET_AUTO_MIGRATE": "false",
            "BOEKET_EMBEDDER": "lexical",
            "TEAMS_CLIENT_ID": APP_ID,
            "TEAMS_CLIENT_SECRET": SECRET,
            "TEAMS_TENANT_ID": TENANT,
            "TEAMS_OPENID_METADATA_URL": self.login.metadata_url,
            "TEAMS_LOGIN_URL": self.login.url,
            "TEAMS_GRAPH_URL": self.graph.url,
        }
        for name in (
            "SLACK_BOT_TOKEN",
            "SLACK_SIGNING_SECRET",
            "SLACK_APP_TOKEN",
            "TEAMS_DEV_MODE",
        ):
            env.pop(name, None)
        return env

    async def start(self, name: str, config: Path, port: int) -> Replica:
        env = {**self.env(config), "BOEKET_PORT": str(port)}
        replica = Replica(name, await spawn(name, env, self.tmp), self.tmp / f"{name}.log")
        self.replicas.append(replica)
        return replica

    async def install(self, config: Path) -> None:
        """Boeket is added to the team and each channel is announced, as Teams does it, to a
        process whose prompts are not due yet; it is stopped before the wave's replicas start."""
        port = free_port()
        installer = await self.start("installer", config, port)
        url = f"http://127.0.0.1:{port}"
        token = self.login.token(service_url=self.connector.url)
        activities = [fixture("install_team", self.connector.url)] + [
            fixture("channel_created", self.connector.url, CHANNEL=channel(i))
            for i in range(CHANNELS)
        ]
        deadline = time.monotonic() + WITHIN
        async with aiohttp.ClientSession() as session:
            while True:
                assert installer.process.returncode is None, logs([installer])
                assert time.monotonic() < deadline, logs([installer])
                try:
                    async with session.get(url + "/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            for activity in activities:
                async with session.post(
                    url + "/api/messages",
                    json=activity,
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    assert response.status in {200, 202}, await response.text()
        await stop([installer])
        self.replicas.remove(installer)

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

    async def references(self) -> int:
        """Stored channel references that name the team's Graph id."""
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": self.schema})
        try:
            rows = await conn.fetch(
                "SELECT key, value::text AS value FROM adapter_state WHERE platform = 'teams'"
            )
        finally:
            await conn.close()
        return sum(1 for r in rows if "ref:19:afdeling-" in r["key"] and GROUP in r["value"])

    def creates(self) -> Counter[str]:
        return Counter(channel_of(c) for c in self.connector.of("create"))


@pytest.fixture
async def teams(tmp_path: Path) -> AsyncIterator[Teams]:
    need_postgres(await _postgres_problem())
    schema = PostgresSchema()
    await schema.create()
    db = Database.connect(POSTGRES_URL, schema=schema.name)
    await db.upgrade()  # once, before the processes start: they do not race to migrate
    await db.dispose()
    env = Teams(schema.name, tmp_path)
    servers: list[TestServer] = []
    try:
        env.connector.server = await serve(env.connector.app(), servers)
        env.login.server = await serve(env.login.app(), servers)
        env.graph.server = await serve(env.graph.app(), servers)
        yield env
    finally:
        env.connector.gate.set()  # nothing stays held while the processes stop
        await stop(env.replicas)
        for server in servers:
            await server.close()
        await schema.drop()


async def test_a_replica_killed_right_after_teams_accepted_its_post_posts_nothing_twice(
    teams: Teams, tmp_path: Path
) -> None:
    now = datetime.now(ZONE)
    later = tmp_path / "later.yaml"
    later.write_text(yaml.safe_dump(teams_wave(now, days_ahead=3)), encoding="utf-8")
    await teams.install(later)
    assert await teams.references() == CHANNELS
    assert teams.connector.of("create") == []

    wave = tmp_path / "wave.yaml"
    wave.write_text(yaml.safe_dump(teams_wave(now)), encoding="utf-8")
    begun = time.monotonic()
    replicas = [await teams.start(f"r{i}", wave, free_port()) for i in range(REPLICAS)]
    by_name = {r.name: r for r in replicas}
    killed: list[tuple[Call, Replica]] = []
    killed_at: list[float] = []

    async def claimant(call: Call) -> str | None:
        rows = await teams.occurrences()
        [row] = [r for r in rows if channel(int(r["department_id"][1:])) == channel_of(call)]
        return str(row["claimed_by"]) if row["status"] == "claimed" else None

    async def kill_on_accept(call: Call) -> None:
        # Teams has accepted (recorded) this post; its replica dies before the answer arrives.
        if killed:
            return
        poster = await claimant(call)
        if poster in by_name and not killed:
            victim = by_name[poster]
            killed.append((call, victim))
            killed_at.append(time.monotonic())
            os.kill(victim.process.pid, signal.SIGKILL)

    teams.connector.on_accept = kill_on_accept

    # The posts wait until both replicas hold claims: each has posts in flight.
    deadline = time.monotonic() + WITHIN
    while not teams.connector.gate.is_set():
        assert time.monotonic() < deadline, logs(replicas)
        holders = {r["claimed_by"] for r in await teams.occurrences() if r["status"] == "claimed"}
        if holders >= {r.name for r in replicas}:
            teams.connector.gate.set()
        await asyncio.sleep(0.1)
    while not killed:
        assert time.monotonic() < deadline, logs(replicas)
        await asyncio.sleep(0.05)
    call, victim = killed[0]
    assert await asyncio.wait_for(victim.process.wait(), 10) == -signal.SIGKILL
    rows = await teams.occurrences()
    held = {
        r["department_id"]
        for r in rows
        if r["claimed_by"] == victim.name and r["status"] == "claimed"
    }
    assert held, "the victim held claims when it died"
    accepted_unrecorded = {
        channel_of(c) for c in teams.connector.of("create") if c.answer.get("activityId")
    } & {channel(int(d[1:])) for d in held}
    assert channel_of(call) in accepted_unrecorded

    while not all(r["status"] == "sent" for r in await teams.occurrences()):
        assert time.monotonic() < deadline, logs(replicas)
        await asyncio.sleep(0.2)
    after_kill = time.monotonic() - killed_at[0]
    await asyncio.sleep(2)  # a few more ticks of the survivor: nothing more is posted

    # Every channel got its prompt exactly once, the one accepted just before the kill too.
    assert teams.creates() == Counter({channel(i): 1 for i in range(CHANNELS)}), logs(replicas)
    rows = await teams.occurrences()
    posted = {channel_of(c): str(c.answer["activityId"]) for c in teams.connector.of("create")}
    assert {channel(int(r["department_id"][1:])): r["message_id"] for r in rows} == posted
    [row] = [r for r in rows if channel(int(r["department_id"][1:])) == channel_of(call)]
    assert row["attempts"] == 2 and row["claimed_by"] != victim.name
    assert held <= {r["department_id"] for r in rows if r["attempts"] > 1}
    # The survivor looked the dead replica's posts up in the team's channels with Graph.
    looked_up = {req.path.split("/")[5] for req in teams.graph.requests if req.status == 200}
    assert accepted_unrecorded <= looked_up
    assert all(req.status == 200 for req in teams.graph.requests)
    survivor = next(r for r in replicas if r is not victim)
    assert survivor.process.returncode is None, logs(replicas)
    print(
        f"\nSIGKILL of {victim.name} right after Teams accepted its post in {channel_of(call)};"
        f" {len(held)} claims held by it, {len(accepted_unrecorded)} of them already accepted"
        f" by Teams and found with Graph ({len(teams.graph.requests)} Graph requests); wave done"
        f" {after_kill:.1f}s after the kill, {time.monotonic() - begun:.1f}s from start"
    )
