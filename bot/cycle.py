"""The learning cycle: per department a round per meeting — prompt, reminder, harvest, follow-up.

A tick plans every step due by now (insert-if-new on the key department, step, round date), then
works through the due ones: each is *claimed* with a conditional UPDATE before anything is posted,
so several workers or replicas post each occurrence once. Steps missed by more than the grace window
(downtime) are marked skipped instead of posted late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import Department, OrgConfig
from bot.delivery import post_once
from bot.domain import (
    ChannelRef,
    Contribution,
    Kind,
    Occurrence,
    OccurrenceStatus,
    PostedMessage,
    Source,
    Step,
)
from bot.messages import (
    Actions,
    Block,
    Bullets,
    Button,
    Context,
    Field,
    Form,
    Header,
    Message,
    Option,
    Section,
)
from bot.ports import Adapter, Clock, PermanentDeliveryError
from bot.rhythm import Round, next_round, round_for, rounds_around
from prompts.library import PromptLibrary, pick_variant
from storage.repositories import ContributionRepository, OccurrenceRepository, PlannedOccurrence

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
# A wave (every department's prompt at once) is posted this many at a time, in batches of BATCH.
CONCURRENCY = 32
BATCH = 1000
ANSWER_ACTION = "boeket.answer"
ANSWER_FORM = "boeket.answer"
MAX_ANSWER = 4000  # characters of one answer; Slack sections hold 3000, so harvests shorten
NOT_SHARED = "not_shared"  # the "niet delen" checkbox


@dataclass(frozen=True, slots=True)
class TickReport:
    planned: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0


class Texts:
    """The prompt library bound to one organisation: its language per department and symbolism."""

    def __init__(self, config: OrgConfig, prompts: PromptLibrary) -> None:
        self.config = config
        self.prompts = prompts

    def for_language(self, lang: str) -> Callable[..., str]:
        """Texts in one language, for what is said to one person wherever they are."""

        def text(key: str, **params: object) -> str:
            return self.prompts.text(lang, key, symbolism=self.config.symbolism, **params)

        return text

    def theme_title_in(self, lang: str, theme_id: str) -> str:
        key = f"themes.{theme_id}"
        if key in self.prompts.ui_keys(lang):
            return self.prompts.text(lang, key)
        theme = self.config.theme(theme_id)
        return theme.title if theme and theme.title else theme_id

    def lang(self, dept: Department | None) -> str:
        return self.config.language_of(dept) if dept else self.config.language

    def __call__(self, dept: Department | None, key: str, **params: object) -> str:
        return self.prompts.text(self.lang(dept), key, symbolism=self.config.symbolism, **params)

    def kind_title(self, dept: Department | None, kind: Kind) -> str:
        return self.prompts.kind_title(self.lang(dept), kind.value)

    def weekday_date(self, dept: Department | None, moment: datetime) -> str:
        lang = self.lang(dept)
        day = self.prompts.text(lang, f"calendar.weekday.{moment.weekday()}")
        month = self.prompts.text(lang, f"calendar.month.{moment.month}")
        return self.prompts.text(
            lang, "calendar.date", weekday=day, day=moment.day, month=month, time=f"{moment:%H:%M}"
        )

    def theme_title(self, dept: Department | None, theme_id: str | None) -> str:
        return self.theme_title_in(self.lang(dept), theme_id) if theme_id else ""

    def author(self, dept: Department | None, contribution: Contribution) -> str:
        if contribution.anonymous or contribution.author is None:
            return self(dept, "common.anonymous")
        return contribution.author.name


class CycleEngine:
    """Plans, claims and posts the steps of every department's learning cycle."""

    def __init__(
        self,
        *,
        config: OrgConfig,
        texts: Texts,
        occurrences: OccurrenceRepository,
        contributions: ContributionRepository,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        worker: str,
        lease: timedelta = LEASE,
    ) -> None:
        self._config = config
        self._t = texts
        self._occurrences = occurrences
        self._lease = lease
        self._contributions = contributions
        self._adapters = adapters
        self._clock = clock
        self.worker = worker
        # Keys this engine has already planned: rows are never deleted, so there is no need to
        # send them to the database again on every tick.
        self._planned: set[tuple[str, Step, object]] = set()

    @property
    def org(self) -> str:
        return self._config.organisation.id

    def rounds(self, dept: Department, start: datetime, end: datetime) -> list[Round]:
        return rounds_around(dept.meeting, self._config.cycle, self._config.zone(dept), start, end)

    def current_round(self, dept: Department, now: datetime) -> Round:
        """The round a contribution made at `now` belongs to: the next meeting not yet started."""
        return next_round(dept.meeting, self._config.cycle, self._config.zone(dept), now)

    async def tick(self, now: datetime | None = None) -> TickReport:
        """Plan what is due by `now` and post it, each occurrence once."""
        now = now or self._clock.now()
        # Steps missed by up to twice the grace window are recorded (as skipped, past grace);
        # older ones, e.g. before the first start, are not planned at all.
        lookback = 2 * self._config.cycle.grace
        planned = [
            PlannedOccurrence(self.org, dept.id, step, rnd.round_date, due)
            for dept in self._config.departments
            for rnd in self.rounds(dept, now - lookback, now + timedelta(seconds=1))
            for step, due in rnd.due.items()
            if now - lookback <= due <= now
        ]
        fresh = [p for p in planned if (p.department_id, p.step, p.round_date) not in self._planned]
        new = await self._occurrences.plan(fresh)
        self._planned.update((p.department_id, p.step, p.round_date) for p in fresh)
        outcomes: list[OccurrenceStatus | None] = []
        seen: set[int] = set()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def run_department(occurrences: list[Occurrence]) -> None:
            # One department's steps in order (a reminder needs its prompt's message); the
            # departments side by side, so one slow or rate-limited channel holds up no other.
            for occ in occurrences:
                async with gate:
                    # The lease runs from the claim, not from the start of a tick that may
                    # have taken a while to get here.
                    claimed_at = max(now, self._clock.now())
                    if not await self._occurrences.claim(
                        occ.id, self.worker, claimed_at, self._lease
                    ):
                        continue  # another worker has it
                    outcomes.append(await self._run(occ, now))

        while True:
            batch = [
                occ
                for occ in await self._occurrences.due(self.org, now, self._lease, limit=BATCH)
                if occ.id not in seen
            ]
            if not batch:
                break
            seen.update(occ.id for occ in batch)
            by_department: dict[str, list[Occurrence]] = {}
            for occ in batch:
                by_department.setdefault(occ.department_id, []).append(occ)
            await asyncio.gather(*(run_department(o) for o in by_department.values()))
        sent = sum(o is OccurrenceStatus.SENT for o in outcomes)
        skipped = sum(o is OccurrenceStatus.SKIPPED for o in outcomes)
        failed = sum(o is None for o in outcomes)
        return TickReport(planned=new, sent=sent, skipped=skipped, failed=failed)

    async def _run(self, occ: Occurrence, now: datetime) -> OccurrenceStatus | None:
        try:
            dept = self._config.department(occ.department_id)
        except KeyError:
            await self._finish(occ, OccurrenceStatus.SKIPPED, now, note="department removed")
            return OccurrenceStatus.SKIPPED
        if now - occ.due_at > self._config.cycle.grace:
            log.info(
                "skipping %s %s for %s: missed by more than the grace window",
                occ.step,
                occ.round_date,
                dept.id,
            )
            await self._finish(occ, OccurrenceStatus.SKIPPED, now, note="missed: past grace")
            return OccurrenceStatus.SKIPPED
        try:
            return await self._post_step(occ, dept, now)
        except PermanentDeliveryError as exc:
            log.error(
                "cannot post %s for %s in %s channel %s: %s. %s",
                occ.step,
                dept.id,
                dept.platform,
                dept.channel,
                exc.reason,
                exc.advice,
            )
            await self._finish(occ, OccurrenceStatus.FAILED, now, note=exc.reason[:500])
            return None
        except Exception as exc:  # a platform failure must not stop the other steps
            log.warning("posting %s for %s failed: %s", occ.step, dept.id, exc)
            await self._occurrences.release(occ.id, self.worker, f"{type(exc).__name__}: {exc}")
            return None

    async def _finish(
        self, occ: Occurrence, status: OccurrenceStatus, now: datetime, **fields: object
    ) -> None:
        await self._occurrences.finish(occ.id, self.worker, status, now, **fields)  # type: ignore[arg-type]

    def _adapter(self, platform: str) -> Adapter:
        try:
            return self._adapters[platform]
        except KeyError:
            raise LookupError(f"no adapter for platform {platform!r} is running") from None

    async def _post_step(
        self, occ: Occurrence, dept: Department, now: datetime
    ) -> OccurrenceStatus:
        channel = ChannelRef(dept.platform, dept.channel, dept.workspace)
        adapter = self._adapter(dept.platform)
        rnd = round_for(
            dept.meeting,
            self._config.cycle,
            self._config.zone(dept),
            self._meeting_start(dept, occ),
        )
        # A claim taken over from a worker that died, or after a failed attempt: its post may
        # have reached the platform before the worker could record it.
        retaken = occ.attempts > 0 or occ.status is OccurrenceStatus.CLAIMED
        key = f"occurrence:{occ.id}"

        async def post(message: Message, thread: PostedMessage | None = None) -> PostedMessage:
            return await post_once(
                adapter,
                channel,
                message,
                key=key,
                since=occ.due_at,
                retaken=retaken,
                thread=thread,
            )

        if occ.step is Step.PROMPT:
            kind, goal_id, message = await self._prompt(dept, rnd)
            posted = await post(message)
            await self._finish(
                occ,
                OccurrenceStatus.SENT,
                now,
                kind=kind,
                goal_id=goal_id,
                platform=dept.platform,
                channel=dept.channel,
                message_id=posted.message_id,
                thread_id=posted.thread_id,
            )
            log.info("posted %s prompt (%s) for %s", rnd.round_date, kind, dept.id)
            return OccurrenceStatus.SENT

        prompt = await self._occurrences.get(self.org, dept.id, Step.PROMPT, occ.round_date)
        prompt_posted = (
            PostedMessage(channel, prompt.message_id, prompt.thread_id or prompt.message_id)
            if prompt and prompt.status is OccurrenceStatus.SENT and prompt.message_id
            else None
        )
        contributions = await self._contributions.for_round(self.org, dept.id, occ.round_date)
        if occ.step is Step.REMINDER:
            if prompt_posted is None:
                await self._finish(occ, OccurrenceStatus.SKIPPED, now, note="no prompt this round")
                return OccurrenceStatus.SKIPPED
            posted = await post(self._reminder(dept, rnd, contributions), prompt_posted)
        elif occ.step is Step.HARVEST:
            if prompt_posted is None and not contributions:
                await self._finish(occ, OccurrenceStatus.SKIPPED, now, note="nothing to harvest")
                return OccurrenceStatus.SKIPPED
            round_kind = prompt.kind if prompt else None
            posted = await post(self._harvest(dept, rnd, round_kind, contributions))
        else:
            harvest = await self._occurrences.get(self.org, dept.id, Step.HARVEST, occ.round_date)
            if harvest is None or harvest.status is not OccurrenceStatus.SENT:
                await self._finish(occ, OccurrenceStatus.SKIPPED, now, note="no harvest this round")
                return OccurrenceStatus.SKIPPED
            message = self._followup(dept, prompt.kind if prompt else None, contributions)
            posted = await post(message, prompt_posted)
        await self._finish(
            occ,
            OccurrenceStatus.SENT,
            now,
            platform=dept.platform,
            channel=dept.channel,
            message_id=posted.message_id,
            thread_id=posted.thread_id,
        )
        log.info("posted %s %s for %s", rnd.round_date, occ.step, dept.id)
        return OccurrenceStatus.SENT

    def _meeting_start(self, dept: Department, occ: Occurrence) -> datetime:
        zone = self._config.zone(dept)
        day = datetime.combine(occ.round_date, dept.meeting.time).replace(tzinfo=zone)
        return day

    # --- rendering ----------------------------------------------------------------------------

    async def _prompt(self, dept: Department, rnd: Round) -> tuple[Kind, str | None, Message]:
        rotation = self._config.cycle.rotation
        count = await self._occurrences.count_sent(self.org, dept.id, Step.PROMPT)
        kind = rotation[count % len(rotation)]
        goal_id: str | None = None
        goal_title = ""
        if kind is Kind.KOERS:
            goals = dept.goals or tuple(g.id for g in self._config.goals)
            koers_count = await self._occurrences.count_kind(self.org, dept.id, Kind.KOERS)
            goal_id = goals[koers_count % len(goals)]
            goal = self._config.goal(goal_id)
            goal_title = goal.title if goal else goal_id
        others = [d for d in self._config.departments if d.id != dept.id]
        seed = f"{self.org}:{dept.id}:{rnd.round_date.isoformat()}:{kind.value}"
        other = others[pick_variant(seed, len(others))].name if others else ""
        theme = dept.themes[pick_variant(seed, len(dept.themes))] if dept.themes else ""
        lang = self._t.lang(dept)
        rendered = self._t.prompts.render_prompt(
            lang,
            kind.value,
            pick_variant(seed, self._t.prompts.variant_count(lang, kind.value)),
            symbolism=self._config.symbolism,
            department=dept.name,
            goal=goal_title,
            theme=self._t.theme_title(dept, theme),
            other_department=other,
        )
        when = self._t.weekday_date(dept, rnd.start)
        blocks: list[Block] = [
            Header(f"{rendered.emoji} {rendered.title}".strip()),
            Section(rendered.question),
            Context(self._t(dept, "prompt.followup_hint", followup=rendered.followup)),
            Context(self._t(dept, "prompt.when", when=when)),
        ]
        if dept.anonymous_answers:
            blocks.append(Context(self._t(dept, "prompt.anonymous_allowed")))
        blocks.append(
            Actions(
                (
                    Button(
                        ANSWER_ACTION,
                        self._t(dept, "prompt.answer_button"),
                        value=rnd.round_date.isoformat(),
                        style="primary",
                        inline=self._inline_answer(dept, rnd),
                    ),
                )
            )
        )
        text = f"{rendered.title}: {rendered.question}"
        return kind, goal_id, Message(text=text, blocks=tuple(blocks))

    def _inline_answer(self, dept: Department, rnd: Round) -> Form:
        """The short answer form a platform may show in the prompt itself (Teams' card).

        Everyone in the channel sees the same form, so nothing in it can follow one person's
        settings: the anonymity choice starts empty, and empty means "my own default".
        """
        fields = [
            Field(
                "text",
                self._t(dept, "answer.field_text"),
                kind="textarea",
                required=True,
                max_length=MAX_ANSWER,
            ),
            Field(NOT_SHARED, self._t(dept, "form.not_shared"), kind="checkbox"),
        ]
        if dept.anonymous_answers:
            fields.append(
                Field(
                    "anonymous",
                    self._t(dept, "form.anonymity"),
                    kind="select",
                    hint=self._t(dept, "form.anonymity_hint"),
                    options=(
                        Option("false", self._t(dept, "form.anonymity_named")),
                        Option("true", self._t(dept, "form.anonymity_anonymous")),
                    ),
                )
            )
        return Form(
            form_id=ANSWER_FORM,
            title=self._t(dept, "answer.form_title"),
            submit_label=self._t(dept, "form.submit"),
            fields=tuple(fields),
            meta={"department": dept.id, "round": rnd.round_date.isoformat()},
            intro=self._t(dept, "prompt.inline_intro"),
        )

    def _reminder(self, dept: Department, rnd: Round, contributions: list[Contribution]) -> Message:
        answers = [c for c in contributions if c.source is not Source.SHARE]
        key = {0: "reminder.none", 1: "reminder.one"}.get(len(answers), "reminder.some")
        text = self._t(dept, key, count=len(answers), when=self._t.weekday_date(dept, rnd.start))
        return Message(text=text, blocks=(Section(text),))

    def _harvest(
        self,
        dept: Department,
        rnd: Round,
        kind: Kind | None,
        contributions: list[Contribution],
    ) -> Message:
        title = self._t(dept, "harvest.title", department=dept.name)
        blocks: list[Block] = [
            Header(title),
            Context(self._t(dept, "harvest.intro", when=self._t.weekday_date(dept, rnd.start))),
        ]
        if not contributions:
            blocks.append(Section(self._t(dept, "harvest.empty")))
        by_kind: dict[Kind, list[Contribution]] = {}
        for c in contributions:
            by_kind.setdefault(c.kind, []).append(c)
        for group_kind in sorted(by_kind, key=list(Kind).index):
            items = tuple(self._harvest_line(dept, c) for c in by_kind[group_kind])
            blocks.append(
                Bullets(
                    items,
                    title=self._t(
                        dept,
                        "harvest.group",
                        kind=self._t.kind_title(dept, group_kind),
                        count=len(items),
                    ),
                )
            )
        if kind is not None:
            blocks.append(
                Section(
                    self._t(dept, f"harvest.discuss.{kind.value}"),
                    title=self._t(dept, "harvest.discuss_title"),
                )
            )
        anonymous = sum(c.anonymous for c in contributions)
        blocks.append(
            Context(self._t(dept, "harvest.footer", count=len(contributions), anonymous=anonymous))
        )
        return Message(text=f"{title} ({len(contributions)})", blocks=tuple(blocks))

    def _harvest_line(self, dept: Department, c: Contribution) -> str:
        who = self._t.author(dept, c)
        if c.source is Source.SHARE:
            parts = [_sentence(c.fields.get("what", c.text))]
            if c.fields.get("preconditions"):
                parts.append(
                    self._t(
                        dept, "share.line_preconditions", text=_sentence(c.fields["preconditions"])
                    )
                )
            if c.fields.get("effect"):
                parts.append(self._t(dept, "share.line_effect", text=_sentence(c.fields["effect"])))
            body = " ".join(parts)
        else:
            body = c.text
            if c.fields.get("followup"):
                body += " " + self._t(dept, "harvest.followup_line", text=c.fields["followup"])
        return self._t(dept, "harvest.line", text=body, who=who)

    def _followup(
        self, dept: Department, kind: Kind | None, contributions: list[Contribution]
    ) -> Message:
        key = f"followup.{kind.value}" if kind else "followup.default"
        text = self._t(dept, key, count=len(contributions))
        return Message(
            text=text, blocks=(Section(text), Context(self._t(dept, "followup.share_hint")))
        )


def _sentence(text: str) -> str:
    """End a person's phrase with a full stop if it has no closing punctuation yet."""
    text = text.strip()
    return text if not text or text[-1] in ".!?…)\"'”" else text + "."
