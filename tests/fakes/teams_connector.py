"""A fake Bot Connector service: a real aiohttp server on port 0 that records what the bot sends.

Activities posted to Boeket carry ``serviceUrl`` = this server, so the Agents SDK's own connector
client talks to it: URL building, JSON encoding, error handling. Only Microsoft's cloud is replaced.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from aiohttp.test_utils import TestServer

Kind = Literal["create", "send", "reply", "update"]


@dataclass
class Call:
    kind: Kind
    conversation: str
    activity_id: str
    body: dict[str, Any]
    authorization: str
    status: int = 200
    answer: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when Teams received it


@dataclass
class Failure:
    kind: Kind
    status: int
    times: int
    retry_after: int | None = None


@dataclass
class FakeConnector:
    calls: list[Call] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    server: TestServer | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1700000000001))

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/"))

    def of(self, kind: Kind) -> list[Call]:
        """The calls of one kind that Teams accepted."""
        return [c for c in self.calls if c.kind == kind and c.status < 300]

    def attempts(self, kind: Kind) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    def fail(
        self, kind: Kind, status: int, *, times: int = 1, retry_after: int | None = None
    ) -> None:
        self.failures.append(Failure(kind, status, times, retry_after))

    def _failure(self, kind: Kind) -> Failure | None:
        for f in self.failures:
            if f.kind == kind and f.times > 0:
                f.times -= 1
                return f
        return None

    async def _record(
        self, request: web.Request, kind: Kind, conversation: str = "", activity_id: str = ""
    ) -> tuple[Call, web.Response | None]:
        body = await request.json()
        call = Call(
            kind,
            conversation,
            activity_id,
            body,
            request.headers.get("Authorization", ""),
            at=self.clock(),
        )
        self.calls.append(call)
        failure = self._failure(kind)
        if failure is None:
            return call, None
        call.status = failure.status
        headers = {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
        error = {
            403: "MessageWritesBlocked",
            404: "ConversationNotFound",
            429: "TooManyRequests",
        }.get(failure.status, "ServiceError")
        answer = web.json_response(
            {"error": {"code": error, "message": f"fake {failure.status}"}},
            status=failure.status,
            headers=headers,
        )
        return call, answer

    async def _create(self, request: web.Request) -> web.Response:
        call, failed = await self._record(request, "create")
        if failed is not None:
            return failed
        body = call.body
        channel = (body.get("channelData") or {}).get("channel", {}).get("id")
        if body.get("isGroup") and channel:
            activity_id = str(next(self._ids))
            call.answer = {"id": f"{channel};messageid={activity_id}", "activityId": activity_id}
        else:
            member = (body.get("members") or [{}])[0].get("id", "x")
            call.answer = {"id": f"a:1personal-{member}"}
        return web.json_response(call.answer, status=201)

    async def _send(self, request: web.Request) -> web.Response:
        conversation = request.match_info["conversation"]
        call, failed = await self._record(request, "send", conversation)
        if failed is not None:
            return failed
        call.answer = {"id": str(next(self._ids))}
        return web.json_response(call.answer, status=201)

    async def _reply(self, request: web.Request) -> web.Response:
        conversation = request.match_info["conversation"]
        activity_id = request.match_info["activity"]
        call, failed = await self._record(request, "reply", conversation, activity_id)
        if failed is not None:
            return failed
        call.answer = {"id": str(next(self._ids))}
        return web.json_response(call.answer, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        conversation = request.match_info["conversation"]
        activity_id = request.match_info["activity"]
        _, failed = await self._record(request, "update", conversation, activity_id)
        if failed is not None:
            return failed
        return web.json_response({"id": activity_id})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._reply)
        app.router.add_put("/v3/conversations/{conversation}/activities/{activity}", self._update)
        return app
