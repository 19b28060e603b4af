"""Microsoft Teams: the Microsoft 365 Agents SDK (`AgentApplication`, `CloudAdapter`) in Boeket.

One endpoint, ``POST /api/messages``, takes every activity Teams sends. The route handler checks
the Bot Framework token itself (`auth.BotFrameworkTokens`; the SDK's JWT middleware would need
Boeket's one aiohttp application to carry string keys, and its validator reads keys from
hard-coded URLs), refuses activities from another tenant, and hands the request to
``CloudAdapter.process_request`` with the verified identity. Outgoing calls carry a token from
`auth.ClientCredentials`.

What people see, and where (Teams has no ephemeral messages in channels):

* A button click opens a dialog (`task/fetch`): a form, or a card with Boeket's answer that only
  the person who clicked sees. A dialog's submit (`task/submit`) answers in the same dialog: the
  form again with the errors under the fields, or the confirmation.
* The message extension "Deel een succes" opens the share dialog the same way.
* Anything else for one person — the thanks after an @mention reply, help — goes to the
  person's 1:1 chat with Boeket, never to the channel. A form asked for in a message (`deel`
  from the command menu) goes there as a card with one button: a bot cannot open a dialog in
  answer to a message, but the button's click (`task/fetch`) opens the form as a dialog. (A
  form card sent there as a whole, as older versions did, is still updated in place when it is
  submitted: with the errors, or with the confirmation.)
* A prompt's card holds the answer form itself (`Button.inline`): anyone in the channel types
  an answer there and sends it, without a dialog; the answer's button still opens the full
  form in a dialog. Teams sends such a submit as a message: the confirmation, or what was wrong
  with the answer, goes to the person's 1:1 chat.
* A card Boeket posted with buttons (a prompt) is remembered; each new answer through it (its
  own form or its dialog) updates it in place with a "N answers received" line — never with
  the answer, nor who gave it. Its inputs stay, so the rest of the channel can still answer.

Proactive posts use the conversation reference stored when Boeket was installed in the team (or
first heard in a channel). The SDK neither paces nor retries: `delivery` does both, and a 403
(app removed or blocked) becomes a `PermanentDeliveryError`, reported once.

Each post carries its idempotency key invisibly in its card; `find_posted` looks for it in the
team's channel messages with Microsoft Graph (`graph`), which the team's resource-specific
consent to ChannelMessage.Read.Group allows. That consent also makes Teams send every channel
message to Boeket: only those that @mention it are handled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from aiohttp import ClientResponseError, web
from microsoft_agents.activity import (
    Activity,
    ConversationParameters,
    ConversationReference,
)
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import (
    AgentApplication,
    AgentAuthConfiguration,
    ClaimsIdentity,
    ConnectionManager,
    MemoryStorage,
    RouteRank,
    TurnContext,
    TurnState,
)
from microsoft_agents.hosting.core.authorization import AuthTypes
from microsoft_agents.hosting.core.connector import ConnectorClientBase
from microsoft_agents.hosting.msteams import TeamsAgentExtension
from microsoft_teams.api.models import (
    MessagingExtensionAction,
    MessagingExtensionActionResponse,
    MessagingExtensionResponse,
    TaskModuleRequest,
    TaskModuleResponse,
)

from adapters.teams import cards
from adapters.teams.auth import (
    BotFrameworkTokens,
    ClientCredentials,
    HttpSession,
    KeysUnavailable,
    TokenRefused,
)
from adapters.teams.delivery import Pacer, with_retries
from adapters.teams.graph import ChannelMessages
from adapters.teams.settings import TeamsSettings
from bot.domain import ChannelRef, Person, PostedMessage
from bot.messages import (
    Actions,
    Ephemeral,
    Event,
    FormDone,
    FormErrors,
    FormEvent,
    Message,
    Response,
    ShowForm,
    ShowHome,
)
from bot.ports import Clock, EventHandler, PermanentDeliveryError

PLATFORM = "teams"
MESSAGES_PATH = "/api/messages"
MAX_BODY = 256 * 1024
MAX_REMEMBERED_ANSWERS = 1000  # per card: which submits were counted, so a retry is not
log = logging.getLogger(__name__)

INSTALL_ADVICE = (
    "Install the Boeket app in the team that holds this channel (build it with `boeket teams "
    "package`, then Teams: Apps → Manage your apps → Upload an app), or @mention Boeket once in "
    "the channel, so Boeket learns where to post."
)
BLOCKED_ADVICE = (
    "Teams refused the post (403): the app was removed from the team, or blocked by the user or "
    "by a Teams admin policy. Add the app to the team again, or map the department to another "
    "channel."
)


class StateStorePort(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any], now: datetime) -> None: ...


class _Request:
    """The SDK's `HttpRequestProtocol` for a request whose token Boeket already checked."""

    def __init__(self, request: web.Request, body: dict[str, Any], claims: ClaimsIdentity) -> None:
        self._request = request
        self._body = body
        self._claims = claims

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def headers(self) -> Mapping[str, str]:
        return self._request.headers

    async def json(self) -> dict[str, Any]:
        return self._body

    def get_claims_identity(self) -> ClaimsIdentity:
        return self._claims

    def get_path_param(self, name: str) -> str:
        return self._request.match_info[name]


