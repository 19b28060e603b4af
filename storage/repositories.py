"""Repositories: the only way the core reads and writes the database. They return domain values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.domain import (
    Contribution,
    Crosspost,
    Kind,
    NewContribution,
    Occurrence,
    OccurrenceStatus,
    Person,
    PersonSettings,
    Source,
    Step,
)
from storage.db import Database
from storage.tables import (
    AdapterStateRow,
    ContributionRow,
    ContributionVectorRow,
    CrosspostFeedbackRow,
    CrosspostRow,
    DigestRow,
    OccurrenceRow,
    PersonSettingsRow,
)


def _insert(db: Database, table: Any) -> postgresql.Insert | sqlite.Insert:
    """INSERT with the backend's ON CONFLICT clause (both dialects spell it the same)."""
    if db.backend == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


ClaimTable = type[OccurrenceRow] | type[CrosspostRow] | type[DigestRow]


def _claimable(table: ClaimTable, now: datetime, lease: timedelta) -> Any:
    """Pending, or claimed longer than `lease` ago by a worker that has since died."""
    return or_(
        table.status == OccurrenceStatus.PENDING.value,
        and_(table.status == OccurrenceStatus.CLAIMED.value, table.claimed_at < now - lease),
    )


async def _claim(
    db: Database,
    table: ClaimTable,
    row_id: int,
    worker: str,
    now: datetime,
    lease: timedelta,
    **extra: Any,
) -> bool:
    """The conditional UPDATE that lets exactly one worker take a claimable row."""
    stmt = (
        update(table)
        .where(table.id == row_id, _claimable(table, now, lease))
        .values(status=OccurrenceStatus.CLAIMED.value, claimed_by=worker, claimed_at=now, **extra)
        .execution_options(synchronize_session=False)
    )
    async with db.sessions.begin() as session:
        result = await session.execute(stmt)
    return bool(result.rowcount == 1)


