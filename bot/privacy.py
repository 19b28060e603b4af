"""What may travel where: the rule every feature that repeats people's words must ask first.

Content from a private channel never appears in another channel unless its department opted in
(`share_from_private`). Anonymous contributions carry no name anywhere; that is kept by storage
(no author is stored) and by the renderers (they show "anonymous"). A named lesson carries its
author's name outside their team only when they agreed to that (`name_elsewhere`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dateutil.relativedelta import relativedelta

from bot.config import Department, OrgConfig
from bot.domain import ChannelRef, Contribution, Crosspost, OccurrenceStatus, PostedMessage
from bot.messages import Message, Section
from bot.ports import Adapter, Clock
from storage.privacy import PrivacyRepository
from storage.repositories import PersonSettingsRepository

log = logging.getLogger(__name__)


def person_key(platform: str, person_id: str) -> str:
    """One vote per person without keeping who voted."""
    return hashlib.sha256(f"{platform}:{person_id}".encode()).hexdigest()


async def name_elsewhere(settings: PersonSettingsRepository, c: Contribution) -> str:
    """The author's name as other departments may read it beside their lesson: "" when the
    lesson is anonymous or the author did not agree to be named outside their team."""
    if c.author is None or c.anonymous:
        return ""
    chosen = await settings.get(c.organisation_id, c.platform, c.author.id)
    return c.author.name if chosen.named_elsewhere else ""


class Visibility:
    """Answers whether a department's words may be shown in a channel."""

    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self._adapters = adapters

    async def may_show(self, source: Department, target: ChannelRef) -> bool:
        home = ChannelRef(source.platform, source.channel, source.workspace)
        if target == home or source.share_from_private:
            return True
        adapter = self._adapters.get(source.platform)
        if adapter is None:
            return False  # cannot tell, so do not
        return not await adapter.is_private(home)


# --- a person's rights (AVG/GDPR) ---------------------------------------------------------------


