"""Domain values shared by the core, the storage layer and the adapters.

Everything here is a plain frozen dataclass or an enum: no ORM rows, no SDK types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime


class Kind(enum.StrEnum):
    """The reflection kinds of the prompt library (see the seed's practices)."""

    SUCCES = "succes"
    LES = "les"
    CASUS = "casus"
    KOERS = "koers"
    WAARDERING = "waardering"
    PERSPECTIEF = "perspectief"


class Step(enum.StrEnum):
    """The steps of one round of a department's learning cycle, in order."""

    PROMPT = "prompt"
    REMINDER = "reminder"
    HARVEST = "harvest"
    FOLLOWUP = "followup"


class Source(enum.StrEnum):
    """How a contribution reached Boeket."""

    REPLY = "reply"  # a plain reply in the prompt's thread
    FORM = "form"  # the answer form behind the prompt's button
    SHARE = "share"  # /deel
    TRANSLATION = "translation"  # a department's answer to a lesson suggested from elsewhere


class OccurrenceStatus(enum.StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Person:
    """Someone on a platform. `id` is the platform's user id; never stored for anonymous text."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """Where a message goes: a platform, that platform's channel id, and its workspace or tenant.

    `workspace` (a Slack team id, a Teams tenant id) is empty where one is configured for all.
    """

    platform: str
    channel: str
    workspace: str = ""


@dataclass(frozen=True, slots=True)
class PostedMessage:
    """What an adapter reports back after posting: the ids needed to reply or update later."""

    channel: ChannelRef
    message_id: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class PersonSettings:
    """What a person chose for themselves: the language Boeket speaks to them, and whether
    their answers are anonymous unless they say otherwise."""

    language: str | None = None
    anonymous_default: bool = False
    named_elsewhere: bool = False  # may other departments see their name beside their lessons


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One step of one round of a department's cycle, keyed by (department, step, round date)."""

    id: int
    organisation_id: str
    department_id: str
    step: Step
    round_date: date
    due_at: datetime
    status: OccurrenceStatus
    kind: Kind | None = None
    goal_id: str | None = None
    message_id: str | None = None
    thread_id: str | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Contribution:
    """An answer to a prompt or a shared success.

    `author` is None when the contribution is anonymous: no link to the person is kept.
    `themes` are the organisation's themes it is about, best first, found by Boeket or chosen
    by the person (`themes_chosen`); `theme` is the first of them. `shareable` is False when the
    person said it must not be shared outside their department.
    """

    id: int
    organisation_id: str
    department_id: str
    kind: Kind
    source: Source
    round_date: date
    text: str
    anonymous: bool
    author: Person | None
    created_at: datetime
    updated_at: datetime
    platform: str
    event_key: str
    fields: dict[str, str] = field(default_factory=dict)
    goal_id: str | None = None
    theme: str | None = None
    themes: tuple[str, ...] = ()
    themes_chosen: bool = False
    shareable: bool = True


@dataclass(frozen=True, slots=True)
class NewContribution:
    """A contribution as the core hands it to storage, before it has an id.

    `theme` alone is short for `themes=(theme,)`.
    """

    organisation_id: str
    department_id: str
    kind: Kind
    source: Source
    round_date: date
    text: str
    anonymous: bool
    author: Person | None
    platform: str
    event_key: str
    created_at: datetime
    fields: dict[str, str] = field(default_factory=dict)
    goal_id: str | None = None
    theme: str | None = None
    themes: tuple[str, ...] = ()
    themes_chosen: bool = False
    shareable: bool = True
    delete_token_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Crosspost:
    """A contribution suggested in another department's (or a theme's) channel."""

    id: int
    organisation_id: str
    contribution_id: int
    source_department_id: str
    target: str  # "department:<id>" or "theme:<id>"
    score: float
    status: OccurrenceStatus
    due_at: datetime
    platform: str | None = None
    channel: str | None = None
    message_id: str | None = None
    thread_id: str | None = None
    created_at: datetime | None = None
    note: str | None = None  # why the last attempt failed, or was skipped