async def _finish(
    db: Database, table: ClaimTable, row_id: int, worker: str, values: dict[str, Any]
) -> bool:
    """Record the outcome of `worker`'s claim; False if another worker has taken the row over."""
    stmt = (
        update(table)
        .where(
            table.id == row_id,
            table.status == OccurrenceStatus.CLAIMED.value,
            table.claimed_by == worker,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    async with db.sessions.begin() as session:
        result = await session.execute(stmt)
    return bool(result.rowcount == 1)


async def _release(
    db: Database, table: ClaimTable, row_id: int, worker: str, note: str, **extra: Any
) -> None:
    """Give `worker`'s claim back after a failed attempt, so that a later tick retries it."""
    stmt = (
        update(table)
        .where(table.id == row_id, table.claimed_by == worker)
        .values(status=OccurrenceStatus.PENDING.value, claimed_by=None, note=note[:500], **extra)
        .execution_options(synchronize_session=False)
    )
    async with db.sessions.begin() as session:
        await session.execute(stmt)


def _occurrence(row: OccurrenceRow) -> Occurrence:
    return Occurrence(
        id=row.id,
        organisation_id=row.organisation_id,
        department_id=row.department_id,
        step=Step(row.step),
        round_date=row.round_date,
        due_at=row.due_at,
        status=OccurrenceStatus(row.status),
        kind=Kind(row.kind) if row.kind else None,
        goal_id=row.goal_id,
        message_id=row.message_id,
        thread_id=row.thread_id,
        attempts=row.attempts,
    )


def _contribution(row: ContributionRow) -> Contribution:
    author = (
        Person(row.author_id, row.author_name or "")
        if row.author_id is not None and not row.anonymous
        else None
    )
    return Contribution(
        id=row.id,
        organisation_id=row.organisation_id,
        department_id=row.department_id,
        kind=Kind(row.kind),
        source=Source(row.source),
        round_date=row.round_date,
        text=row.text,
        anonymous=row.anonymous,
        author=author,
        created_at=row.created_at,
        updated_at=row.updated_at,
        platform=row.platform,
        event_key=row.event_key,
        fields=dict(row.fields or {}),
        goal_id=row.goal_id,
        theme=row.theme,
        themes=tuple(row.themes or ()),
        themes_chosen=row.themes_chosen,
        shareable=row.shareable,
    )


def _themes(themes: Sequence[str]) -> dict[str, Any]:
    """The columns for a contribution's themes: the list, and its first as `theme`."""
    unique = list(dict.fromkeys(themes))
    return {"themes": unique, "theme": unique[0] if unique else None}


@dataclass(frozen=True, slots=True)
class PlannedOccurrence:
    """An occurrence the cycle computed; inserted if its key is new, ignored otherwise."""

    organisation_id: str
    department_id: str
    step: Step
    round_date: date
    due_at: datetime


class OccurrenceRepository:
    """Occurrences of cycle steps, and the claim that makes each one post exactly once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def plan(self, planned: Iterable[PlannedOccurrence]) -> int:
        """Insert occurrences whose key is new (ON CONFLICT DO NOTHING); return how many were."""
        rows = [
            {
                "organisation_id": p.organisation_id,
                "department_id": p.department_id,
                "step": p.step.value,
                "round_date": p.round_date,
                "due_at": p.due_at,
                "status": OccurrenceStatus.PENDING.value,
                "attempts": 0,
            }
            for p in planned
        ]
        if not rows:
            return 0
        stmt = (
            _insert(self._db, OccurrenceRow)
            .values(rows)
            .on_conflict_do_nothing(
                index_elements=["organisation_id", "department_id", "step", "round_date"]
            )
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
        return max(int(result.rowcount), 0)

    async def due(
        self, organisation_id: str, now: datetime, lease: timedelta, limit: int = 200
    ) -> list[Occurrence]:
        """Pending occurrences due by `now`, and claims older than `lease` (a crashed worker)."""
        stmt = (
            select(OccurrenceRow)
            .where(
                OccurrenceRow.organisation_id == organisation_id,
                OccurrenceRow.due_at <= now,
                _claimable(OccurrenceRow, now, lease),
            )
            .order_by(OccurrenceRow.due_at, OccurrenceRow.id)
            .limit(limit)
        )
        async with self._db.sessions() as session:
            return [_occurrence(r) for r in (await session.scalars(stmt)).all()]

    async def claim(self, occurrence_id: int, worker: str, now: datetime, lease: timedelta) -> bool:
        """Take an occurrence for `worker`. A conditional UPDATE: only one worker can win it."""
        return await _claim(
            self._db,
            OccurrenceRow,
            occurrence_id,
            worker,
            now,
            lease,
            attempts=OccurrenceRow.attempts + 1,
        )

    async def finish(
        self,
        occurrence_id: int,
        worker: str,
        status: OccurrenceStatus,
        now: datetime,
        *,
        kind: Kind | None = None,
        goal_id: str | None = None,
        platform: str | None = None,
        channel: str | None = None,
        message_id: str | None = None,
        thread_id: str | None = None,
        note: str | None = None,
    ) -> bool:
        """Record the outcome of a claimed occurrence. False if another worker took it over."""
        values: dict[str, Any] = {"status": status.value, "finished_at": now, "note": note}
        for name, value in (
            ("kind", kind.value if kind else None),
            ("goal_id", goal_id),
            ("platform", platform),
            ("channel", channel),
            ("message_id", message_id),
            ("thread_id", thread_id),
        ):
            if value is not None:
                values[name] = value
        return await _finish(self._db, OccurrenceRow, occurrence_id, worker, values)

    async def release(self, occurrence_id: int, worker: str, note: str) -> None:
        """Give a claim back after a failed attempt so a later tick retries it."""
        await _release(self._db, OccurrenceRow, occurrence_id, worker, note)

    async def get(
        self, organisation_id: str, department_id: str, step: Step, round_date: date
    ) -> Occurrence | None:
        stmt = select(OccurrenceRow).where(
            OccurrenceRow.organisation_id == organisation_id,
            OccurrenceRow.department_id == department_id,
            OccurrenceRow.step == step.value,
            OccurrenceRow.round_date == round_date,
        )
        async with self._db.sessions() as session:
            row = await session.scalar(stmt)
        return _occurrence(row) if row else None

    async def find_prompt(
        self, organisation_id: str, platform: str, channel: str, message_id: str
    ) -> Occurrence | None:
        """The sent prompt whose message (thread root) is `message_id` in that channel."""
        stmt = select(OccurrenceRow).where(
            OccurrenceRow.organisation_id == organisation_id,
            OccurrenceRow.step == Step.PROMPT.value,
            OccurrenceRow.platform == platform,
            OccurrenceRow.channel == channel,
            or_(OccurrenceRow.message_id == message_id, OccurrenceRow.thread_id == message_id),
        )
        async with self._db.sessions() as session:
            row = await session.scalar(stmt)
        return _occurrence(row) if row else None

    async def count_sent(self, organisation_id: str, department_id: str, step: Step) -> int:
        stmt = select(func.count()).where(
            OccurrenceRow.organisation_id == organisation_id,
            OccurrenceRow.department_id == department_id,
            OccurrenceRow.step == step.value,
            OccurrenceRow.status == OccurrenceStatus.SENT.value,
        )
        async with self._db.sessions() as session:
            return int(await session.scalar(stmt) or 0)

    async def count_kind(self, organisation_id: str, department_id: str, kind: Kind) -> int:
        stmt = select(func.count()).where(
            OccurrenceRow.organisation_id == organisation_id,
            OccurrenceRow.department_id == department_id,
            OccurrenceRow.step == Step.PROMPT.value,
            OccurrenceRow.status == OccurrenceStatus.SENT.value,
            OccurrenceRow.kind == kind.value,
        )
        async with self._db.sessions() as session:
            return int(await session.scalar(stmt) or 0)

    async def all(self, organisation_id: str) -> list[Occurrence]:
        stmt = (
            select(OccurrenceRow)
            .where(OccurrenceRow.organisation_id == organisation_id)
            .order_by(OccurrenceRow.due_at, OccurrenceRow.id)
        )
        async with self._db.sessions() as session:
            return [_occurrence(r) for r in (await session.scalars(stmt)).all()]


class ContributionRepository:
    """Answers and shares, stored idempotently by the platform's event key."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, new: NewContribution) -> tuple[Contribution, bool]:
        """Store `new` unless its event key is known; return the stored row and if it is new."""
        values = {
            "organisation_id": new.organisation_id,
            "department_id": new.department_id,
            "kind": new.kind.value,
            "source": new.source.value,
            "round_date": new.round_date,
            "text": new.text,
            "fields": dict(new.fields),
            "goal_id": new.goal_id,
            **_themes(new.themes or ((new.theme,) if new.theme else ())),
            "themes_chosen": new.themes_chosen,
            "shareable": new.shareable,
            "anonymous": new.anonymous,
            # Anonymous means no link to the person, not a hidden one.
            "author_id": None if new.anonymous or new.author is None else new.author.id,
            "author_name": None if new.anonymous or new.author is None else new.author.name,
            "platform": new.platform,
            "event_key": new.event_key,
            "delete_token_hash": new.delete_token_hash,
            "created_at": new.created_at,
            "updated_at": new.created_at,
        }
        stmt = (
            _insert(self._db, ContributionRow)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["organisation_id", "event_key"])
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
            created = result.rowcount == 1
            row = await session.scalar(
                select(ContributionRow).where(
                    ContributionRow.organisation_id == new.organisation_id,
                    ContributionRow.event_key == new.event_key,
                )
            )
        if row is None:  # pragma: no cover - the insert or the earlier one must be there
            raise RuntimeError("contribution vanished after insert")
        return _contribution(row), created

    async def get(self, organisation_id: str, contribution_id: int) -> Contribution | None:
        async with self._db.sessions() as session:
            row = await session.get(ContributionRow, contribution_id)
        if row is None or row.organisation_id != organisation_id:
            return None
        return _contribution(row)

    async def for_round(
        self, organisation_id: str, department_id: str, round_date: date
    ) -> list[Contribution]:
        stmt = (
            select(ContributionRow)
            .where(
                ContributionRow.organisation_id == organisation_id,
                ContributionRow.department_id == department_id,
                ContributionRow.round_date == round_date,
            )
            .order_by(ContributionRow.created_at, ContributionRow.id)
        )
        async with self._db.sessions() as session:
            return [_contribution(r) for r in (await session.scalars(stmt)).all()]

    async def by_author(
        self, organisation_id: str, platform: str, author_id: str, limit: int = 50
    ) -> list[Contribution]:
        stmt = (
            select(ContributionRow)
            .where(
                ContributionRow.organisation_id == organisation_id,
                ContributionRow.platform == platform,
                ContributionRow.author_id == author_id,
            )
            .order_by(ContributionRow.created_at.desc(), ContributionRow.id.desc())
            .limit(limit)
        )
        async with self._db.sessions() as session:
            return [_contribution(r) for r in (await session.scalars(stmt)).all()]

    async def unconsidered(
        self, organisation_id: str, since: datetime, before: datetime, limit: int = 100
    ) -> list[Contribution]:
        """Stored between `since` and `before`, never considered for cross-posting: left
        behind by a process that died between storing and planning."""
        stmt = (
            select(ContributionRow)
            .where(
                ContributionRow.organisation_id == organisation_id,
                ContributionRow.considered_at.is_(None),
                ContributionRow.created_at >= since,
                ContributionRow.created_at < before,
            )
            .order_by(ContributionRow.created_at, ContributionRow.id)
            .limit(limit)
        )
        async with self._db.sessions() as session:
            return [_contribution(r) for r in (await session.scalars(stmt)).all()]

    async def mark_considered(
        self, organisation_id: str, contribution_id: int, now: datetime
    ) -> None:
        stmt = (
            update(ContributionRow)
            .where(
                ContributionRow.id == contribution_id,
                ContributionRow.organisation_id == organisation_id,
            )
            .values(considered_at=now)
            .execution_options(synchronize_session=False)
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)

    async def all(self, organisation_id: str) -> list[Contribution]:
        stmt = (
            select(ContributionRow)
            .where(ContributionRow.organisation_id == organisation_id)
            .order_by(ContributionRow.created_at, ContributionRow.id)
        )
        async with self._db.sessions() as session:
            return [_contribution(r) for r in (await session.scalars(stmt)).all()]

    async def update_own(
        self,
        organisation_id: str,
        contribution_id: int,
        platform: str,
        author_id: str,
        text: str,
        fields: dict[str, str] | None,
        now: datetime,
        *,
        themes: Sequence[str] | None = None,
    ) -> Contribution | None:
        """Change the text of a contribution (and its themes, when given), only if `author_id`
        wrote it. None otherwise."""
        values: dict[str, Any] = {"text": text, "updated_at": now}
        if fields is not None:
            values["fields"] = fields
        if themes is not None:
            values |= _themes(themes)
        return await self._update_own(organisation_id, contribution_id, platform, author_id, values)

    async def correct_own(
        self,
        organisation_id: str,
        contribution_id: int,
        platform: str,
        author_id: str,
        *,
        themes: Sequence[str],
        shareable: bool,
        now: datetime,
    ) -> Contribution | None:
        """The person's own choice of themes and of sharing, only if `author_id` wrote it."""
        values = {**_themes(themes), "themes_chosen": True, "shareable": shareable}
        return await self._update_own(
            organisation_id, contribution_id, platform, author_id, values | {"updated_at": now}
        )

    async def _update_own(
        self,
        organisation_id: str,
        contribution_id: int,
        platform: str,
        author_id: str,
        values: dict[str, Any],
    ) -> Contribution | None:
        stmt = (
            update(ContributionRow)
            .where(
                ContributionRow.id == contribution_id,
                ContributionRow.organisation_id == organisation_id,
                ContributionRow.platform == platform,
                ContributionRow.author_id == author_id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
        if result.rowcount != 1:
            return None
        return await self.get(organisation_id, contribution_id)

    async def delete_own(
        self, organisation_id: str, contribution_id: int, platform: str, author_id: str
    ) -> bool:
        """Delete a contribution, only if `author_id` wrote it."""
        stmt = delete(ContributionRow).where(
            ContributionRow.id == contribution_id,
            ContributionRow.organisation_id == organisation_id,
            ContributionRow.platform == platform,
            ContributionRow.author_id == author_id,
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
        return bool(result.rowcount == 1)

    async def delete_by_token(self, organisation_id: str, token_hash: str) -> int | None:
        """Delete an anonymous contribution by the hash of the code its author was given;
        return its id, or None when no contribution has that code."""
        async with self._db.sessions.begin() as session:
            row = await session.scalar(
                select(ContributionRow).where(
                    ContributionRow.organisation_id == organisation_id,
                    ContributionRow.delete_token_hash == token_hash,
                )
            )
            if row is None:
                return None
            await session.delete(row)
        return int(row.id)


class StateStore:
    """Opaque JSON per adapter, e.g. Teams conversation references or local chat history.

    With a `namespace` (an organisation's id) the keys are that namespace's alone: organisations
    that share a database do not see each other's entries.
    """

    def __init__(self, db: Database, platform: str, *, namespace: str = "") -> None:
        self._db = db
        self._platform = platform
        self._prefix = f"{namespace}/" if namespace else ""

    async def get(self, key: str) -> dict[str, Any] | None:
        async with self._db.sessions() as session:
            row = await session.get(AdapterStateRow, (self._platform, self._prefix + key))
        return dict(row.value) if row else None

    async def put(self, key: str, value: dict[str, Any], now: datetime) -> None:
        stmt = (
            _insert(self._db, AdapterStateRow)
            .values(platform=self._platform, key=self._prefix + key, value=value, updated_at=now)
            .on_conflict_do_update(
                index_elements=["platform", "key"], set_={"value": value, "updated_at": now}
            )
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)

    async def add(self, key: str, value: dict[str, Any], now: datetime) -> bool:
        """Keep `value` under `key` unless the key is taken: one INSERT, True when it was new."""
        return key in await self.add_many({key: value}, now)

    async def add_many(self, values: Mapping[str, dict[str, Any]], now: datetime) -> set[str]:
        """Keep each value whose key is not taken, in one INSERT and one transaction; return the
        keys that were new."""
        if not values:
            return set()
        rows = [
            {
                "platform": self._platform,
                "key": self._prefix + key,
                "value": value,
                "updated_at": now,
            }
            for key, value in values.items()
        ]
        # One statement for any number of rows (executemany): compiled once and cached, where
        # a VALUES list of its own per batch size was compiled for every write.
        stmt = (
            _insert(self._db, AdapterStateRow)
            .on_conflict_do_nothing(index_elements=["platform", "key"])
            .returning(AdapterStateRow.key)
        )
        async with self._db.sessions.begin() as session:
            new = (await session.scalars(stmt, rows)).all()
        return {key.removeprefix(self._prefix) for key in new}

    async def delete(self, key: str) -> None:
        stmt = delete(AdapterStateRow).where(
            AdapterStateRow.platform == self._platform,
            AdapterStateRow.key == self._prefix + key,
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)

    async def keys(self, prefix: str = "") -> Sequence[str]:
        stmt = select(AdapterStateRow.key).where(
            AdapterStateRow.platform == self._platform,
            AdapterStateRow.key.startswith(self._prefix + prefix, autoescape=True),
        )
        async with self._db.sessions() as session:
            found = (await session.scalars(stmt)).all()
        return [key.removeprefix(self._prefix) for key in found]


class PersonSettingsRepository:
    """People's own choices, per organisation and platform."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, organisation_id: str, platform: str, person_id: str) -> PersonSettings:
        async with self._db.sessions() as session:
            row = await session.get(PersonSettingsRow, (organisation_id, platform, person_id))
        if row is None:
            return PersonSettings()
        return PersonSettings(
            language=row.language,
            anonymous_default=row.anonymous_default,
            named_elsewhere=row.named_elsewhere,
        )

    async def put(
        self,
        organisation_id: str,
        platform: str,
        person_id: str,
        settings: PersonSettings,
        now: datetime,
    ) -> None:
        values = {
            "language": settings.language,
            "anonymous_default": settings.anonymous_default,
            "named_elsewhere": settings.named_elsewhere,
            "updated_at": now,
        }
        stmt = (
            _insert(self._db, PersonSettingsRow)
            .values(
                organisation_id=organisation_id, platform=platform, person_id=person_id, **values
            )
            .on_conflict_do_update(
                index_elements=["organisation_id", "platform", "person_id"], set_=values
            )
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)


@dataclass(frozen=True, slots=True)
class StoredVector:
    """A contribution's stored embedding with what the index filters on."""

    contribution_id: int
    department_id: str
    kind: Kind
    theme: str | None
    created_at: datetime
    vector: bytes


class VectorRepository:
    """Embeddings per contribution and embedder; they go when their contribution goes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(
        self,
        organisation_id: str,
        contribution_id: int,
        embedder: str,
        dims: int,
        vector: bytes,
        now: datetime,
    ) -> None:
        values = {
            "organisation_id": organisation_id,
            "embedder": embedder,
            "dims": dims,
            "vector": vector,
            "updated_at": now,
        }
        stmt = (
            _insert(self._db, ContributionVectorRow)
            .values(contribution_id=contribution_id, **values)
            .on_conflict_do_update(index_elements=["contribution_id"], set_=values)
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)

    async def load(self, organisation_id: str, embedder: str) -> list[StoredVector]:
        stmt = (
            select(ContributionVectorRow, ContributionRow)
            .join(ContributionRow, ContributionRow.id == ContributionVectorRow.contribution_id)
            .where(
                ContributionVectorRow.organisation_id == organisation_id,
                ContributionVectorRow.embedder == embedder,
                ContributionRow.organisation_id == organisation_id,
            )
            .order_by(ContributionRow.id)
        )
        async with self._db.sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [
            StoredVector(c.id, c.department_id, Kind(c.kind), c.theme, c.created_at, v.vector)
            for v, c in rows
        ]

    async def missing(self, organisation_id: str, embedder: str, limit: int = 500) -> list[int]:
        """Contributions without a vector from `embedder` (new install, or another embedder)."""
        has = select(ContributionVectorRow.contribution_id).where(
            ContributionVectorRow.embedder == embedder
        )
        stmt = (
            select(ContributionRow.id)
            .where(
                ContributionRow.organisation_id == organisation_id, ContributionRow.id.not_in(has)
            )
            .order_by(ContributionRow.id)
            .limit(limit)
        )
        async with self._db.sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def delete(self, contribution_id: int) -> None:
        async with self._db.sessions.begin() as session:
            await session.execute(
                delete(ContributionVectorRow).where(
                    ContributionVectorRow.contribution_id == contribution_id
                )
            )


def _crosspost(row: CrosspostRow) -> Crosspost:
    return Crosspost(
        id=row.id,
        organisation_id=row.organisation_id,
        contribution_id=row.contribution_id,
        source_department_id=row.source_department_id,
        target=row.target,
        score=row.score,
        status=OccurrenceStatus(row.status),
        due_at=row.due_at,
        platform=row.platform,
        channel=row.channel,
        message_id=row.message_id,
        thread_id=row.thread_id,
        created_at=row.created_at,
        note=row.note,
    )


class CrosspostRepository:
    """Suggestions of lessons to other channels: planned once per target, claimed before posting."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def plan(
        self,
        organisation_id: str,
        contribution_id: int,
        source_department_id: str,
        target: str,
        score: float,
        due_at: datetime,
        now: datetime,
    ) -> bool:
        """Plan a suggestion unless this contribution was ever planned for this target."""
        stmt = (
            _insert(self._db, CrosspostRow)
            .values(
                organisation_id=organisation_id,
                contribution_id=contribution_id,
                source_department_id=source_department_id,
                target=target,
                score=score,
                status=OccurrenceStatus.PENDING.value,
                due_at=due_at,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["contribution_id", "target"])
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
        return bool(result.rowcount == 1)

    async def sent_since(self, organisation_id: str, target: str, since: datetime) -> int:
        stmt = select(func.count()).where(
            CrosspostRow.organisation_id == organisation_id,
            CrosspostRow.target == target,
            CrosspostRow.status == OccurrenceStatus.SENT.value,
            CrosspostRow.sent_at >= since,
        )
        async with self._db.sessions() as session:
            return int(await session.scalar(stmt) or 0)

    async def due(self, organisation_id: str, now: datetime, lease: timedelta) -> list[Crosspost]:
        stmt = (
            select(CrosspostRow)
            .where(
                CrosspostRow.organisation_id == organisation_id,
                CrosspostRow.due_at <= now,
                _claimable(CrosspostRow, now, lease),
            )
            .order_by(CrosspostRow.score.desc(), CrosspostRow.id)
        )
        async with self._db.sessions() as session:
            return [_crosspost(r) for r in (await session.scalars(stmt)).all()]

    async def claim(self, crosspost_id: int, worker: str, now: datetime, lease: timedelta) -> bool:
        """Take a suggestion for `worker`, like an occurrence: only one worker can win it."""
        return await _claim(self._db, CrosspostRow, crosspost_id, worker, now, lease)

    async def finish(
        self,
        crosspost_id: int,
        worker: str,
        status: OccurrenceStatus,
        now: datetime,
        *,
        platform: str | None = None,
        channel: str | None = None,
        message_id: str | None = None,
        thread_id: str | None = None,
        note: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status.value, "note": note}
        if status is OccurrenceStatus.SENT:
            values.update(
                sent_at=now,
                platform=platform,
                channel=channel,
                message_id=message_id,
                thread_id=thread_id,
            )
        stmt = (
            update(CrosspostRow)
            .where(CrosspostRow.id == crosspost_id, CrosspostRow.claimed_by == worker)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)

    async def release(self, crosspost_id: int, worker: str, due_at: datetime, note: str) -> None:
        await _release(self._db, CrosspostRow, crosspost_id, worker, note, due_at=due_at)

    async def get(self, organisation_id: str, crosspost_id: int) -> Crosspost | None:
        async with self._db.sessions() as session:
            row = await session.get(CrosspostRow, crosspost_id)
        return _crosspost(row) if row and row.organisation_id == organisation_id else None

    async def by_thread(
        self, organisation_id: str, platform: str, channel: str, thread_id: str
    ) -> Crosspost | None:
        stmt = select(CrosspostRow).where(
            CrosspostRow.organisation_id == organisation_id,
            CrosspostRow.platform == platform,
            CrosspostRow.channel == channel,
            CrosspostRow.thread_id == thread_id,
        )
        async with self._db.sessions() as session:
            row = await session.scalar(stmt)
        return _crosspost(row) if row else None

    async def all(self, organisation_id: str) -> list[Crosspost]:
        stmt = (
            select(CrosspostRow)
            .where(CrosspostRow.organisation_id == organisation_id)
            .order_by(CrosspostRow.id)
        )
        async with self._db.sessions() as session:
            return [_crosspost(r) for r in (await session.scalars(stmt)).all()]

    async def give_feedback(
        self, crosspost_id: int, person_key: str, verdict: str, now: datetime
    ) -> None:
        """One verdict per person per suggestion; a later click replaces the earlier one."""
        stmt = (
            _insert(self._db, CrosspostFeedbackRow)
            .values(
                crosspost_id=crosspost_id, person_key=person_key, verdict=verdict, created_at=now
            )
            .on_conflict_do_update(
                index_elements=["crosspost_id", "person_key"],
                set_={"verdict": verdict, "created_at": now},
            )
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)

    async def verdicts_by_target(self, organisation_id: str) -> dict[str, list[tuple[int, str]]]:
        """(contribution id, verdict) of every vote on the organisation's suggestions, per
        target, in one query."""
        stmt = (
            select(CrosspostRow.target, CrosspostRow.contribution_id, CrosspostFeedbackRow.verdict)
            .join(CrosspostFeedbackRow, CrosspostFeedbackRow.crosspost_id == CrosspostRow.id)
            .where(CrosspostRow.organisation_id == organisation_id)
        )
        found: dict[str, list[tuple[int, str]]] = {}
        async with self._db.sessions() as session:
            for target, c, v in (await session.execute(stmt)).all():
                found.setdefault(str(target), []).append((int(c), str(v)))
        return found

    async def contributions_for(self, organisation_id: str, target: str) -> list[int]:
        """Contributions ever suggested (or planned) to `target`."""
        stmt = select(CrosspostRow.contribution_id).where(
            CrosspostRow.organisation_id == organisation_id, CrosspostRow.target == target
        )
        async with self._db.sessions() as session:
            return [int(c) for c in (await session.scalars(stmt)).all()]
