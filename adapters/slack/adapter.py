"""Slack: slack-bolt's AsyncApp mounted in Boeket's aiohttp application.

One endpoint, ``POST /slack/events``, takes events, slash commands and interactivity (or, with an
app-level token, Socket Mode). Bolt verifies the signature (five-minute replay window).

Slack's answer waits only for what must not be lost (``process_before_response``), and for no more:

- a thread reply is written to an inbox (``ON CONFLICT DO NOTHING`` on the event id; replies that
  arrive together share one INSERT) and acknowledged; the core stores it as a contribution
  afterwards, a few at a time, and an inbox left behind by a crash is worked off at the next
  start. The core's own key (the event id) keeps a retried or replayed delivery from being stored
  twice.
- `/deel`, buttons and App Home are acknowledged at once; their work (a modal, a whisper, a page)
  follows in tasks that `stop` waits for. Nothing in them needs to survive a crash: a modal's
  trigger is only valid for three seconds anyway.
- a form submission is stored before the answer, because validation errors travel in it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.slack import translate
from adapters.slack.settings import SlackSettings
from bot.background import InFlight
from bot.domain import ChannelRef, Person, PostedMessage
from bot.messages import (
    ButtonEvent,
    CommandEvent,
    Ephemeral,
    FormDone,
    FormErrors,
    HomeEvent,
    Message,
    Response,
    ShowForm,
    ShowHome,
)
from bot.observability import note_rate_limited
from bot.ports import EventHandler, PermanentDeliveryError

PLATFORM = "slack"
BOT_SCOPES = (
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "groups:history",
    "groups:read",
    "im:write",
    "users:read",
)
ACTIONS = re.compile(r"^boeket\.")
NAME_CACHE = 5000
INBOX = "inbox:"
# Messages handed to the core at the same time: each needs the database and perhaps the embedder,
# and the acknowledgements of the requests still arriving need the database too.
INBOX_WORKERS = 4
# Work after answers running at once (modals, whispers, replies to hand on); the rest wait their
# turn instead of all sharing the event loop with the next answers.
LATER_WORKERS = 8
# Bolt middleware for features Boeket does not use (workflow functions, AI assistant threads):
# each runs for every request, before the answer.
LEAN: dict[str, Any] = {
    "attaching_function_token_enabled": False,
    "attaching_conversation_kwargs_enabled": False,
}
INBOX_BATCH = 500  # entries per INSERT, well below SQLite's limit on bound parameters
# Every message Boeket posts with an idempotency key carries it in its metadata, as this event.
METADATA_EVENT = "boeket_post"
HISTORY_PAGE = 200
CLOCK_SKEW = timedelta(minutes=2)
log = logging.getLogger(__name__)

# Slack errors that retrying does not fix, with what the admin should do about each.
PERMANENT: dict[str, str] = {
    "channel_not_found": "Check the channel id in the organisation config (channel details, "
    "bottom of the About tab) and that the bot can see the channel.",
    "not_in_channel": "Invite the bot into the channel: type /invite @Boeket there.",
    "is_archived": "The channel is archived: unarchive it or map the department to another one.",
    "invalid_auth": "The bot token is not valid: reinstall the app and update SLACK_BOT_TOKEN.",
    "token_revoked": "The app was removed from the workspace: reinstall it.",
    "account_inactive": "The app was removed from the workspace: reinstall it.",
    "missing_scope": "The app lacks a scope: recreate it from `boeket slack manifest` and "
    "reinstall.",
    "restricted_action": "A workspace admin restricts posting in this channel.",
    "msg_too_long": "The message was too long for Slack.",
    "invalid_blocks": "Slack refused the message layout.",
    "team_access_not_granted": "The app is not installed in this workspace.",
}


def slack_error(exc: SlackApiError) -> str:
    """The error code of a failed call ("channel_not_found"), or the HTTP status."""
    response = exc.response
    data = getattr(response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"http_{getattr(response, 'status_code', '?')}"


class StateStorePort(Protocol):
    """Opaque JSON per key, here the inbox of thread replies not yet handed to the core."""

    async def add_many(self, values: Mapping[str, dict[str, Any]], now: datetime) -> set[str]: ...

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self, prefix: str = "") -> Sequence[str]: ...


class Inbox:
    """Writes the inbox entries of requests that arrive together in one transaction.

    Each acknowledgement waits for its entry to be committed. The first request starts a
    write; the ones that arrive while it runs go together in the next. Under load that is one
    INSERT for many requests instead of one each, so acknowledgements do not queue behind each
    other for the database (on SQLite: its single connection).
    """

    def __init__(self, state: StateStorePort, *, batch: int = INBOX_BATCH) -> None:
        self._state = state
        self._batch = batch
        self._waiting: list[tuple[str, dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, key: str, value: dict[str, Any]) -> bool:
        """Keep `value` under `key`; True when the key was new (not a delivery seen before)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, value, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._batch], self._waiting[self._batch :]
            values: dict[str, dict[str, Any]] = {}
            for key, value, _ in batch:
                values.setdefault(key, value)
            try:
                new = await self._state.add_many(values, datetime.now(UTC))
            except Exception as exc:  # every request of the batch answers with an error
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for key, _, done in batch:
                if not done.done():
                    done.set_result(key in new)
                new.discard(key)  # a second delivery in the same batch is not new

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


