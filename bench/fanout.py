"""Fan-out: one wave of prompts to N Slack channels against Slack's rate limits.

The fake Slack Web API (tests/fakes/slack_api.py, a real HTTP server) enforces about one message per
second per channel and a workspace-wide rate, answering 429 with Retry-After like Slack. Boeket
plans the wave (every department's prompt due at once) and its cycle posts it through the real
Slack adapter and slack_sdk. Reported: the time against the lower bound the limits allow, the 429s,
lost and duplicate posts, and memory.

    .venv/bin/python bench/fanout.py                  # 2,000 channels, 50 messages/s workspace
    .venv/bin/python bench/fanout.py --channels 500 --workspace-rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.slack.settings import SlackSettings
from bot.app import build
from bot.clock import ManualClock
from bot.config import parse_config
from bot.domain import OccurrenceStatus, Step
from bot.embedders import LexicalEmbedder
from bot.settings import Settings
from storage.repositories import OccurrenceRepository
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

# Monday 1 March 2027 07:30 in Amsterdam: the prompt for Tuesday's 07:30 meetings is due.
WAVE_AT = datetime(2027, 3, 1, 6, 30, tzinfo=UTC)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Limits:
    """Slack-like limits on chat.postMessage: per channel and for the whole workspace."""

    def __init__(self, per_channel_seconds: float, workspace_rate: float) -> None:
        self.per_channel = per_channel_seconds
        self.workspace_rate = workspace_rate
        self.last: dict[str, float] = {}
        self.window: collections.deque[float] = collections.deque()
        self.refused = 0

    def allow(self, channel: str) -> float:
        """0 when the call may go through, else the seconds to tell the caller to wait."""
        now = time.monotonic()
        while self.window and self.window[0] <= now - 1.0:
            self.window.popleft()
        if len(self.window) >= self.workspace_rate:
            return max(1.0, self.window[0] + 1.0 - now)
        if now - self.last.get(channel, -1e9) < self.per_channel:
            return self.per_channel - (now - self.last[channel])
        self.last[channel] = now
        self.window.append(now)
        return 0.0


def limited(fake: FakeSlack, limits: Limits) -> web.Application:
    app = fake.app()

    @web.middleware
    async def enforce(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/chat.postMessage"):
            if request.content_type == "application/json":
                channel = str((await request.json()).get("channel", ""))
            else:
                channel = str((await request.post()).get("channel", ""))
            wait = limits.allow(channel)
            if wait > 0:
                limits.refused += 1
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(enforce)
    return app


def config(channels: int) -> Any:
    return parse_config(
        {
            "organisation": {"id": "fanout", "name": "Fan-out"},
            "departments": [
                {
                    "id": f"d{i:05d}",
                    "name": f"Afdeling {i}",
                    "platform": "slack",
                    "channel": f"C{i:08d}",
                    "meeting": {"weekday": "dinsdag", "time": "07:30", "duration": "30m"},
                }
                for i in range(channels)
            ],
            "cross_department": {"platform": "local", "channel": "leren"},
            "cycle": {
                "lead_time": "1d",
                "rotation": ["succes", "les"],
                "reminder": None,
                "followup": None,
            },
        },
        Path("fanout.yaml"),
    )


async def run(args: argparse.Namespace) -> int:
    fake = FakeSlack()
    limits = Limits(args.per_channel_seconds, args.workspace_rate)
    server = TestServer(limited(fake, limits))
    await server.start_server()
    fake.server = server
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{Path(folder) / 'fanout.sqlite3'}"
        clock = ManualClock(WAVE_AT)
        boeket = build(
            Settings(
                database_url=url,
                worker_id="fanout",
                slack=SlackSettings(
                    signing_secret="s" * 32,
                    bot_token=BOT_TOKEN,
                    api_url=fake.api_url,
                    pace_seconds=args.per_channel_seconds,
                    workspace_rate=args.pace_workspace,
                ),
            ),
            config(args.channels),
            clock=clock,
            embedder=LexicalEmbedder(),
        )
        await boeket.start(timer=False)
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        ticks = 0
        try:
            while True:
                ticks += 1
                await boeket.cycle.tick(WAVE_AT)
                occurrences = await OccurrenceRepository(boeket.db).all("fanout")
                prompts = [o for o in occurrences if o.step is Step.PROMPT]
                if not prompts:
                    print("no prompt was due: check the wave's time", file=sys.stderr)
                    break
                if all(o.status is not OccurrenceStatus.PENDING for o in prompts):
                    break
                if time.perf_counter() - started > args.timeout:
                    print("timed out", file=sys.stderr)
                    break
            elapsed = time.perf_counter() - started
        finally:
            await boeket.stop()
            await server.close()
    # Refused calls never reach the fake, so what it recorded is what Slack accepted.
    posts = collections.Counter(str(c.args.get("channel")) for c in fake.of("chat.postMessage"))
    channels = [f"C{i:08d}" for i in range(args.channels)]
    lost = sum(1 for c in channels if posts[c] == 0)
    duplicates = sum(n - 1 for n in posts.values() if n > 1)
    unsent = sum(1 for o in prompts if o.status is not OccurrenceStatus.SENT)
    bound = args.channels / args.workspace_rate
    print(f"channels                 {args.channels}")
    print(
        f"limits                   1 per {args.per_channel_seconds:g} s per channel, "
        f"{args.workspace_rate:g} per s workspace-wide"
    )
    print(f"wave posted in           {elapsed:8.1f} s  ({ticks} ticks)")
    print(f"lower bound              {bound:8.1f} s")
    print(f"ratio to the bound       {elapsed / bound:8.2f}x  (target <= 1.2x)")
    print(f"429s answered            {limits.refused:8d}")
    print(f"lost                     {lost:8d}  (occurrences not marked sent: {unsent})")
    print(f"duplicates               {duplicates:8d}")
    print(f"peak RSS                 {rss_mb():8.0f} MB  (before the wave {before:.0f} MB)")
    return 0 if lost == 0 and duplicates == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--channels", type=int, default=2000)
    parser.add_argument("--workspace-rate", type=float, default=50.0)
    parser.add_argument("--per-channel-seconds", type=float, default=1.0)
    parser.add_argument(
        "--pace-workspace",
        type=float,
        default=None,
        help="SLACK_WORKSPACE_RATE for Boeket (default: the workspace rate; 0: no pacing)",
    )
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    if args.pace_workspace is None:
        args.pace_workspace = args.workspace_rate
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
