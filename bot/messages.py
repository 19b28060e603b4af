"""Neutral messages, forms and events: what the core says and hears, whatever the platform.

Every text here is plain text. Adapters escape it for their platform (mrkdwn, HTML, Adaptive Card
text), so a person's words are never read as markup, mentions or links.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.domain import ChannelRef, Person

# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    text: str


@dataclass(frozen=True, slots=True)
class Section:
    """A paragraph, optionally with a bold title, and optionally a quoted person's text."""

    text: str
    title: str = ""
    quote: bool = False


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[str, ...]
    title: str = ""


@dataclass(frozen=True, slots=True)
class Context:
    """Small print under a message: who, when, a hint."""

    text: str


@dataclass(frozen=True, slots=True)
class Divider:
    pass


@dataclass(frozen=True, slots=True)
class Button:
    """A button. `inline` is a short form a platform may show in the message itself, next to
    the button (Teams: inputs in the card); a submit there is a submit of that form, and the
    button still opens the full one. Platforms that cannot show inputs in a message ignore it."""

    action_id: str
    label: str
    value: str = ""
    style: Literal["default", "primary", "danger"] = "default"
    inline: Form | None = None


@dataclass(frozen=True, slots=True)
class Actions:
    buttons: tuple[Button, ...]


Block = Header | Section | Bullets | Context | Divider | Actions


@dataclass(frozen=True, slots=True)
class Message:
    """A message to post. `text` is the plain fallback (notifications, screen readers)."""

    text: str
    blocks: tuple[Block, ...] = ()


# --- forms -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    kind: Literal["text", "textarea", "select", "checkbox"] = "text"
    required: bool = False
    max_length: int = 3000
    hint: str = ""
    options: tuple[Option, ...] = ()
    initial: str = ""


@dataclass(frozen=True, slots=True)
class Form:
    """A form (Slack modal, Teams dialog, local chat dialog).

    `form_id` routes the submission back; `meta` carries context the core needs on submit (the
    department, the round) and travels through the platform, so it must hold no secrets.
    """

    form_id: str
    title: str
    submit_label: str
    fields: tuple[Field, ...]
    meta: dict[str, str] = field(default_factory=dict)
    intro: str = ""


# --- what the core answers to an interaction --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShowForm:
    form: Form


@dataclass(frozen=True, slots=True)
class Ephemeral:
    """A reply only the person who acted sees."""

    message: Message


@dataclass(frozen=True, slots=True)
class FormErrors:
    """Field name → message, shown inline next to the fields; nothing was stored."""

    errors: dict[str, str]


@dataclass(frozen=True, slots=True)
class FormDone:
    """Stored; the confirmation is shown to the person."""

    confirmation: Message


@dataclass(frozen=True, slots=True)
class ShowHome:
    """The person's own page (Slack's App Home): their contributions, settings and overview."""

    message: Message


Response = ShowForm | Ephemeral | FormErrors | FormDone | ShowHome | None


# --- events from adapters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A person wrote in a channel (or in a thread, when `thread_id` is set)."""

    event_id: str
    channel: ChannelRef
    person: Person
    text: str
    thread_id: str | None = None
    workspace: str = ""


@dataclass(frozen=True, slots=True)
class CommandEvent:
    """A command (`/deel …` in Slack and the local chat, the command menu in Teams)."""

    event_id: str
    channel: ChannelRef
    person: Person
    command: str
    text: str = ""
    workspace: str = ""


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    event_id: str
    channel: ChannelRef
    person: Person
    action_id: str
    value: str
    message_id: str = ""
    workspace: str = ""
    home: bool = False  # clicked on the person's own page, not in a channel


@dataclass(frozen=True, slots=True)
class HomeEvent:
    """A person opened their own page."""

    event_id: str
    platform: str
    person: Person
    workspace: str = ""


@dataclass(frozen=True, slots=True)
class FormEvent:
    """A submitted form. `submission_id` is the platform's id for it (Slack's view.id)."""

    submission_id: str
    form_id: str
    channel: ChannelRef
    person: Person
    values: dict[str, str]
    meta: dict[str, str] = field(default_factory=dict)
    workspace: str = ""


Event = MessageEvent | CommandEvent | ButtonEvent | FormEvent | HomeEvent


def shorten(text: str, limit: int) -> str:
    """`text`, or its first `limit - 1` characters and "…" when it is longer than `limit`."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
