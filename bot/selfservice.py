"""What a person asks for themselves in chat, next to `/deel`'s sharing:

- `/deel dashboard`: a signed link to the dashboard;
- `/deel overzicht`: a signed link to their own overview (only they can open it);
- `/deel privacy`: what Boeket holds of them, and how to take it along or have it forgotten;
- `/deel vergeet`: a button that forgets everything on their name, everywhere Boeket can.

Replies are ephemeral: only the person who asked sees them.
"""

from __future__ import annotations

import json

from bot.config import OrgConfig
from bot.cycle import Texts
from bot.dashboard import Dashboard
from bot.messages import (
    Actions,
    Button,
    ButtonEvent,
    CommandEvent,
    Ephemeral,
    Event,
    Message,
    Response,
    Section,
)
from bot.privacy import PersonalData

FORGET = "boeket.privacy.forget"
KEEP = "boeket.privacy.keep"


class SelfService:
    def __init__(
        self, *, config: OrgConfig, texts: Texts, dashboard: Dashboard, personal: PersonalData
    ) -> None:
        self._config = config
        self._t = texts
        self._dashboard = dashboard
        self._personal = personal

    async def handle(self, event: Event) -> Response:
        """The reply, or None when the event is not for this service."""
        if isinstance(event, CommandEvent):
            return await self._command(event)
        if isinstance(event, ButtonEvent) and event.action_id in {FORGET, KEEP}:
            return await self._button(event)
        return None

    def _say(self, event: CommandEvent | ButtonEvent, key: str, **params: object) -> Ephemeral:
        dept = self._config.department_for_channel(event.channel.platform, event.channel.channel)
        text = self._t(dept, key, **params)
        return Ephemeral(Message(text=text, blocks=(Section(text),)))

    async def _command(self, event: CommandEvent) -> Response:
        words = event.text.strip().lower().split()
        sub = words[0] if words else ""
        platform, person = event.channel.platform, event.person.id
        if sub == "dashboard":
            return self._say(event, "dashboard.link", url=await self._dashboard.dashboard_link())
        if sub in {"overzicht", "overview"}:
            url = await self._dashboard.own_link(platform, person)
            return self._say(event, "dashboard.own_link", url=url)
        if sub == "privacy":
            data = await self._personal.export(person, platform, actor="self")
            size = len(json.dumps(data, ensure_ascii=False).encode())
            return self._say(
                event,
                "privacy.summary",
                count=len(data["contributions"]),
                kilobytes=max(1, size // 1024),
                url=await self._dashboard.own_link(platform, person),
            )
        if sub in {"vergeet", "forget"}:
            dept = self._config.department_for_channel(platform, event.channel.channel)
            text = self._t(dept, "privacy.confirm")
            return Ephemeral(
                Message(
                    text=text,
                    blocks=(
                        Section(text),
                        Actions(
                            (
                                Button(
                                    FORGET, self._t(dept, "privacy.forget_button"), style="danger"
                                ),
                                Button(KEEP, self._t(dept, "privacy.keep_button")),
                            )
                        ),
                    ),
                )
            )
        return None

    async def _button(self, event: ButtonEvent) -> Response:
        if event.action_id == KEEP:
            return self._say(event, "privacy.kept")
        forgotten = await self._personal.forget(
            event.person.id, event.channel.platform, actor="self"
        )
        return self._say(
            event,
            "privacy.forgotten",
            count=forgotten.contributions,
            posts=forgotten.posts_edited,
        )
