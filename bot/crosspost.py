"""Lessons travel: a stored lesson is suggested where it may help — translated, not copied.

When a shareable contribution is stored, the crossposter scores every *other* department of the
organisation: how close the lesson is to that department's own recent lessons and cases, whether it
works on the same theme, and what the department said of similar suggestions before ("not relevant"
lowers, "useful" and translations raise). Departments above the threshold get a suggestion, planned
once per (contribution, target) and posted by the cycle's tick with a claim, like the cycle steps —
so never twice, never lost. Restraint: a weekly cap per channel, quiet hours, private channels stay
private, anonymous stays anonymous, and what a person marked "niet delen" stays home. Theme
channels (communities of practice) get every shareable lesson on any of their themes, once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from bot.background import Background
from bot.config import Department, OrgConfig, Theme
from bot.cycle import Texts
from bot.delivery import post_once
from bot.domain import (
    ChannelRef,
    Contribution,
    Crosspost,
    Kind,
    NewContribution,
    OccurrenceStatus,
    PostedMessage,
    Source,
)
from bot.matcher import Matcher
from bot.messages import (
    Actions,
    Block,
    Button,
    ButtonEvent,
    Context,
    Ephemeral,
    Header,
    Message,
    MessageEvent,
    Response,
    Section,
    shorten,
)
from bot.ports import Adapter, Clock, PermanentDeliveryError
from bot.privacy import Visibility, name_elsewhere, person_key
from bot.themes import MAX_THEMES, ThemeTagger
from bot.vectorindex import Filters
from storage.repositories import (
    ContributionRepository,
    CrosspostRepository,
    PersonSettingsRepository,
)

log = logging.getLogger(__name__)

USEFUL = "boeket.crosspost.useful"
NOT_RELEVANT = "boeket.crosspost.not_relevant"
TALK = "boeket.crosspost.talk"
VERDICTS = {USEFUL: "useful", NOT_RELEVANT: "not_relevant", TALK: "talk"}
LEASE = timedelta(minutes=5)
# A stored contribution whose suggestions were never planned (the process died in between) is
# planned by a tick once the background task has had this long to do it, if no older than
# CATCH_UP_WINDOW: later, a suggestion would be news from long ago.
CATCH_UP_AFTER = timedelta(minutes=2)
CATCH_UP_WINDOW = timedelta(days=2)
WEEK = timedelta(days=7)
HISTORY = timedelta(days=180)  # how far back a department's own lessons count as its context
THEME_BONUS = 0.12
SHORTLIST = 8  # a department's closest contributions, re-scored for whether the lesson helps
SAME_LESSON = 0.85  # relevance this high to one a department already had: the same lesson
FEEDBACK_WEIGHT = {"useful": 0.15, "talk": 0.15, "translated": 0.2, "not_relevant": -0.35}
CONTEXT_KINDS = frozenset({Kind.LES.value, Kind.CASUS.value, Kind.SUCCES.value, Kind.KOERS.value})


@dataclass(frozen=True, slots=True)
class Candidate:
    target: str
    score: float


class Crossposter:
    def __init__(
        self,
        *,
        config: OrgConfig,
        texts: Texts,
        matcher: Matcher,
        crossposts: CrosspostRepository,
        contributions: ContributionRepository,
        settings: PersonSettingsRepository,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        worker: str,
        themes: ThemeTagger | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self._lease = lease
        self._config = config
        self._themes = themes or ThemeTagger(config.themes, embedder=lambda: matcher.embedder)
        self._t = texts
        self._matcher = matcher
        self._crossposts = crossposts
        self._contributions = contributions
        self._settings = settings
        self._adapters = adapters
        self._visibility = Visibility(adapters)
        self._clock = clock
        self.worker = worker

    @property
    def org(self) -> str:
        return self._config.organisation.id

    # --- choosing where a lesson may help -----------------------------------------------------

    def shareable(self, c: Contribution) -> bool:
        """Whether `c` may travel: the department's setting for its kind, unless the person
        said "niet delen"."""
        if not self._config.crossposting.enabled or not c.shareable:
            return False
        if c.fields.get("private") == "true":
            return False
        if c.source is Source.TRANSLATION:
            return False  # a department's translation stays with it
        try:
            dept = self._config.department(c.department_id)
        except KeyError:
            return False
        return c.kind in self._config.shareable(dept)

    async def candidates(self, c: Contribution) -> list[Candidate]:
        """Every other department, scored for how much this lesson could help there."""
        vector = self._matcher.vector(self.org, c.id)
        if vector is None:
            await self._matcher.index(c)
            vector = self._matcher.vector(self.org, c.id)
        if vector is None:  # pragma: no cover - index() just stored it
            return []
        since = self._clock.now() - HISTORY
        verdicts = await self._crossposts.verdicts_by_target(self.org)
        out: list[Candidate] = []
        for dept in self._config.departments:
            if dept.id == c.department_id:
                continue  # never the author's own department
            hits = self._matcher.search(
                self.org,
                vector,
                SHORTLIST,
                Filters(departments=frozenset({dept.id}), kinds=CONTEXT_KINDS, since=since),
            )
            # Its closest lessons and cases are the department's situation: how much could
            # this lesson help there (asymmetric, not mere likeness; see bot.matcher)?
            closeness = await self._matcher.help_in(c, hits)
            # Themes of both sides: one the lesson is about that the department works on.
            shared_theme = not set(c.themes).isdisjoint(dept.themes)
            score = closeness + (THEME_BONUS if shared_theme else 0.0)
            score += self._feedback(verdicts.get(f"department:{dept.id}", []), vector)
            out.append(Candidate(f"department:{dept.id}", round(score, 4)))
        out.sort(key=lambda cand: -cand.score)
        return out

    def _feedback(self, verdicts: list[tuple[int, str]], vector: NDArray[np.float32]) -> float:
        """What a target said of similar suggestions (its `verdicts`): the closest counts most."""
        weights = []
        for contribution_id, verdict in verdicts:
            other = self._matcher.vector(self.org, contribution_id)
            if other is not None:
                similarity = self._matcher.relevance(float(other @ vector))
                weights.append(FEEDBACK_WEIGHT.get(verdict, 0.0) * similarity)
        # The strongest "yes" and the strongest "no" count; many votes do not pile up.
        return max((w for w in weights if w > 0), default=0.0) + min(
            (w for w in weights if w < 0), default=0.0
        )

    async def _had_it(
        self, target: str, contribution_id: int, vector: NDArray[np.float32] | None
    ) -> bool:
        """Whether the target already had this lesson, or one that says the same."""
        if vector is None:
            return False
        for earlier in await self._crossposts.contributions_for(self.org, target):
            other = self._matcher.vector(self.org, earlier)
            if (
                earlier != contribution_id
                and other is not None
                and self._matcher.relevance(float(other @ vector)) >= SAME_LESSON
            ):
                return True
        return False

    def _due(self, channel_zone_dept: Department | None, now: datetime) -> datetime:
        """Now, or the end of the quiet hours in the receiving department's time zone."""
        quiet = self._config.crossposting.quiet_hours
        if quiet is None:
            return now
        zone = self._config.zone(channel_zone_dept) if channel_zone_dept else None
        local = now.astimezone(zone) if zone else now
        if not quiet.contains(local.time()):
            return now
        end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(now.tzinfo)

    async def consider(self, c: Contribution) -> list[str]:
        """Plan suggestions for a stored contribution; return the targets planned.

        Then marks it considered: until then the stored contribution is a pending entry of the
        outbox, which `tick` works off if the process died first. Planning twice is harmless
        (one suggestion per contribution and target).
        """
        now = self._clock.now()
        planned = await self._plan(c, now) if self.shareable(c) else []
        await self._contributions.mark_considered(self.org, c.id, now)
        return planned

    async def _plan(self, c: Contribution, now: datetime) -> list[str]:
        planned: list[str] = []
        threshold = self._config.crossposting.threshold
        vector = self._matcher.vector(self.org, c.id)
        for cand in await self.candidates(c):
            if cand.score < threshold or await self._had_it(cand.target, c.id, vector):
                continue
            dept = self._config.department(cand.target.removeprefix("department:"))
            if await self._crossposts.plan(
                self.org, c.id, c.department_id, cand.target, cand.score, self._due(dept, now), now
            ):
                planned.append(cand.target)
        for theme in self._config.themes:
            if theme.channel and theme.id in c.themes:
                target = f"theme:{theme.id}"
                if await self._crossposts.plan(
                    self.org, c.id, c.department_id, target, 1.0, self._due(None, now), now
                ):
                    planned.append(target)
        if planned:
            log.info("lesson %s may help %s", c.id, ", ".join(planned))
        return planned

    # --- posting ------------------------------------------------------------------------------

    def _target_channel(self, target: str) -> tuple[ChannelRef, Department | None, Theme | None]:
        kind, _, ident = target.partition(":")
        if kind == "theme":
            theme = self._config.theme(ident)
            if theme is None or not theme.channel:
                raise LookupError(target)
            return ChannelRef(theme.platform, theme.channel, theme.workspace), None, theme
        dept = self._config.department(ident)
        return ChannelRef(dept.platform, dept.channel, dept.workspace), dept, None

    async def tick(self, now: datetime | None = None) -> int:
        """Post the suggestions that are due, each once, within the weekly cap."""
        now = now or self._clock.now()
        for c in await self._contributions.unconsidered(
            self.org, now - CATCH_UP_WINDOW, now - CATCH_UP_AFTER
        ):
            log.info("planning suggestions for lesson %s, stored before a restart", c.id)
            await self.consider(c)
        sent = 0
        for cp in await self._crossposts.due(self.org, now, self._lease):
            if not await self._crossposts.claim(cp.id, self.worker, now, self._lease):
                continue
            status, fields = await self._post(cp, now)
            await self._crossposts.finish(cp.id, self.worker, status, now, **fields)
            sent += status is OccurrenceStatus.SENT
        return sent

    async def _post(
        self, cp: Crosspost, now: datetime
    ) -> tuple[OccurrenceStatus, dict[str, str | None]]:
        c = await self._contributions.get(self.org, cp.contribution_id)
        if c is None or not self.shareable(c):
            return OccurrenceStatus.SKIPPED, {"note": "withdrawn"}
        try:
            channel, dept, theme = self._target_channel(cp.target)
            source = self._config.department(c.department_id)
        except (KeyError, LookupError):
            return OccurrenceStatus.SKIPPED, {"note": "target no longer configured"}
        if theme is not None and theme.id not in c.themes:
            return OccurrenceStatus.SKIPPED, {"note": "no longer on this theme"}
        if (
            theme is None
            and await self._crossposts.sent_since(self.org, cp.target, now - WEEK)
            >= self._config.crossposting.max_per_week
        ):
            return OccurrenceStatus.SKIPPED, {"note": "weekly cap reached"}
        if not await self._visibility.may_show(source, channel):
            return OccurrenceStatus.SKIPPED, {"note": "private channel"}
        adapter = self._adapters.get(channel.platform)
        if adapter is None:
            return OccurrenceStatus.FAILED, {"note": f"no {channel.platform} adapter"}
        message = await self._message(c, source, dept, cp)
        try:
            posted = await post_once(
                adapter,
                channel,
                message,
                key=f"crosspost:{cp.id}",
                # Released after a failed attempt (a note), or claimed by a worker that died.
                since=cp.created_at or cp.due_at,
                retaken=cp.status is OccurrenceStatus.CLAIMED or cp.note is not None,
            )
        except PermanentDeliveryError as exc:
            log.error(
                "cannot suggest a lesson in %s: %s. %s", channel.channel, exc.reason, exc.advice
            )
            return OccurrenceStatus.FAILED, {"note": exc.reason[:500]}
        except Exception as exc:  # a platform failure: try again on a later tick
            log.warning("suggesting lesson %s to %s failed: %s", c.id, cp.target, exc)
            await self._crossposts.release(
                cp.id, self.worker, now + timedelta(minutes=10), f"{type(exc).__name__}"
            )
            return OccurrenceStatus.CLAIMED, {}
        return OccurrenceStatus.SENT, {
            "platform": channel.platform,
            "channel": channel.channel,
            "message_id": posted.message_id,
            "thread_id": posted.thread_id,
        }

    async def _message(
        self, c: Contribution, source: Department, dept: Department | None, cp: Crosspost
    ) -> Message:
        t = self._t
        title = t(dept, f"crosspost.title.{c.kind.value}", department=source.name)
        blocks: list[Block] = [Header(title), Section(c.fields.get("what", c.text), quote=True)]
        if c.fields.get("preconditions"):
            blocks.append(
                Section(c.fields["preconditions"], title=t(dept, "crosspost.preconditions"))
            )
        if c.fields.get("effect"):
            blocks.append(Section(c.fields["effect"], title=t(dept, "crosspost.effect")))
        origin = source.name
        named = await name_elsewhere(self._settings, c)
        if named:
            origin = t(dept, "crosspost.origin_named", department=source.name, person=named)
        themes = ", ".join(self._t.theme_title(dept, th) for th in c.themes)
        blocks.append(
            Context(t(dept, "crosspost.origin", origin=origin) + (f" · {themes}" if themes else ""))
        )
        blocks.append(Section(t(dept, "crosspost.question")))
        blocks.append(Context(t(dept, "crosspost.translate_hint")))
        value = str(cp.id)
        blocks.append(
            Actions(
                (
                    Button(USEFUL, t(dept, "crosspost.useful"), value=value, style="primary"),
                    Button(NOT_RELEVANT, t(dept, "crosspost.not_relevant"), value=value),
                    Button(TALK, t(dept, "crosspost.talk"), value=value),
                )
            )
        )
        return Message(text=title, blocks=tuple(blocks))

    # --- what people do with a suggestion -----------------------------------------------------

    async def on_button(self, event: ButtonEvent) -> Response:
        verdict = VERDICTS.get(event.action_id)
        if verdict is None or not event.value.isdigit():
            return None
        cp = await self._crossposts.get(self.org, int(event.value))
        dept = self._config.department_for_channel(event.channel.platform, event.channel.channel)
        if cp is None or cp.status is not OccurrenceStatus.SENT:
            return None
        await self._crossposts.give_feedback(
            cp.id, person_key(event.channel.platform, event.person.id), verdict, self._clock.now()
        )
        if verdict == "talk":
            await self._introduce(cp, event, dept)
        text = self._t(dept, f"crosspost.thanks.{verdict}")
        return Ephemeral(Message(text=text, blocks=(Section(text),)))

    async def _introduce(self, cp: Crosspost, event: ButtonEvent, dept: Department | None) -> None:
        """Let's talk: both departments hear of it, in the suggestion's thread and at home."""
        c = await self._contributions.get(self.org, cp.contribution_id)
        if c is None or cp.platform is None or cp.channel is None or cp.message_id is None:
            return
        source = self._config.department(c.department_id)
        here = dept.name if dept else cp.channel
        adapter = self._adapters.get(cp.platform)
        if adapter is not None:
            text = self._t(
                dept, "crosspost.talk_here", person=event.person.name, department=source.name
            )
            await adapter.reply(
                PostedMessage(
                    ChannelRef(cp.platform, cp.channel),
                    cp.message_id,
                    cp.thread_id or cp.message_id,
                ),
                Message(text=text, blocks=(Section(text),)),
            )
        await self.tell_source(
            c, "crosspost.talk_source", person=event.person.name, department=here
        )

    async def tell_source(self, c: Contribution, key: str, **params: object) -> None:
        """Someone wants to talk about lesson `c`: its own department hears it in its channel.

        `key` is the text, with `{lesson}` (shortened) and the other `params`; its `_named`
        variant, with `{author}`, is used when the author may be named outside their team.
        Raises what the platform raises: the caller decides whether the wish may be tried again.
        """
        source = self._config.department(c.department_id)
        home = self._adapters.get(source.platform)
        if home is None:
            return
        named = await name_elsewhere(self._settings, c)
        text = self._t(
            source,
            f"{key}_named" if named else key,
            author=named,
            lesson=shorten(c.fields.get("what", c.text), 200),
            **params,
        )
        await home.post(
            ChannelRef(source.platform, source.channel, source.workspace),
            Message(text=text, blocks=(Section(text),)),
        )

    async def translation(self, event: MessageEvent) -> Contribution | None:
        """A reply in a suggestion's thread: the receiving team's translation, stored as its own
        contribution, linked to the original."""
        if event.thread_id is None:
            return None
        cp = await self._crossposts.by_thread(
            self.org, event.channel.platform, event.channel.channel, event.thread_id
        )
        dept = self._config.department_for_channel(event.channel.platform, event.channel.channel)
        if cp is None or dept is None or dept.id == cp.source_department_id:
            return None
        original = await self._contributions.get(self.org, cp.contribution_id)
        if original is None:
            return None
        text = event.text.strip()
        # A translation is about what the lesson was about, and what Boeket finds in it.
        found = await self._themes.tag(text)
        themes = tuple(dict.fromkeys((*original.themes, *found)))[:MAX_THEMES]
        stored, created = await self._contributions.add(
            NewContribution(
                organisation_id=self.org,
                department_id=dept.id,
                kind=original.kind,
                source=Source.TRANSLATION,
                round_date=self._clock.now().date(),
                text=text,
                anonymous=False,
                author=event.person,
                platform=event.channel.platform,
                event_key=f"{event.channel.platform}:message:{event.event_id}",
                created_at=self._clock.now(),
                fields={"translates": str(original.id)},
                themes=themes,
            )
        )
        if created:
            await self._crossposts.give_feedback(
                cp.id,
                person_key(event.channel.platform, event.person.id),
                "translated",
                self._clock.now(),
            )
        return stored if created else None


