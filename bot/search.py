"""`/deel zoek WOORDEN`: what other departments learned about a subject, found by meaning.

Crossposting brings a lesson to the departments where it may help; this lets a person go and
look for one themselves ("wat weten anderen over inwerken?"). The words are a free-text search
(`Matcher.similar_text`): lessons that say the same in other words are found too. Only what
may travel is shown — the department's shareable kinds, never a contribution marked "niet
delen" or a translation, never from a private channel into another one unless that department
opted in (`Visibility`), a person's name only where they agreed to be named elsewhere — and
never the asker's own department or another organisation's words. The reply is ephemeral:
only the person who asked sees it.
"""

from __future__ import annotations

from bot.config import Department, OrgConfig
from bot.contributions import COMMANDS
from bot.crosspost import Crossposter
from bot.cycle import Texts
from bot.domain import Contribution
from bot.matcher import Matcher
from bot.messages import (
    Block,
    CommandEvent,
    Context,
    Ephemeral,
    Event,
    Header,
    Message,
    Response,
    Section,
    shorten,
)
from bot.privacy import Visibility, name_elsewhere
from bot.vectorindex import Filters
from storage.repositories import ContributionRepository, PersonSettingsRepository

WORDS = frozenset({"zoek", "search"})
MAX_QUERY = 300  # characters: a subject, not a story
SHOWN = 5
SHORTLIST = 30  # searched before the checks of what may be shown
# On the matcher's 0-1 relevance scale: below FLOOR a hit is about something else, and a hit is
# shown only while it is at least HALF as close as the closest. A word or two ("verzuim") is close
# to little (0.04 for the lesson about it, 0 for the rest); a question in a sentence (0.37 for the
# lesson it asks about, 0.08 for the next) would otherwise bring what it did not ask for.
FLOOR = 0.03
HALF = 0.5
MAX_TEXT = 500


class Search:
    def __init__(
        self,
        *,
        config: OrgConfig,
        texts: Texts,
        matcher: Matcher,
        contributions: ContributionRepository,
        settings: PersonSettingsRepository,
        crossposter: Crossposter,
        visibility: Visibility,
    ) -> None:
        self._config = config
        self._t = texts
        self._matcher = matcher
        self._contributions = contributions
        self._settings = settings
        self._crossposter = crossposter
        self._visibility = visibility

    @property
    def org(self) -> str:
        return self._config.organisation.id

    async def handle(self, event: Event) -> Response:
        """The reply to `/deel zoek …`, or None when the event is something else."""
        if not isinstance(event, CommandEvent) or event.command.lstrip("/").lower() not in COMMANDS:
            return None
        words = event.text.strip().split(maxsplit=1)
        if not words or words[0].lower() not in WORDS:
            return None
        dept = self._config.department_for_channel(event.channel.platform, event.channel.channel)
        query = " ".join(words[1].split()) if len(words) > 1 else ""
        if not query:
            return self._say(dept, "search.empty")
        if len(query) > MAX_QUERY:
            return self._say(dept, "search.too_long", length=len(query), max=MAX_QUERY)
        found = await self.find(query, asker=dept, event=event)
        if not found:
            return self._say(dept, "search.nothing", query=query)
        title = self._t(dept, "search.title", query=shorten(query, 80))
        blocks: list[Block] = [Header(title)]
        for c, source in found:
            blocks.append(
                Section(
                    shorten(c.fields.get("what", c.text), MAX_TEXT),
                    title=self._t(
                        dept,
                        "search.item",
                        kind=self._t.kind_title(dept, c.kind),
                        department=source.name,
                        date=c.created_at.date().isoformat(),
                    ),
                    quote=True,
                )
            )
            if c.fields.get("preconditions"):
                blocks.append(
                    Section(
                        shorten(c.fields["preconditions"], MAX_TEXT),
                        title=self._t(dept, "crosspost.preconditions"),
                    )
                )
            named = await name_elsewhere(self._settings, c)
            if named:
                blocks.append(Context(self._t(dept, "search.ask", person=named)))
        blocks.append(Context(self._t(dept, "search.hint")))
        return Ephemeral(Message(text=title, blocks=tuple(blocks)))

    async def find(
        self, query: str, *, asker: Department | None, event: CommandEvent
    ) -> list[tuple[Contribution, Department]]:
        """Up to `SHOWN` contributions about `query` that may be shown where `event` was typed,
        closest first, none from `asker` (the department whose channel it is)."""
        kinds = frozenset(
            k.value for d in self._config.departments for k in self._config.shareable(d)
        )
        filters = Filters(kinds=kinds, exclude_department=asker.id if asker else None)
        hits = await self._matcher.similar_text(self.org, query, SHORTLIST, filters)
        out: list[tuple[Contribution, Department]] = []
        best = self._matcher.relevance(hits[0].score) if hits else 0.0
        for hit in hits:
            if self._matcher.relevance(hit.score) < max(FLOOR, HALF * best):
                break  # closest first: the rest is further away still
            c = await self._contributions.get(self.org, hit.contribution_id)
            if c is None or not self._crossposter.shareable(c):
                continue
            source = self._config.department(c.department_id)
            if not await self._visibility.may_show(source, event.channel):
                continue
            out.append((c, source))
            if len(out) == SHOWN:
                break
        return out

    def _say(self, dept: Department | None, key: str, **params: object) -> Ephemeral:
        text = self._t(dept, key, **params)
        return Ephemeral(Message(text=text, blocks=(Section(text),)))
