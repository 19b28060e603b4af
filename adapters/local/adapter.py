"""The local adapter: Boeket's own web chat, and the in-memory fake platform the tests drive.

One channel per department plus the cross-department channel. People are picked from the
organisation config (no accounts). Messages live in memory and, when a state store is given, are
kept in the database so a restart shows the history it had.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from adapters.local import render
from bot.domain import ChannelRef, Person, PostedMessage
from bot.messages import (
    ButtonEvent,
    CommandEvent,
    Ephemeral,
    FormDone,
    FormErrors,
    FormEvent,
    Message,
    MessageEvent,
    Response,
    ShowForm,
)
from bot.ports import Clock, EventHandler

PLATFORM = "local"
STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024
SEEN_EVENTS = 10_000
MAX_TEXT = 10_000  # the core refuses long answers kindly; this only stops abuse of the endpoint
log = logging.getLogger(__name__)


class StateStorePort(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any], now: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class LocalChannel:
    id: str
    name: str
    department: str | None  # None for the cross-department channel


@dataclass(frozen=True, slots=True)
class LocalSettings:
    channels: tuple[LocalChannel, ...]
    people: tuple[Person, ...]
    person_departments: dict[str, str] = field(default_factory=dict)
    ui: dict[str, str] = field(default_factory=dict)  # texts for the page, in the org's language
    language: str = "nl"


@dataclass(slots=True)
class LocalMessage:
    id: str
    channel: str
    thread_id: str | None
    author_id: str  # "boeket" for the bot
    author_name: str
    text: str
    html: str
    buttons: list[dict[str, str]]
    ts: str
    for_person: str | None = None  # only this person sees it (ephemeral)
    reply_count: int = 0
    key: str | None = None  # the poster's idempotency key, for find_posted


class LocalAdapter:
    """Web chat and test fake in one: the same code path whether a browser or a test acts."""

    platform = PLATFORM

    def __init__(
        self,
        settings: LocalSettings,
        *,
        clock: Clock,
        state: StateStorePort | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._state = state
        self._handler: EventHandler | None = None
        self._channels = {c.id: c for c in settings.channels}
        self._people = {p.id: p for p in settings.people}
        self._messages: dict[str, list[LocalMessage]] = {c.id: [] for c in settings.channels}
        self._sockets: dict[web.WebSocketResponse, str] = {}
        self._lock = asyncio.Lock()
        self._seen_events: dict[str, None] = {}  # insertion-ordered, bounded

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        if self._state is not None:
            for channel in self._channels:
                saved = await self._state.get(f"channel:{channel}")
                if saved:
                    self._messages[channel] = [LocalMessage(**m) for m in saved["messages"]]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        self._sockets.clear()

    # --- the Adapter protocol -----------------------------------------------------------------

    async def post(
        self, channel: ChannelRef, message: Message, *, key: str | None = None
    ) -> PostedMessage:
        msg = await self._add(channel.channel, None, message, key=key)
        return PostedMessage(channel, msg.id, msg.id)

    async def reply(
        self, posted: PostedMessage, message: Message, *, key: str | None = None
    ) -> PostedMessage:
        msg = await self._add(posted.channel.channel, posted.thread_id, message, key=key)
        return PostedMessage(posted.channel, msg.id, posted.thread_id)

    async def find_posted(
        self, channel: ChannelRef, key: str, since: datetime, *, thread_id: str | None = None
    ) -> PostedMessage | None:
        """Search the channel's kept history; keys are unique, so `since` only bounds the search.

        The history is the one saved in the database, so a message posted by a process that
        died before recording it is still found after a restart.
        """
        if self._state is not None:
            saved = await self._state.get(f"channel:{channel.channel}")
            messages = [LocalMessage(**m) for m in saved["messages"]] if saved else []
        else:
            messages = self._messages.get(channel.channel, [])
        for msg in reversed(messages):
            if msg.key == key and msg.thread_id == thread_id:
                return PostedMessage(channel, msg.id, thread_id or msg.id)
        return None

    async def update(self, posted: PostedMessage, message: Message) -> None:
        async with self._lock:
            for msg in self._messages.get(posted.channel.channel, []):
                if msg.id == posted.message_id:
                    msg.text = render.message_text(message)
                    msg.html = render.message_html(message)
                    msg.buttons = render.buttons(message)
                    await self._save(msg.channel)
                    await self._broadcast(
                        {"type": "update", "message": asdict(msg)}, msg.for_person
                    )
                    return
        raise LookupError(f"no message {posted.message_id} in {posted.channel.channel}")

    async def notify(self, channel: ChannelRef, person: Person, message: Message) -> None:
        await self._add(channel.channel, None, message, for_person=person.id)

    async def is_private(self, channel: ChannelRef) -> bool:
        return False  # every local chat channel is open to everyone who opens the page

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self._index),
            web.get("/local/api/state", self._state_view),
            web.get("/local/ws", self._ws),
            web.post("/local/api/send", self._send),
            web.post("/local/api/click", self._click),
            web.post("/local/api/submit", self._submit),
            web.static("/local/static", STATIC),
        ]

    # --- storage of the chat ------------------------------------------------------------------

    def _channel(self, channel: str) -> LocalChannel:
        try:
            return self._channels[channel]
        except KeyError:
            raise LookupError(f"the local chat has no channel {channel!r}") from None

    async def _add(
        self,
        channel: str,
        thread_id: str | None,
        message: Message,
        *,
        for_person: str | None = None,
        author: Person | None = None,
        key: str | None = None,
    ) -> LocalMessage:
        self._channel(channel)
        msg = LocalMessage(
            id=secrets.token_hex(6),
            channel=channel,
            thread_id=thread_id,
            author_id=author.id if author else "boeket",
            author_name=author.name if author else self._settings.ui.get("bot_name", "Boeket"),
            text=render.message_text(message),
            html=render.message_html(message),
            buttons=render.buttons(message),
            ts=self._clock.now().isoformat(),
            for_person=for_person,
            key=key,
        )
        async with self._lock:
            self._messages[channel].append(msg)
            if thread_id is not None and for_person is None:
                for parent in self._messages[channel]:
                    if parent.id == thread_id:
                        parent.reply_count += 1
            await self._save(channel)
        await self._broadcast({"type": "message", "message": asdict(msg)}, for_person)
        return msg

    async def _save(self, channel: str) -> None:
        """Keep the channel's history; ephemeral messages stay in memory only, as on Slack.

        They can link a person to an anonymous contribution (its confirmation), so they are
        never written to the database.
        """
        if self._state is not None:
            shared = [asdict(m) for m in self._messages[channel] if m.for_person is None]
            value = {"messages": shared[-2000:]}
            await self._state.put(f"channel:{channel}", value, self._clock.now())

    async def _broadcast(self, payload: dict[str, Any], for_person: str | None) -> None:
        data = json.dumps(payload)
        for ws, person in list(self._sockets.items()):
            if for_person is not None and person != for_person:
                continue
            try:
                await ws.send_str(data)
            except (ConnectionError, RuntimeError):
                self._sockets.pop(ws, None)

    # --- acting as a person: used by the web page and by tests --------------------------------

    def person(self, person_id: str) -> Person:
        try:
            return self._people[person_id]
        except KeyError:
            raise LookupError(f"unknown person {person_id!r}") from None

    async def say(
        self,
        person_id: str,
        channel: str,
        text: str,
        *,
        thread_id: str | None = None,
        event_id: str | None = None,
    ) -> Response:
        """A person writes in a channel or thread; `/deel …` is a command."""
        person = self.person(person_id)
        ref = ChannelRef(PLATFORM, channel)
        self._channel(channel)
        stripped = text.strip()
        event_id = event_id or secrets.token_hex(8)
        if stripped.startswith("/") and thread_id is None:
            command, _, rest = stripped[1:].partition(" ")
            response = await self._dispatch(
                CommandEvent(event_id, ref, person, command.lower(), rest.strip())
            )
        else:
            # A browser that retries a send uses the same id: show the message once.
            if event_id not in self._seen_events:
                self._seen_events[event_id] = None
                while len(self._seen_events) > SEEN_EVENTS:
                    self._seen_events.pop(next(iter(self._seen_events)))
                await self._add(channel, thread_id, Message(text=text), author=person)
            response = await self._dispatch(
                MessageEvent(event_id, ref, person, text, thread_id=thread_id)
            )
        await self._show_ephemeral(ref, person, response)
        return response

    async def click(
        self,
        person_id: str,
        channel: str,
        action_id: str,
        value: str = "",
        *,
        message_id: str = "",
        event_id: str | None = None,
    ) -> Response:
        person = self.person(person_id)
        ref = ChannelRef(PLATFORM, channel)
        self._channel(channel)
        response = await self._dispatch(
            ButtonEvent(event_id or secrets.token_hex(8), ref, person, action_id, value, message_id)
        )
        await self._show_ephemeral(ref, person, response)
        return response

    async def submit(
        self,
        person_id: str,
        channel: str,
        form_id: str,
        values: dict[str, str],
        *,
        meta: dict[str, str] | None = None,
        submission_id: str | None = None,
    ) -> Response:
        person = self.person(person_id)
        ref = ChannelRef(PLATFORM, channel)
        self._channel(channel)
        response = await self._dispatch(
            FormEvent(
                submission_id or secrets.token_hex(8), form_id, ref, person, values, meta or {}
            )
        )
        if isinstance(response, FormDone):
            await self.notify(ref, person, response.confirmation)
        await self._show_ephemeral(ref, person, response)
        return response

    async def _show_ephemeral(self, ref: ChannelRef, person: Person, response: Response) -> None:
        if isinstance(response, Ephemeral):
            await self.notify(ref, person, response.message)

    async def _dispatch(self, event: Any) -> Response:
        if self._handler is None:
            raise RuntimeError("the local adapter has not been started")
        return await self._handler(event)

    # --- inspection, for tests and the demo ---------------------------------------------------

    @property
    def channels(self) -> tuple[LocalChannel, ...]:
        return self._settings.channels

    def messages(self, channel: str, *, include_ephemeral: bool = False) -> list[LocalMessage]:
        return [
            m for m in self._messages.get(channel, []) if include_ephemeral or m.for_person is None
        ]

    def thread(self, channel: str, thread_id: str) -> list[LocalMessage]:
        return [m for m in self.messages(channel) if m.thread_id == thread_id]

    def ephemerals(self, channel: str, person_id: str) -> list[LocalMessage]:
        return [m for m in self._messages.get(channel, []) if m.for_person == person_id]

    def transcript(self, channel: str) -> str:
        lines: list[str] = []
        for m in self.messages(channel):
            if m.thread_id is not None:
                continue
            lines.append(self._line(m, ""))
            lines.extend(self._line(r, "    ↳ ") for r in self.thread(channel, m.id))
        return "\n".join(lines)

    def _line(self, m: LocalMessage, indent: str) -> str:
        stamp = m.ts[:16].replace("T", " ")
        body = m.text.replace("\n", "\n" + indent + "  ")
        return f"{indent}[{stamp}] {m.author_name}: {body}"

    # --- HTTP ---------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _state_view(self, request: web.Request) -> web.Response:
        person = request.query.get("person")
        return web.json_response(
            {
                "language": self._settings.language,
                "ui": self._settings.ui,
                "now": self._clock.now().isoformat(),
                "channels": [asdict(c) for c in self._settings.channels],
                "people": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "department": self._settings.person_departments.get(p.id),
                    }
                    for p in self._settings.people
                ],
                "messages": {
                    cid: [
                        asdict(m)
                        for m in msgs
                        if m.for_person is None or (person is not None and m.for_person == person)
                    ]
                    for cid, msgs in self._messages.items()
                },
            }
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        self._sockets[ws] = request.query.get("person", "")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data == "ping":
                    await ws.send_str(
                        json.dumps({"type": "clock", "now": self._clock.now().isoformat()})
                    )
        finally:
            self._sockets.pop(ws, None)
        return ws

    async def _body(self, request: web.Request, *required: str) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_BODY, actual_size=request.content_length
            )
        # A chunked body has no Content-Length: count what actually arrives.
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
        try:
            body = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _bad("body must be JSON") from None
        if not isinstance(body, dict):
            raise _bad("body must be a JSON object")
        for name in required:
            if not isinstance(body.get(name), str) or not body[name]:
                raise _bad(f"field {name!r} is required")
        if body["person"] not in self._people:
            raise _bad("unknown person")
        if body["channel"] not in self._channels:
            raise _bad("unknown channel")
        return body

    async def _send(self, request: web.Request) -> web.Response:
        body = await self._body(request, "person", "channel", "text")
        if len(body["text"]) > MAX_TEXT:
            raise _bad(f"text longer than {MAX_TEXT} characters")
        thread = body.get("thread_id") if isinstance(body.get("thread_id"), str) else None
        event_id = body.get("client_id") if isinstance(body.get("client_id"), str) else None
        response = await self.say(
            body["person"],
            body["channel"],
            body["text"],
            thread_id=thread or None,
            event_id=event_id,
        )
        return web.json_response({"response": _response_json(response)})

    async def _click(self, request: web.Request) -> web.Response:
        body = await self._body(request, "person", "channel", "action_id")
        response = await self.click(
            body["person"],
            body["channel"],
            body["action_id"],
            str(body.get("value", "")),
            message_id=str(body.get("message_id", "")),
        )
        return web.json_response({"response": _response_json(response)})

    async def _submit(self, request: web.Request) -> web.Response:
        body = await self._body(request, "person", "channel", "form_id", "submission_id")
        values = body.get("values", {})
        meta = body.get("meta", {})
        if not _str_map(values) or not _str_map(meta):
            raise _bad("values and meta must map names to text")
        response = await self.submit(
            body["person"],
            body["channel"],
            body["form_id"],
            values,
            meta=meta,
            submission_id=body["submission_id"],
        )
        return web.json_response({"response": _response_json(response)})


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": reason}), content_type="application/json")


def _response_json(response: Response) -> dict[str, Any] | None:
    match response:
        case ShowForm(form=form):
            return {"type": "form", "form": render.form_json(form)}
        case FormErrors(errors=errors):
            return {"type": "errors", "errors": errors}
        case FormDone(confirmation=message):
            return {"type": "done", "html": render.message_html(message)}
        case Ephemeral(message=message):
            return {"type": "ephemeral", "html": render.message_html(message)}
    return None