def subject_hash(organisation_id: str, person_id: str) -> str:
    """How the audit log refers to a person: enough to match a later request, not an id."""
    return hashlib.sha256(f"{organisation_id}:{person_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Forgotten:
    contributions: int
    posts_edited: int
    posts_not_edited: int


class PersonalData:
    """Export and forget what Boeket holds of one person; delete what is past retention.

    Every action is written to the audit log with who did it (an admin's name for the command
    line, `self` for a person's own request, `retention` for Boeket itself).
    """

    def __init__(
        self,
        *,
        config: OrgConfig,
        repo: PrivacyRepository,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        on_deleted: Callable[[int], None] | None = None,
        removed_text: Callable[[str | None], str] | None = None,
    ) -> None:
        self._config = config
        self._repo = repo
        self._adapters = adapters
        self._clock = clock
        self._on_deleted = on_deleted
        self._removed_text = removed_text

    @property
    def org(self) -> str:
        return self._config.organisation.id

    async def export(self, person_id: str, platform: str | None, actor: str) -> dict[str, Any]:
        contributions = await self._repo.contributions_of(self.org, person_id, platform)
        posts = await self._repo.crossposts_of(self.org, [c.id for c in contributions])
        travelled: dict[int, list[str]] = {}
        for cp in posts:
            if cp.status is OccurrenceStatus.SENT:
                travelled.setdefault(cp.contribution_id, []).append(cp.target)
        settings = await self._repo.settings_of(self.org, person_id, platform)
        feedback = await self._repo.feedback_of(self.org, self._person_keys(person_id, platform))
        await self._repo.audit(
            self.org,
            self._clock.now(),
            actor,
            "privacy.export",
            subject_hash(self.org, person_id),
            {"contributions": str(len(contributions))},
        )
        return {
            "organisation": self._config.organisation.name,
            "person": person_id,
            "exported_at": self._clock.now().isoformat(),
            "note": "Anonymous contributions are linked to nobody and cannot be found by person.",
            "settings": [
                {
                    "platform": p,
                    "language": s.language,
                    "anonymous_by_default": s.anonymous_default,
                    "named_elsewhere": s.named_elsewhere,
                }
                for p, s in settings
            ],
            "contributions": [
                {
                    "id": c.id,
                    "platform": c.platform,
                    "department": c.department_id,
                    "kind": c.kind.value,
                    "source": c.source.value,
                    "created_at": c.created_at.isoformat(),
                    "text": c.text,
                    "fields": c.fields,
                    "themes": list(c.themes),
                    "goal": c.goal_id,
                    "shareable": c.shareable,
                    "travelled_to": travelled.get(c.id, []),
                }
                for c in contributions
            ],
            # Clicks are kept under a hash of the person, not their id: found again only here.
            "feedback": feedback,
        }

    @staticmethod
    def _person_keys(person_id: str, platform: str | None) -> list[str]:
        platforms = [platform] if platform else ["local", "slack", "teams"]
        return [person_key(p, person_id) for p in platforms]

    async def forget(self, person_id: str, platform: str | None, actor: str) -> Forgotten:
        """Remove the person's words everywhere Boeket can: its database, the matcher, and the
        cross-posts it posted (edited to say the lesson was withdrawn)."""
        contributions = await self._repo.contributions_of(self.org, person_id, platform)
        posts = [
            cp
            for cp in await self._repo.crossposts_of(self.org, [c.id for c in contributions])
            if cp.status is OccurrenceStatus.SENT and cp.message_id and cp.platform and cp.channel
        ]
        keys = self._person_keys(person_id, platform)
        deleted = await self._repo.forget(self.org, person_id, platform, keys)
        for contribution_id in deleted:
            if self._on_deleted is not None:
                self._on_deleted(contribution_id)
        edited = failed = 0
        for cp in posts:
            edited_ok = await self._withdraw(cp)
            edited += edited_ok
            failed += not edited_ok
        await self._repo.audit(
            self.org,
            self._clock.now(),
            actor,
            "privacy.forget",
            subject_hash(self.org, person_id),
            {
                "contributions": str(len(deleted)),
                "posts_edited": str(edited),
                "posts_not_edited": str(failed),
            },
        )
        log.info(
            "forgot a person: %d contributions, %d posts edited, %d could not be edited",
            len(deleted),
            edited,
            failed,
        )
        return Forgotten(len(deleted), edited, failed)

    async def _withdraw(self, cp: Crosspost) -> bool:
        if not (cp.platform and cp.channel and cp.message_id):
            return False
        adapter = self._adapters.get(cp.platform)
        if adapter is None:
            return False
        dept = self._config.department_for_channel(cp.platform, cp.channel)
        text = self._removed_text(dept.language if dept else None) if self._removed_text else "—"
        try:
            await adapter.update(
                PostedMessage(
                    ChannelRef(cp.platform, cp.channel, dept.workspace if dept else ""),
                    cp.message_id,
                    cp.thread_id or cp.message_id,
                ),
                Message(text=text, blocks=(Section(text),)),
            )
        except Exception as exc:  # the platform may refuse (message gone, app removed)
            log.warning("could not withdraw a posted lesson in %s: %s", cp.platform, exc)
            return False
        return True

    async def apply_retention(self) -> int:
        """Delete contributions older than the configured retention; returns how many."""
        months = self._config.retention_months
        if months is None:
            return 0
        now = self._clock.now()
        cutoff = now - relativedelta(months=months)
        ids = await self._repo.expired(self.org, cutoff)
        if not ids:
            return 0
        count = await self._repo.delete_contributions(self.org, ids)
        for contribution_id in ids:
            if self._on_deleted is not None:
                self._on_deleted(contribution_id)
        await self._repo.audit(
            self.org,
            now,
            "retention",
            "retention.delete",
            None,
            {"contributions": str(count), "older_than": cutoff.date().isoformat()},
        )
        log.info("retention: deleted %d contributions from before %s", count, cutoff.date())
        return count
