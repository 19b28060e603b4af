"""The weekly digest: what grew in the organisation this week, in the cross-department channel.

Once a week (the organisation's day and time, in its time zone) Boeket looks back on the seven days
before and posts, in the organisation's language and symbolism:

- highlights per theme;
- new connections between departments: suggestions found useful, talks started, translations made;
- patterns: a theme that came up in three or more departments within four weeks, with the lessons
  behind it (systems thinking: the same theme in many places says something about the system);
- the answers to the `koers` question grouped per organisation goal (double-loop learning);
- participation per department as a count, alphabetically: never a ranking, never a person.

Each highlighted lesson (and each lesson behind a pattern) gets two buttons, labelled with its
department: "useful", counted once per person and shown with the lesson's journey on the
dashboard and in the export, and "let's talk", which tells the lesson's own department who would
like to talk, once per person, with the author's name only where they agreed to be named.

Who may be quoted follows the same rules as cross-posts: content from a private channel only when
its department opted in, a person's "don't share" is kept, anonymous answers carry no name. The
digest names departments, never people. Each week's digest is planned with a unique key and claimed
before it is posted, like a cycle step, so several workers or replicas post it exactly once.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from bot.config import Department, OrgConfig
from bot.cycle import Texts
from bot.delivery import post_once
from bot.domain import ChannelRef, Contribution, Kind, OccurrenceStatus, Source
from bot.messages import (
    Actions,
    Block,
    Bullets,
    Button,
    ButtonEvent,
    Context,
    Divider,
    Ephemeral,
    Header,
    Message,
    Response,
    Section,
)
from bot.ports import Adapter, Clock, PermanentDeliveryError
from bot.privacy import Visibility, person_key
from storage.digests import Connection, Digest, DigestRepository

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
WEEK = timedelta(days=7)
PATTERN_WINDOW = timedelta(days=28)
PATTERN_DEPARTMENTS = 3
MAX_THEMES = 4
PER_THEME = 2
MAX_CONNECTIONS = 5
MAX_PATTERNS = 3
PER_PATTERN = 3
MAX_GOALS = 4
PER_GOAL = 3
LINE = 180  # characters of a person's text quoted per line
ACTIONS = "boeket.digest."
USEFUL = "boeket.digest.useful"
TALK = "boeket.digest.talk"
VOTES = {USEFUL: "useful", TALK: "talk"}
# Characters of a button label: Teams shows at most 60 (adapters/teams/cards.py), Slack 75.
BUTTON_LABEL = 60


class SourceTeller(Protocol):
    """Tells a lesson's own department that someone wants to talk about it (bot.crosspost)."""

    async def tell_source(self, c: Contribution, key: str, **params: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Week:
    """The week a digest looks back on: [since, until), until being the digest's due moment."""

    week_start: date
    since: datetime
    until: datetime


@dataclass
class DigestContent:
    """What one digest says, before it is rendered."""

    week: Week
    count: int = 0
    departments_active: int = 0
    highlights: list[tuple[str | None, list[Contribution], int]] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    translations: dict[int, Contribution] = field(default_factory=dict)
    originals: dict[int, Contribution] = field(default_factory=dict)
    patterns: list[tuple[str, list[str], list[Contribution]]] = field(default_factory=list)
    koers: list[tuple[str | None, list[Contribution], int]] = field(default_factory=list)
    participation: list[tuple[str, int]] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        return self.count == 0 and not self.connections


class DigestEngine:
    """Plans, claims, composes and posts the weekly digest."""

    def __init__(
        self,
        *,
        config: OrgConfig,
        texts: Texts,
        digests: DigestRepository,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        worker: str,
        dashboard_link: Callable[[], Awaitable[str]] | None = None,
        teller: SourceTeller | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self._lease = lease
        self._teller = teller
        self._config = config
        self._t = texts
        self._digests = digests
        self._adapters = adapters
        self._visibility = Visibility(adapters)
        self._clock = clock
        self.worker = worker
        # A signed link to the dashboard, for what does not fit in a chat message.
        self._dashboard_link = dashboard_link

    @property
    def org(self) -> str:
        return self._config.organisation.id

    @property
    def channel(self) -> ChannelRef:
        cross = self._config.cross_department
        return ChannelRef(cross.platform, cross.channel, cross.workspace)

    # --- when ----------------------------------------------------------------------------------

    def week_ending(self, now: datetime) -> Week:
        """The latest digest moment at or before `now`, and the week it looks back on."""
        schedule = self._config.digest
        zone = self._config.zone_of_organisation()
        local = now.astimezone(zone)
        days_back = (local.weekday() - schedule.weekday) % 7
        day = local.date() - timedelta(days=days_back)
        due = datetime.combine(day, schedule.time, tzinfo=zone)
        if due > local:
            day -= WEEK
            due = datetime.combine(day, schedule.time, tzinfo=zone)
        until = due.astimezone(now.tzinfo)
        since = datetime.combine(day - WEEK, schedule.time, tzinfo=zone).astimezone(now.tzinfo)
        return Week(day - timedelta(days=day.weekday()), since, until)

    async def tick(self, now: datetime | None = None) -> int:
        """Plan this week's digest once it is due, and post whatever is due, each once."""
        if not self._config.digest.enabled:
            return 0
        now = now or self._clock.now()
        week = self.week_ending(now)
        grace = self._config.cycle.grace
        if now - week.until <= 2 * grace:
            await self._digests.plan(self.org, week.week_start, week.until)
        sent = 0
        for digest in await self._digests.due(self.org, now, self._lease):
            if not await self._digests.claim(digest.id, self.worker, now, self._lease):
                continue  # another worker has it
            sent += await self._run(digest, now)
        return sent

    async def _run(self, digest: Digest, now: datetime) -> bool:
        if now - digest.due_at > self._config.cycle.grace:
            await self._finish(digest, OccurrenceStatus.SKIPPED, now, note="missed: past grace")
            return False
        week = Week(digest.week_start, digest.due_at - WEEK, digest.due_at)
        content = await self.compose(week)
        if content.quiet:
            await self._finish(digest, OccurrenceStatus.SKIPPED, now, note="a quiet week")
            return False
        channel = self.channel
        adapter = self._adapters.get(channel.platform)
        if adapter is None:
            await self._finish(
                digest, OccurrenceStatus.FAILED, now, note=f"no {channel.platform} adapter"
            )
            return False
        try:
            link = await self._dashboard_link() if self._dashboard_link else ""
            posted = await post_once(
                adapter,
                channel,
                self.render(content, link),
                key=f"digest:{digest.id}",
                since=digest.due_at,
                retaken=digest.attempts > 0 or digest.status is OccurrenceStatus.CLAIMED,
            )
        except PermanentDeliveryError as exc:
            log.error(
                "cannot post the weekly digest in %s channel %s: %s. %s",
                channel.platform,
                channel.channel,
                exc.reason,
                exc.advice,
            )
            await self._finish(digest, OccurrenceStatus.FAILED, now, note=exc.reason[:500])
            return False
        except Exception as exc:  # a platform failure: a later tick tries again
            log.warning("posting the weekly digest failed: %s", exc)
            await self._digests.release(digest.id, self.worker, f"{type(exc).__name__}: {exc}")
            return False
        await self._digests.finish(
            digest.id,
            self.worker,
            OccurrenceStatus.SENT,
            now,
            platform=channel.platform,
            channel=channel.channel,
            message_id=posted.message_id,
        )
        log.info("posted the weekly digest of %s", digest.week_start)
        return True

    async def _finish(
        self, digest: Digest, status: OccurrenceStatus, now: datetime, note: str
    ) -> None:
        await self._digests.finish(digest.id, self.worker, status, now, note=note)

    # --- what ----------------------------------------------------------------------------------

    def _quotable_kind(self, c: Contribution, dept: Department) -> bool:
        kinds = set(self._config.digest.kinds)
        if dept.shareable is not None:
            kinds &= set(dept.shareable)
        return c.kind in kinds

    async def compose(self, week: Week) -> DigestContent:
        content = DigestContent(week)
        recent = await self._digests.contributions(
            self.org, week.until - PATTERN_WINDOW, week.until
        )
        this_week = [c for c in recent if c.created_at >= week.since]
        departments = {d.id: d for d in self._config.departments}
        visible: dict[str, bool] = {}
        for dept in self._config.departments:
            visible[dept.id] = await self._visibility.may_show(dept, self.channel)

        def quotable(c: Contribution) -> bool:
            dept = departments.get(c.department_id)
            return (
                dept is not None
                and visible[dept.id]
                and _shared(c)
                and self._quotable_kind(c, dept)
            )

        content.count = len(this_week)
        counts = Counter(c.department_id for c in this_week)
        content.departments_active = sum(1 for d in departments if counts[d])
        content.participation = sorted(
            ((d.name, counts[d.id]) for d in self._config.departments),
            key=lambda item: item[0].casefold(),
        )

        # Highlights per theme: the week's quotable contributions, translations excepted (they
        # appear as connections). Themes with the most first; "other" last.
        by_theme: dict[str | None, list[Contribution]] = defaultdict(list)
        for c in this_week:
            if c.source is not Source.TRANSLATION and c.kind is not Kind.KOERS and quotable(c):
                by_theme[c.theme].append(c)
        order = sorted(
            by_theme, key=lambda th: (th is None, -len(by_theme[th]), self._theme_title(th))
        )
        for theme in order[:MAX_THEMES]:
            items = _best(by_theme[theme])
            content.highlights.append((theme, items[:PER_THEME], len(items) - PER_THEME))

        # Connections: verdicts given this week, quoted only when both sides may be shown here.
        for conn in await self._digests.connections(self.org, week.since, week.until):
            original = next(
                (c for c in recent if c.id == conn.crosspost.contribution_id), None
            ) or await self._contribution(conn.crosspost.contribution_id)
            if original is None or not quotable(original):
                continue
            content.originals[original.id] = original
            if conn.verdict == "translated":
                translation = next(
                    (
                        c
                        for c in this_week
                        if c.source is Source.TRANSLATION
                        and c.fields.get("translates") == str(original.id)
                        and visible.get(c.department_id, False)
                        and _shared(c)
                    ),
                    None,
                )
                if translation is None:
                    continue
                content.translations[conn.crosspost.id] = translation
            content.connections.append(conn)

        # Patterns: a theme in three or more departments within four weeks.
        theme_departments: dict[str, set[str]] = defaultdict(set)
        for c in recent:
            # Counting says "this department spoke of this theme": only what it may say here.
            if visible.get(c.department_id) and _shared(c):
                for theme in _themes(c):
                    theme_departments[theme].add(c.department_id)
        patterns = sorted(
            (
                (theme, depts)
                for theme, depts in theme_departments.items()
                if len(depts) >= PATTERN_DEPARTMENTS
            ),
            key=lambda item: (-len(item[1]), self._theme_title(item[0])),
        )
        for theme, depts in patterns[:MAX_PATTERNS]:
            names = sorted(
                (departments[d].name for d in depts if d in departments), key=str.casefold
            )
            lessons = _one_per_department(
                [c for c in recent if theme in _themes(c) and quotable(c)]
            )
            content.patterns.append((theme, names, lessons[:PER_PATTERN]))

        # Koers: this week's answers to the double-loop question, per goal.
        by_goal: dict[str | None, list[Contribution]] = defaultdict(list)
        for c in this_week:
            if c.kind is Kind.KOERS and quotable(c):
                by_goal[c.goal_id if self._config.goal(c.goal_id) else None].append(c)
        goal_order: list[str | None] = [g.id for g in self._config.goals if g.id in by_goal]
        if None in by_goal:
            goal_order.append(None)
        for goal_id in goal_order[:MAX_GOALS]:
            answers = by_goal[goal_id]
            content.koers.append((goal_id, answers[:PER_GOAL], len(answers) - PER_GOAL))
        return content

    async def _contribution(self, contribution_id: int) -> Contribution | None:
        found = await self._digests.contributions_by_id(self.org, [contribution_id])
        return found[0] if found else None

    def _theme_title(self, theme: str | None) -> str:
        if theme is None:
            return self._t(None, "digest.theme_other")
        return self._t.theme_title_in(self._config.language, theme)

    # --- how -----------------------------------------------------------------------------------

    def render(self, content: DigestContent, dashboard_link: str = "") -> Message:
        t = self._t
        week = content.week
        title = t(None, "digest.title")
        buttoned: set[int] = set()  # lessons that have their buttons already
        blocks: list[Block] = [
            Header(title),
            Context(
                t(
                    None,
                    "digest.period",
                    start=self._date(week.since),
                    end=self._date(week.until - timedelta(seconds=1)),
                    count=content.count,
                    departments=content.departments_active,
                )
            ),
        ]
        if content.highlights:
            blocks.append(Divider())
            blocks.append(
                Section(t(None, "digest.highlights_intro"), title=t(None, "digest.highlights"))
            )
            blocks.append(Context(t(None, "digest.buttons_hint")))
            for theme, items, more in content.highlights:
                lines = [self._line(c) for c in items]
                if more > 0:
                    lines.append(t(None, "digest.more", count=more))
                blocks.append(Bullets(tuple(lines), title=self._theme_title(theme)))
                blocks += self._buttons(items, buttoned)
        if content.connections:
            lines = [self._connection(conn, content) for conn in content.connections]
            shown = lines[:MAX_CONNECTIONS]
            if len(lines) > MAX_CONNECTIONS:
                shown.append(t(None, "digest.more", count=len(lines) - MAX_CONNECTIONS))
            blocks.append(Divider())
            blocks.append(Bullets(tuple(shown), title=t(None, "digest.connections")))
        if content.patterns:
            blocks.append(Divider())
            blocks.append(
                Section(t(None, "digest.patterns_intro"), title=t(None, "digest.patterns"))
            )
            for theme, names, lessons in content.patterns:
                heading = t(
                    None,
                    "digest.pattern",
                    theme=self._theme_title(theme),
                    count=len(names),
                    departments=", ".join(names),
                )
                if lessons:
                    blocks.append(Bullets(tuple(self._line(c) for c in lessons), title=heading))
                    blocks += self._buttons(lessons, buttoned)
                else:
                    blocks.append(Section(heading))
        if content.koers:
            blocks.append(Divider())
            blocks.append(Section(t(None, "digest.koers_intro"), title=t(None, "digest.koers")))
            for goal_id, answers, more in content.koers:
                goal = self._config.goal(goal_id)
                lines = [self._line(c) for c in answers]
                if more > 0:
                    lines.append(t(None, "digest.more", count=more))
                blocks.append(
                    Bullets(
                        tuple(lines),
                        title=goal.title if goal else t(None, "digest.goal_other"),
                    )
                )
        blocks.append(Divider())
        blocks.append(
            Section(
                "\n".join(
                    t(None, "digest.participation_line", department=name, count=count)
                    for name, count in content.participation
                ),
                title=t(None, "digest.participation"),
            )
        )
        blocks.append(Context(t(None, "digest.participation_note")))
        if dashboard_link:
            blocks.append(Context(t(None, "digest.dashboard", url=dashboard_link)))
        text = f"{title} — " + t(
            None,
            "digest.period",
            start=self._date(week.since),
            end=self._date(week.until - timedelta(seconds=1)),
            count=content.count,
            departments=content.departments_active,
        )
        return Message(text=text, blocks=tuple(blocks))

    def _buttons(self, lessons: list[Contribution], buttoned: set[int]) -> list[Block]:
        """One row for `lessons`: useful and let's talk for each, labelled with its department
        (and its first words, where two lessons of one department share the row), never with a
        person. A lesson that has its buttons higher up gets none again."""
        fresh = [c for c in lessons if c.id not in buttoned]
        if not fresh:
            return []
        buttoned.update(c.id for c in fresh)
        departments = Counter(c.department_id for c in fresh)
        buttons: list[Button] = []
        for c in fresh:
            for action_id in (USEFUL, TALK):
                action = self._t(None, f"digest.{VOTES[action_id]}")
                department = self._department_name(c.department_id)
                label = self._t(None, "digest.button", action=action, department=department)
                if departments[c.department_id] > 1:
                    room = BUTTON_LABEL - len(label) - 5  # " · ‘" and "’"
                    label = self._t(
                        None,
                        "digest.button_lesson",
                        action=action,
                        department=department,
                        lesson=_first_words(_gist(c), max(room, 8)),
                    )
                buttons.append(Button(action_id, _shorten(label, BUTTON_LABEL), value=str(c.id)))
        return [Actions(tuple(buttons))]

    # --- what people do with the digest's buttons ------------------------------------------

    async def on_button(self, event: ButtonEvent) -> Response:
        """Useful or let's talk on one of the digest's lessons: kept once per person, and
        answered only to them; a lesson that is gone meanwhile gets a kind word, no error."""
        verdict = VOTES.get(event.action_id)
        if verdict is None or not event.value.isdigit():
            return None
        here = await self._department_of(event)
        c = await self._contribution(int(event.value))
        try:
            source = self._config.department(c.department_id) if c is not None else None
        except KeyError:
            source = None
        if c is None or source is None or not _shared(c):
            return self._say(here, "digest.gone")
        key = person_key(event.channel.platform, event.person.id)
        if not await self._digests.vote(self.org, c.id, key, verdict, self._clock.now()):
            return self._say(here, f"digest.again.{verdict}", department=source.name)
        if verdict == "talk" and self._teller is not None:
            who = (
                self._t(source, "digest.who_from", person=event.person.name, department=here.name)
                if here is not None and here.id != source.id
                else event.person.name
            )
            try:
                await self._teller.tell_source(c, "digest.talk_source", who=who)
            except Exception:
                # Not passed on: a later click may try again.
                await self._digests.unvote(self.org, c.id, key, verdict)
                raise
        log.info("digest lesson %s: %s", c.id, verdict)
        return self._say(here, f"digest.thanks.{verdict}", department=source.name)

    async def _department_of(self, event: ButtonEvent) -> Department | None:
        """The clicker's department, where Boeket can tell: the channel's, the local chat's
        setting, or where their latest contribution on name came from."""
        platform, person_id = event.channel.platform, event.person.id
        dept = self._config.department_for_channel(platform, event.channel.channel)
        if dept is not None:
            return dept
        if platform == "local":
            person = next((p for p in self._config.local.people if p.id == person_id), None)
            if person is not None and person.department is not None:
                return self._config.department(person.department)
        for c in await self._digests.by_author(self.org, platform, person_id):
            try:
                return self._config.department(c.department_id)
            except KeyError:
                continue
        return None

    def _say(self, dept: Department | None, key: str, **params: object) -> Ephemeral:
        text = self._t(dept, key, **params)
        return Ephemeral(Message(text=text, blocks=(Section(text),)))

    def _date(self, moment: datetime) -> str:
        local = moment.astimezone(self._config.zone_of_organisation())
        lang = self._config.language
        month = self._t.prompts.text(lang, f"calendar.month.{local.month}")
        return self._t(None, "digest.date", day=local.day, month=month)

    def _department_name(self, department_id: str) -> str:
        try:
            return self._config.department(department_id).name
        except KeyError:
            return department_id

    def _line(self, c: Contribution) -> str:
        return self._t(
            None,
            "digest.line",
            text=_shorten(_gist(c), LINE),
            department=self._department_name(c.department_id),
        )

    def _connection(self, conn: Connection, content: DigestContent) -> str:
        original = content.originals[conn.crosspost.contribution_id]
        target = conn.crosspost.target
        kind, _, target_id = target.partition(":")
        if kind == "department":
            target_name = self._department_name(target_id)
        else:
            target_name = self._theme_title(target_id)
        params: dict[str, object] = {
            "source": self._department_name(original.department_id),
            "target": target_name,
            "lesson": _shorten(_gist(original), 120),
        }
        translation = content.translations.get(conn.crosspost.id)
        if translation is not None:
            params["target"] = self._department_name(translation.department_id)
            params["translation"] = _shorten(translation.text, 140)
        return self._t(None, f"digest.connection.{conn.verdict}", **params)


def _shared(c: Contribution) -> bool:
    """Not marked by its author as "don't share" (in the form, or as older data did)."""
    return c.shareable and c.fields.get("private") != "true"


def _themes(c: Contribution) -> tuple[str, ...]:
    return c.themes or ((c.theme,) if c.theme else ())


def _gist(c: Contribution) -> str:
    """The heart of a contribution: a share's "what", else its text, on one line."""
    return " ".join(c.fields.get("what", c.text).split())


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _first_words(text: str, limit: int) -> str:
    """As many whole words of `text` as fit in `limit` characters, "…" after a cut."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).rstrip(" ,.;:") + "…"


def _best(items: list[Contribution]) -> list[Contribution]:
    """Shares and successes first, then the newest: what most likely inspires others."""
    rank = {Source.SHARE: 0}
    return sorted(items, key=lambda c: (rank.get(c.source, 1), -c.created_at.timestamp()))


def _one_per_department(items: list[Contribution]) -> list[Contribution]:
    """The newest lesson of each department, so a pattern shows its breadth."""
    seen: set[str] = set()
    out: list[Contribution] = []
    for c in sorted(items, key=lambda c: -c.created_at.timestamp()):
        if c.department_id not in seen:
            seen.add(c.department_id)
            out.append(c)
    return out
