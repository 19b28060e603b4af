"""Storage for a person's rights (AVG/GDPR): what Boeket holds of them, forgetting it, retention,
and the audit log of who did that."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from bot.domain import Contribution, Crosspost, PersonSettings
from storage.db import Database
from storage.repositories import _contribution, _crosspost
from storage.tables import (
    AuditRow,
    ContributionRow,
    CrosspostFeedbackRow,
    CrosspostRow,
    DigestFeedbackRow,
    PersonSettingsRow,
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    subject: str | None
    detail: dict[str, str]


class PrivacyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def contributions_of(
        self, organisation_id: str, person_id: str, platform: str | None = None
    ) -> list[Contribution]:
        """Everything on the person's name (anonymous contributions are linked to nobody)."""
        stmt = select(ContributionRow).where(
            ContributionRow.organisation_id == organisation_id,
            ContributionRow.author_id == person_id,
        )
        if platform is not None:
            stmt = stmt.where(ContributionRow.platform == platform)
        async with self._db.sessions() as session:
            rows = (await session.scalars(stmt.order_by(ContributionRow.created_at))).all()
        return [_contribution(r) for r in rows]

    async def settings_of(
        self, organisation_id: str, person_id: str, platform: str | None = None
    ) -> list[tuple[str, PersonSettings]]:
        stmt = select(PersonSettingsRow).where(
            PersonSettingsRow.organisation_id == organisation_id,
            PersonSettingsRow.person_id == person_id,
        )
        if platform is not None:
            stmt = stmt.where(PersonSettingsRow.platform == platform)
        async with self._db.sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [
            (
                r.platform,
                PersonSettings(
                    language=r.language,
                    anonymous_default=r.anonymous_default,
                    named_elsewhere=r.named_elsewhere,
                ),
            )
            for r in rows
        ]

    async def crossposts_of(
        self, organisation_id: str, contribution_ids: Sequence[int]
    ) -> list[Crosspost]:
        if not contribution_ids:
            return []
        stmt = select(CrosspostRow).where(
            CrosspostRow.organisation_id == organisation_id,
            CrosspostRow.contribution_id.in_(list(contribution_ids)),
        )
        async with self._db.sessions() as session:
            return [_crosspost(r) for r in (await session.scalars(stmt)).all()]

    async def feedback_of(
        self, organisation_id: str, person_keys: Sequence[str]
    ) -> list[dict[str, str | int]]:
        """The person's clicks on the organisation's suggestions and digest lessons, oldest
        first."""
        if not person_keys:
            return []
        keys = list(person_keys)
        votes = (
            select(CrosspostFeedbackRow, CrosspostRow.contribution_id)
            .join(CrosspostRow, CrosspostRow.id == CrosspostFeedbackRow.crosspost_id)
            .where(
                CrosspostRow.organisation_id == organisation_id,
                CrosspostFeedbackRow.person_key.in_(keys),
            )
        )
        clicks = select(DigestFeedbackRow).where(
            DigestFeedbackRow.organisation_id == organisation_id,
            DigestFeedbackRow.person_key.in_(keys),
        )
        found: list[tuple[datetime, dict[str, str | int]]] = []
        async with self._db.sessions() as session:
            for vote, contribution_id in (await session.execute(votes)).all():
                found.append(
                    (
                        vote.created_at,
                        {
                            "on": "suggestion",
                            "suggestion": vote.crosspost_id,
                            "contribution": contribution_id,
                            "verdict": vote.verdict,
                            "at": vote.created_at.isoformat(),
                        },
                    )
                )
            for click in (await session.scalars(clicks)).all():
                found.append(
                    (
                        click.created_at,
                        {
                            "on": "digest",
                            "contribution": click.contribution_id,
                            "verdict": click.verdict,
                            "at": click.created_at.isoformat(),
                        },
                    )
                )
        return [item for _, item in sorted(found, key=lambda pair: pair[0])]

    async def forget(
        self,
        organisation_id: str,
        person_id: str,
        platform: str | None,
        person_keys: Sequence[str],
    ) -> list[int]:
        """Delete the person's contributions (their vectors, suggestions and the votes on those
        go with them), their votes on the organisation's other suggestions and on its digests'
        lessons, and their settings, in one transaction. Returns the ids of the contributions
        deleted."""
        where = [
            ContributionRow.organisation_id == organisation_id,
            ContributionRow.author_id == person_id,
        ]
        settings_where = [
            PersonSettingsRow.organisation_id == organisation_id,
            PersonSettingsRow.person_id == person_id,
        ]
        if platform is not None:
            where.append(ContributionRow.platform == platform)
            settings_where.append(PersonSettingsRow.platform == platform)
        async with self._db.sessions.begin() as session:
            ids = list((await session.scalars(select(ContributionRow.id).where(*where))).all())
            if ids:
                await session.execute(
                    delete(ContributionRow)
                    .where(ContributionRow.id.in_(ids))
                    .execution_options(synchronize_session=False)
                )
            if person_keys:
                # A vote's person key names no organisation: only this one's suggestions count.
                own_posts = select(CrosspostRow.id).where(
                    CrosspostRow.organisation_id == organisation_id
                )
                await session.execute(
                    delete(CrosspostFeedbackRow)
                    .where(
                        CrosspostFeedbackRow.person_key.in_(list(person_keys)),
                        CrosspostFeedbackRow.crosspost_id.in_(own_posts),
                    )
                    .execution_options(synchronize_session=False)
                )
                await session.execute(
                    delete(DigestFeedbackRow)
                    .where(
                        DigestFeedbackRow.organisation_id == organisation_id,
                        DigestFeedbackRow.person_key.in_(list(person_keys)),
                    )
                    .execution_options(synchronize_session=False)
                )
            await session.execute(
                delete(PersonSettingsRow)
                .where(*settings_where)
                .execution_options(synchronize_session=False)
            )
        return ids

    async def expired(self, organisation_id: str, before: datetime) -> list[int]:
        stmt = select(ContributionRow.id).where(
            ContributionRow.organisation_id == organisation_id,
            ContributionRow.created_at < before,
        )
        async with self._db.sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def delete_contributions(self, organisation_id: str, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        stmt = (
            delete(ContributionRow)
            .where(
                ContributionRow.organisation_id == organisation_id,
                ContributionRow.id.in_(list(ids)),
            )
            .execution_options(synchronize_session=False)
        )
        async with self._db.sessions.begin() as session:
            result = await session.execute(stmt)
        return int(result.rowcount)

    async def audit(
        self,
        organisation_id: str,
        at: datetime,
        actor: str,
        action: str,
        subject: str | None = None,
        detail: dict[str, str] | None = None,
    ) -> None:
        async with self._db.sessions.begin() as session:
            session.add(
                AuditRow(
                    organisation_id=organisation_id,
                    at=at,
                    actor=actor[:200],
                    action=action,
                    subject=subject,
                    detail=detail or {},
                )
            )

    async def audit_log(self, organisation_id: str) -> list[AuditEntry]:
        stmt = (
            select(AuditRow)
            .where(AuditRow.organisation_id == organisation_id)
            .order_by(AuditRow.at, AuditRow.id)
        )
        async with self._db.sessions() as session:
            return [
                AuditEntry(r.at, r.actor, r.action, r.subject, dict(r.detail or {}))
                for r in (await session.scalars(stmt)).all()
            ]
