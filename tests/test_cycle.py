"""The learning cycle on SQLite and PostgreSQL: exactly once, time zones, downtime, restarts."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from adapters.local.adapter import LocalAdapter
from bot.app import local_settings
from bot.clock import ManualClock
from bot.config import OrgConfig, parse_config
from bot.cycle import CycleEngine, Texts
from bot.domain import Kind, Occurrence, OccurrenceStatus, Step
from bot.messages import Response
from bot.settings import EXAMPLE_CONFIG
from prompts.library import PromptLibrary
from storage.repositories import (
    ContributionRepository,
    OccurrenceRepository,
    PersonSettingsRepository,
)
from tests.conftest import DatabaseFactory

AMS = ZoneInfo("Europe/Amsterdam")


def config_with(**changes: Any) -> OrgConfig:
    """The example hospital with top-level sections replaced."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data.update(changes)
    return parse_config(data, Path("test.yaml"))


def dst_config() -> OrgConfig:
    """Departments whose steps fall on or around the 2027 daylight-saving changes."""
    base = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    departments = [
        # Sunday 02:30: on 2027-03-28 that wall time does not exist, on 2027-10-31 it happens twice.
        {
            "id": "nacht",
            "name": "Nachtdienst",
            "channel": "nacht",
            "meeting": {"weekday": "zondag", "time": "02:30", "duration": "30m"},
        },
        # Monday 09:00 with the prompt a day before: the prompt lands on the change day.
        {
            "id": "dag",
            "name": "Dagdienst",
            "channel": "dag",
            "meeting": {"weekday": "maandag", "time": "09:00", "duration": "1h"},
        },
    ]
    base["departments"] = departments
    base["local"] = {"people": [{"id": "an", "name": "An", "department": "dag"}]}
    base["cycle"] = {
        "lead_time": "1d",
        "reminder": "3h",
        "followup": "2h",
        "grace": "6h",
        "rotation": ["succes", "les"],
    }
    return parse_config(base, Path("dst.yaml"))


async def _no_events(event: object) -> Response:
    return None


class Cycle:
    """An engine wired to its own database connection, as one worker or replica would be."""

    def __init__(
        self,
        factory: DatabaseFactory,
        config: OrgConfig,
        prompts: PromptLibrary,
        clock: ManualClock,
        local: LocalAdapter,
        worker: str,
    ) -> None:
        db = factory.open()
        self.occurrences = OccurrenceRepository(db)
        self.contributions = ContributionRepository(db)
        self.engine = CycleEngine(
            config=config,
            texts=Texts(config, prompts),
            occurrences=self.occurrences,
            contributions=self.contributions,
            adapters={"local": local},
            clock=clock,
            worker=worker,
        )


async def make_local(config: OrgConfig, prompts: PromptLibrary, clock: ManualClock) -> LocalAdapter:
    local = LocalAdapter(local_settings(config, Texts(config, prompts)), clock=clock)
    await local.start(_no_events)
    return local


def bot_messages(local: LocalAdapter) -> list[Any]:
    return [m for c in local.channels for m in local.messages(c.id) if m.author_id == "boeket"]


async def run_until(
    cycles: list[Cycle], clock: ManualClock, end: datetime, step: timedelta
) -> None:
    """Tick every worker concurrently at each moment from the clock's time to `end`."""
    while clock.now() <= end:
        await asyncio.gather(*(c.engine.tick(clock.now()) for c in cycles))
        clock.advance(step)


def sent(occurrences: list[Occurrence]) -> list[Occurrence]:
    return [o for o in occurrences if o.status is OccurrenceStatus.SENT]


async def test_eight_workers_post_each_occurrence_once(
    database_factory: DatabaseFactory, example_config: OrgConfig, prompts: PromptLibrary
) -> None:
    clock = ManualClock(datetime(2027, 3, 1, tzinfo=UTC))
    local = await make_local(example_config, prompts, clock)
    workers = [
        Cycle(database_factory, example_config, prompts, clock, local, f"worker-{i}")
        for i in range(8)
    ]
    await run_until(workers, clock, datetime(2027, 3, 15, tzinfo=UTC), timedelta(hours=1))

    occurrences = await workers[0].occurrences.all(example_config.organisation.id)
    posted = sent(occurrences)
    keys = Counter((o.department_id, o.step, o.round_date) for o in occurrences)
    assert keys and max(keys.values()) == 1
    # Two weeks of five departments: OK, the ward and the SEH twice, HR once (every other
    # week), ICT once (its first Monday's prompt fell before the start, so nothing to harvest).
    assert Counter(o.step for o in posted)[Step.HARVEST] == 8
    assert {o.step for o in posted} == set(Step)
    messages = bot_messages(local)
    assert len(messages) == len(posted)
    assert {m.id for m in messages} == {o.message_id for o in posted}
    # Several workers really competed: more than one of them won claims.
    winners = {w.engine.worker for w in workers}
    assert len(winners) == 8


