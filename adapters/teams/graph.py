"""Reading Boeket's own posts back from a team's channel with Microsoft Graph.

The Bot Connector cannot list a channel's messages, so after a crash between Teams accepting a
post and Boeket recording it, the post is looked for in Graph: `GET /v1.0/teams/{team}/channels/
{channel}/messages` (or `…/messages/{root}/replies` for a reply in a thread), with an app-only
token (client credentials, scope `{graph}/.default`). That is allowed by the resource-specific
consent permission `ChannelMessage.Read.Group`, which the app package asks for and a team owner
grants when adding (or updating) the app in the team. Graph returns a message's Adaptive Card as
a JSON string in `attachments[].content`; the post's idempotency key is in it (`cards.keyed_card`).

Graph's team id is the team's Microsoft 365 group id (`channelData.team.aadGroupId` of the
install activity); its channel ids are the Bot Framework's (`19:…@thread.tacv2`), and a channel
message's id is the activity id Teams gave the post.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import ClientError

from adapters.teams import cards
from adapters.teams.auth import HttpSession
from adapters.teams.delivery import with_retries

log = logging.getLogger(__name__)

PAGE = 50  # Graph's largest $top for channel messages
MAX_PAGES = 40  # 2000 messages since the post was due: far more than a lease lets pass
CLOCK_SKEW = timedelta(minutes=5)  # Microsoft's clock is not ours
RETRYABLE = frozenset({429, 500, 502, 503, 504})
CONSENT_ADVICE = (
    "A team owner must consent to Boeket's permission ChannelMessage.Read.Group: update the "
    "Boeket app in the team with a package built by `boeket teams package` (Teams: Apps → "
    "Manage your apps → Update, or remove the app from the team and add it again) and accept "
    "the permissions it asks for. Until then a post whose replica died before recording it may "
    "appear twice in this team's channels."
)


class GraphError(Exception):
    """Graph answered `status` (with its headers, for `Retry-After`)."""

    def __init__(self, status: int, headers: Mapping[str, str], code: str = "") -> None:
        super().__init__(f"Microsoft Graph answered {status} {code}".strip())
        self.status = status
        self.headers = headers
        self.code = code


def _status(exc: BaseException) -> tuple[int, Mapping[str, str] | None] | None:
    return (exc.status, exc.headers) if isinstance(exc, GraphError) else None


def _moment(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def carries_key(message: Mapping[str, Any], key: str, app_id: str) -> bool:
    """Whether a Graph chatMessage is Boeket's post with `key` in its card."""
    sender = message.get("from")
    application = sender.get("application") if isinstance(sender, dict) else None
    if not isinstance(application, dict) or str(application.get("id", "")).lower() != app_id:
        return False
    attachments = message.get("attachments")
    for attachment in attachments if isinstance(attachments, list) else []:
        if not isinstance(attachment, dict):
            continue
        if attachment.get("contentType") != cards.CARD_CONTENT_TYPE:
            continue
        content = attachment.get("content")
        try:
            card = json.loads(content) if isinstance(content, str) else content
        except ValueError:
            continue
        if cards.card_key(card) == key:
            return True
    return False


class ChannelMessages:
    """Finds Boeket's post with a given key among a team channel's messages, through Graph."""

    def __init__(
        self,
        *,
        graph_url: str,
        app_id: str,
        token: Callable[[], Awaitable[str]],
        http: HttpSession,
        attempts: int,
        backoff: float,
    ) -> None:
        self._base = graph_url.rstrip("/")
        self._app_id = app_id.lower()
        self._token = token
        self._http = http
        self._attempts = attempts
        self._backoff = backoff
        self._refused: set[str] = set()  # teams whose 403 was logged

    async def find(
        self, team: str, channel: str, key: str, since: datetime, *, thread_id: str | None
    ) -> str | None:
        """The id of the message (or reply in `thread_id`) with `key`, posted since `since`.

        None when it is not there, and when Graph cannot tell: no consent (403, logged once per
        team with what to do), or another refusal (logged). Throttling and server errors are
        retried; when they last, `GraphError` is raised, so the post waits for a later attempt
        rather than risking a second copy.
        """
        path = f"/v1.0/teams/{quote(team, safe='')}/channels/{quote(channel, safe='')}/messages"
        if thread_id:
            path += f"/{quote(thread_id, safe='')}/replies"
        url: str | None = f"{self._base}{path}?$top={PAGE}"
        oldest = since - CLOCK_SKEW
        try:
            for _ in range(MAX_PAGES):
                if url is None:
                    return None
                page = await self._page(url)
                messages = page.get("value")
                listed = [m for m in messages if isinstance(m, dict)] if messages else []
                for message in listed:
                    if carries_key(message, key, self._app_id):
                        return str(message.get("id") or "") or None
                newest = [
                    moment
                    for m in listed
                    for moment in (
                        _moment(m.get("createdDateTime")),
                        _moment(m.get("lastModifiedDateTime")),
                    )
                    if moment is not None
                ]
                # Graph lists the newest first: a page with nothing since `since` ends the search.
                if listed and newest and max(newest) < oldest:
                    return None
                url = self._next(page.get("@odata.nextLink"))
        except GraphError as exc:
            if exc.status in RETRYABLE:
                raise
            if exc.status == 403:
                if team not in self._refused:
                    self._refused.add(team)
                    log.warning(
                        "Teams: Microsoft Graph refused to list the messages of channel %s in "
                        "team %s (403 %s). %s",
                        channel,
                        team,
                        exc.code,
                        CONSENT_ADVICE,
                    )
                return None
            log.warning(
                "Teams: could not look for %s in channel %s through Microsoft Graph (%s); "
                "posting it as if it were not there",
                key,
                channel,
                exc,
            )
            return None
        except (ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "Teams: could not reach Microsoft Graph at %s (%s); posting %s as if it were not "
                "there",
                self._base,
                type(exc).__name__,
                key,
            )
            return None
        return None

    def _next(self, link: Any) -> str | None:
        """The next page, only on Graph's own host: the token must not travel anywhere else."""
        if not isinstance(link, str) or not link:
            return None
        ours, theirs = urlsplit(self._base), urlsplit(link)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            log.warning("Teams: Microsoft Graph's next page is on another host; not followed")
            return None
        return link

    async def _page(self, url: str) -> dict[str, Any]:
        async def call() -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {await self._token()}"}
            async with self._http.get().get(url, headers=headers) as response:
                text = await response.text()
                try:
                    body = json.loads(text)
                except ValueError:
                    body = None  # a gateway's HTML page: the status says enough
                if response.status != 200:
                    error = body.get("error") if isinstance(body, dict) else None
                    code = error.get("code", "") if isinstance(error, dict) else ""
                    raise GraphError(response.status, response.headers, str(code))
            if not isinstance(body, dict):
                raise ValueError("Microsoft Graph did not answer a JSON object")
            return body

        return await with_retries(
            call,
            status_of=_status,
            attempts=self._attempts,
            base=self._backoff,
            retryable=RETRYABLE,
        )
