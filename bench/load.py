"""Load: mixed Slack and Teams traffic at rising rates against two replicas on PostgreSQL.

A benchmark, run by hand (not a test):

    .venv/bin/python bench/load.py [--rates 10,20,40,80,160,320,640] [--duration 15]
                                   [--timeout 3] [--embedder lexical] [--keep-going]

This process creates a fresh schema on the PostgreSQL at 127.0.0.1:5432 (database `test`, user
`postgres`; `--database-url` for another), migrates it once, and serves the fakes of Microsoft's
and Slack's clouds on 127.0.0.1 port 0: the Slack Web API (tests/fakes/slack_api.py), the Bot
Connector (tests/fakes/teams_connector.py) and Microsoft's login with its OpenID metadata and
signing key (tests/fakes/microsoft_login.py). It then starts two real `boeket run` processes
(`python -m bot.cli run`, as tests/test_replicas.py does) on that schema, with two Slack and two
Teams departments whose prompt is due at once, with Teams token validation on (the TEAMS_*
variables point at the fake login) and waits for `/ready` on both. Teams is installed in the
team, and the four prompts are posted by the replicas' own timers.

A separate load-generator process (its CPU is not in this loop, which serves the fakes) then
sends requests **open loop**: request n of a step leaves at start + n / rate whatever became of
the earlier ones (no connection limit), and alternates between the two replicas — the round
robin of a load balancer. The mix, in every 40 requests:

    10 Slack thread replies to a prompt (signed message events, stored through the inbox)
     6 Slack `/deel` (signed slash commands; the share modal opens after the ack)
     3 Slack clicks on a prompt's "Antwoorden" button (block_actions; a modal opens after)
     4 Slack share forms submitted (view_submission; stored before the ack)
     7 Teams thread replies that @mention Boeket (message activities with a valid RS256 token)
     4 Teams "Antwoorden" dialogs opened (invoke task/fetch; the dialog is in the answer)
     4 Teams answer dialogs submitted (invoke task/submit; stored before the answer)
     1 Slack retry of a recent thread reply (same event_id, X-Slack-Retry-Num) to the other replica
     1 Teams redelivery of a recent thread reply (same activity id) to the other replica

An ack's latency runs from the moment the request was *due* to leave (so a generator that falls
behind does not hide a slow server) to its response; the generator's own lag is shown too. An
error is a non-2xx answer, a timeout (`--timeout`, default Slack's 3 s), a connection error, or
a form answered with validation errors. Between steps the bench waits until every acknowledged
contribution is in the database, every `/deel` and click has opened its modal, and both
replicas' background queues are empty; then it counts, per unique event, what was stored: none
lost, none doubled (retries included). Steps go up until one fails (`--keep-going` runs them
all). The schema is dropped at the end.

Reported per step: sent, errors, ack p50 / p95 / p99 / max, generator lag, the rate offered and
the rate answered, CPU per request in the replicas, and the end verdict "highest rate with p99
< 500 ms and zero errors". Exit status 0 when some step met that, else 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import hmac
import json
import math
import os
import platform
import re
import resource
import secrets
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import yaml
from aiohttp.test_utils import TestServer

from adapters.slack.translate import encode_metadata
from storage.db import Database
from tests.fakes.microsoft_login import FakeLogin
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.teams_connector import FakeConnector

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "teams"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
HOST = "127.0.0.1"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - Slack's published test secret
TENANT = "0f6d7e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
APP_ID = "11111111-2222-4333-8444-555555555555"
APP_SECRET = "load-s3cret"  # noqa: S105 - the fake login's client secret
TEAM = "19:team-general@thread.tacv2"
ORG = "lastproef"
ZONE = ZoneInfo("Europe/Amsterdam")
WEEKDAYS = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
SLACK_DEPARTMENTS = {"sa": "C0LOADSA", "sb": "C0LOADSB"}
TEAMS_DEPARTMENTS = {"ta": "19:load-ta@thread.tacv2", "tb": "19:load-tb@thread.tacv2"}
REPLICAS = 2
USERS = 300  # distinct people per platform: Teams limits messages per conversation
TARGET_P99_MS = 500.0
START_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 180.0
MARK = re.compile(r"lt(\d{7})")
TEXTS = (
    "De huddle om half acht werkt goed voor de overdracht",
    "Wij bespreken de planning nu aan het begin van de dienst",
    "Een vaste buddy voor nieuwe collega's scheelt veel vragen",
    "Het bord bij de balie laat zien wie welke kamer heeft",
    "Korte evaluatie na elke spoedopname, vijf minuten maximaal",
)

Kind = Literal[
    "slack_reply",
    "slack_command",
    "slack_click",
    "slack_share",
    "teams_reply",
    "teams_fetch",
    "teams_submit",
    "slack_retry",
    "teams_retry",
]
KINDS: tuple[Kind, ...] = (
    "slack_reply",
    "slack_command",
    "slack_click",
    "slack_share",
    "teams_reply",
    "teams_fetch",
    "teams_submit",
    "slack_retry",
    "teams_retry",
)
MIX: dict[Kind, int] = {
    "slack_reply": 10,
    "slack_command": 6,
    "slack_click": 3,
    "slack_share": 4,
    "teams_reply": 7,
    "teams_fetch": 4,
    "teams_submit": 4,
    "slack_retry": 1,
    "teams_retry": 1,
}
STORING: frozenset[str] = frozenset({"slack_reply", "slack_share", "teams_reply", "teams_submit"})
OPENING: frozenset[str] = frozenset({"slack_command", "slack_click"})  # a modal after the ack


def _pattern() -> tuple[Kind, ...]:
    """The 40-slot cycle of kinds, interleaved (a fixed shuffle: every run sends the same)."""
    # Spread each kind evenly over the cycle, then order by position: no bursts of one kind.
    placed = sorted(
        (((j + 0.5) / MIX[kind], KINDS.index(kind)), kind) for kind in MIX for j in range(MIX[kind])
    )
    return tuple(kind for _, kind in placed)


PATTERN = _pattern()


# --- the load generator (runs in its own process) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Targets:
    """What the generator needs to build requests; plain data, sent to its process."""

    replicas: tuple[str, ...]
    slack_threads: dict[str, str]  # Slack channel -> the prompt's ts
    round_date: str
    teams_roots: dict[str, str]  # Teams channel -> the prompt card's activity id
    teams_token: str
    service_url: str
    response_url: str
    submit_template: dict[str, Any]  # the answer dialog's submit data
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Job:
    targets: Targets
    rate: float
    count: int
    first: int  # global index of the step's first request: ids and markers stay unique


@dataclass(frozen=True, slots=True)
class Sample:
    index: int
    kind: Kind
    replica: int
    status: str  # HTTP status, or the exception's name
    ok: bool
    ack_ms: float  # from when it was due to leave to its answer
    lag_ms: float  # how late the generator sent it
    original: int  # for a retry, the index of the request it repeats; else its own


@dataclass(slots=True)
class JobResult:
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0  # first due time to the last answer


def sign(timestamp: str, body: str) -> str:
    """Slack's request signature: v0= HMAC-SHA256 over "v0:{timestamp}:{body}"."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()


