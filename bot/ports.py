"""Ports: the small protocols the core needs from the outside world."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from aiohttp import web

from bot.domain import ChannelRef, Person, PostedMessage
from bot.messages import Event, Message, Response

EventHandler = Callable[[Event], Awaitable[Response]]


class PermanentDeliveryError(Exception):
    """A post that retrying cannot fix (channel gone, bot not invited, app blocked).

    `advice` says, in plain words for the admin, what to do. The cycle marks the step failed,
    logs the advice once, and goes on with the other steps.
    """

    def __init__(self, reason: str, advice: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.advice = advice


class Adapter(Protocol):
    """One chat platform. Turns platform payloads into neutral events and messages into calls.

    Adapters call the `EventHandler` they were given for every event and render its `Response`
    the platform's way (a modal, inline errors, an ephemeral message).
    """

    @property
    def platform(self) -> str: ...

    def routes(self) -> list[web.AbstractRouteDef]:
        """HTTP routes to mount on Boeket's aiohttp application."""
        ...

    async def start(self, handler: EventHandler) -> None: ...

    async def stop(self) -> None: ...

    async def post(
        self, channel: ChannelRef, message: Message, *, key: str | None = None
    ) -> PostedMessage:
        """Post `message`; `key` (e.g. "occurrence:12") travels with it for `find_posted`."""
        ...

    async def reply(
        self, posted: PostedMessage, message: Message, *, key: str | None = None
    ) -> PostedMessage: ...

    async def find_posted(
        self, channel: ChannelRef, key: str, since: datetime, *, thread_id: str | None = None
    ) -> PostedMessage | None:
        """The message posted with `key` in `channel` (or in thread `thread_id`) since `since`.

        Asked before posting again something whose earlier attempt may have reached the platform
        (a replica died between the post and recording it). None when there is no such message,
        or when the platform cannot tell (then the caller posts: at least once).
        """
        ...

    async def update(self, posted: PostedMessage, message: Message) -> None: ...

    async def notify(self, channel: ChannelRef, person: Person, message: Message) -> None:
        """Tell one person something only they see (an ephemeral message or a direct chat)."""
        ...

    async def is_private(self, channel: ChannelRef) -> bool:
        """Whether only invited members can read the channel."""
        ...


class Clock(Protocol):
    """Where the core gets the time; a virtual clock runs the cycle faster for demos and tests."""

    def now(self) -> datetime: ...
