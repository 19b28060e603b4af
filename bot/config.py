"""The organisation config: one YAML file describing goals, themes, departments and the cycle.

`load_config` returns a frozen, validated `OrgConfig` or raises `ConfigError`, whose problems each
carry a location (``departments[2].timezone``), a message key from ``prompts/*/errors.yaml`` and the
values to fill in — so the CLI can say, in the user's language, what is wrong and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from dateutil.rrule import rrulestr
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.domain import Kind

Language = Literal["nl", "en"]
Symbolism = Literal["bloemen", "briljanten", "bouwstenen"]
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

DEFAULT_THEMES: dict[str, dict[str, str]] = {
    "werkdruk": {
        "nl": "Hoe zwaar het werk voelt: planning, pieken, taakverdeling en herstel.",
        "en": "How heavy the work feels: planning, peaks, division of tasks and recovery.",
    },
    "verzuim": {
        "nl": "Ziekte en uitval voorkomen, terugkeer begeleiden en gezond blijven werken.",
        "en": "Preventing sickness absence, guiding return to work and staying healthy at work.",
    },
    "innovatie": {
        "nl": "Nieuwe werkwijzen, experimenten en ideeën die het werk beter maken.",
        "en": "New ways of working, experiments and ideas that make the work better.",
    },
    "klanttevredenheid": {
        "nl": "Hoe patiënten, leerlingen, inwoners of klanten ons werk ervaren.",
        "en": "How patients, pupils, residents or clients experience our work.",
    },
}

WEEKDAYS: dict[str, int] = {
    **{
        name: i
        for i, name in enumerate(
            ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"]
        )
    },
    **{
        name: i
        for i, name in enumerate(
            ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        )
    },
    **{name: i for i, name in enumerate(["mo", "tu", "we", "th", "fr", "sa", "su"])},
    **{name: i for i, name in enumerate(["ma", "di", "wo", "do", "vr", "za", "zo"])},
}

_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$")


def parse_duration(value: object) -> timedelta:
    """Parse "2d", "4h", "1d12h", "90m" (or a number of minutes) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return timedelta(minutes=value)
        if isinstance(value, str):
            match = _DURATION.match(value.lower())
            if match and any(match.groups()):
                days, hours, minutes = (int(g) if g else 0 for g in match.groups())
                return timedelta(days=days, hours=hours, minutes=minutes)
    except OverflowError:
        pass  # more days than a timedelta holds: not a duration anyone means
    raise PydanticCustomError("duration", "not a duration", {"value": _short(value)})