def _status(exc: BaseException) -> tuple[int, Mapping[str, str] | None] | None:
    if isinstance(exc, ClientResponseError):
        return exc.status, exc.headers
    return None


def _activity_json(context: TurnContext) -> dict[str, Any]:
    """The turn's activity as the JSON Teams sent (the SDK has parsed it into models)."""
    dumped: dict[str, Any] = context.activity.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    return dumped


def _bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


def _same_url(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url.strip())
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


def _is_team_channel(channel: str) -> bool:
    return channel.endswith(("@thread.tacv2", "@thread.skype"))


class TeamsAdapter:
    """Boeket on Microsoft Teams, served at ``POST /api/messages`` in Boeket's aiohttp app."""

    platform = PLATFORM

    def __init__(
        self,
        settings: TeamsSettings,
        *,
        state: StateStorePort,
        clock: Clock,
        received_text: str = "Ontvangen.",
        received_count: Callable[[int], str] | None = None,
        not_saved_text: str = "Je antwoord is nog niet opgeslagen:",
        title: str = "Boeket",
    ) -> None:
        self._settings = settings
        self._state = state
        self._clock = clock
        self._received = received_text
        self._received_count = received_count
        self._not_saved = not_saved_text
        self._title = title
        self._card_locks: dict[str, asyncio.Lock] = {}
        self._recent = cards.RecentSubmits()
        self._cards_to_refresh: set[str] = set()
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._handler: EventHandler | None = None
        self._remembered: set[str] = set()
        self._pacer = Pacer(settings.limits)
        self._http = HttpSession()
        self._tokens = BotFrameworkTokens(
            metadata_url=settings.openid_metadata_url,
            audience=settings.client_id,
            http=self._http,
        )
        if settings.authenticated:
            self._auth = AgentAuthConfiguration(
                auth_type=AuthTypes.client_secret,
                client_id=settings.client_id,
                tenant_id=settings.tenant_id,
                client_secret=settings.client_secret,
            )
        else:
            self._auth = AgentAuthConfiguration(anonymous_allowed=True)

        def provider(configuration: AgentAuthConfiguration) -> ClientCredentials:
            return ClientCredentials(configuration, settings.login_url, self._http)

        graph_tokens = provider(self._auth)
        graph_scope = f"{settings.graph_url.rstrip('/')}/.default"

        async def graph_token() -> str:
            return await graph_tokens.get_access_token(settings.graph_url, [graph_scope])

        self._graph = ChannelMessages(
            graph_url=settings.graph_url,
            app_id=settings.client_id,
            token=graph_token,
            http=self._http,
            attempts=settings.max_attempts,
            backoff=settings.backoff_seconds,
        )

        connections = ConnectionManager(
            provider_factory=provider,
            connections_configurations={"SERVICE_CONNECTION": self._auth},
        )
        self._cloud = CloudAdapter(connection_manager=connections)
        # The SDK's default posts "Exception caught : …" with the connector's reply into the chat.
        self._cloud.on_turn_error = self._on_turn_error
        self.app = AgentApplication[TurnState](
            storage=MemoryStorage(),
            connection_manager=connections,
            # Boeket strips the mention itself (cards.clean_incoming), in one tested place.
            remove_recipient_mention=False,
            # Typing indicators would count against Teams' per-conversation rate limit.
            start_typing_timer=False,
        )
        self._teams = TeamsAgentExtension[TurnState](self.app)
        self._register()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        if self._settings.dev_mode:
            log.warning(
                "Teams: DEVELOPMENT MODE (TEAMS_DEV_MODE=true): requests to %s are not "
                "authenticated and outgoing calls carry no token. Never expose this to the "
                "internet; set TEAMS_CLIENT_ID, TEAMS_CLIENT_SECRET and TEAMS_TENANT_ID instead.",
                MESSAGES_PATH,
            )
        else:
            log.info(
                "Teams: listening at %s for tenant %s", MESSAGES_PATH, self._settings.tenant_id
            )

    async def settle(self) -> None:
        """Wait until the cards that show a new answer count are updated."""
        while self._refreshing:
            await asyncio.gather(*list(self._refreshing.values()), return_exceptions=True)

    async def stop(self) -> None:
        await self.settle()
        await self._http.close()

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(MESSAGES_PATH, self._messages)]

    # --- the endpoint -------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        claims = ClaimsIdentity()  # anonymous: only in development mode
        endorsements: frozenset[str] = frozenset()
        if self._settings.authenticated:
            token = _bearer(request.headers.get("Authorization", ""))
            if token is None:
                return web.json_response({"error": "unauthorized"}, status=401)
            try:
                verified = await self._tokens.verify(token)
            except TokenRefused as exc:
                log.warning("Teams: refused a request whose token is not valid: %s", exc)
                return web.json_response({"error": "unauthorized"}, status=401)
            except KeysUnavailable as exc:
                log.error("Teams: cannot check tokens, the signing keys are unavailable: %s", exc)
                return web.json_response({"error": "unavailable"}, status=503)
            claims = ClaimsIdentity(verified.claims, security_token=token)
            endorsements = verified.endorsements
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": "too large"}, status=413)
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # RecursionError: brackets nested thousands deep
            return web.json_response({"error": "expected an activity as JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected an activity as JSON"}, status=400)
        channel_id = str(body.get("channelId") or "").lower()
        if endorsements and channel_id not in endorsements:
            log.warning("Teams: refused a token whose key is not endorsed for %r", channel_id)
            return web.json_response({"error": "unauthorized"}, status=401)
        problem = self._refusal(body, claims)
        if problem is not None:
            log.warning("Teams: refused a %s activity: %s", str(body.get("type"))[:40], problem)
            return web.json_response({"error": "forbidden"}, status=403)
        try:
            # Checked before the SDK sees it, which raises TypeError for some (an empty
            # channelId) in the middle of its own request handling.
            Activity.model_validate(body)
            result = await self._cloud.process_request(_Request(request, body, claims), self.app)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError: not an activity
            log.warning("Teams: a malformed activity: %s", type(exc).__name__)
            return web.json_response({"error": "not an activity"}, status=400)
        if result.body is not None:
            return web.json_response(result.body, status=result.status_code)
        return web.Response(status=result.status_code)

    def _refusal(self, body: Mapping[str, Any], claims: ClaimsIdentity) -> str | None:
        """Why an activity is refused: another tenant, or a serviceUrl its token was not for."""
        tenant = self._settings.tenant_id
        if tenant and cards.tenant_of(body).lower() != tenant.lower():
            return f"tenant {cards.tenant_of(body) or '(none)'} is not {tenant}"
        if not self._settings.authenticated:
            return None
        # The Bot Framework's rule: the token names the service URL the activity may come from.
        claimed = claims.get_claim_value("serviceurl")
        service_url = body.get("serviceUrl")
        if not isinstance(claimed, str) or not isinstance(service_url, str):
            return "its token names no serviceUrl"
        if _same_url(claimed) != _same_url(service_url):
            return "its serviceUrl is not the one in its token"
        return None

    async def _on_turn_error(self, context: TurnContext, error: Exception) -> None:
        """Log; tell nobody in the chat (the SDK's default posts the exception text there)."""
        log.error(
            "Teams: handling a %s activity failed",
            context.activity.type if context.activity else "?",
            exc_info=error,
        )

    # --- handlers -----------------------------------------------------------------------------

    def _register(self) -> None:
        self.app.activity(["conversationUpdate", "installationUpdate"])(self._on_update)
        self.app.adaptive_card.action_submit(cards.FORM_VERB)(self._on_card_submit)
        self.app.adaptive_card.action_submit(cards.INLINE_VERB)(self._on_inline_submit)
        self.app.activity("message", rank=RouteRank.LAST)(self._on_message)
        tasks = self._teams.task_modules
        tasks.fetch()(self._on_task)
        tasks.submit()(self._on_task)
        extensions = self._teams.message_extensions
        extensions.fetch_action(cards.SHARE_COMMAND_ID)(self._on_extension_fetch)
        extensions.submit_action(cards.SHARE_COMMAND_ID)(self._on_extension_submit)

    async def _handle(self, event: Event) -> Response:
        if self._handler is None:
            raise RuntimeError("the Teams adapter has not been started")
        return await self._handler(event)

    async def _on_update(self, context: TurnContext, state: TurnState) -> None:
        activity = _activity_json(context)
        channels = cards.channels_to_remember(activity)
        if channels:
            await self._remember(context, activity, channels, force=True)
            log.info("Teams: %s in %s", activity.get("type"), ", ".join(channels))

    async def _on_message(self, context: TurnContext, state: TurnState) -> None:
        activity = _activity_json(context)
        await self._remember(context, activity)
        if (
            activity.get("value") is None
            and cards.conversation_type(activity) == "channel"
            and not cards.mentions_bot(activity)
        ):
            # With ChannelMessage.Read.Group consented Teams sends every channel message; what
            # people say to each other is not for Boeket, only what they say to it.
            return
        if activity.get("value") is not None:
            event: Event | None = cards.interaction_event(activity)
        else:
            event = cards.message_event(activity)
        if event is None:
            return
        await self._answer_in_chat(context, activity, await self._handle(event))

    async def _on_card_submit(self, context: TurnContext, state: TurnState, data: object) -> None:
        """A form card (sent to a 1:1 chat) submitted as a message: update it in place."""
        activity = _activity_json(context)
        event = cards.interaction_event(activity)
        if event is None:
            return
        response = await self._handle(event)
        card_id = activity.get("replyToId")
        submitted = data if isinstance(data, dict) else {}
        personal = cards.conversation_type(activity) == "personal"
        form = cards.submitted_form(submitted)
        routing = cards.form_routing(submitted)
        if isinstance(card_id, str) and card_id and personal:
            client = self._client(context)
            conversation = str(activity["conversation"]["id"])
            if isinstance(response, FormErrors) and form is not None and routing is not None:
                card = cards.form_card(
                    form,
                    submission=routing[2],
                    channel=routing[3],
                    values=cards.submit_values(submitted),
                    errors=response.errors,
                )
                await self._update_card(client, conversation, card_id, card, activity)
                return
            if isinstance(response, FormDone):
                card = cards.message_card(response.confirmation)
                await self._update_card(client, conversation, card_id, card, activity)
                return
        await self._answer_in_chat(context, activity, response)

    async def _on_inline_submit(self, context: TurnContext, state: TurnState, data: object) -> None:
        """An answer typed in a posted card (the prompt's own form), submitted as a message.

        Stored once per submit (Teams may deliver it twice, and a double click sends it twice:
        `cards.RecentSubmits`); the card then shows one more answer
        received, and the person gets the confirmation — or, when the answer cannot be stored
        (empty, too long), what was wrong and a button that opens the form again with what they
        typed — in their 1:1 chat, since Teams has no private message in a channel.
        """
        activity = _activity_json(context)
        await self._remember(context, activity)
        event = cards.interaction_event(activity)
        if not isinstance(event, FormEvent):
            return
        # A double click is two messages: the second is the first submit again.
        first = self._recent.first(
            event.person.id, cards.card_message_id(activity), event.values, event.submission_id
        )
        event = dataclasses.replace(event, submission_id=first)
        response = await self._handle(event)
        if isinstance(response, FormErrors):
            form = cards.inline_form(data if isinstance(data, dict) else {})
            if form is None:
                return
            card = cards.open_form_card(
                form,
                channel=event.channel.channel,
                values=event.values,
                errors=list(response.errors.values()),
                heading=self._not_saved,
            )
            outgoing = {
                "type": "message",
                "summary": self._not_saved,
                "attachments": [cards.card_attachment(card)],
            }
            await self._to_person(context, activity, outgoing)
            return
        if isinstance(response, FormDone):
            card_id = cards.card_message_id(activity)
            if await self._posted_card(card_id, event.channel.channel):
                await self._mark_received(activity, card_id, event.submission_id)
        await self._answer_in_chat(context, activity, response)

    async def _on_task(
        self, context: TurnContext, state: TurnState, request: TaskModuleRequest
    ) -> TaskModuleResponse:
        activity = _activity_json(context)
        await self._remember(context, activity)
        opened = cards.opened_form(cards.submit_data(activity) or {})
        if opened is not None and activity.get("name") == "task/fetch":
            form, channel, values = opened
            card = cards.form_card(
                form, submission=secrets.token_urlsafe(12), channel=channel, values=values
            )
            return TaskModuleResponse.model_validate(cards.dialog_response(form.title, card))
        body = await self._dialog(context, activity, cards.interaction_event(activity))
        return TaskModuleResponse.model_validate(body)

    async def _on_extension_fetch(
        self, context: TurnContext, state: TurnState, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        activity = _activity_json(context)
        await self._remember(context, activity)
        body = await self._dialog(context, activity, cards.extension_command(activity))
        return MessagingExtensionActionResponse.model_validate(body)

    async def _on_extension_submit(
        self, context: TurnContext, state: TurnState, action: MessagingExtensionAction
    ) -> MessagingExtensionResponse:
        activity = _activity_json(context)
        body = await self._dialog(context, activity, cards.extension_submit(activity))
        # The SDK types a submitAction answer as a compose-extension result, but Teams also
        # takes a `task` (the dialog again, with errors); the model keeps it as an extra field.
        return MessagingExtensionResponse.model_validate(body)

    async def _dialog(
        self, context: TurnContext, activity: Mapping[str, Any], event: Event | None
    ) -> dict[str, Any]:
        """The invoke body for a click or a dialog submit: what only this person sees."""
        if event is None:
            return cards.dialog_message(self._received)
        response = await self._handle(event)
        data = cards.submit_data(activity) or {}
        form = cards.submitted_form(data)
        title = form.title if form is not None else self._title
        match response:
            case ShowForm(form=shown):
                channel = cards.channel_of(activity)
                card = cards.form_card(
                    shown,
                    submission=secrets.token_urlsafe(12),
                    channel=channel,
                    card=await self._posted_card(cards.card_message_id(activity), channel),
                )
                return cards.dialog_response(shown.title, card)
            case FormErrors(errors=errors):
                routing = cards.form_routing(data)
                if form is None or routing is None:
                    return cards.dialog_message(self._received)
                card = cards.form_card(
                    form,
                    submission=routing[2],
                    channel=routing[3],
                    values=cards.submit_values(data),
                    errors=errors,
                    card=cards.routing_card(data),
                )
                return cards.dialog_response(form.title, card)
            case FormDone(confirmation=message):
                origin = cards.routing_card(data)
                if origin and isinstance(event, FormEvent):
                    await self._mark_received(activity, origin, event.submission_id)
                return cards.dialog_response(title, cards.message_card(message))
            case Ephemeral(message=message) | ShowHome(message=message):
                return cards.dialog_response(title, cards.message_card(message))
        return cards.dialog_message(self._received)

    # --- posted cards that show they were answered --------------------------------------------

    async def _remember_card(
        self, posted: PostedMessage, message: Message, key: str | None = None
    ) -> None:
        """Keep a posted card with buttons, to show on it how many answers came in through it.

        The card keeps the post's idempotency key, so updates do not remove it.
        """
        if not any(isinstance(b, Actions) and b.buttons for b in message.blocks):
            return
        stored = await self._state.get(f"card:{posted.message_id}") or {}
        if key is None:
            key = cards.card_key(stored.get("card"))
        await self._state.put(
            f"card:{posted.message_id}",
            {
                "channel": posted.channel.channel,
                "workspace": posted.channel.workspace,
                "thread": posted.thread_id,
                "card": cards.keyed_card(cards.message_card(message), key),
                "received": bool(stored.get("received")),
                "count": int(stored.get("count") or 0),
                "answers": list(stored.get("answers") or []),
            },
            self._clock.now(),
        )

    def _received_line(self, stored: Mapping[str, Any]) -> str | None:
        """The line a posted card shows under its text once answers came in, or None."""
        count = int(stored.get("count") or 0)
        if count and self._received_count is not None:
            return self._received_count(count)
        return self._received if count or stored.get("received") else None

    async def _posted_card(self, message_id: str, channel: str) -> str:
        """`message_id` when it is a card Boeket posted in `channel`, else ""."""
        if not message_id:
            return ""
        stored = await self._state.get(f"card:{message_id}")
        return message_id if stored is not None and stored.get("channel") == channel else ""

    async def _mark_received(
        self, activity: Mapping[str, Any], message_id: str, submission: str
    ) -> None:
        """Count one more answer on the posted card; the card shows the count soon after.

        `submission` is the answer's own key: a submit delivered again is not counted again.
        The update itself happens after the turn's answer (`_refresh_card`): Teams paces
        updates per conversation, and a dialog's answer must not wait for them. Answers on one
        replica are counted one at a time; two replicas counting on the same card in the same
        instant may miss one until the next.
        """
        lock = self._card_locks.setdefault(message_id, asyncio.Lock())
        async with lock:
            stored = await self._state.get(f"card:{message_id}")
            channel = cards.channel_of(activity)
            if stored is None or stored.get("channel") != channel:
                return
            answers = [str(a) for a in stored.get("answers") or []]
            if submission in answers:
                return
            stored = {
                **stored,
                "received": True,
                "count": int(stored.get("count") or 0) + 1,
                "answers": [*answers, submission][-MAX_REMEMBERED_ANSWERS:],
            }
            await self._state.put(f"card:{message_id}", stored, self._clock.now())
        if not lock.locked():
            self._card_locks.pop(message_id, None)
        self._cards_to_refresh.add(message_id)
        if message_id not in self._refreshing:
            task = asyncio.ensure_future(self._refresh_card(message_id))
            self._refreshing[message_id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(message_id, None))

    async def _refresh_card(self, message_id: str) -> None:
        """Update a posted card in place with its latest answer count.

        Answers that come in while an update is on its way are shown by one more update, not one
        each: a busy channel's card changes a few times, not once per answer.
        """
        while message_id in self._cards_to_refresh:
            self._cards_to_refresh.discard(message_id)
            stored = await self._state.get(f"card:{message_id}")
            if stored is None:
                return
            posted = PostedMessage(
                ChannelRef(PLATFORM, str(stored["channel"]), str(stored.get("workspace") or "")),
                message_id,
                str(stored.get("thread") or message_id),
            )
            card = cards.received_card(stored["card"], self._received_line(stored) or "")
            try:
                await self._replace_card(posted, card)
            except Exception as exc:  # the answer is stored; the count shows on the next one
                log.warning(
                    "Teams: could not show the answer count on card %s (%s)",
                    message_id,
                    type(exc).__name__,
                )

    async def _answer_in_chat(
        self, context: TurnContext, activity: Mapping[str, Any], response: Response
    ) -> None:
        """What a message turn answers, for one person: in their 1:1 chat with Boeket."""
        match response:
            case ShowForm(form=form):
                # No dialog can open in answer to a message: a button that opens it can.
                card = cards.open_form_card(form, channel=cards.channel_of(activity))
                outgoing = {
                    "type": "message",
                    "summary": form.title,
                    "attachments": [cards.card_attachment(card)],
                }
            case (
                FormDone(confirmation=message)
                | Ephemeral(message=message)
                | ShowHome(message=message)
            ):
                outgoing = cards.message_activity(message)
            case _:
                return
        await self._to_person(context, activity, outgoing)

    async def _to_person(
        self, context: TurnContext, activity: Mapping[str, Any], outgoing: Mapping[str, Any]
    ) -> None:
        """Send `outgoing` to the person who acted, in their 1:1 chat with Boeket."""
        client = self._client(context)
        person = cards.person_of(activity)
        bot = dict(activity.get("recipient") or {})
        if cards.conversation_type(activity) == "personal":
            conversation = str(activity["conversation"]["id"])
        else:
            conversation = await self._personal(client, person, cards.tenant_of(activity), bot)
        await self._send(client, conversation, outgoing, bot=bot)

    # --- conversation references --------------------------------------------------------------

    async def _remember(
        self,
        context: TurnContext,
        activity: Mapping[str, Any],
        channels: list[str] | None = None,
        *,
        force: bool = False,
    ) -> None:
        """Keep the conversation reference of each channel Boeket hears from, for later posts."""
        if channels is None:
            if cards.conversation_type(activity) != "channel":
                return
            channels = [cards.channel_of(activity)]
        tenant = cards.tenant_of(activity)
        fresh = [c for c in channels if c and (force or c not in self._remembered)]
        if not fresh:
            return
        reference = context.activity.get_conversation_reference().model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        reference.pop("activityId", None)
        reference.pop("user", None)  # a person's id does not belong in a channel's reference
        now = self._clock.now()
        group = await self._team_group(activity, now)
        for channel in fresh:
            ref = {**reference, "conversation": {**reference["conversation"], "id": channel}}
            entry: dict[str, Any] = {"reference": ref, "tenant": tenant}
            team = group
            if not team:  # a message's activity names no group id: keep the one known
                earlier = await self._state.get(f"ref:{channel}") or {}
                team = str(earlier.get("team") or "")
            if team:
                entry["team"] = team
            await self._state.put(f"ref:{channel}", entry, now)
            self._remembered.add(channel)
        await self._state.put(f"tenant:{tenant or '-'}", {"reference": reference}, now)

    async def _team_group(self, activity: Mapping[str, Any], now: datetime) -> str:
        """The Microsoft 365 group id of the activity's team: Microsoft Graph's team id.

        Teams sends it (`channelData.team.aadGroupId`) with the install and channel events, not
        with every message: it is kept per team (by the team's thread id) for channels Boeket
        first hears of later.
        """
        team = cards.team_of(activity)
        group = cards.team_group_of(activity)
        if team and group:
            await self._state.put(f"team:{team}", {"group": group}, now)
        elif team:
            known = await self._state.get(f"team:{team}") or {}
            group = str(known.get("group") or "")
        return group

    async def _reference(self, channel: ChannelRef) -> dict[str, Any]:
        """The stored reference for a channel; else one from its tenant (same service URL)."""
        stored = await self._state.get(f"ref:{channel.channel}")
        if stored is None:
            tenant = channel.workspace or self._settings.tenant_id or "-"
            stored = await self._state.get(f"tenant:{tenant}")
        if stored is None or not isinstance(stored.get("reference"), dict):
            raise PermanentDeliveryError(
                f"no conversation reference for Teams channel {channel.channel}", INSTALL_ADVICE
            )
        return cast(dict[str, Any], stored["reference"])

    def _identity(self) -> ClaimsIdentity:
        """Whom proactive calls act as: the app (a token is fetched), or nobody in dev mode."""
        if self._settings.authenticated:
            return self._cloud.create_claims_identity(self._settings.client_id)
        return ClaimsIdentity()

    async def _proactive[T](
        self,
        channel: ChannelRef,
        call: Callable[[ConnectorClientBase, dict[str, Any]], Awaitable[T]],
    ) -> T:
        """Run `call` with a connector client for the channel's service URL, outside a turn."""
        reference = await self._reference(channel)
        ref = ConversationReference.model_validate(reference)
        results: list[T] = []
        failures: list[Exception] = []

        async def callback(context: TurnContext) -> None:
            # Caught here: the SDK would hand it to on_turn_error, and the cycle needs to see it.
            try:
                results.append(await call(self._client(context), reference))
            except Exception as exc:
                failures.append(exc)

        await self._cloud.continue_conversation_with_claims(
            self._identity(), ref.get_continuation_activity(), callback
        )
        if failures:
            raise failures[0]
        if not results:
            raise RuntimeError("the Teams SDK did not run the proactive call")
        return results[0]

    @staticmethod
    def _client(context: TurnContext) -> ConnectorClientBase:
        # The SDK keys the turn's connector client by its abstract base class.
        client = context.services.get(ConnectorClientBase)  # type: ignore[type-abstract]
        if not isinstance(client, ConnectorClientBase):
            raise RuntimeError("no connector client in this turn")
        return client

    # --- sending ------------------------------------------------------------------------------

    async def _deliver[T](self, conversation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Paced per conversation, retried on 429/412/502/504; 403 and 404 are permanent."""

        async def pace() -> None:
            # A channel and its threads share one pace: the stricter reading of Teams' limits.
            await self._pacer.wait(cards.conversation_root(conversation)[0])

        try:
            return await with_retries(
                call,
                status_of=_status,
                attempts=self._settings.max_attempts,
                base=self._settings.backoff_seconds,
                before=pace,
            )
        except ClientResponseError as exc:
            if exc.status in {403, 404}:
                # Not logged here: whoever catches it reports it once (the cycle, with advice).
                reason = f"Teams answered {exc.status} for conversation {conversation}"
                advice = BLOCKED_ADVICE if exc.status == 403 else INSTALL_ADVICE
                raise PermanentDeliveryError(reason, advice) from exc
            raise

    @staticmethod
    def _outgoing(
        outgoing: Mapping[str, Any], conversation: str, bot: Mapping[str, Any], **extra: Any
    ) -> Activity:
        body = {**outgoing, "conversation": {"id": conversation}, **extra}
        if bot.get("id"):
            body["from"] = {"id": bot["id"], "name": bot.get("name", "")}
        return Activity.model_validate(body)

    async def _send(
        self,
        client: ConnectorClientBase,
        conversation: str,
        outgoing: Mapping[str, Any],
        *,
        bot: Mapping[str, Any],
        reply_to: str | None = None,
    ) -> str:
        activity = self._outgoing(outgoing, conversation, bot)

        async def call() -> str:
            if reply_to:
                sent = await client.conversations.reply_to_activity(
                    conversation, reply_to, activity
                )
            else:
                sent = await client.conversations.send_to_conversation(conversation, activity)
            return sent.id or ""

        return await self._deliver(conversation, call)

    async def _update_card(
        self,
        client: ConnectorClientBase,
        conversation: str,
        activity_id: str,
        card: dict[str, Any],
        turn: Mapping[str, Any],
    ) -> None:
        outgoing = {"type": "message", "attachments": [cards.card_attachment(card)]}
        bot = dict(turn.get("recipient") or {})
        activity = self._outgoing(outgoing, conversation, bot, id=activity_id)
        await self._deliver(
            conversation,
            lambda: client.conversations.update_activity(conversation, activity_id, activity),
        )

    async def _personal(
        self, client: ConnectorClientBase, person: Person, tenant: str, bot: Mapping[str, Any]
    ) -> str:
        """The 1:1 chat between Boeket and a person: created once, then remembered."""
        key = f"personal:{person.id}"
        known = await self._state.get(key)
        if known and isinstance(known.get("conversation"), str):
            return str(known["conversation"])
        params = ConversationParameters.model_validate(
            {
                "isGroup": False,
                "bot": {"id": bot.get("id", ""), "name": bot.get("name", "")},
                "members": [{"id": person.id}],
                "tenantId": tenant or None,
                "channelData": {"tenant": {"id": tenant}} if tenant else None,
            }
        )
        created = await self._deliver(
            f"create:{person.id}", lambda: client.conversations.create_conversation(params)
        )
        if not created.id:
            raise RuntimeError("Teams created no 1:1 conversation")
        await self._state.put(key, {"conversation": created.id}, self._clock.now())
        return created.id

    # --- the Adapter protocol -----------------------------------------------------------------

    async def post(
        self, channel: ChannelRef, message: Message, *, key: str | None = None
    ) -> PostedMessage:
        """A new thread in a team channel (`POST /v3/conversations`), or a message in a chat.

        `key` travels invisibly in the card, where `find_posted` looks for it with Graph.
        """
        outgoing = cards.message_activity(message, key=key)

        async def call(client: ConnectorClientBase, reference: dict[str, Any]) -> str:
            bot = reference.get("bot") or {}
            if not _is_team_channel(channel.channel):
                return await self._send(client, channel.channel, outgoing, bot=bot)
            tenant = channel.workspace or str(reference.get("conversation", {}).get("tenantId", ""))
            params = ConversationParameters.model_validate(
                {
                    "isGroup": True,
                    "bot": bot or None,
                    "tenantId": tenant or None,
                    "channelData": {"channel": {"id": channel.channel}, "tenant": {"id": tenant}},
                    "activity": self._outgoing(outgoing, channel.channel, bot).model_dump(
                        mode="json", by_alias=True, exclude_none=True
                    ),
                }
            )
            created = await self._deliver(
                channel.channel, lambda: client.conversations.create_conversation(params)
            )
            return created.activity_id or cards.conversation_root(created.id or "")[1] or ""

        message_id = await self._proactive(channel, call)
        if not message_id:
            raise RuntimeError("Teams returned no id for the new post")
        posted = PostedMessage(channel, message_id, message_id)
        await self._remember_card(posted, message, key)
        return posted

    def _thread(self, posted: PostedMessage) -> str:
        channel = posted.channel.channel
        if _is_team_channel(channel) and posted.thread_id:
            return f"{channel};messageid={posted.thread_id}"
        return channel

    async def reply(
        self, posted: PostedMessage, message: Message, *, key: str | None = None
    ) -> PostedMessage:
        outgoing = cards.message_activity(message, key=key)
        conversation = self._thread(posted)

        async def call(client: ConnectorClientBase, reference: dict[str, Any]) -> str:
            bot = reference.get("bot") or {}
            reply_to = posted.thread_id if conversation != posted.channel.channel else None
            return await self._send(client, conversation, outgoing, bot=bot, reply_to=reply_to)

        message_id = await self._proactive(posted.channel, call)
        sent = PostedMessage(posted.channel, message_id, posted.thread_id)
        await self._remember_card(sent, message, key)
        return sent

    async def find_posted(
        self, channel: ChannelRef, key: str, since: datetime, *, thread_id: str | None = None
    ) -> PostedMessage | None:
        """Boeket's post (or reply in `thread_id`) in a team channel with `key` in its card.

        Read with Microsoft Graph (`graph`), which needs the app's credentials, the team's
        Graph id (remembered from its install) and the team's consent to
        ChannelMessage.Read.Group. Without any of them: None, and a post whose replica died
        after Teams accepted it and before Boeket recorded it is posted again (at least once).
        """
        if not self._settings.authenticated or not _is_team_channel(channel.channel):
            return None
        stored = await self._state.get(f"ref:{channel.channel}") or {}
        team = str(stored.get("team") or "")
        if not team:
            log.info(
                "Teams: the team of channel %s is not known (Boeket was not added to it since "
                "it remembers teams); %s is not looked for",
                channel.channel,
                key,
            )
            return None
        found = await self._graph.find(team, channel.channel, key, since, thread_id=thread_id)
        if found is None:
            return None
        return PostedMessage(channel, found, thread_id or found)

    async def update(self, posted: PostedMessage, message: Message) -> None:
        await self._remember_card(posted, message)
        stored = await self._state.get(f"card:{posted.message_id}")
        card = cards.keyed_card(
            cards.message_card(message), cards.card_key((stored or {}).get("card"))
        )
        line = self._received_line(stored) if stored is not None else None
        if line is not None:
            card = cards.received_card(card, line)
        await self._replace_card(posted, card)

    async def _replace_card(self, posted: PostedMessage, card: dict[str, Any]) -> None:
        """Update a posted card in place, outside a turn."""
        conversation = self._thread(posted)

        async def call(client: ConnectorClientBase, reference: dict[str, Any]) -> None:
            bot = reference.get("bot") or {}
            await self._update_card(
                client, conversation, posted.message_id, card, {"recipient": bot}
            )

        await self._proactive(posted.channel, call)

    async def notify(self, channel: ChannelRef, person: Person, message: Message) -> None:
        """In the person's 1:1 chat with Boeket: Teams has no ephemeral messages in channels."""
        outgoing = cards.message_activity(message)

        async def call(client: ConnectorClientBase, reference: dict[str, Any]) -> None:
            bot = reference.get("bot") or {}
            tenant = channel.workspace or str(reference.get("conversation", {}).get("tenantId", ""))
            conversation = await self._personal(client, person, tenant, bot)
            await self._send(client, conversation, outgoing, bot=bot)

        await self._proactive(channel, call)

    async def is_private(self, channel: ChannelRef) -> bool:
        """Always: a Teams channel is readable only by its team's members (or fewer).

        What a department says there appears elsewhere only when it opts in
        (`share_from_private`).
        """
        return True