async def test_claim_is_won_by_one_worker_only(
    database_factory: DatabaseFactory, example_config: OrgConfig, prompts: PromptLibrary
) -> None:
    clock = ManualClock(datetime(2027, 3, 1, tzinfo=UTC))
    local = await make_local(example_config, prompts, clock)
    workers = [
        Cycle(database_factory, example_config, prompts, clock, local, f"w{i}") for i in range(8)
    ]
    # The OK prompt for Tuesday 2 March is due Monday 07:30 local; plan it, then let all claim.
    now = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
    await workers[0].engine.tick(now)
    occ = await workers[0].occurrences.get(
        example_config.organisation.id, "ok", Step.PROMPT, date(2027, 3, 2)
    )
    assert occ is not None and occ.status is OccurrenceStatus.SENT
    other = await workers[0].occurrences.get(
        example_config.organisation.id, "ok", Step.REMINDER, date(2027, 3, 2)
    )
    assert other is None  # not due yet, so not planned
    await workers[0].occurrences.plan([])
    # A pending occurrence claimed by eight workers at once: exactly one wins.
    from storage.repositories import PlannedOccurrence

    key = PlannedOccurrence(
        example_config.organisation.id, "ict", Step.PROMPT, date(2027, 3, 8), now
    )
    await workers[0].occurrences.plan([key])
    pending = await workers[0].occurrences.get(
        example_config.organisation.id, "ict", Step.PROMPT, date(2027, 3, 8)
    )
    assert pending is not None
    wins = await asyncio.gather(
        *(
            w.occurrences.claim(pending.id, w.engine.worker, now, timedelta(minutes=5))
            for w in workers
        )
    )
    assert wins.count(True) == 1


async def test_daylight_saving_changes_neither_skip_nor_double(
    database_factory: DatabaseFactory, prompts: PromptLibrary
) -> None:
    config = dst_config()
    for start, end in (
        (datetime(2027, 3, 26, tzinfo=UTC), datetime(2027, 3, 30, tzinfo=UTC)),
        (datetime(2027, 10, 29, tzinfo=UTC), datetime(2027, 11, 2, tzinfo=UTC)),
    ):
        clock = ManualClock(start)
        local = await make_local(config, prompts, clock)
        workers = [
            Cycle(database_factory, config, prompts, clock, local, f"w{i}") for i in range(2)
        ]
        await run_until(workers, clock, end, timedelta(minutes=10))
        occurrences = await workers[0].occurrences.all(config.organisation.id)
        change = date(2027, 3, 28) if start.month == 3 else date(2027, 10, 31)
        monday = change + timedelta(days=1)
        for dept, round_date in (("nacht", change), ("dag", monday)):
            steps = Counter(
                o.step
                for o in sent(occurrences)
                if o.department_id == dept and o.round_date == round_date
            )
            assert steps == Counter(set(Step)), (dept, round_date, steps)
        # The Monday meeting's harvest is at 09:00 wall-clock time, whatever the offset.
        harvest = next(
            o
            for o in occurrences
            if o.department_id == "dag" and o.step is Step.HARVEST and o.round_date == monday
        )
        local_time = harvest.due_at.astimezone(AMS)
        assert (local_time.hour, local_time.minute) == (9, 0)
        prompt = next(
            o
            for o in occurrences
            if o.department_id == "dag" and o.step is Step.PROMPT and o.round_date == monday
        )
        assert prompt.due_at.astimezone(AMS).hour == 9  # Sunday 09:00, the day of the change
        # Each posted message appears once in its channel.
        this_period = [o for o in sent(occurrences) if start <= o.due_at <= end]
        assert len(bot_messages(local)) == len(this_period)