# The channel a post through `SlackAdapter._call` goes to, for its 429 retries (slack_sdk sends
# chat.postMessage as JSON, which its retry handlers do not get to see).
_POSTING_TO: ContextVar[str | None] = ContextVar("boeket_slack_posting_to", default=None)


def retry_after_seconds(response: HttpResponse) -> float:
    """Slack's Retry-After (whole seconds), else one second; plus up to a second of jitter."""
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0])) + random.random()  # noqa: S311 - jitter
            except ValueError:
                break
    return 1.0 + random.random()  # noqa: S311 - jitter


class PacedRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 after Retry-After, counted in /metrics; a post's retry queues in the pacer.

    slack_sdk's own handler sleeps and sends again at once, past the pacing: under a workspace
    limit every such retry takes the place of a paced post, which is refused in turn. Here the
    retry of a post takes the next free slot of its channel and of the workspace after the wait.
    """

    def __init__(
        self, wait: Callable[[str, float], Awaitable[None]], max_retry_count: int = 3
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._wait = wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:  # pragma: no cover - only 429 responses are retried here
            raise error or RuntimeError("no response to retry")
        note_rate_limited(PLATFORM)
        state.next_attempt_requested = True
        seconds = retry_after_seconds(response)
        channel = _POSTING_TO.get()
        if channel is None:
            await asyncio.sleep(seconds)
        else:
            await self._wait(channel, seconds)
        state.increment_current_attempt()


def _metadata(key: str | None) -> dict[str, Any] | None:
    """Message metadata that carries the idempotency key, found again by find_posted."""
    return {"event_type": METADATA_EVENT, "event_payload": {"key": key}} if key else None


def pacing_slot(last: float, now: float, interval: float) -> float:
    """When the next post in a channel may go: Slack allows about one message a second."""
    return max(now, last + interval)


class SlackAdapter:
    """Boeket on Slack, in HTTP mode inside Boeket's aiohttp app (or Socket Mode)."""

    platform = PLATFORM

    def __init__(
        self,
        settings: SlackSettings,
        *,
        engine: AsyncEngine | None = None,
        state: StateStorePort | None = None,
        close_label: str = "Annuleren",
        in_flight: InFlight | None = None,
    ) -> None:
        self._settings = settings
        self._in_flight = in_flight
        self._state = state
        self._inbox = Inbox(state) if state is not None else None
        self._pace_seconds = settings.pace_seconds
        self._close_label = close_label
        self._handler: EventHandler | None = None
        self._names: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._next_post: dict[str, float] = {}
        self._pace_lock = asyncio.Lock()
        self._next_any = 0.0
        self._clients: dict[str, AsyncWebClient] = {}
        self._privacy: dict[tuple[str, str], tuple[bool, float]] = {}
        self._pending: set[asyncio.Future[None]] = set()
        self._inbox_slots = asyncio.Semaphore(INBOX_WORKERS)
        self._later_slots = asyncio.Semaphore(LATER_WORKERS)
        self._session: aiohttp.ClientSession | None = None
        self._socket_handler: Any = None
        self._installations: AsyncSQLAlchemyInstallationStore | None = None
        self.client = self._new_client(settings.bot_token or None)
        if settings.mode == "multi":
            if engine is None:
                raise ValueError("several workspaces need the database for installations")
            self._installations = AsyncSQLAlchemyInstallationStore(
                client_id=settings.client_id, engine=engine
            )
            oauth = AsyncOAuthSettings(
                client_id=settings.client_id,
                client_secret=settings.client_secret,
                scopes=list(BOT_SCOPES),
                installation_store=self._installations,
                state_store=AsyncSQLAlchemyOAuthStateStore(
                    expiration_seconds=settings.state_expiration_seconds, engine=engine
                ),
                install_path="/slack/install",
                redirect_uri_path="/slack/oauth_redirect",
            )
            self.app = AsyncApp(
                signing_secret=settings.signing_secret,
                oauth_settings=oauth,
                client=self.client,
                process_before_response=True,
                **LEAN,
            )
        else:
            self.app = AsyncApp(
                signing_secret=settings.signing_secret,
                client=self.client,  # it carries the bot token
                process_before_response=True,
                **LEAN,
            )
        self._register()

    def _new_client(self, token: str | None) -> AsyncWebClient:
        # One HTTP session for every call (set at start): without it slack_sdk opens a new
        # session, and a new connection, per call. Bolt's per-request clients copy it from here.
        client = AsyncWebClient(token=token, base_url=self._settings.api_url, session=self._session)
        # 429s are safe to repeat (Slack did nothing); honour Retry-After, a few times.
        client.retry_handlers.append(PacedRateLimitRetryHandler(self._pace_after, 3))
        if not any(isinstance(h, AsyncConnectionErrorRetryHandler) for h in client.retry_handlers):
            client.retry_handlers.append(AsyncConnectionErrorRetryHandler())
        return client

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        self._session = aiohttp.ClientSession()
        self.client.session = self._session
        for client in self._clients.values():
            client.session = self._session
        await self._replay_inbox()
        if self._settings.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket_handler = AsyncSocketModeHandler(self.app, self._settings.app_token)
            await self._socket_handler.connect_async()
            log.info("Slack: connected in Socket Mode")
        else:
            log.info("Slack: listening at /slack/events (%s workspace mode)", self._settings.mode)

    def _later(self, call: Coroutine[Any, Any, Any], what: str = "a whisper to one person") -> None:
        """Run `call` after Slack has its answer, once the requests being answered have gone
        first (`InFlight.quiet`); `stop` waits for it."""
        queued = time.monotonic()

        async def run() -> None:
            started = False
            try:
                async with self._later_slots:
                    # Checked on getting a turn, not before: a quiet moment lets the first few
                    # go, and the rest look again when their turn comes.
                    if self._in_flight is not None:
                        await self._in_flight.quiet(queued)
                    started = True
                    await call
            except asyncio.CancelledError:
                if not started:
                    call.close()  # stopped before it began
                raise
            except SlackApiError as exc:
                log.warning("Slack: %s failed (%s)", what, slack_error(exc))
            except Exception:
                log.exception("Slack: %s failed", what)

        task = asyncio.ensure_future(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @property
    def busy(self) -> int:
        """Work still running after its acknowledgement (inbox, modals, whispers)."""
        return len(self._pending)

    async def settle(self) -> None:
        """Wait until the work after the acknowledgements is done, and what it started."""
        while self._pending:
            tasks = list(self._pending)
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pending.difference_update(tasks)  # their done-callbacks may not have run yet

    async def stop(self) -> None:
        if self._socket_handler is not None:
            await self._socket_handler.close_async()
            self._socket_handler = None
        await self.settle()
        if self._inbox is not None:
            await self._inbox.close()
        if self._session is not None:
            # Background work that still calls Slack after this gets a session per call again.
            for client in (self.client, *self._clients.values()):
                client.session = None
            await self._session.close()
            self._session = None

    def routes(self) -> list[web.AbstractRouteDef]:
        routes: list[web.AbstractRouteDef] = []
        if not self._settings.socket_mode:
            # Over a socket, Slack sends nothing here; and without a signing secret nothing
            # could be verified here.
            routes.append(web.post("/slack/events", self._dispatch))
        if self._settings.mode == "multi":
            routes += [
                web.get("/slack/install", self._install),
                web.get("/slack/oauth_redirect", self._oauth_redirect),
            ]
        return routes

    async def _install(self, request: web.Request) -> web.Response:
        """The "Add to Slack" page; its state is kept in the database (slack_oauth_states)."""
        flow = self.app.oauth_flow
        if flow is None:  # pragma: no cover - the route exists only in several-workspace mode
            raise web.HTTPNotFound()
        return await to_aiohttp_response(
            await flow.handle_installation(await to_bolt_request(request))
        )

    async def _oauth_redirect(self, request: web.Request) -> web.Response:
        """Slack sends the installer back here; the installation is stored (slack_installations)."""
        flow = self.app.oauth_flow
        if flow is None:  # pragma: no cover
            raise web.HTTPNotFound()
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    async def _dispatch(self, request: web.Request) -> web.Response:
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, TypeError, KeyError, AttributeError):
            # Not a body Slack sends (bolt parses before it checks the signature): refuse it.
            log.info("Slack: refused a request whose body is not a Slack payload")
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    # --- posting ------------------------------------------------------------------------------

    async def _client_for(self, workspace: str) -> AsyncWebClient:
        if self._installations is None:
            return self.client
        if workspace not in self._clients:
            bot = await self._installations.async_find_bot(enterprise_id=None, team_id=workspace)
            if bot is None or not bot.bot_token:
                raise PermanentDeliveryError(
                    f"no installation for workspace {workspace or '(none)'}",
                    "Install the app in that workspace via /slack/install, and set the "
                    "department's `workspace` to its team id.",
                )
            self._clients[workspace] = self._new_client(bot.bot_token)
        return self._clients[workspace]

    async def _pace_after(self, channel: str, seconds: float) -> None:
        """A refused post waits `seconds`, then queues for the next free slot (see `_pace`).

        It queues behind the posts already waiting: a slot kept free for it would leave the
        whole workspace idle meanwhile.
        """
        await asyncio.sleep(seconds)
        await self._pace(channel)

    async def _pace(self, channel: str) -> None:
        if self._pace_seconds <= 0:
            return
        async with self._pace_lock:
            now = time.monotonic()
            slot = pacing_slot(self._next_post.get(channel, 0.0), now, self._pace_seconds)
            if self._settings.workspace_rate > 0:
                # The workspace-wide limit: posts spread evenly, whichever channel they go to.
                slot = max(slot, self._next_any)
                self._next_any = slot + 1 / self._settings.workspace_rate
            self._next_post[channel] = slot + self._pace_seconds
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _call(
        self, channel: ChannelRef, call: Callable[[AsyncWebClient], Awaitable[Any]]
    ) -> Any:
        client = await self._client_for(channel.workspace)
        await self._pace(channel.channel)
        posting = _POSTING_TO.set(channel.channel)
        try:
            return await call(client)
        except SlackApiError as exc:
            error = slack_error(exc)
            if error in PERMANENT:
                raise PermanentDeliveryError(error, PERMANENT[error]) from exc
            raise
        finally:
            _POSTING_TO.reset(posting)

    async def post(
        self, channel: ChannelRef, message: Message, *, key: str | None = None
    ) -> PostedMessage:
        text, blocks = translate.message_payload(message)
        response = await self._call(
            channel,
            lambda c: c.chat_postMessage(
                channel=channel.channel,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                metadata=_metadata(key),
            ),
        )
        ts = str(response["ts"])
        return PostedMessage(channel, ts, ts)

    async def reply(
        self, posted: PostedMessage, message: Message, *, key: str | None = None
    ) -> PostedMessage:
        text, blocks = translate.message_payload(message)
        response = await self._call(
            posted.channel,
            lambda c: c.chat_postMessage(
                channel=posted.channel.channel,
                thread_ts=posted.thread_id,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                metadata=_metadata(key),
            ),
        )
        return PostedMessage(posted.channel, str(response["ts"]), posted.thread_id)

    async def find_posted(
        self, channel: ChannelRef, key: str, since: datetime, *, thread_id: str | None = None
    ) -> PostedMessage | None:
        """Look for the key in the messages' metadata: the channel's history, or the thread.

        conversations.history holds no thread replies, so a reply is looked for with
        conversations.replies. `since` is widened by CLOCK_SKEW: Slack's clock is not ours.
        """
        oldest = f"{since.timestamp() - CLOCK_SKEW.total_seconds():.6f}"
        cursor: str | None = None
        while True:

            def page_of(c: AsyncWebClient, cursor: str | None = cursor) -> Awaitable[Any]:
                args: dict[str, Any] = {
                    "channel": channel.channel,
                    "oldest": oldest,
                    "include_all_metadata": True,
                    "limit": HISTORY_PAGE,
                    "cursor": cursor,
                }
                if thread_id is None:
                    return c.conversations_history(**args)
                return c.conversations_replies(ts=thread_id, **args)

            page = await self._call(channel, page_of)
            for msg in page.get("messages") or ():
                metadata = msg.get("metadata") or {}
                if (
                    metadata.get("event_type") == METADATA_EVENT
                    and (metadata.get("event_payload") or {}).get("key") == key
                ):
                    ts = str(msg["ts"])
                    return PostedMessage(channel, ts, thread_id or ts)
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or not cursor:
                return None

    async def update(self, posted: PostedMessage, message: Message) -> None:
        text, blocks = translate.message_payload(message)
        await self._call(
            posted.channel,
            lambda c: c.chat_update(
                channel=posted.channel.channel, ts=posted.message_id, text=text, blocks=blocks
            ),
        )

    async def notify(self, channel: ChannelRef, person: Person, message: Message) -> None:
        """An ephemeral message; where the bot cannot post in the channel, a direct message."""
        text, blocks = translate.message_payload(message)
        if channel.channel:
            try:
                await self._call(
                    channel,
                    lambda c: c.chat_postEphemeral(
                        channel=channel.channel, user=person.id, text=text, blocks=blocks
                    ),
                )
                return
            except (PermanentDeliveryError, SlackApiError):
                pass  # not in the channel, or no longer: a direct message reaches them
        await self._direct(await self._client_for(channel.workspace), person.id, message)

    async def _direct(self, client: AsyncWebClient, user: str, message: Message) -> None:
        text, blocks = translate.message_payload(message)
        opened = await client.conversations_open(users=user)
        await client.chat_postMessage(
            channel=opened["channel"]["id"],
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )

    async def is_private(self, channel: ChannelRef) -> bool:
        """conversations.info, remembered for ten minutes. Unknown counts as private."""
        key = (channel.workspace, channel.channel)
        known = self._privacy.get(key)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        try:
            info = await self._call(
                channel, lambda c: c.conversations_info(channel=channel.channel)
            )
            private = bool(info["channel"].get("is_private", True))
        except (PermanentDeliveryError, SlackApiError) as exc:
            log.warning(
                "Slack: cannot tell whether %s is private (%s); treating it as private",
                channel.channel,
                exc,
            )
            return True
        self._privacy[key] = (private, time.monotonic() + 600)
        return private

    # --- people -------------------------------------------------------------------------------

    async def _name(self, client: AsyncWebClient, team: str, user: str) -> str:
        """A person's display name, cached; the user id when Slack will not say."""
        key = (team, user)
        if key in self._names:
            self._names.move_to_end(key)
            return self._names[key]
        name = user
        try:
            info = await client.users_info(user=user)
            profile = info["user"].get("profile", {})
            name = (
                profile.get("display_name")
                or profile.get("real_name")
                or info["user"].get("real_name")
                or info["user"].get("name")
                or user
            )
        except SlackApiError as exc:
            log.warning("Slack: users.info failed (%s); using the user id", slack_error(exc))
        self._names[key] = name
        while len(self._names) > NAME_CACHE:
            self._names.popitem(last=False)
        return str(name)

    # --- listeners ----------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.event("message")(self._on_message)
        app.command("/deel")(self._on_command)
        app.action(ACTIONS)(self._on_action)
        app.view(ACTIONS)(self._on_view)
        app.event("app_home_opened")(self._on_home)
        for event in ("member_joined_channel", "app_uninstalled", "tokens_revoked"):
            app.event(event)(self._on_lifecycle)

    async def _handle(self, event: Any) -> Response:
        if self._handler is None:
            raise RuntimeError("the Slack adapter has not been started")
        return await self._handler(event)

    # --- thread replies: inbox first, the core after the acknowledgement ---------------------

    async def _on_message(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        event = translate.message_event(body)
        if event is None:
            return
        if event.thread_id is None or self._inbox is None:
            # Only thread replies become contributions; other chatter is passed on, but is not
            # worth a write before the answer.
            self._later(self._reply(body, client), "a message")
            return
        kept = {key: body.get(key) for key in ("type", "event_id", "team_id", "event")}
        key = INBOX + event.event_id
        if await self._inbox.add(key, kept):
            self._later(self._from_inbox(key, kept, client), "a thread reply")
        # else: a retry of a delivery already in the inbox, which is being worked off

    async def _replay_inbox(self) -> None:
        """Thread replies acknowledged before a crash or restart but not yet handed on."""
        if self._state is None:
            return
        keys = await self._state.keys(INBOX)
        for key in keys:
            kept = await self._state.get(key)
            if kept is not None:
                self._later(self._from_inbox(key, kept), "a thread reply")
        if keys:
            log.info("Slack: %d thread replies from before the restart are handed on", len(keys))

    async def _from_inbox(
        self, key: str, body: dict[str, Any], client: AsyncWebClient | None = None
    ) -> None:
        """Hand one inbox entry to the core, then remove it. Should this fail half-way, the entry
        stays for the next start; the core's event key makes a second pass store nothing twice."""
        try:
            if client is None:
                client = await self._client_for(str(body.get("team_id") or ""))
            await self._reply(body, client)
        except PermanentDeliveryError as exc:
            log.warning("Slack: a thread reply is dropped: %s", exc)
        if self._state is not None:
            await self._state.delete(key)

    async def _reply(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        event = translate.message_event(body)
        if event is None:
            return
        async with self._inbox_slots:
            name = await self._name(client, event.workspace, event.person.id)
            event = _with_person(event, Person(event.person.id, name))
            response = await self._handle(event)
        if isinstance(response, Ephemeral):
            text, blocks = translate.message_payload(response.message)
            self._later(
                client.chat_postEphemeral(
                    channel=event.channel.channel,
                    user=event.person.id,
                    text=text,
                    blocks=blocks,
                    thread_ts=event.thread_id,
                )
            )

    async def _on_home(
        self, ack: Callable[..., Awaitable[None]], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        event = body.get("event", {})
        await ack()
        if event.get("tab") != "home" or not event.get("user"):
            return
        self._later(self._home(body, client), "the App Home page")

    async def _home(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        team = str(body.get("team_id", ""))
        user = str(body["event"]["user"])
        person = Person(user, await self._name(client, team, user))
        response = await self._handle(
            HomeEvent(str(body.get("event_id", "")), PLATFORM, person, workspace=team)
        )
        if isinstance(response, ShowHome):
            await self._publish_home(client, user, response.message)

    async def _publish_home(self, client: AsyncWebClient, user: str, message: Message) -> None:
        _, blocks = translate.message_payload(message)
        await client.views_publish(user_id=user, view={"type": "home", "blocks": blocks})

    async def _on_lifecycle(self, body: dict[str, Any]) -> None:
        event = body.get("event", {})
        log.info("Slack: %s in workspace %s", event.get("type"), body.get("team_id"))
        if event.get("type") in {"app_uninstalled", "tokens_revoked"}:
            self._clients.pop(str(body.get("team_id", "")), None)

    async def _show(
        self,
        response: Response,
        body: dict[str, Any],
        client: AsyncWebClient,
        respond: Callable[..., Awaitable[Any]],
        channel: str,
    ) -> None:
        if isinstance(response, ShowForm):
            form = response.form
            view = translate.modal_view(
                form,
                callback_id=form.form_id,
                private_metadata=translate.encode_metadata(form.form_id, channel, form.meta),
                close_label=self._close_label,
            )
            await client.views_open(trigger_id=body["trigger_id"], view=view)
        elif isinstance(response, ShowHome):
            await self._publish_home(client, str(body["user"]["id"]), response.message)
        elif isinstance(response, Ephemeral):
            if channel:
                text, blocks = translate.message_payload(response.message)
                await respond(
                    text=text, blocks=blocks, response_type="ephemeral", replace_original=False
                )
            else:  # a click on the person's own page: there is no channel to whisper in
                await self._direct(client, str(body["user"]["id"]), response.message)

    async def _on_command(
        self,
        ack: Callable[..., Awaitable[None]],
        body: dict[str, Any],
        client: AsyncWebClient,
        respond: Callable[..., Awaitable[Any]],
    ) -> None:
        await ack()
        self._later(self._command(body, client, respond), "/deel")

    async def _command(
        self, body: dict[str, Any], client: AsyncWebClient, respond: Callable[..., Awaitable[Any]]
    ) -> None:
        event: CommandEvent = translate.command_event(body)
        name = await self._name(client, event.workspace, event.person.id)
        event = _with_person(event, Person(event.person.id, name))
        await self._show(await self._handle(event), body, client, respond, event.channel.channel)

    async def _on_action(
        self,
        ack: Callable[..., Awaitable[None]],
        body: dict[str, Any],
        client: AsyncWebClient,
        respond: Callable[..., Awaitable[Any]],
    ) -> None:
        await ack()
        self._later(self._action(body, client, respond), "a button")

    async def _action(
        self, body: dict[str, Any], client: AsyncWebClient, respond: Callable[..., Awaitable[Any]]
    ) -> None:
        event: ButtonEvent | None = translate.action_event(body)
        if event is None:
            return
        name = await self._name(client, event.workspace, event.person.id)
        event = _with_person(event, Person(event.person.id, name))
        await self._show(await self._handle(event), body, client, respond, event.channel.channel)

    async def _on_view(
        self, ack: Callable[..., Awaitable[None]], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        try:
            channel, meta = translate.decode_metadata(body["view"].get("private_metadata", ""))
        except ValueError:
            await ack()
            return
        event = translate.view_event(body, meta, channel)
        name = await self._name(client, event.workspace, event.person.id)
        event = _with_person(event, Person(event.person.id, name))
        response = await self._handle(event)
        if isinstance(response, FormErrors):
            await ack(**translate.form_errors(response.errors))
            return
        await ack()
        # After the answer to Slack: a confirmation waits its turn in the channel's pacing.
        if isinstance(response, FormDone):
            self._later(self.notify(event.channel, event.person, response.confirmation))
        elif isinstance(response, Ephemeral):
            self._later(self.notify(event.channel, event.person, response.message))


def _with_person[E](event: E, person: Person) -> E:
    from dataclasses import replace

    return replace(event, person=person)  # type: ignore[type-var]