def _parse_time(value: object) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 9:30 or 14:00 as a sexagesimal integer (570, 840).
        return time(value // 60, value % 60) if 0 <= value < 24 * 60 else _bad_time(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,2})[:.](\d{2})\s*", value)
        if match and int(match[1]) < 24 and int(match[2]) < 60:
            return time(int(match[1]), int(match[2]))
    return _bad_time(value)


def _bad_time(value: object) -> time:
    raise PydanticCustomError("time", "not a time", {"value": str(value)})


def _parse_weekday(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    if isinstance(value, str) and value.strip().lower() in WEEKDAYS:
        return WEEKDAYS[value.strip().lower()]
    raise PydanticCustomError("weekday", "not a weekday", {"value": str(value)})


def _check_zone(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError("timezone", "unknown time zone", {"value": str(value)})
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a directory of the zone database ("Europe") or a name too long for a path.
        raise PydanticCustomError(
            "timezone", "unknown time zone", {"value": _short(value)}
        ) from None
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
TimeOfDay = Annotated[time, BeforeValidator(_parse_time)]
Weekday = Annotated[int, BeforeValidator(_parse_weekday)]
TimeZone = Annotated[str, BeforeValidator(_check_zone)]
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Organisation(_Model):
    id: Ident
    name: Text


class Goal(_Model):
    id: Ident
    title: Text
    description: str = ""


class Theme(_Model):
    id: Ident
    title: str = ""
    description: str = ""
    # Words that mark a contribution as being about this theme, in any language.
    keywords: tuple[Annotated[str, Field(min_length=2, max_length=60)], ...] = ()
    # A community of practice: this channel receives every shareable lesson on the theme.
    platform: Literal["local", "slack", "teams"] = "local"
    channel: Annotated[str, Field(max_length=200)] = ""
    workspace: Annotated[str, Field(max_length=100)] = ""


class Meeting(_Model):
    """A department's meeting rhythm: a weekday, or an RFC 5545 RRULE for anything else."""

    weekday: Weekday | None = None
    rrule: str | None = None
    time: TimeOfDay
    duration: Duration = timedelta(hours=1)
    start: date = date(2026, 1, 5)

    @field_validator("rrule")
    @classmethod
    def _valid_rrule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.removeprefix("RRULE:")
        try:
            rrulestr(text, dtstart=None)
        except (ValueError, TypeError) as exc:
            raise PydanticCustomError(
                "rrule", "not a valid RRULE", {"value": value, "reason": str(exc)}
            ) from None
        if re.search(r"\b(BYHOUR|BYMINUTE|BYSECOND)=", text, re.I) or re.search(
            r"FREQ=(HOURLY|MINUTELY|SECONDLY)", text, re.I
        ):
            raise PydanticCustomError(
                "rrule_time", "time belongs in the time field", {"value": value}
            )
        return text

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=5) <= value <= timedelta(hours=12):
            raise PydanticCustomError("meeting_duration", "duration out of range", {})
        return value

    @model_validator(mode="after")
    def _one_rhythm(self) -> Self:
        if (self.weekday is None) == (self.rrule is None):
            raise PydanticCustomError("meeting_rhythm", "weekday or rrule", {})
        return self


class Department(_Model):
    id: Ident
    name: Text
    platform: Literal["local", "slack", "teams"] = "local"
    channel: Annotated[str, Field(min_length=1, max_length=200)]
    # The Slack team id or Teams tenant id of the channel; needed when one Boeket serves
    # several workspaces of the organisation.
    workspace: Annotated[str, Field(max_length=100)] = ""
    timezone: TimeZone | None = None
    meeting: Meeting
    language: Language | None = None
    anonymous_answers: bool = True
    # Whether what is said in this department's channel may appear in other channels (cross-posts,
    # the digest) when that channel is private. Public channels may always be quoted.
    share_from_private: bool = False
    # Which kinds of this department's contributions may travel; None: the organisation's default.
    shareable: tuple[Kind, ...] | None = None
    themes: tuple[Ident, ...] = ()
    goals: tuple[Ident, ...] = ()


class CrossDepartment(_Model):
    platform: Literal["local", "slack", "teams"] = "local"
    channel: Annotated[str, Field(min_length=1, max_length=200)]
    # The Slack team id or Teams tenant id of the channel; needed when one Boeket serves
    # several workspaces of the organisation.
    workspace: Annotated[str, Field(max_length=100)] = ""
    name: str = ""


class Cycle(_Model):
    """When the steps of a round happen, relative to the meeting."""

    lead_time: Duration = timedelta(days=2)
    reminder: Duration | None = timedelta(hours=4)
    followup: Duration | None = timedelta(hours=2)
    grace: Duration = timedelta(hours=6)
    rotation: tuple[Kind, ...] = (
        Kind.SUCCES,
        Kind.LES,
        Kind.KOERS,
        Kind.CASUS,
        Kind.WAARDERING,
        Kind.PERSPECTIEF,
    )

    @field_validator("lead_time")
    @classmethod
    def _lead_range(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=30) <= value <= timedelta(days=6):
            raise PydanticCustomError("lead_time", "lead time out of range", {})
        return value

    @field_validator("rotation")
    @classmethod
    def _nonempty(cls, value: tuple[Kind, ...]) -> tuple[Kind, ...]:
        if not value:
            raise PydanticCustomError("rotation_empty", "empty rotation", {})
        return value

    @model_validator(mode="after")
    def _reminder_inside(self) -> Self:
        if self.reminder is not None and self.reminder >= self.lead_time:
            raise PydanticCustomError("reminder_after_prompt", "reminder before prompt", {})
        return self


class QuietHours(_Model):
    start: TimeOfDay = time(18, 0)
    end: TimeOfDay = time(8, 0)

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class Crossposting(_Model):
    """How lessons travel to other departments: restraint first."""

    enabled: bool = True
    # How relevant (0–1) a lesson must be to a department before Boeket suggests it there.
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.4
    max_per_week: Annotated[int, Field(ge=0, le=20)] = 2
    quiet_hours: QuietHours | None = QuietHours()
    # Which kinds of contribution may travel, unless a department says otherwise.
    shareable: tuple[Kind, ...] = (Kind.SUCCES, Kind.LES)


class DigestSchedule(_Model):
    """The weekly digest in the cross-department channel, in the organisation's time zone."""

    enabled: bool = True
    weekday: Weekday = 4  # Friday
    time: TimeOfDay = time(15, 0)
    # Which kinds of contribution the digest may quote; a department's own `shareable` setting,
    # when given, narrows it further. Other kinds only count towards participation.
    kinds: tuple[Kind, ...] = (Kind.SUCCES, Kind.LES, Kind.KOERS)


class LocalPerson(_Model):
    id: Ident
    name: Text
    department: Ident | None = None


class Local(_Model):
    """People to pick from in the local web chat (no accounts there)."""

    people: tuple[LocalPerson, ...] = ()


class OrgConfig(_Model):
    organisation: Organisation
    language: Language = "nl"
    symbolism: Symbolism = "bloemen"
    timezone: TimeZone = "Europe/Amsterdam"
    goals: tuple[Goal, ...] = ()
    themes: tuple[Theme, ...] = ()
    departments: tuple[Department, ...] = Field(min_length=1)
    cross_department: CrossDepartment
    cycle: Cycle = Cycle()
    crossposting: Crossposting = Crossposting()
    digest: DigestSchedule = DigestSchedule()
    # Contributions older than this many months are deleted (AVG/GDPR); None keeps them.
    retention_months: Annotated[int, Field(ge=1, le=600)] | None = None
    local: Local = Local()

    @field_validator("themes")
    @classmethod
    def _with_defaults(cls, value: tuple[Theme, ...]) -> tuple[Theme, ...]:
        own = {t.id: t for t in value}
        defaults = tuple(
            own.pop(tid, Theme(id=tid, title=tid.capitalize(), description=text["nl"]))
            for tid, text in DEFAULT_THEMES.items()
        )
        return defaults + tuple(t for t in value if t.id in own)

    @model_validator(mode="after")
    def _references(self) -> Self:
        _unique("goals", [g.id for g in self.goals], "duplicate_goal")
        _unique("themes", [t.id for t in self.themes], "duplicate_theme")
        _unique("departments", [d.id for d in self.departments], "duplicate_department")
        _unique("local.people", [p.id for p in self.local.people], "duplicate_person")
        goal_ids = {g.id for g in self.goals}
        theme_ids = {t.id for t in self.themes}
        dept_ids = {d.id for d in self.departments}
        seen_channels: dict[tuple[str, str], str] = {}
        for i, dept in enumerate(self.departments):
            for j, goal in enumerate(dept.goals):
                if goal not in goal_ids:
                    raise _located(
                        f"departments[{i}].goals[{j}]",
                        "unknown_goal",
                        value=goal,
                        known=", ".join(sorted(goal_ids)) or "-",
                    )
            for j, theme in enumerate(dept.themes):
                if theme not in theme_ids:
                    raise _located(
                        f"departments[{i}].themes[{j}]",
                        "unknown_theme",
                        value=theme,
                        known=", ".join(sorted(theme_ids)),
                    )
            key = (dept.platform, dept.channel)
            if key in seen_channels:
                raise _located(
                    f"departments[{i}].channel",
                    "shared_channel",
                    value=dept.channel,
                    other=seen_channels[key],
                )
            seen_channels[key] = dept.id
        cross = (self.cross_department.platform, self.cross_department.channel)
        if cross in seen_channels:
            raise _located(
                "cross_department.channel",
                "shared_channel",
                value=self.cross_department.channel,
                other=seen_channels[cross],
            )
        if Kind.KOERS in self.cycle.rotation and not self.goals:
            raise _located("cycle.rotation", "koers_needs_goals")
        for i, person in enumerate(self.local.people):
            if person.department is not None and person.department not in dept_ids:
                raise _located(
                    f"local.people[{i}].department",
                    "unknown_department",
                    value=person.department,
                    known=", ".join(sorted(dept_ids)),
                )
        return self

    def department(self, department_id: str) -> Department:
        for dept in self.departments:
            if dept.id == department_id:
                return dept
        raise KeyError(department_id)

    def zone_of_organisation(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def zone(self, dept: Department) -> ZoneInfo:
        return ZoneInfo(dept.timezone or self.timezone)

    def language_of(self, dept: Department) -> Language:
        return dept.language or self.language

    def goal(self, goal_id: str | None) -> Goal | None:
        return next((g for g in self.goals if g.id == goal_id), None)

    def theme(self, theme_id: str | None) -> Theme | None:
        return next((t for t in self.themes if t.id == theme_id), None)

    def shareable(self, dept: Department) -> tuple[Kind, ...]:
        return dept.shareable if dept.shareable is not None else self.crossposting.shareable

    def serves(self, platform: str, workspace: str) -> bool:
        """Whether an event from this Slack team or Teams tenant may be for this organisation.

        Yes when the event names no workspace, or a channel of the organisation on that platform
        names none (one workspace for all); else only for a workspace one of its channels is in.
        """
        if not workspace:
            return True
        places = [
            *(d for d in self.departments if d.platform == platform),
            *((self.cross_department,) if self.cross_department.platform == platform else ()),
            *(t for t in self.themes if t.platform == platform and t.channel),
        ]
        return not places or any(p.workspace in {"", workspace} for p in places)

    def department_for_channel(self, platform: str, channel: str) -> Department | None:
        return next(
            (d for d in self.departments if d.platform == platform and d.channel == channel),
            None,
        )


class _LocatedError(ValueError):
    """Raised inside the model validator when the problem belongs to a nested field."""

    def __init__(self, location: str, key: str, params: dict[str, str]) -> None:
        super().__init__(key)
        self.location = location
        self.key = key
        self.params = params


def _located(location: str, key: str, **params: str) -> _LocatedError:
    return _LocatedError(location, key, params)


def _unique(location: str, ids: list[str], key: str) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            raise _located(f"{location}[{i}].id", key, value=ident)
        seen.add(ident)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a config file: where, which message key, and its values."""

    location: str
    key: str
    params: dict[str, str]


class ConfigError(Exception):
    """The config file cannot be used. Carries every problem found, each with its location."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        super().__init__(f"{path}: " + "; ".join(f"{p.location}: {p.key}" for p in problems))
        self.path = path
        self.problems = problems


_PYDANTIC_KEYS = {
    "missing": "missing",
    "extra_forbidden": "unknown_field",
    "literal_error": "choice",
    "enum": "choice",
    "string_pattern_mismatch": "identifier",
    "string_too_short": "empty",
    "string_too_long": "too_long",
    "too_short": "empty_list",
    "bool_parsing": "boolean",
    "bool_type": "boolean",
    "string_type": "text",
    "date_from_datetime_parsing": "date",
    "date_parsing": "date",
    "date_type": "date",
    "model_type": "section",
    "tuple_type": "list",
    "dict_type": "section",
}


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"function-before[_parse_weekday(), int]"} or part.startswith("function-"):
            continue
        else:
            out += ("." if out else "") + _printable(part)
    return out or "(root)"


def _problems(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        ctx: dict[str, Any] = dict(err.get("ctx") or {})
        cause = ctx.get("error")
        if isinstance(cause, _LocatedError):
            shown = {k: _printable(v) for k, v in cause.params.items()}
            problems.append(Problem(cause.location, cause.key, shown))
            continue
        key = _PYDANTIC_KEYS.get(err["type"], err["type"])
        params = {k: _printable(str(v)) for k, v in ctx.items()}
        if "expected" in params:
            params["expected"] = params["expected"].replace("'", "").replace(" or ", ", ")
        params.setdefault("value", _short(err.get("input")))
        problems.append(Problem(_location(tuple(err["loc"])), key, params))
    return problems


def _printable(text: str) -> str:
    """`text` with line breaks, escape codes and invisible characters shown as `\\uXXXX`.

    Each problem is one line on a terminal: a key or value from the file must not break it,
    colour it, or hide in it.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _short(value: object) -> str:
    text = _printable(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def parse_config(data: object, path: Path) -> OrgConfig:
    """Validate already-parsed YAML data; `path` only names the file in errors."""
    if not isinstance(data, dict):
        raise ConfigError(path, [Problem("(root)", "not_a_mapping", {})])
    try:
        return OrgConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, _problems(exc)) from None


def load_config(path: Path) -> OrgConfig:
    """Read and validate the organisation config file at `path`."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [Problem("(file)", "file_missing", {})]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            path, [Problem("(file)", "file_unreadable", {"reason": _printable(str(exc))})]
        ) from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = str(mark.line + 1) if mark is not None else "?"
        reason = _printable(str(getattr(exc, "problem", "") or exc))
        raise ConfigError(path, [Problem(f"line {line}", "yaml", {"reason": reason})]) from None
    except (ValueError, RecursionError) as exc:
        # PyYAML raises these outside its own errors: an impossible date (2026-13-45), or
        # brackets nested thousands deep.
        reason = _short(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ConfigError(path, [Problem("line ?", "yaml", {"reason": reason})]) from None
    return parse_config(data, path)
