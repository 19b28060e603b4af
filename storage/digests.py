"""The weekly digest: its exactly-once bookkeeping, and the read-only queries that fill it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from bot.domain import Contribution, Crosspost, OccurrenceStatus
from storage.db import Database
from storage.repositories import (
    _claim,
    _claimable,
    _contribution,
    _crosspost,
    _finish,
    _insert,
    _release,
)
from storage.tables import (
    ContributionRow,
    CrosspostFeedbackRow,
    CrosspostRow,
    DigestFeedbackRow,
    DigestRow,
)


@dataclass(frozen=True, slots=True)
class Digest:
    id: int
    organisation_id: str
    week_start: date
    due_at: datetime
    status: OccurrenceStatus
    message_id: str | None = None
    attempts: int = 0  # claims so far; more than none: an earlier attempt may have posted


@dataclass(frozen=True, slots=True)
class Connection:
    """A suggestion that landed: found useful, asked to talk about, or translated."""

    crosspost: Crosspost
    verdict: str  # the strongest: translated > talk > useful
    at: datetime


_STRENGTH = {"useful": 1, "talk": 2, "translated": 3}


def _digest(row: DigestRow) -> Digest:
    return Digest(
        id=row.id,
        organisation_id=row.organisation_id,
        week_start=row.week_start,
        due_at=row.due_at,
        status=OccurrenceStatus(row.status),
        message_id=row.message_id,
        attempts=row.attempts,
    )


class DigestRepository:
    """One digest per organisation and week: planned once, claimed before it is posted."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def plan(self, organisation_id: str, week_start: date, due_at: datetime) -> bool:
        stmt = (
            _insert(self._db, DigestRow)
            .values(
                organisation_id=organisation_id,
                week_start=week_start,
                due_at=due_at,
                status=OccurrenceStatus.PENDING.value,
                attempts=0,
            )
            .on_conflict_do_nothing(index_elements=["organisation_id", "week_start"])
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
        return bool(result.rowcount == 1)

    async def due(self, organisation_id: str, now: datetime, lease: timedelta) -> list[Digest]:
        stmt = (
            select(DigestRow)
            .where(
                DigestRow.organisation_id == organisation_id,
                DigestRow.due_at <= now,
                _claimable(DigestRow, now, lease),
            )
            .order_by(DigestRow.due_at)
        )
        async with self._db.sessions() as session:
            return [_digest(r) for r in (await session.scalars(stmt)).all()]

    async def claim(self, digest_id: int, worker: str, now: datetime, lease: timedelta) -> bool:
        return await _claim(
            self._db, DigestRow, digest_id, worker, now, lease, attempts=DigestRow.attempts + 1
        )

    async def finish(
        self,
        digest_id: int,
        worker: str,
        status: OccurrenceStatus,
        now: datetime,
        *,
        platform: str | None = None,
        channel: str | None = None,
        message_id: str | None = None,
        note: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"status": status.value, "finished_at": now, "note": note}
        if platform is not None:
            values.update(platform=platform, channel=channel, message_id=message_id)
        return await _finish(self._db, DigestRow, digest_id, worker, values)

    async def release(self, digest_id: int, worker: str, note: str) -> None:
        await _release(self._db, DigestRow, digest_id, worker, note)

    async def all(self, organisation_id: str) -> list[Digest]:
        stmt = (
            select(DigestRow)
            .where(DigestRow.organisation_id == organisation_id)
            .order_by(DigestRow.week_start)
        )
        async with self._db.sessions() as session:
            return [_digest(r) for r in (await session.scalars(stmt)).all()]

    # --- what a digest is made of ---------------------------------------------------------------

    async def contributions(
        self, organisation_id: str, since: datetime, until: datetime
    ) -> list[Contribution]:
        """Contributions made in [since, until), oldest first."""
        stmt = (
            select(ContributionRow)
            .where(
                ContributionRow.organisation_id == organisation_id,
                ContributionRow.created_at >= since,
                ContributionRow.created_at < until,
            )
            .order_by(ContributionRow.created_at, ContributionRow.id)
        )
        async with self._db.sessions() as session:
            return [_contribution(r) for r in (await session.scalars(stmt)).all()]

    async def contributions_by_id(self, organisation_id: str, ids: list[int]) -> list[Contribution]:
        stmt = select(ContributionRow).where(
            ContributionRow.organisation_id == organisation_id, ContributionRow.id.in_(ids)
        )
        async with self._db.sessions() as session:
            return [_contribution(r) for r in (await session.scalars(stmt)).all()]

    async def by_author(
        self, organisation_id: str, platform: str, person_id: str
    ) -> list[Contribution]:
        """A person's own contributions on name (anonymous ones keep no link to anybody)."""
        stmt = (
            select(ContributionRow)
            .where(
                ContributionRow.organisation_id == organisation_id,
                ContributionRow.platform == platform,
                ContributionRow.author_id == person_id,
                ContributionRow.anonymous.is_(False),
            )
            .order_by(ContributionRow.created_at.desc(), ContributionRow.id.desc())
        )
        async with self._db.sessions() as session:
            return [_contribution(r) for r in (await session.scalars(stmt)).all()]

    async def journeys(
        self, organisation_id: str, contribution_ids: list[int]
    ) -> dict[int, list[tuple[Crosspost, list[str]]]]:
        """Where each contribution was suggested, with the verdicts it got there."""
        if not contribution_ids:
            return {}
        stmt = (
            select(CrosspostRow)
            .where(
                CrosspostRow.organisation_id == organisation_id,
                CrosspostRow.contribution_id.in_(contribution_ids),
            )
            .order_by(CrosspostRow.id)
        )
        verdicts = select(CrosspostFeedbackRow.crosspost_id, CrosspostFeedbackRow.verdict)
        out: dict[int, list[tuple[Crosspost, list[str]]]] = {}
        async with self._db.sessions() as session:
            rows = (await session.scalars(stmt)).all()
            by_post: dict[int, list[str]] = {}
            if rows:
                found = await session.execute(
                    verdicts.where(CrosspostFeedbackRow.crosspost_id.in_([r.id for r in rows]))
                )
                for post_id, verdict in found.all():
                    by_post.setdefault(int(post_id), []).append(str(verdict))
        for row in rows:
            out.setdefault(row.contribution_id, []).append(
                (_crosspost(row), sorted(by_post.get(row.id, [])))
            )
        return out

    async def translations_of(
        self, organisation_id: str, contribution_ids: list[int]
    ) -> dict[int, list[Contribution]]:
        """The receiving departments' translations of each contribution."""
        wanted = {str(i) for i in contribution_ids}
        stmt = select(ContributionRow).where(
            ContributionRow.organisation_id == organisation_id,
            ContributionRow.source == "translation",
        )
        out: dict[int, list[Contribution]] = {}
        async with self._db.sessions() as session:
            for row in (await session.scalars(stmt)).all():
                original = (row.fields or {}).get("translates")
                if original in wanted:
                    out.setdefault(int(original), []).append(_contribution(row))
        return out

    async def connections(
        self, organisation_id: str, since: datetime, until: datetime
    ) -> list[Connection]:
        """Suggestions that got a useful, let's-talk or translated verdict in [since, until)."""
        stmt = (
            select(CrosspostRow, CrosspostFeedbackRow.verdict, CrosspostFeedbackRow.created_at)
            .join(CrosspostFeedbackRow, CrosspostFeedbackRow.crosspost_id == CrosspostRow.id)
            .where(
                CrosspostRow.organisation_id == organisation_id,
                CrosspostFeedbackRow.created_at >= since,
                CrosspostFeedbackRow.created_at < until,
                CrosspostFeedbackRow.verdict.in_(tuple(_STRENGTH)),
            )
            .order_by(CrosspostFeedbackRow.created_at)
        )
        best: dict[int, Connection] = {}
        async with self._db.sessions() as session:
            for row, verdict, at in (await session.execute(stmt)).all():
                known = best.get(row.id)
                if known is None or _STRENGTH[verdict] > _STRENGTH[known.verdict]:
                    best[row.id] = Connection(_crosspost(row), str(verdict), at)
        return sorted(best.values(), key=lambda c: c.at)

    # --- what people said of the digest's lessons -----------------------------------------------

    async def vote(
        self,
        organisation_id: str,
        contribution_id: int,
        person_key: str,
        verdict: str,
        now: datetime,
    ) -> bool:
        """Keep one click per person, lesson and verdict; True when it is the first."""
        stmt = (
            _insert(self._db, DigestFeedbackRow)
            .values(
                organisation_id=organisation_id,
                contribution_id=contribution_id,
                person_key=person_key,
                verdict=verdict,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["contribution_id", "person_key", "verdict"])
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
        return bool(result.rowcount == 1)

    async def unvote(
        self, organisation_id: str, contribution_id: int, person_key: str, verdict: str
    ) -> None:
        """Take a click back (what it should have set off did not happen: it may be tried again)."""
        stmt = delete(DigestFeedbackRow).where(
            DigestFeedbackRow.organisation_id == organisation_id,
            DigestFeedbackRow.contribution_id == contribution_id,
            DigestFeedbackRow.person_key == person_key,
            DigestFeedbackRow.verdict == verdict,
        )
        async with self._db.sessions.begin() as session:
            await session.execute(stmt)

    async def votes(
        self, organisation_id: str, contribution_ids: list[int]
    ) -> dict[int, list[str]]:
        """The digest clicks on each contribution, one verdict per person: sorted, not who."""
        if not contribution_ids:
            return {}
        stmt = select(DigestFeedbackRow.contribution_id, DigestFeedbackRow.verdict).where(
            DigestFeedbackRow.organisation_id == organisation_id,
            DigestFeedbackRow.contribution_id.in_(contribution_ids),
        )
        out: dict[int, list[str]] = {}
        async with self._db.sessions() as session:
            for contribution_id, verdict in (await session.execute(stmt)).all():
                out.setdefault(int(contribution_id), []).append(str(verdict))
        return {key: sorted(found) for key, found in out.items()}
