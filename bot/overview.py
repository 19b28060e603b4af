"""What grew in a period, ready to show: the one source for the export, the dashboard and a
person's own overview.

Privacy is decided here, once, for every view built on it:

- a contribution its author marked "don't share" is left out (only counted as withheld);
- an anonymous contribution carries no name; a named one shows the person only when they agreed
  to be named outside their team (`named_elsewhere`), except on their own page;
- a department whose words may not be shown (a private channel that did not opt in) is left out
  when the caller passes a `visible` check.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from bot.config import Department, OrgConfig
from bot.cycle import Texts
from bot.domain import Contribution, Crosspost, Kind, OccurrenceStatus, Source
from storage.digests import DigestRepository
from storage.repositories import PersonSettingsRepository

Visible = Callable[[Department], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Stop:
    """One place a contribution travelled to, and what it became there."""

    target: str  # a department's or a theme channel's name, or the weekly digest
    posted: bool
    verdicts: tuple[str, ...]
    translations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    created_at: datetime  # in the organisation's time zone
    department_id: str
    department: str
    kind: Kind
    kind_title: str
    source: Source
    themes: tuple[str, ...]
    theme_titles: tuple[str, ...]
    goal_id: str | None
    goal_title: str
    text: str
    preconditions: str
    effect: str
    author: str  # "" when anonymous or not to be named here
    anonymous: bool
    journey: tuple[Stop, ...] = ()


@dataclass
class Overview:
    organisation: str
    language: str
    since: date
    until: date  # inclusive
    entries: list[Entry] = field(default_factory=list)
    withheld: int = 0
    departments: list[tuple[str, str]] = field(default_factory=list)  # (id, name), by name
    goals: list[tuple[str, str]] = field(default_factory=list)
    themes: list[tuple[str, str]] = field(default_factory=list)
    disciplines: dict[str, str] = field(default_factory=dict)  # kind → Senge's discipline

    def per_department(self) -> dict[str, Counter[Kind]]:
        out: dict[str, Counter[Kind]] = {dept_id: Counter() for dept_id, _ in self.departments}
        for e in self.entries:
            out.setdefault(e.department_id, Counter())[e.kind] += 1
        return out

    def per_theme(self) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = defaultdict(list)
        for e in self.entries:
            for theme in e.themes:
                out[theme].append(e)
        return dict(out)

    def per_goal(self) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = defaultdict(list)
        for e in self.entries:
            if e.goal_id:
                out[e.goal_id].append(e)
        return dict(out)

    def discipline_balance(self) -> list[tuple[str, int]]:
        """Senge's five disciplines, with how many contributions each kind of prompt brought."""
        counts: Counter[str] = Counter()
        for discipline in dict.fromkeys(self.disciplines.values()):
            counts[discipline] = 0
        for e in self.entries:
            counts[self.disciplines.get(e.kind.value, "")] += 1
        return [(d, n) for d, n in counts.items() if d]


def period_bounds(config: OrgConfig, since: date, until: date) -> tuple[datetime, datetime]:
    """[since 00:00, the day after until 00:00) in the organisation's time zone."""
    zone = config.zone_of_organisation()
    return (
        datetime.combine(since, time(0), tzinfo=zone),
        datetime.combine(until + timedelta(days=1), time(0), tzinfo=zone),
    )


