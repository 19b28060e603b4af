"""A fake Slack Web API: a real aiohttp server on port 0 that records what the bot sends.

The real slack_sdk client is pointed at it with ``base_url``, so the SDK's own code runs: request
encoding, error handling, rate-limit retries. Only Slack's cloud is replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-test-token"  # app-level: only for apps.connections.open (Socket Mode)


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str
    via: str = ""  # the path prefix the client was given (one per replica in replica tests)
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Posted:
    """A message the fake accepted: what conversations.history and .replies serve."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    metadata: dict[str, Any] | None
    at: float  # wall-clock time it arrived; `oldest` is compared with it (the ts are synthetic)


@dataclass
class Failure:
    method: str
    times: int
    status: int = 200
    error: str = ""
    retry_after: int = 1
    channel: str | None = None


@dataclass
class FakeSlack:
    """State of the fake: the calls received, the people it knows, failures to inject."""

    calls: list[Call] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    private_channels: set[str] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    server: TestServer | None = None
    socket_url: str = ""  # what apps.connections.open hands out: a Socket Mode server's ws:// URL
    messages: list[Posted] = field(default_factory=list)
    # Seconds between accepting a chat.postMessage and answering it: posts in flight.
    post_delay: float = 0.0
    # Called with each accepted chat.postMessage before it is answered (e.g. to kill the poster).
    on_post: Callable[[Call], None] | None = None
    # While set and not yet open, accepted posts wait for it before they are answered.
    post_gate: asyncio.Event | None = None

    @property
    def api_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/api/"))

    @property
    def response_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/respond/1"))

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def api_url_for(self, via: str) -> str:
        """An API base URL whose calls are recorded with `via`, to tell clients apart."""
        assert self.server is not None
        return str(self.server.make_url(f"/{via}/api/"))

    def fail(
        self,
        method: str,
        *,
        times: int = 1,
        status: int = 200,
        error: str = "",
        retry_after: int = 1,
        channel: str | None = None,
    ) -> None:
        self.failures.append(Failure(method, times, status, error, retry_after, channel))

    def _failure(self, method: str, args: dict[str, Any]) -> Failure | None:
        for f in self.failures:
            if f.method == method and f.times > 0 and f.channel in {None, args.get("channel")}:
                f.times -= 1
                return f
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        # slack_sdk sends some arguments in the query string, others in a form or JSON body.
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(await request.post())
        for key in ("blocks", "view", "attachments", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        call = Call(method, args, token, request.match_info.get("via", ""))
        self.calls.append(call)
        failure = self._failure(method, args)
        if failure is not None:
            if failure.status == 429:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(failure.retry_after)},
                )
            return web.json_response({"ok": False, "error": failure.error}, status=failure.status)
        if method == "apps.connections.open":
            # Slack wants the app-level token here, and only here.
            if token == BOT_TOKEN:
                return web.json_response({"ok": False, "error": "not_allowed_token_type"})
            if token != APP_TOKEN:
                return web.json_response({"ok": False, "error": "invalid_auth"})
            return web.json_response({"ok": True, "url": self.socket_url})
        if token != BOT_TOKEN and method != "oauth.v2.access":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        answer = self._answer(method, args)
        if method == "chat.postMessage":
            if self.on_post is not None:
                self.on_post(call)
            if self.post_gate is not None:
                await self.post_gate.wait()
            if self.post_delay:
                await asyncio.sleep(self.post_delay)
        return web.json_response({"ok": True, **answer})

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        match method:
            case "auth.test":
                return {
                    "url": "https://boeket-test.slack.com/",
                    "team": "Test",
                    "user": "boeket",
                    "team_id": "T0TEST",
                    "user_id": "UBOEKET",
                    "bot_id": "BBOEKET",
                }
            case "chat.postMessage":
                ts = f"1700000000.{next(self._ts):06d}"
                metadata = args.get("metadata")
                self.messages.append(
                    Posted(
                        channel=str(args.get("channel")),
                        ts=ts,
                        thread_ts=args.get("thread_ts"),
                        text=str(args.get("text", "")),
                        metadata=metadata if isinstance(metadata, dict) else None,
                        at=time.time(),
                    )
                )
                return {"channel": args.get("channel"), "ts": ts, "message": {"ts": ts}}
            case "conversations.history" | "conversations.replies":
                return self._history(method, args)
            case "chat.update":
                return {"channel": args.get("channel"), "ts": args.get("ts")}
            case "chat.postEphemeral":
                return {"message_ts": f"1700000000.{next(self._ts):06d}"}
            case "views.open" | "views.publish" | "views.update":
                return {"view": {"id": f"V{next(self._ts):08d}", **(args.get("view") or {})}}
            case "users.info":
                user = args.get("user", "")
                known = self.users.get(str(user))
                if known is None:
                    return {"user": {"id": user, "name": user, "profile": {}}}
                return {"user": {"id": user, **known}}
            case "oauth.v2.access":
                return {
                    "access_token": BOT_TOKEN,
                    "token_type": "bot",
                    "scope": "chat:write,commands",
                    "bot_user_id": "UBOEKET",
                    "app_id": "A0BOEKET",
                    "team": {"name": "Test", "id": "T0TEST"},
                    "enterprise": None,
                    "authed_user": {"id": "U1"},
                    "is_enterprise_install": False,
                }
            case "conversations.open":
                return {"channel": {"id": f"D{args.get('users', 'X')}"}}
            case "conversations.info":
                channel = str(args.get("channel", ""))
                return {"channel": {"id": channel, "is_private": channel in self.private_channels}}
        return {}

    def _history(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's messages (history: no thread replies) or a thread's, newest first."""
        channel = str(args.get("channel"))
        oldest = float(args.get("oldest") or 0)
        if method == "conversations.history":
            found = [m for m in self.messages if m.channel == channel and m.thread_ts is None]
        else:
            ts = str(args.get("ts"))
            found = [
                m
                for m in self.messages
                if m.channel == channel and (m.ts == ts or m.thread_ts == ts)
            ]
        found = [m for m in found if m.at > oldest][::-1]
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        page = found[start : start + limit]
        with_metadata = str(args.get("include_all_metadata", "")).lower() in {"1", "true"}
        messages = [
            {
                "type": "message",
                "ts": m.ts,
                "text": m.text,
                **({"thread_ts": m.thread_ts} if m.thread_ts else {}),
                **({"metadata": m.metadata} if with_metadata and m.metadata else {}),
            }
            for m in page
        ]
        more = start + limit < len(found)
        return {
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    async def _respond(self, request: web.Request) -> web.Response:
        self.calls.append(Call("response_url", await request.json(), ""))
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/{via}/api/{method}", self._api)
        app.router.add_get("/{via}/api/{method}", self._api)
        app.router.add_post("/respond/{id}", self._respond)
        return app