async def test_missed_steps_within_grace_are_posted_once_and_older_skipped(
    database_factory: DatabaseFactory, example_config: OrgConfig, prompts: PromptLibrary
) -> None:
    org = example_config.organisation.id
    clock = ManualClock(datetime(2027, 3, 1, tzinfo=UTC))
    local = await make_local(example_config, prompts, clock)
    cycle = Cycle(database_factory, example_config, prompts, clock, local, "solo")
    # OK meets Tuesday 2 March 07:30 CET; its prompt is due Monday 07:30 CET (06:30 UTC).
    # Boeket is down from Monday 00:00 until 09:30 UTC: three hours late, within the grace.
    clock.set(datetime(2027, 3, 1, 9, 30, tzinfo=UTC))
    await cycle.engine.tick()
    await cycle.engine.tick()
    prompt = await cycle.occurrences.get(org, "ok", Step.PROMPT, date(2027, 3, 2))
    assert prompt is not None and prompt.status is OccurrenceStatus.SENT
    assert len(local.messages("operatiekamer")) == 1

    # Down again from before the reminder (03:30 UTC) until Tuesday 14:30 UTC: the reminder
    # (11 h late) and the harvest (8 h late) are past the 6 h grace; the follow-up (09:00 UTC)
    # would be in time, but there was no harvest to follow up on.
    clock.set(datetime(2027, 3, 2, 14, 30, tzinfo=UTC))
    report = await cycle.engine.tick()
    for step in (Step.REMINDER, Step.HARVEST, Step.FOLLOWUP):
        occ = await cycle.occurrences.get(org, "ok", step, date(2027, 3, 2))
        assert occ is not None and occ.status is OccurrenceStatus.SKIPPED, step
    assert report.sent == 0 or all(m.channel != "operatiekamer" for m in bot_messages(local)[1:])
    assert len(local.messages("operatiekamer")) == 1


async def test_restart_never_reposts(
    database_factory: DatabaseFactory, example_config: OrgConfig, prompts: PromptLibrary
) -> None:
    org = example_config.organisation.id
    clock = ManualClock(datetime(2027, 3, 1, tzinfo=UTC))
    local = await make_local(example_config, prompts, clock)
    first = Cycle(database_factory, example_config, prompts, clock, local, "before-restart")
    await run_until([first], clock, datetime(2027, 3, 3, 12, tzinfo=UTC), timedelta(hours=1))
    await first.engine.tick()  # up to date at this moment
    posted_before = len(bot_messages(local))
    assert posted_before > 0
    # A new process: new connection, new engine with an empty memory, same moment.
    second = Cycle(database_factory, example_config, prompts, clock, local, "after-restart")
    report = await second.engine.tick()
    assert report.sent == 0
    assert len(bot_messages(local)) == posted_before
    assert all(o.status is not OccurrenceStatus.PENDING for o in await second.occurrences.all(org))


async def test_a_failed_post_is_retried_on_the_next_tick(
    database_factory: DatabaseFactory, example_config: OrgConfig, prompts: PromptLibrary
) -> None:
    org = example_config.organisation.id
    clock = ManualClock(datetime(2027, 3, 1, 9, tzinfo=UTC))

    class Flaky(LocalAdapter):
        failures = 1

        async def post(self, channel: Any, message: Any, *, key: str | None = None) -> Any:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("platform unavailable")
            return await super().post(channel, message, key=key)

    local = Flaky(local_settings(example_config, Texts(example_config, prompts)), clock=clock)
    await local.start(_no_events)
    cycle = Cycle(database_factory, example_config, prompts, clock, local, "solo")
    first = await cycle.engine.tick()
    assert first.failed == 1
    prompt = await cycle.occurrences.get(org, "ok", Step.PROMPT, date(2027, 3, 2))
    assert prompt is not None and prompt.status is OccurrenceStatus.PENDING
    second = await cycle.engine.tick()
    assert second.sent == 1
    assert len(local.messages("operatiekamer")) == 1


async def test_kinds_rotate_in_the_configured_order_and_koers_names_a_goal(
    database_factory: DatabaseFactory, prompts: PromptLibrary
) -> None:
    config = config_with(
        cycle={
            "lead_time": "1d",
            "reminder": None,
            "followup": None,
            "rotation": ["koers", "les", "succes"],
        }
    )
    org = config.organisation.id
    clock = ManualClock(datetime(2027, 3, 1, tzinfo=UTC))
    local = await make_local(config, prompts, clock)
    cycle = Cycle(database_factory, config, prompts, clock, local, "solo")
    await run_until([cycle], clock, datetime(2027, 3, 29, tzinfo=UTC), timedelta(hours=2))
    prompts_sent = [
        o
        for o in sent(await cycle.occurrences.all(org))
        if o.step is Step.PROMPT and o.department_id == "ok"
    ]
    prompts_sent.sort(key=lambda o: o.round_date)
    assert [o.kind for o in prompts_sent[:4]] == [Kind.KOERS, Kind.LES, Kind.SUCCES, Kind.KOERS]
    ok = config.department("ok")
    assert prompts_sent[0].goal_id == ok.goals[0]
    assert prompts_sent[3].goal_id == ok.goals[1]  # the next koers round takes the next goal
    first = next(m for m in local.messages("operatiekamer") if m.id == prompts_sent[0].message_id)
    goal = config.goal(ok.goals[0])
    assert goal is not None and goal.title in first.text
    assert any(b["label"] == "Antwoorden" for b in first.buttons)