def marker(i: int) -> str:
    return f"lt{i:07d}"


def text_for(i: int) -> str:
    return f"{TEXTS[i % len(TEXTS)]} (kenmerk {marker(i)})."


def slack_request(body: str, content_type: str, *, retry: bool = False) -> dict[str, str]:
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(timestamp, body),
    }
    if retry:
        headers["X-Slack-Retry-Num"] = "1"
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


def teams_fixture(name: str, t: Targets, channel: str, root: str) -> dict[str, Any]:
    text = (FIXTURES / f"{name}.json").read_text(encoding="utf-8")
    for key, value in {
        "SERVICE_URL": t.service_url,
        "TENANT": TENANT,
        "BOT_APP_ID": APP_ID,
        "CHANNEL": channel,
        "ROOT": root,
    }.items():
        text = text.replace(key, value)
    data: dict[str, Any] = json.loads(text)
    return data


def teams_person(i: int) -> dict[str, str]:
    u = i % USERS
    return {
        "id": f"29:1load{u}",
        "name": f"Collega {u}",
        "aadObjectId": f"5b7a3c1e-0000-4000-8000-{u:012d}",
    }


def build(t: Targets, kind: Kind, i: int) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of request `i` of `kind`; the same i always makes the same event."""
    slack_channels = list(t.slack_threads)
    teams_channels = list(t.teams_roots)
    user = f"U{i % USERS:05d}"
    if kind in {"slack_reply", "slack_retry"}:
        channel = slack_channels[i % len(slack_channels)]
        ts = f"1800000000.{i:06d}"
        envelope = {
            "token": "legacy",
            "team_id": "T0TEST",
            "api_app_id": "A0BOEKET",
            "event": {
                "type": "message",
                "channel": channel,
                "user": user,
                "text": text_for(i),
                "ts": ts,
                "thread_ts": t.slack_threads[channel],
                "channel_type": "channel",
                "event_ts": ts,
            },
            "type": "event_callback",
            "event_id": f"EvLOAD{i:07d}",
            "event_time": int(time.time()),
        }
        body = json.dumps(envelope)
        headers = slack_request(body, "application/json", retry=kind == "slack_retry")
        return "/slack/events", body.encode(), headers
    if kind == "slack_command":
        form = {
            "token": "legacy",
            "team_id": "T0TEST",
            "team_domain": "test",
            "channel_id": slack_channels[i % len(slack_channels)],
            "channel_name": "afdeling",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/deel",
            "text": "",
            "api_app_id": "A0BOEKET",
            "response_url": t.response_url,
            "trigger_id": f"trig-load-{i}",
        }
        body = urlencode(form)
        headers = slack_request(body, "application/x-www-form-urlencoded")
        return "/slack/events", body.encode(), headers
    if kind == "slack_click":
        channel = slack_channels[i % len(slack_channels)]
        thread = t.slack_threads[channel]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": "T0TEST"},
            "trigger_id": f"trig-load-{i}",
            "user": {"id": user, "username": user.lower(), "name": user.lower()},
            "api_app_id": "A0BOEKET",
            "token": "legacy",
            "response_url": t.response_url,
            "container": {"type": "message", "message_ts": thread, "channel_id": channel},
            "channel": {"id": channel, "name": "afdeling"},
            "message": {"ts": thread, "text": "x"},
            "actions": [
                {
                    "type": "button",
                    "action_id": "boeket.answer",
                    "block_id": "b",
                    "value": t.round_date,
                    "action_ts": f"1800000000.{i:06d}",
                    "text": {"type": "plain_text", "text": "Antwoorden"},
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        headers = slack_request(body, "application/x-www-form-urlencoded")
        return "/slack/events", body.encode(), headers
    if kind == "slack_share":
        dept, channel = list(SLACK_DEPARTMENTS.items())[i % len(SLACK_DEPARTMENTS)]

        def plain(name: str, value: str) -> dict[str, Any]:
            return {name: {name: {"type": "plain_text_input", "value": value}}}

        state = {
            **plain("what", text_for(i)),
            **plain("preconditions", "Iedereen in het team doet mee en de planner helpt."),
            **plain("effect", "Minder vragen aan het eind van de dienst."),
            "goal": {"goal": {"type": "static_select", "selected_option": None}},
            "theme": {"theme": {"type": "static_select", "selected_option": None}},
            "anonymous": {"anonymous": {"type": "checkboxes", "selected_options": []}},
        }
        payload = {
            "type": "view_submission",
            "team": {"id": "T0TEST", "domain": "test"},
            "user": {"id": user, "username": user.lower(), "name": user.lower()},
            "api_app_id": "A0BOEKET",
            "token": "legacy",
            "trigger_id": f"trig-load-{i}",
            "view": {
                "id": f"VLOAD{i:07d}",
                "team_id": "T0TEST",
                "type": "modal",
                "callback_id": "boeket.share",
                "private_metadata": encode_metadata("boeket.share", channel, {"department": dept}),
                "state": {"values": state},
                "hash": "h",
                "blocks": [],
            },
        }
        body = urlencode({"payload": json.dumps(payload)})
        headers = slack_request(body, "application/x-www-form-urlencoded")
        return "/slack/events", body.encode(), headers
    channel = teams_channels[i % len(teams_channels)]
    root = t.teams_roots[channel]
    if kind in {"teams_reply", "teams_retry"}:
        activity = teams_fixture("channel_reply", t, channel, root)
        activity["id"] = str(1_800_000_000_000 + i)
        activity["text"] = f"<at>Boeket</at>&nbsp;{text_for(i)}"
        activity["attachments"] = []
    else:
        activity = teams_fixture("task_fetch", t, channel, root)
        if kind == "teams_fetch":
            activity["id"] = f"f:load-fetch-{i}"
            activity["value"]["data"] = {
                "verb": "boeket.answer",
                "value": t.round_date,
                "msteams": {"type": "task/fetch"},
            }
        else:  # teams_submit: a dialog opened earlier (its own random id), now submitted
            data = copy.deepcopy(t.submit_template)
            data.update(text=text_for(i), followup="", not_shared="false", anonymous="false")
            data["boeket_form"]["sid"] = f"load-{i}"
            activity.update(name="task/submit", id=f"f:load-submit-{i}")
            activity["value"] = {"type": "task/submit", "data": data, "context": {}}
    activity["from"] = teams_person(i)
    activity["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {t.teams_token}",
    }
    return "/api/messages", json.dumps(activity).encode(), headers


def _form_refused(kind: Kind, body: bytes) -> bool:
    """A submitted form answered with validation errors instead of being stored."""
    if kind == "slack_share":
        return b'"response_action"' in body and b'"errors"' in body
    if kind == "teams_submit":
        return b'"Attention"' in body
    return False


async def _drive(job: Job) -> JobResult:
    t = job.targets
    result = JobResult()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=t.timeout_s)
    loop = asyncio.get_running_loop()
    last_reply: dict[str, tuple[int, int]] = {}  # platform -> (index, replica) of its last reply
    finished: list[float] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int, kind: Kind, replica: int, original: int, due: float) -> None:
            path, body, headers = build(t, kind, original)
            sent = loop.time()
            ok = False
            try:
                async with session.post(
                    t.replicas[replica] + path, data=body, headers=headers
                ) as r:
                    answer = await r.read()
                    status = str(r.status)
                    ok = 200 <= r.status < 300
                    if ok and _form_refused(kind, answer):
                        status, ok = f"{r.status} with form errors", False
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                status = type(exc).__name__
            done = loop.time()
            finished.append(done)
            result.samples.append(
                Sample(
                    index=index,
                    kind=kind,
                    replica=replica,
                    status=status,
                    ok=ok,
                    ack_ms=(done - due) * 1000,
                    lag_ms=(sent - due) * 1000,
                    original=original,
                )
            )

        tasks: list[asyncio.Task[None]] = []
        start = loop.time() + 0.1
        for n in range(job.count):
            index = job.first + n
            kind = PATTERN[index % len(PATTERN)]
            # Round robin over the replicas; the cycle of kinds has an even length, so shift it
            # by one each cycle, or each kind would always go to the same replica.
            replica = (index + index // len(PATTERN)) % len(t.replicas)
            original = index
            if kind in {"slack_retry", "teams_retry"}:
                platform_ = kind.split("_")[0]
                if platform_ in last_reply:  # the same event again, to the other replica
                    original, first_replica = last_reply[platform_]
                    replica = (first_replica + 1) % len(t.replicas)
                else:  # nothing to repeat yet: a first delivery
                    kind = "slack_reply" if platform_ == "slack" else "teams_reply"
            if kind in {"slack_reply", "teams_reply"}:
                last_reply[kind.split("_")[0]] = (index, replica)
            due = start + n / job.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, kind, replica, original, due)))
        await asyncio.gather(*tasks)
        result.wall_s = (max(finished) - start) if finished else 0.0
    return result


def run_job(job: Job) -> JobResult:
    """Entry point in the load-generator process."""
    _raise_open_files()
    return asyncio.run(_drive(job))


def _raise_open_files() -> None:
    """Open loop means many sockets at once: lift the soft limit on open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the servers and replicas (this process) ----------------------------------------------------


