"""SQLAlchemy tables. Rows never leave `storage/`: repositories turn them into domain values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores no offset, so we store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy's own class attribute
        datetime: UTCDateTime(),
        float: Float(),
        date: Date(),
        dict[str, str]: JSON(),
    }


class OccurrenceRow(Base):
    """One step of one round; the unique key makes posting it exactly once possible."""

    __tablename__ = "occurrences"
    __table_args__ = (
        UniqueConstraint(
            "organisation_id", "department_id", "step", "round_date", name="uq_occurrence_key"
        ),
        Index("ix_occurrences_due", "organisation_id", "status", "due_at"),
        Index("ix_occurrences_message", "platform", "channel", "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(64))
    department_id: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(16))
    round_date: Mapped[date]
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    kind: Mapped[str | None] = mapped_column(String(16))
    goal_id: Mapped[str | None] = mapped_column(String(64))
    platform: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(200))
    thread_id: Mapped[str | None] = mapped_column(String(200))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(String(500))


class ContributionRow(Base):
    """An answer or a share. For anonymous ones `author_id` and `author_name` stay NULL."""

    __tablename__ = "contributions"
    __table_args__ = (
        UniqueConstraint("organisation_id", "event_key", name="uq_contribution_event"),
        Index("ix_contributions_round", "organisation_id", "department_id", "round_date"),
        Index("ix_contributions_author", "organisation_id", "platform", "author_id"),
        Index("ix_contributions_considered", "organisation_id", "considered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(64))
    department_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    round_date: Mapped[date]
    text: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    goal_id: Mapped[str | None] = mapped_column(String(64))
    theme: Mapped[str | None] = mapped_column(String(64))  # the first of `themes`
    themes: Mapped[list[str] | None] = mapped_column(JSON, default=list)  # best first
    themes_chosen: Mapped[bool] = mapped_column(Boolean, default=False)  # by the person
    shareable: Mapped[bool] = mapped_column(Boolean, default=True)  # False: "niet delen"
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    author_id: Mapped[str | None] = mapped_column(String(200))
    author_name: Mapped[str | None] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(16))
    event_key: Mapped[str] = mapped_column(String(300))
    delete_token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Stored NULL with the contribution and set once its cross-posts are planned: a pending
    # entry of the outbox, which a later tick works off if the process died in between.
    considered_at: Mapped[datetime | None]


class ContributionVectorRow(Base):
    """A contribution's embedding, stored so a restart does not recompute it."""

    __tablename__ = "contribution_vectors"
    __table_args__ = (Index("ix_contribution_vectors_org", "organisation_id", "embedder"),)

    contribution_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("contributions.id", ondelete="CASCADE"), primary_key=True
    )
    organisation_id: Mapped[str] = mapped_column(String(64))
    embedder: Mapped[str] = mapped_column(String(200))
    dims: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]


class CrosspostRow(Base):
    """A lesson suggested to another department (or a theme channel), at most once per target."""

    __tablename__ = "crossposts"
    __table_args__ = (
        UniqueConstraint("contribution_id", "target", name="uq_crosspost_target"),
        Index("ix_crossposts_due", "organisation_id", "status", "due_at"),
        Index("ix_crossposts_thread", "platform", "channel", "thread_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(64))
    contribution_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("contributions.id", ondelete="CASCADE")
    )
    source_department_id: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(80))  # "department:ok" or "theme:werkdruk"
    score: Mapped[float]
    status: Mapped[str] = mapped_column(String(16))  # pending, claimed, sent, skipped, failed
    due_at: Mapped[datetime]
    platform: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(200))
    thread_id: Mapped[str | None] = mapped_column(String(200))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(String(500))


class CrosspostFeedbackRow(Base):
    """One verdict per person per suggestion: useful, not relevant, or let's talk."""

    __tablename__ = "crosspost_feedback"
    __table_args__ = (UniqueConstraint("crosspost_id", "person_key", name="uq_feedback_person"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    crosspost_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("crossposts.id", ondelete="CASCADE")
    )
    person_key: Mapped[str] = mapped_column(String(64))  # a hash: the vote, not who voted
    verdict: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class DigestFeedbackRow(Base):
    """A click on a lesson in the weekly digest: useful, or let's talk; once per person each."""

    __tablename__ = "digest_feedback"
    __table_args__ = (
        UniqueConstraint(
            "contribution_id", "person_key", "verdict", name="uq_digest_feedback_person"
        ),
        Index("ix_digest_feedback_org", "organisation_id", "person_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(64))
    contribution_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("contributions.id", ondelete="CASCADE")
    )
    person_key: Mapped[str] = mapped_column(String(64))  # a hash: the vote, not who voted
    verdict: Mapped[str] = mapped_column(String(16))  # "useful" or "talk"
    created_at: Mapped[datetime]


class PersonSettingsRow(Base):
    """A person's own choices. Keyed by platform user id; holds no contribution."""

    __tablename__ = "person_settings"

    organisation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    language: Mapped[str | None] = mapped_column(String(8))
    anonymous_default: Mapped[bool] = mapped_column(Boolean, default=False)
    named_elsewhere: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class AdapterStateRow(Base):
    """Opaque JSON an adapter keeps (e.g. Teams conversation references, local chat history)."""

    __tablename__ = "adapter_state"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class DigestRow(Base):
    """One weekly digest of one organisation; the unique week makes posting it exactly once."""

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("organisation_id", "week_start", name="uq_digest_week"),
        Index("ix_digests_due", "organisation_id", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(64))
    week_start: Mapped[date]  # the Monday of the week the digest looks back on
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    platform: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(200))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(String(500))


class AuditRow(Base):
    """What an admin (or Boeket on its own, e.g. retention) did to people's data. `subject` is a
    hash, never a person's id: the log must not keep what was forgotten."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_org_at", "organisation_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