class LessonTravel:
    """Follows contributions: keeps the matcher's index current and suggests lessons elsewhere.

    Runs in the background so that storing a contribution (and acknowledging the platform) never
    waits for an embedding; a contribution whose indexing was lost is indexed at the next start.
    """

    def __init__(
        self,
        *,
        organisation_id: str,
        matcher: Matcher,
        crossposter: Crossposter,
        background: Background,
    ) -> None:
        self._org = organisation_id
        self._matcher = matcher
        self._crossposter = crossposter
        self._background = background

    def stored(self, contribution: Contribution) -> None:
        self._background.spawn(self._stored(contribution), f"stored:{contribution.id}")

    async def _stored(self, contribution: Contribution) -> None:
        await self._matcher.index(contribution)
        await self._crossposter.consider(contribution)

    def edited(self, contribution: Contribution) -> None:
        """Index the new text or themes, and suggest it where it now may help (never twice to
        one target; what was already planned and no longer fits is skipped when due)."""
        self._background.spawn(self._stored(contribution), f"edited:{contribution.id}")

    def deleted(self, contribution_id: int) -> None:
        self._matcher.forget(self._org, contribution_id)

    async def translation(self, event: MessageEvent) -> Contribution | None:
        return await self._crossposter.translation(event)

    async def on_button(self, event: ButtonEvent) -> Response:
        return await self._crossposter.on_button(event)