def load_config(now: datetime) -> dict[str, Any]:
    """Two Slack and two Teams departments whose meeting is tomorrow at this minute: the prompt
    (a day before) is due as the replicas start."""
    meeting = (now.astimezone(ZONE) + timedelta(days=1)).replace(second=0, microsecond=0)
    rhythm = {"weekday": WEEKDAYS[meeting.weekday()], "time": f"{meeting:%H:%M}", "duration": "1h"}
    departments: list[dict[str, Any]] = [
        {"id": d, "name": f"Afdeling {d}", "platform": "slack", "channel": c, "meeting": rhythm}
        for d, c in SLACK_DEPARTMENTS.items()
    ] + [
        {
            "id": d,
            "name": f"Afdeling {d}",
            "platform": "teams",
            "channel": c,
            "workspace": TENANT,
            "meeting": rhythm,
        }
        for d, c in TEAMS_DEPARTMENTS.items()
    ]
    return {
        "organisation": {"id": ORG, "name": "Lastproef"},
        "language": "nl",
        "timezone": str(ZONE),
        "goals": [{"id": "leren", "title": "Leren"}],
        "departments": departments,
        "cross_department": {"platform": "local", "channel": "leren", "name": "Leren"},
        "digest": {"enabled": False},
        "cycle": {"lead_time": "1d", "reminder": None, "followup": None, "grace": "6h"},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def cpu_s(self) -> float:
        """CPU time (user + system) the process has used; NaN where /proc is not there."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self) -> str:
        return f"--- {self.name} ---\n{self.log.read_text(errors='replace')[-3000:]}"


async def serve_fake(app: Any, stack: AsyncExitStack) -> TestServer:
    server = TestServer(app, host=HOST)
    await server.start_server()
    stack.push_async_callback(server.close)
    return server


@asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[str]:
    """A new schema, migrated once (the replicas do not race to migrate); dropped afterwards."""
    schema = f"boeket_load_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        db = Database.connect(url, schema=schema)
        try:
            await db.upgrade()
        finally:
            await db.dispose()
        yield schema
    finally:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def start_replicas(env: dict[str, str], tmp: Path, stack: AsyncExitStack) -> list[Replica]:
    replicas: list[Replica] = []

    async def stop() -> None:
        for r in replicas:
            if r.process.returncode is None:
                r.process.send_signal(signal.SIGTERM)
        for r in replicas:
            try:
                await asyncio.wait_for(r.process.wait(), 20)
            except TimeoutError:
                r.process.kill()
                await r.process.wait()

    stack.push_async_callback(stop)
    for i in range(REPLICAS):
        name, port = f"r{i}", free_port()
        log = tmp / f"{name}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                "run",
                cwd=ROOT,
                env={**env, "BOEKET_PORT": str(port), "BOEKET_WORKER_ID": name},
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        replicas.append(Replica(name, f"http://{HOST}:{port}", process, log))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        deadline = time.monotonic() + START_TIMEOUT_S
        for r in replicas:
            while True:
                if r.process.returncode is not None:
                    raise RuntimeError(f"{r.name} exited at start\n{r.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{r.name} not ready in {START_TIMEOUT_S:.0f} s\n{r.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(r.url + "/ready") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.2)
    return replicas


class Store:
    """Reads the bench's schema directly: prompts posted, contributions by marker."""

    def __init__(self, url: str, schema: str) -> None:
        self._url, self._schema = url, schema
        self._conn: Any = None

    async def __aenter__(self) -> Store:
        self._conn = await asyncpg.connect(self._url, server_settings={"search_path": self._schema})
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.close()

    async def prompts(self) -> dict[str, tuple[str, str]]:
        """Department -> (message id, round date) of each prompt posted."""
        rows = await self._conn.fetch(
            "SELECT department_id, message_id, round_date FROM occurrences"
            " WHERE step = 'prompt' AND status = 'sent' AND message_id IS NOT NULL"
        )
        return {r["department_id"]: (r["message_id"], r["round_date"].isoformat()) for r in rows}

    async def markers(self) -> Counter[int]:
        """How many contributions carry each request's marker (in their text or fields)."""
        rows = await self._conn.fetch("SELECT text, fields::text AS f FROM contributions")
        found: Counter[int] = Counter()
        for r in rows:
            marks = set(MARK.findall(r["text"] or "")) | set(MARK.findall(r["f"] or ""))
            for m in marks:
                found[int(m)] += 1
        return found

    async def total(self) -> int:
        return int(await self._conn.fetchval("SELECT count(*) FROM contributions"))


async def background_depth(session: aiohttp.ClientSession, replicas: list[Replica]) -> int:
    """Work waiting in the replicas' own queues (`boeket_queue_depth{queue="background"}`)."""
    total = 0
    for r in replicas:
        try:
            async with session.get(r.url + "/metrics") as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return -1
        for line in text.splitlines():
            if line.startswith('boeket_queue_depth{queue="background"}'):
                total += int(float(line.split()[-1]))
    return total


@dataclass(slots=True)
class Check:
    """What the requests of some steps should have left behind, against what they did."""

    stored_expected: set[int] = field(default_factory=set)  # originals acknowledged
    stored_maybe: set[int] = field(default_factory=set)  # sent, never acknowledged
    opened_expected: set[str] = field(default_factory=set)  # trigger ids acknowledged
    retries: int = 0

    def add(self, samples: list[Sample]) -> None:
        for s in samples:
            if s.kind in STORING or s.kind in {"slack_retry", "teams_retry"}:
                if s.ok:
                    self.stored_expected.add(s.original)
                else:
                    self.stored_maybe.add(s.original)
                self.retries += s.kind in {"slack_retry", "teams_retry"}
            elif s.kind in OPENING and s.ok:
                self.opened_expected.add(f"trig-load-{s.original}")


@dataclass(slots=True)
class Integrity:
    expected: int
    stored: int
    lost: int
    doubled: int
    unacked: int  # sent, never acknowledged (timeouts): may or may not be stored
    unacked_stored: int
    modals_expected: int
    modals_opened: int
    modals_doubled: int
    drained_s: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.doubled == 0
            and self.modals_opened == self.modals_expected
            and self.modals_doubled == 0
        )


