"""`boeket demo`: two weeks of the learning cycle on a virtual clock, printed as transcripts.

The demo runs the real core, storage and local adapter; only the people are simulated, with the
scripted answers and shares in ``prompts/<lang>/demo.yaml``.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapters.local.adapter import LocalAdapter
from bot.app import Boeket, build
from bot.clock import ManualClock
from bot.config import Department, OrgConfig
from bot.contributions import ANSWER_FORM, SHARE_FORM
from bot.domain import OccurrenceStatus, Step
from bot.settings import Settings
from prompts.library import PromptLibrary
from storage.repositories import OccurrenceRepository

STEP = timedelta(minutes=15)


@dataclass(order=True)
class _Action:
    at: datetime
    seq: int
    run: Callable[[], Awaitable[object]] = field(compare=False)


@dataclass(frozen=True, slots=True)
class DemoResult:
    transcripts: dict[str, tuple[str, str]]  # channel id → (name, transcript)
    sent: int
    contributions: int
    seconds: float
    start: date
    end: date


class _Script:
    """Simulated people: who answers which prompt, how and when."""

    def __init__(self, config: OrgConfig, demo: dict[str, Any], local: LocalAdapter) -> None:
        self._config = config
        self._demo = demo
        self._local = local
        self._queue: list[_Action] = []
        self._seq = itertools.count()
        self._answer_index: dict[tuple[str, str], Iterator[str]] = {}

    def at(self, moment: datetime, run: Callable[[], Awaitable[object]]) -> None:
        heapq.heappush(self._queue, _Action(moment, next(self._seq), run))

    async def run_due(self, now: datetime) -> None:
        while self._queue and self._queue[0].at <= now:
            await heapq.heappop(self._queue).run()

    def people(self, dept: Department) -> list[str]:
        return [p.id for p in self._config.local.people if p.department == dept.id]

    def _answers(self, dept: Department, kind: str) -> Iterator[str]:
        key = (dept.id, kind)
        if key not in self._answer_index:
            texts = self._demo.get("answers", {}).get(dept.id, {}).get(kind, [])
            self._answer_index[key] = itertools.cycle(texts) if texts else iter(())
        return self._answer_index[key]

    def answer_prompt(
        self, dept: Department, kind: str, round_date: date, message_id: str, posted_at: datetime
    ) -> None:
        people = self.people(dept)
        answers = self._answers(dept, kind)
        for i, person in enumerate(people[:3]):
            text = next(answers, None)
            if text is None:
                return
            when = posted_at + timedelta(hours=2 + 3 * i)
            if i % 2 == 0:
                self.at(when, self._reply(person, dept.channel, text, message_id))
            else:
                anonymous = "true" if dept.anonymous_answers else "false"
                self.at(
                    when,
                    self._form(
                        person,
                        dept.channel,
                        ANSWER_FORM,
                        {
                            "text": text,
                            "anonymous": anonymous,
                        },
                        {"department": dept.id, "round": round_date.isoformat()},
                    ),
                )

    def shares(self, start: datetime) -> None:
        for i, share in enumerate(self._demo.get("shares", [])):
            try:
                dept = self._config.department(str(share["department"]))
            except KeyError:
                continue
            people = self.people(dept)
            if not people:
                continue
            values = {
                "what": str(share.get("what", "")),
                "preconditions": str(share.get("preconditions", "")),
                "effect": str(share.get("effect", "")),
                "goal": str(share.get("goal", "")),
                "theme": str(share.get("theme", "")),
                "anonymous": "true" if share.get("anonymous") else "false",
            }
            when = start + timedelta(days=1 + (i * 29) % 12, hours=10 + i % 6)
            person = people[i % len(people)]
            self.at(when, self._share(person, dept, values))

    def _reply(
        self, person: str, channel: str, text: str, thread: str
    ) -> Callable[[], Awaitable[object]]:
        return lambda: self._local.say(person, channel, text, thread_id=thread)

    def _form(
        self, person: str, channel: str, form_id: str, values: dict[str, str], meta: dict[str, str]
    ) -> Callable[[], Awaitable[object]]:
        return lambda: self._local.submit(person, channel, form_id, values, meta=meta)

    def _share(
        self, person: str, dept: Department, values: dict[str, str]
    ) -> Callable[[], Awaitable[object]]:
        async def run() -> None:
            await self._local.say(person, dept.channel, "/deel")
            await self._local.submit(
                person, dept.channel, SHARE_FORM, values, meta={"department": dept.id}
            )

        return run


async def run_demo(
    config: OrgConfig,
    *,
    database_url: str,
    start: date,
    days: int = 14,
    prompts: PromptLibrary | None = None,
    progress: Callable[[str], None] | None = None,
    embedder: str = "lexical",
) -> DemoResult:
    """Simulate `days` days from `start` (local midnight in the organisation's zone)."""
    began = time.perf_counter()
    zone = ZoneInfo(config.timezone)
    t0 = datetime.combine(start, datetime.min.time()).replace(tzinfo=zone).astimezone(UTC)
    end = t0 + timedelta(days=days)
    clock = ManualClock(t0)
    settings = Settings(database_url=database_url, worker_id="demo", embedder=embedder)
    boeket: Boeket = build(settings, config, clock=clock, prompts=prompts)
    await boeket.start(timer=False)
    try:
        local = boeket.local
        lang = config.language
        demo = dict(boeket.texts.prompts.demo(lang))
        script = _Script(config, demo, local)
        script.shares(t0)
        occurrences = OccurrenceRepository(boeket.db)
        answered: set[int] = set()
        sent = 0
        now = t0
        day = -1
        while now <= end:
            clock.set(now)
            await script.run_due(now)
            await boeket.background.drain()  # matching and crossposting of what was just said
            report = await boeket.cycle.tick(now)
            sent += report.sent + await boeket.crossposter.tick(now)
            sent += await boeket.digest.tick(now)
            if report.sent:
                for occ in await occurrences.all(config.organisation.id):
                    if (
                        occ.step is Step.PROMPT
                        and occ.status is OccurrenceStatus.SENT
                        and occ.id not in answered
                        and occ.message_id
                        and occ.kind
                    ):
                        answered.add(occ.id)
                        script.answer_prompt(
                            config.department(occ.department_id),
                            occ.kind.value,
                            occ.round_date,
                            occ.message_id,
                            now,
                        )
            if progress and (now - t0).days != day:
                day = (now - t0).days
                progress(f"{now.astimezone(zone):%a %Y-%m-%d}: {sent} berichten")
            now += STEP
        transcripts = {c.id: (c.name, local.transcript(c.id)) for c in local.channels}
        from storage.repositories import ContributionRepository

        count = len(await ContributionRepository(boeket.db).all(config.organisation.id))
    finally:
        await boeket.stop()
    return DemoResult(
        transcripts=transcripts,
        sent=sent,
        contributions=count,
        seconds=time.perf_counter() - began,
        start=start,
        end=start + timedelta(days=days),
    )


def demo_database(folder: Path) -> str:
    return f"sqlite:///{folder / 'demo.sqlite3'}"
