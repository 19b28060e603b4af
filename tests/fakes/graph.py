"""A fake of Microsoft Graph's channel messages: a real aiohttp server on port 0.

It serves `GET /v1.0/teams/{team}/channels/{channel}/messages` and `…/messages/{id}/replies`
from what the fake Bot Connector accepted: each new channel thread (`POST /v3/conversations`) is
a message, each reply in it a reply, with the latest update's card. As Graph does, it lists the
newest first, 50 at most per page with an `@odata.nextLink`, gives `createdDateTime` and
`lastModifiedDateTime`, names the bot as the sender (`from.application`), and returns an
Adaptive Card as a JSON *string* in `attachments[].content`. A request must carry a token the
fake login issued for this server's scope (`{url}/.default`): else 401.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.microsoft_login import FakeLogin
from tests.fakes.teams_connector import Call, FakeConnector

MAX_TOP = 50


@dataclass
class GraphRequest:
    path: str
    query: dict[str, str]
    authorization: str
    status: int = 200


@dataclass
class FakeGraph:
    connector: FakeConnector
    login: FakeLogin
    app_id: str
    teams: dict[str, set[str]] = field(default_factory=dict)  # group id → its channel ids
    server: TestServer | None = None
    requests: list[GraphRequest] = field(default_factory=list)
    failures: list[tuple[int, int]] = field(default_factory=list)  # (status, times)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/")).rstrip("/")

    def fail(self, status: int, *, times: int = 1) -> None:
        self.failures.append((status, times))

    def _failure(self) -> int | None:
        for i, (status, times) in enumerate(self.failures):
            if times > 0:
                self.failures[i] = (status, times - 1)
                return status
        return None

    @staticmethod
    def _stamp(moment: datetime) -> str:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _message(self, call: Call, message_id: str, reply_to: str | None) -> dict[str, Any]:
        body = call.body.get("activity", call.body)
        modified = call.at
        for update in self.connector.of("update"):
            if update.activity_id == message_id:
                body, modified = update.body, update.at
        attachments = [
            {
                "id": f"{message_id}-{i}",
                "contentType": a.get("contentType"),
                "contentUrl": None,
                "content": json.dumps(a.get("content")),
                "name": None,
                "thumbnailUrl": None,
            }
            for i, a in enumerate(body.get("attachments") or [])
        ]
        return {
            "id": message_id,
            "replyToId": reply_to,
            "messageType": "message",
            "createdDateTime": self._stamp(call.at),
            "lastModifiedDateTime": self._stamp(modified),
            "deletedDateTime": None,
            "summary": body.get("summary"),
            "from": {
                "application": {
                    "id": self.app_id,
                    "displayName": "Boeket",
                    "applicationIdentityType": "bot",
                },
                "device": None,
                "user": None,
            },
            "body": {"contentType": "html", "content": '<attachment id="0"></attachment>'},
            "attachments": attachments,
        }

    def _posts(self, channel: str) -> list[dict[str, Any]]:
        return [
            self._message(c, str(c.answer["activityId"]), None)
            for c in self.connector.of("create")
            if (c.body.get("channelData") or {}).get("channel", {}).get("id") == channel
        ]

    def _replies(self, channel: str, root: str) -> list[dict[str, Any]]:
        return [
            self._message(c, str(c.answer["id"]), root)
            for c in self.connector.of("reply")
            if c.conversation == f"{channel};messageid={root}" and c.activity_id == root
        ]

    async def _list(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        authorization = request.headers.get("Authorization", "")
        seen = GraphRequest(request.path, query, authorization)
        self.requests.append(seen)
        token = authorization.removeprefix("Bearer ")
        if self.login.scopes.get(token) != f"{self.url}/.default":
            seen.status = 401
            return web.json_response(
                {"error": {"code": "InvalidAuthenticationToken", "message": "fake"}}, status=401
            )
        failure = self._failure()
        if failure is not None:
            seen.status = failure
            code = {403: "Forbidden", 429: "TooManyRequests"}.get(failure, "ServiceError")
            headers = {"Retry-After": "0"} if failure == 429 else {}
            return web.json_response(
                {"error": {"code": code, "message": "fake"}}, status=failure, headers=headers
            )
        team, channel = request.match_info["team"], request.match_info["channel"]
        if channel not in self.teams.get(team, set()):
            seen.status = 404
            return web.json_response({"error": {"code": "NotFound", "message": "fake"}}, status=404)
        root = request.match_info.get("message")
        listed = self._replies(channel, root) if root else self._posts(channel)
        listed.sort(key=lambda m: m["lastModifiedDateTime"], reverse=True)
        top = min(int(query.get("$top", MAX_TOP)), MAX_TOP)
        skip = int(query.get("$skiptoken", 0))
        page: dict[str, Any] = {"value": listed[skip : skip + top]}
        if skip + top < len(listed):
            page["@odata.nextLink"] = str(
                request.url.with_query({"$top": str(top), "$skiptoken": str(skip + top)})
            )
        return web.json_response(page)

    def app(self) -> web.Application:
        app = web.Application()
        base = "/v1.0/teams/{team}/channels/{channel}/messages"
        app.router.add_get(base, self._list)
        app.router.add_get(base + "/{message}/replies", self._list)
        return app