async def drain(check: Check, store: Store, fake: FakeSlack, replicas: list[Replica]) -> Integrity:
    """Wait (bounded) until what was acknowledged is stored and opened, then count it."""
    started = time.monotonic()
    note = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            found = await store.markers()
            opened = Counter(str(c.args.get("trigger_id")) for c in fake.of("views.open"))
            missing = [i for i in check.stored_expected if found[i] == 0]
            unopened = [t for t in check.opened_expected if opened[t] == 0]
            busy = await background_depth(session, replicas)
            if not missing and not unopened and busy == 0:
                break
            if time.monotonic() - started > DRAIN_TIMEOUT_S:
                note = (
                    f"after {DRAIN_TIMEOUT_S:.0f} s still {len(missing)} not stored, "
                    f"{len(unopened)} modals not opened, {busy} background tasks"
                )
                break
            await asyncio.sleep(0.25)
    waited = time.monotonic() - started
    wanted = check.stored_expected | check.stored_maybe
    return Integrity(
        expected=len(check.stored_expected),
        stored=sum(1 for i in check.stored_expected if found[i]),
        lost=sum(1 for i in check.stored_expected if found[i] == 0),
        doubled=sum(1 for i in wanted if found[i] > 1),
        unacked=len(check.stored_maybe - check.stored_expected),
        unacked_stored=sum(1 for i in check.stored_maybe - check.stored_expected if found[i]),
        modals_expected=len(check.opened_expected),
        modals_opened=sum(1 for t in check.opened_expected if opened[t]),
        modals_doubled=sum(1 for t in check.opened_expected if opened[t] > 1),
        drained_s=waited,
        note=note,
    )