async def build_overview(
    *,
    config: OrgConfig,
    texts: Texts,
    digests: DigestRepository,
    settings: PersonSettingsRepository,
    since: date,
    until: date,
    language: str | None = None,
    visible: Visible | None = None,
    own: tuple[str, str] | None = None,
) -> Overview:
    """The overview of [since, until] (whole days, the organisation's time zone).

    `own` = (platform, person id) builds a person's own overview: only their contributions on
    name, with their name, whatever they chose for elsewhere.
    """
    lang = language or config.language
    org = config.organisation.id
    start, end = period_bounds(config, since, until)
    if own is None:
        found = await digests.contributions(org, start, end)
    else:
        found = [c for c in await digests.by_author(org, *own) if start <= c.created_at < end]
    departments = {d.id: d for d in config.departments}
    shown: dict[str, bool] = {}
    for dept in config.departments:
        shown[dept.id] = True if visible is None or own is not None else await visible(dept)
    overview = Overview(
        organisation=config.organisation.name,
        language=lang,
        since=since,
        until=until,
        departments=sorted(
            ((d.id, d.name) for d in config.departments), key=lambda item: item[1].casefold()
        ),
        goals=[(g.id, g.title) for g in config.goals],
        themes=[(t.id, texts.theme_title_in(lang, t.id)) for t in config.themes],
        disciplines={kind: text.discipline for kind, text in texts.prompts.kinds(lang).items()},
    )
    kept: list[Contribution] = []
    for c in found:
        if c.department_id not in departments or not shown.get(c.department_id, False):
            continue
        if own is None and (not c.shareable or c.fields.get("private") == "true"):
            overview.withheld += 1
            continue
        kept.append(c)
    journeys = await digests.journeys(org, [c.id for c in kept])
    translations = await digests.translations_of(org, [c.id for c in kept])
    # The weekly digest is a stop too, when people found a lesson there useful or asked to talk.
    votes = await digests.votes(org, [c.id for c in kept])
    digest_stop = texts.for_language(lang)("digest.journey")
    named: dict[tuple[str, str], bool] = {}
    zone = config.zone_of_organisation()
    for c in kept:
        author = ""
        if c.author is not None and not c.anonymous:
            if own is not None:
                author = c.author.name
            else:
                key = (c.platform, c.author.id)
                if key not in named:
                    chosen = await settings.get(org, c.platform, c.author.id)
                    named[key] = chosen.named_elsewhere
                author = c.author.name if named[key] else ""
        themes = c.themes or ((c.theme,) if c.theme else ())
        goal = config.goal(c.goal_id)
        overview.entries.append(
            Entry(
                id=c.id,
                created_at=c.created_at.astimezone(zone),
                department_id=c.department_id,
                department=departments[c.department_id].name,
                kind=c.kind,
                kind_title=texts.prompts.kind_title(lang, c.kind.value),
                source=c.source,
                themes=themes,
                theme_titles=tuple(texts.theme_title_in(lang, t) for t in themes),
                goal_id=c.goal_id if goal else None,
                goal_title=goal.title if goal else "",
                text=c.fields.get("what", c.text),
                preconditions=c.fields.get("preconditions", ""),
                effect=c.fields.get("effect", ""),
                author=author,
                anonymous=c.anonymous,
                journey=_journey(
                    config, texts, lang, journeys.get(c.id, []), translations.get(c.id, []), shown
                )
                + (
                    (Stop(digest_stop, posted=True, verdicts=tuple(votes[c.id]), translations=()),)
                    if c.id in votes
                    else ()
                ),
            )
        )
    return overview


def _journey(
    config: OrgConfig,
    texts: Texts,
    lang: str,
    posts: list[tuple[Crosspost, list[str]]],
    translations: list[Contribution],
    shown: dict[str, bool],
) -> tuple[Stop, ...]:
    stops: list[Stop] = []
    for cp, verdicts in posts:
        kind, _, target_id = cp.target.partition(":")
        if kind == "department":
            try:
                name = config.department(target_id).name
            except KeyError:
                continue
            said = tuple(
                t.text
                for t in translations
                if t.department_id == target_id and shown.get(t.department_id, False)
            )
        else:
            name = texts.theme_title_in(lang, target_id)
            said = ()
        stops.append(
            Stop(
                target=name,
                posted=cp.status is OccurrenceStatus.SENT,
                verdicts=tuple(verdicts),
                translations=said,
            )
        )
    return tuple(stops)
