"""Meeting rhythms and the due times of a round's steps, in the department's own time zone.

All rhythm arithmetic happens in local wall-clock time and is converted to UTC last: a meeting on
Monday 09:00 in Europe/Amsterdam stays at 09:00 across daylight-saving changes, and a round is
identified by its meeting's local date, so a wall-clock time that happens twice (the autumn change)
still gives one occurrence.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from bot.config import Cycle, Meeting
from bot.domain import Step

_BYDAY = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True, slots=True)
class Round:
    """One meeting of a department, with the UTC due time of each step of its cycle."""

    round_date: date
    start: datetime  # aware, in the department's zone
    due: dict[Step, datetime]  # aware UTC


@functools.lru_cache(maxsize=256)
def _rule(meeting: Meeting) -> rrule:
    text = meeting.rrule or f"FREQ=WEEKLY;BYDAY={_BYDAY[meeting.weekday or 0]}"
    dtstart = datetime.combine(meeting.start, meeting.time)  # naive: wall-clock time
    rule = rrulestr(text, dtstart=dtstart)
    if not isinstance(rule, rrule):  # pragma: no cover - config validation allows one RRULE
        raise ValueError("one RRULE expected")
    return rule


def _wall(zone: ZoneInfo, naive: datetime) -> datetime:
    """Attach the zone to a wall-clock time; a time in the spring gap moves on with the clock."""
    return naive.replace(tzinfo=zone)


def meetings_between(
    meeting: Meeting, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Meeting starts (aware, local) with start <= meeting < end; `start`/`end` are aware."""
    rule = _rule(meeting)
    lo = start.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
    hi = end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    found = []
    for naive in rule.between(lo, hi, inc=True):
        local = _wall(zone, naive.replace(hour=meeting.time.hour, minute=meeting.time.minute))
        if start <= local < end:
            found.append(local)
    return found


def round_for(meeting: Meeting, cycle: Cycle, zone: ZoneInfo, start: datetime) -> Round:
    """The steps of the round whose meeting starts at `start` (aware, local)."""
    due = {
        Step.PROMPT: start - cycle.lead_time,
        Step.HARVEST: start,
    }
    if cycle.reminder is not None:
        due[Step.REMINDER] = start - cycle.reminder
    if cycle.followup is not None:
        due[Step.FOLLOWUP] = start + meeting.duration + cycle.followup
    # Aware arithmetic with one tzinfo is wall-clock arithmetic; normalise through UTC so a
    # wall time in a gap or overlap resolves the way the zone says.
    return Round(
        round_date=start.date(),
        start=start,
        due={step: moment.astimezone(UTC) for step, moment in due.items()},
    )


def rounds_around(
    meeting: Meeting, cycle: Cycle, zone: ZoneInfo, start: datetime, end: datetime
) -> list[Round]:
    """Every round with at least one step due in [start, end)."""
    before = cycle.lead_time
    after = meeting.duration + (cycle.followup or timedelta(0))
    return [
        round_for(meeting, cycle, zone, moment)
        for moment in meetings_between(meeting, zone, start - after, end + before)
    ]


def next_round(meeting: Meeting, cycle: Cycle, zone: ZoneInfo, now: datetime) -> Round:
    """The first round whose meeting has not started yet at `now`."""
    horizon = timedelta(days=7)
    while horizon <= timedelta(days=800):
        found = meetings_between(meeting, zone, now + timedelta(microseconds=1), now + horizon)
        if found:
            return round_for(meeting, cycle, zone, found[0])
        horizon *= 4
    raise ValueError("this rhythm has no future meeting")