# --- reporting ----------------------------------------------------------------------------------


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list; NaN when empty."""
    if not sorted_ms:
        return math.nan
    return sorted_ms[max(1, math.ceil(q * len(sorted_ms))) - 1]


@dataclass(slots=True)
class Step:
    rate: float
    result: JobResult
    integrity: Integrity
    cpu_s: list[float]

    @property
    def errors(self) -> int:
        return sum(1 for s in self.result.samples if not s.ok)

    @property
    def acks(self) -> list[float]:
        return sorted(s.ack_ms for s in self.result.samples)

    @property
    def passed(self) -> bool:
        return (
            self.errors == 0 and percentile(self.acks, 0.99) < TARGET_P99_MS and self.integrity.ok
        )


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_step(step: Step) -> None:
    samples = step.result.samples
    acks = step.acks
    lags = sorted(s.lag_ms for s in samples)
    sent = len(samples)
    answered = sum(1 for s in samples if s.ok)
    wall = step.result.wall_s or math.nan
    cpu = " + ".join(f"{c / max(sent, 1) * 1000:.1f}" for c in step.cpu_s)
    print(
        f"{step.rate:>7.0f} {sent:>7} {step.errors:>6} {sent / wall:>8.1f} {answered / wall:>8.1f} "
        f"{percentile(acks, 0.5):>8.1f} {percentile(acks, 0.95):>8.1f} "
        f"{percentile(acks, 0.99):>8.1f} {(acks[-1] if acks else math.nan):>8.1f} "
        f"{percentile(lags, 0.99):>8.1f} {cpu:>13}  {'yes' if step.passed else 'NO'}"
    )


def print_header() -> None:
    header = (
        f"{'req/s':>7} {'sent':>7} {'errors':>6} {'sent/s':>8} {'acked/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lag p99':>8} "
        f"{'cpu ms/req':>13}  ok"
    )
    print(header)
    print("-" * len(header))


def print_details(step: Step) -> None:
    samples = step.result.samples
    by_kind: dict[str, list[Sample]] = {}
    for s in samples:
        by_kind.setdefault(s.kind, []).append(s)
    parts = []
    for kind in KINDS:
        if kind in by_kind:
            acks = sorted(s.ack_ms for s in by_kind[kind])
            bad = sum(1 for s in by_kind[kind] if not s.ok)
            parts.append(
                f"{kind} {len(acks)}{f' ({bad} errors)' if bad else ''} "
                f"p99 {percentile(acks, 0.99):.0f} max {acks[-1]:.0f}"
            )
    print("         by kind (ms): " + "; ".join(parts))
    per_replica = Counter(s.replica for s in samples)
    print(
        "         per replica: "
        + ", ".join(f"r{r} {n}" for r, n in sorted(per_replica.items()))
        + (
            "; failures: "
            + ", ".join(
                f"{k} x{n}" for k, n in Counter(s.status for s in samples if not s.ok).most_common()
            )
            if step.errors
            else ""
        )
    )
    i = step.integrity
    verdict = "OK" if i.ok else "MISMATCH"
    print(
        f"         stored: {i.stored} of {i.expected} acknowledged contributions "
        f"(lost {i.lost}, doubled {i.doubled}; of {i.unacked} never acknowledged "
        f"{i.unacked_stored} were stored anyway); "
        f"modals opened {i.modals_opened} of {i.modals_expected} (doubled {i.modals_doubled}); "
        f"drained {i.drained_s:.1f} s after the last answer -> {verdict}"
        + (f"; {i.note}" if i.note else "")
    )


# --- the run ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM unwinds like Ctrl-C: replicas stopped, schema dropped
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    _raise_open_files()  # inherited by the replicas
    rates: list[float] = args.rates
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()} "
        f"({platform.platform()}), aiohttp {aiohttp.__version__}"
    )
    print(
        f"{REPLICAS} replicas (`boeket run`) on PostgreSQL, embedder {args.embedder}; rates "
        f"{', '.join(f'{r:g}' for r in rates)} req/s, {args.duration:g} s each, open loop; "
        f"timeout {args.timeout:g} s; target p99 < {TARGET_P99_MS:.0f} ms with zero errors"
    )
    print(f"mix per 40 requests: {', '.join(f'{k} {n}' for k, n in MIX.items())}")
    print(f"load average at start: {load_average()} (other work on the machine skews the numbers)")

    fake_slack, connector = FakeSlack(), FakeConnector()
    login = FakeLogin(tenant=TENANT, client_id=APP_ID, client_secret=APP_SECRET)
    spawn = get_context("spawn")
    steps: list[Step] = []
    async with AsyncExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=1, mp_context=spawn))
        warm = asyncio.get_running_loop().run_in_executor(pool, _raise_open_files)
        fake_slack.server = await serve_fake(fake_slack.app(), stack)
        connector.server = await serve_fake(connector.app(), stack)
        login.server = await serve_fake(login.app(), stack)
        schema = await stack.enter_async_context(fresh_schema(args.database_url))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="boeket-load-")))
        config = tmp / "lastproef.yaml"
        config.write_text(yaml.safe_dump(load_config(datetime.now(UTC))), encoding="utf-8")
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "BOEKET_DATABASE_URL": args.database_url,
            "BOEKET_DATABASE_SCHEMA": schema,
            "BOEKET_CONFIG": str(config),
            "BOEKET_TICK_SECONDS": "1",
            "BOEKET_AUTO_MIGRATE": "false",
            "BOEKET_LOG_LEVEL": "WARNING",
            "BOEKET_EMBEDDER": args.embedder,
            "BOEKET_SECRET": "load-bench-secret-0123456789",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "BOEKET_SLACK_API_URL": fake_slack.api_url,
            "TEAMS_CLIENT_ID": APP_ID,
            "TEAMS_CLIENT_SECRET": APP_SECRET,
            "TEAMS_TENANT_ID": TENANT,
            "TEAMS_OPENID_METADATA_URL": login.metadata_url,
            "TEAMS_LOGIN_URL": login.url,
        }
        for name in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_APP_TOKEN", "TEAMS_DEV_MODE"):
            env.pop(name, None)
        started = time.monotonic()
        replicas = await start_replicas(env, tmp, stack)
        print(
            f"replicas ready in {time.monotonic() - started:.1f} s: "
            + ", ".join(f"{r.name} {r.url}" for r in replicas)
        )
        store = await stack.enter_async_context(Store(args.database_url, schema))

        # Teams: the app is added to the team and its channels are announced (the references
        # the prompts need), with a token as the Bot Connector sends it.
        service_url = connector.url
        token = login.token(service_url=service_url, lifetime=4 * 3600)
        async with aiohttp.ClientSession() as session:
            for name, channel in [("install_team", TEAM)] + [
                ("channel_created", c) for c in TEAMS_DEPARTMENTS.values()
            ]:
                text = (FIXTURES / f"{name}.json").read_text(encoding="utf-8")
                for key, value in {
                    "SERVICE_URL": service_url,
                    "TENANT": TENANT,
                    "BOT_APP_ID": APP_ID,
                    "CHANNEL": channel,
                }.items():
                    text = text.replace(key, value)
                async with session.post(
                    replicas[0].url + "/api/messages",
                    data=text.encode(),
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": f"Bearer {token}",
                    },
                ) as response:
                    if response.status >= 300:
                        print(f"Teams install answered {response.status}: {await response.text()}")
                        return 1

            # The replicas' timers post the four prompts.
            deadline = time.monotonic() + START_TIMEOUT_S
            departments = set(SLACK_DEPARTMENTS) | set(TEAMS_DEPARTMENTS)
            while set(posted := await store.prompts()) != departments:
                if time.monotonic() > deadline:
                    print(f"prompts posted: {sorted(posted)} of {sorted(departments)}")
                    print("\n".join(r.tail() for r in replicas))
                    return 1
                await asyncio.sleep(0.2)
            round_date = next(iter(posted.values()))[1]

            # The answer dialog's submit data, as Teams would send it back.
            channel = TEAMS_DEPARTMENTS["ta"]
            targets = Targets(
                replicas=tuple(r.url for r in replicas),
                slack_threads={c: posted[d][0] for d, c in SLACK_DEPARTMENTS.items()},
                round_date=round_date,
                teams_roots={c: posted[d][0] for d, c in TEAMS_DEPARTMENTS.items()},
                teams_token=token,
                service_url=service_url,
                response_url=fake_slack.response_url,
                submit_template={},
                timeout_s=args.timeout,
            )
            path, body, headers = build(targets, "teams_fetch", 0)
            async with session.post(replicas[1].url + path, data=body, headers=headers) as r:
                dialog = await r.json()
            card = dialog["task"]["value"]["card"]["content"]
            actions = list(card.get("actions", []))
            for element in card["body"]:
                if element.get("type") == "ActionSet":
                    actions += element["actions"]
            [submit] = [a for a in actions if a["type"] == "Action.Submit"]
            targets = dataclasses.replace(targets, submit_template=submit["data"])
            del channel
        await warm

        check = Check()
        index = 1
        print(f"prompts posted; round {round_date}\n")
        # Warm-up, not reported: connections, caches, the generator process.
        warmup = Job(targets, 20.0, 4 * len(PATTERN), index)
        index += warmup.count
        warm_result = await asyncio.get_running_loop().run_in_executor(pool, run_job, warmup)
        check.add(warm_result.samples)
        await drain(check, store, fake_slack, replicas)

        print_header()
        for rate in rates:
            job = Job(targets, rate, max(1, round(rate * args.duration)), index)
            index += job.count
            cpu = [r.cpu_s() for r in replicas]
            result = await asyncio.get_running_loop().run_in_executor(pool, run_job, job)
            cpu = [r.cpu_s() - c for r, c in zip(replicas, cpu, strict=True)]
            step_check = Check()
            step_check.add(result.samples)
            check.add(result.samples)
            integrity = await drain(step_check, store, fake_slack, replicas)
            step = Step(rate, result, integrity, cpu)
            steps.append(step)
            print_step(step)
            print_details(step)
            if any(r.process.returncode is not None for r in replicas):
                print("a replica exited:\n" + "\n".join(r.tail() for r in replicas))
                break
            if not step.passed and not args.keep_going:
                break

        final = await drain(check, store, fake_slack, replicas)
        total = await store.total()
        print(
            f"\nall steps and the warm-up: {final.expected} contributions acknowledged, "
            f"{final.stored} of them stored (lost {final.lost}, doubled {final.doubled}); "
            f"{final.unacked_stored} of {final.unacked} never acknowledged were stored too; "
            f"{check.retries} of the requests were redeliveries to the other replica; "
            f"{total} contributions in the database; modals {final.modals_opened} of "
            f"{final.modals_expected} (doubled {final.modals_doubled}) -> "
            f"{'OK' if final.ok else 'MISMATCH'}"
        )
        print(
            "fake Slack API calls: "
            + ", ".join(
                f"{m} {n}" for m, n in sorted(Counter(c.method for c in fake_slack.calls).items())
            )
        )
        print(
            "fake Bot Connector calls: "
            + ", ".join(
                f"{k} {n}" for k, n in sorted(Counter(c.kind for c in connector.calls).items())
            )
            + f"; Entra tokens issued {len(login.issued)}, key set fetched {login.key_fetches}x"
        )
        print(f"load average at the end: {load_average()}")
        passed = [s.rate for s in steps if s.passed]
        best = max(passed, default=None)
        print(
            f"\nhighest rate with p99 < {TARGET_P99_MS:.0f} ms and zero errors: "
            + (f"{best:g} req/s" if best is not None else "none of the rates tried")
        )
        if best is not None and len(replicas):
            print(f"  that is {best / len(replicas):g} req/s per replica on {os.cpu_count()} CPUs")
        return 0 if best is not None and final.ok else 1
    return 1  # pragma: no cover - the exit stack does not swallow exceptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",") if x.strip()],
        default=[10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0],
        help="request rates per second, comma-separated (default 10,20,40,...,640)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per rate (15)")
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds before a request counts as failed (3)"
    )
    parser.add_argument(
        "--embedder",
        default="lexical",
        help="the replicas' BOEKET_EMBEDDER (default lexical: the model's embeddings would "
        "take the two replicas' CPU for minutes after the acks)",
    )
    parser.add_argument("--database-url", default=POSTGRES_URL)
    parser.add_argument(
        "--keep-going", action="store_true", help="run every rate, also after one failed"
    )
    args = parser.parse_args(argv)
    if not args.rates or min(args.rates) <= 0 or max(args.rates) > 5000:
        parser.error("--rates: each rate must be above 0 and at most 5000")
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if not 0.1 <= args.timeout <= 60:
        parser.error("--timeout must be between 0.1 and 60 seconds")
    return args


def main() -> int:
    args = parse_args()
    try:
        return asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped before the end", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