async def test_reminder_names_nobody_and_harvest_groups_by_kind_without_anonymous_names(
    database_factory: DatabaseFactory, example_config: OrgConfig, prompts: PromptLibrary
) -> None:
    from bot.contributions import ContributionService

    org = example_config.organisation.id
    clock = ManualClock(datetime(2027, 3, 1, 7, tzinfo=UTC))
    local = await make_local(example_config, prompts, clock)
    cycle = Cycle(database_factory, example_config, prompts, clock, local, "solo")
    service = ContributionService(
        config=example_config,
        texts=Texts(example_config, prompts),
        contributions=cycle.contributions,
        occurrences=cycle.occurrences,
        cycle=cycle.engine,
        clock=clock,
        settings=PersonSettingsRepository(database_factory.open()),
    )
    await local.start(service.handle)
    await cycle.engine.tick()  # the OK prompt for Tuesday 2 March
    prompt = await cycle.occurrences.get(org, "ok", Step.PROMPT, date(2027, 3, 2))
    assert prompt is not None and prompt.message_id
    await local.say(
        "fatima", "operatiekamer", "De huddle om half acht werkt echt.", thread_id=prompt.message_id
    )
    await local.submit(
        "jeroen",
        "operatiekamer",
        "boeket.answer",
        {"text": "Minder uitloop door een bufferuur.", "anonymous": "true"},
        meta={"department": "ok", "round": "2027-03-02"},
    )
    await local.say("jeroen", "operatiekamer", "/deel")
    await local.submit(
        "jeroen",
        "operatiekamer",
        "boeket.share",
        {
            "what": "Een vaste OK-coördinator bewaakt de planning.",
            "preconditions": "Afspraken met de planners.",
            "effect": "",
            "theme": "werkdruk",
            "goal": "gezond-werken",
            "anonymous": "false",
        },
        meta={"department": "ok"},
    )

    clock.set(datetime(2027, 3, 2, 6, 30, tzinfo=UTC))  # Tuesday 07:30 CET: harvest time
    await cycle.engine.tick()
    thread = local.thread("operatiekamer", prompt.message_id)
    reminder = next(m for m in thread if m.author_id == "boeket")
    assert "2" in reminder.text
    for name in ("Fatima", "Jeroen", "el Amrani", "de Vries"):
        assert name not in reminder.text

    harvest = local.messages("operatiekamer")[-1]
    assert "oogst" in harvest.text.lower()
    kind_titles = prompts.kinds("nl")
    assert kind_titles["succes"].title in harvest.text
    assert "De huddle om half acht werkt echt. — Fatima el Amrani" in harvest.text
    assert "Minder uitloop door een bufferuur. — anoniem" in harvest.text
    assert "Jeroen de Vries" in harvest.text  # his named share
    assert harvest.text.count("Jeroen de Vries") == 1  # but not beside his anonymous answer


async def test_one_stuck_channel_holds_up_no_other(
    database_factory: DatabaseFactory, prompts: PromptLibrary
) -> None:
    """A wave: every department's prompt at once. While one channel's post hangs (a 429 with a
    long Retry-After, a slow platform), the other departments' prompts still go out."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for dept in data["departments"]:
        dept["meeting"] = {"weekday": "dinsdag", "time": "07:30", "duration": "30m"}
    config = parse_config(data, Path("wave.yaml"))
    prompt_at = datetime(2027, 3, 1, 6, 30, tzinfo=UTC)  # Monday 07:30, a day before
    clock = ManualClock(prompt_at)
    local = await make_local(config, prompts, clock)
    release = asyncio.Event()
    real_post = local.post

    async def post(channel: Any, message: Any, **kw: Any) -> Any:
        if channel.channel == "operatiekamer":
            await release.wait()
        return await real_post(channel, message, **kw)

    local.post = post  # type: ignore[method-assign]
    cycle = Cycle(database_factory, config, prompts, clock, local, "wave")
    tick = asyncio.create_task(cycle.engine.tick(prompt_at))
    others = {d.channel for d in config.departments} - {"operatiekamer"}
    for _ in range(500):
        if {m.channel for m in bot_messages(local)} >= others:
            break
        await asyncio.sleep(0.02)
    assert {m.channel for m in bot_messages(local)} == others
    assert not tick.done()
    release.set()
    report = await tick
    assert report.sent == len(config.departments)
    assert Counter(m.channel for m in bot_messages(local)) == Counter(
        {d.channel: 1 for d in config.departments}
    )
