"""What people send Boeket: answers in a prompt's thread or form, `/deel` shares, edits, deletes.

Every event becomes at most one stored contribution: the platform's event id (or form submission
id) is the idempotency key, so a retried delivery or a double-clicked submit stores nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Protocol

from bot.config import Department, OrgConfig
from bot.cycle import ANSWER_ACTION, MAX_ANSWER, CycleEngine, Texts
from bot.cycle import ANSWER_FORM as ANSWER_FORM  # defined with the prompt that carries it
from bot.cycle import NOT_SHARED as NOT_SHARED
from bot.domain import (
    ChannelRef,
    Contribution,
    Kind,
    NewContribution,
    Person,
    PersonSettings,
    Source,
    Step,
)
from bot.messages import (
    Actions,
    Block,
    Bullets,
    Button,
    ButtonEvent,
    CommandEvent,
    Context,
    Divider,
    Ephemeral,
    Event,
    Field,
    Form,
    FormDone,
    FormErrors,
    FormEvent,
    Header,
    HomeEvent,
    Message,
    MessageEvent,
    Option,
    Response,
    Section,
    ShowForm,
    ShowHome,
    shorten,
)
from bot.ports import Clock
from bot.themes import ThemeTagger
from storage.repositories import (
    ContributionRepository,
    OccurrenceRepository,
    PersonSettingsRepository,
)

log = logging.getLogger(__name__)

MAX_TEXT = MAX_ANSWER  # characters of one answer
MAX_FIELD = 2000
MIN_TEXT = 3
SHARE_FORM = "boeket.share"
EDIT_FORM = "boeket.edit"
EDIT_ACTION = "boeket.edit"
DELETE_ACTION = "boeket.delete"
LANGUAGE_ACTION = "boeket.settings.language"
ANONYMOUS_ACTION = "boeket.settings.anonymous"
NAMED_ACTION = "boeket.settings.named"
THEMES_ACTION = "boeket.themes"
THEMES_FORM = "boeket.themes"
THEME_FIELD = "theme."  # a checkbox per theme in the themes form: "theme.werkdruk"
COMMANDS = frozenset({"deel", "share"})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().upper().encode()).hexdigest()


class Followers(Protocol):
    """What happens after a contribution changes: matching, crossposting. Must return quickly."""

    def stored(self, contribution: Contribution) -> None: ...

    def edited(self, contribution: Contribution) -> None: ...

    def deleted(self, contribution_id: int) -> None: ...

    async def translation(self, event: MessageEvent) -> Contribution | None: ...

    async def on_button(self, event: ButtonEvent) -> Response: ...


@dataclass(frozen=True, slots=True)
class _Clean:
    value: str
    error: str | None


class ContributionService:
    """Handles every neutral event an adapter hands to the core."""

    def __init__(
        self,
        *,
        config: OrgConfig,
        texts: Texts,
        contributions: ContributionRepository,
        occurrences: OccurrenceRepository,
        cycle: CycleEngine,
        clock: Clock,
        settings: PersonSettingsRepository,
        followers: Followers | None = None,
        themes: ThemeTagger | None = None,
    ) -> None:
        self._followers = followers
        # Without a tagger of the composition root's (with its embedder), keywords alone tag.
        self._themes = themes or ThemeTagger(config.themes)
        self._settings = settings
        self._config = config
        self._t = texts
        self._contributions = contributions
        self._occurrences = occurrences
        self._cycle = cycle
        self._clock = clock

    @property
    def org(self) -> str:
        return self._config.organisation.id

    async def handle(self, event: Event) -> Response:
        event = _without_nul(event)
        match event:
            case MessageEvent():
                return await self._message(event)
            case CommandEvent():
                return await self._command(event)
            case ButtonEvent():
                return await self._button(event)
            case FormEvent():
                return await self._form(event)
            case HomeEvent():
                return ShowHome(await self._home(event.platform, event.person))

    def _dept(self, channel: ChannelRef, workspace: str) -> Department | None:
        """The department of a channel; none for a channel of another workspace or tenant."""
        dept = self._config.department_for_channel(channel.platform, channel.channel)
        if dept is not None and dept.workspace and workspace and dept.workspace != workspace:
            return None
        return dept

    async def _voice(
        self, dept: Department | None, platform: str, person: Person
    ) -> tuple[Department | None, PersonSettings]:
        """The department as this person hears it: in their own language, if they chose one."""
        chosen = await self._settings.get(self.org, platform, person.id)
        if dept is not None and chosen.language:
            dept = dept.model_copy(update={"language": chosen.language})
        return dept, chosen

    # --- the person's own page ----------------------------------------------------------------

    async def _home(self, platform: str, person: Person) -> Message:
        chosen = await self._settings.get(self.org, platform, person.id)
        lang = chosen.language or self._config.language
        t = self._t.for_language(lang)
        own = await self._contributions.by_author(self.org, platform, person.id, limit=200)
        blocks: list[Block] = [Header(t("home.title")), Section(t("home.intro"))]
        # An overview to take to a development conversation: what, on which themes and goals.
        year_ago = self._clock.now() - timedelta(days=365)
        recent = [c for c in own if c.created_at >= year_ago]
        kinds = Counter(c.kind for c in recent)
        themes = Counter(theme for c in recent for theme in c.themes)
        goals = Counter(c.goal_id for c in recent if c.goal_id)
        overview = [
            t("home.count", count=len(recent)),
            *(
                t("home.per_kind", kind=self._t.prompts.kind_title(lang, k.value), count=n)
                for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])
            ),
        ]
        if themes:
            overview.append(
                t(
                    "home.themes",
                    themes=", ".join(
                        self._t.theme_title_in(lang, th) for th, _ in themes.most_common(5)
                    ),
                )
            )
        if goals:
            overview.append(
                t(
                    "home.goals",
                    goals=", ".join(
                        (g.title if (g := self._config.goal(gid)) else gid)
                        for gid, _ in goals.most_common(5)
                    ),
                )
            )
        blocks.append(Bullets(tuple(overview), title=t("home.overview_title")))
        highlights = [c for c in recent if c.source is Source.SHARE][:5]
        if highlights:
            blocks.append(
                Bullets(
                    tuple(shorten(c.fields.get("what", c.text), 300) for c in highlights),
                    title=t("home.highlights_title"),
                )
            )
        blocks.append(Divider())
        blocks.append(Header(t("mine.title")))
        if not own:
            blocks.append(Section(t("mine.empty")))
        for c in own[:10]:
            where = self._config.department(c.department_id).name
            blocks.append(
                Section(
                    shorten(c.text, 500),
                    title=t(
                        "mine.item",
                        kind=self._t.prompts.kind_title(lang, c.kind.value),
                        department=where,
                        date=c.created_at.date().isoformat(),
                    ),
                )
            )
            blocks.append(Context(self._sharing_line(lang, c)))
            blocks.append(
                Actions(
                    (
                        Button(EDIT_ACTION, t("mine.edit"), value=str(c.id)),
                        Button(THEMES_ACTION, t("tagging.correct"), value=str(c.id)),
                        Button(DELETE_ACTION, t("mine.delete"), value=str(c.id), style="danger"),
                    )
                )
            )
        blocks.append(Divider())
        blocks.append(Header(t("home.settings_title")))
        blocks.append(Section(t("home.language", language=t(f"home.language_name.{lang}"))))
        blocks.append(
            Actions(
                tuple(
                    Button(
                        LANGUAGE_ACTION,
                        t(f"home.language_name.{code}"),
                        value=code,
                        style="primary" if code == lang else "default",
                    )
                    for code in ("nl", "en")
                )
            )
        )
        anon_key = "home.anonymous_on" if chosen.anonymous_default else "home.anonymous_off"
        blocks.append(Section(t(anon_key)))
        blocks.append(
            Actions(
                (
                    Button(
                        ANONYMOUS_ACTION,
                        t(
                            "home.anonymous_turn_off"
                            if chosen.anonymous_default
                            else "home.anonymous_turn_on"
                        ),
                        value="off" if chosen.anonymous_default else "on",
                    ),
                )
            )
        )
        named = chosen.named_elsewhere
        blocks.append(Section(t("home.named_on" if named else "home.named_off")))
        blocks.append(
            Actions(
                (
                    Button(
                        NAMED_ACTION,
                        t("home.named_turn_off" if named else "home.named_turn_on"),
                        value="off" if named else "on",
                    ),
                )
            )
        )
        blocks.append(Context(t("mine.anonymous_note")))
        return Message(text=t("home.title"), blocks=tuple(blocks))

    async def _change_settings(self, event: ButtonEvent) -> Response:
        platform = event.channel.platform
        chosen = await self._settings.get(self.org, platform, event.person.id)
        if event.action_id == LANGUAGE_ACTION and event.value in {"nl", "en"}:
            chosen = replace(chosen, language=event.value)
        elif event.action_id == ANONYMOUS_ACTION and event.value in {"on", "off"}:
            chosen = replace(chosen, anonymous_default=event.value == "on")
        elif event.action_id == NAMED_ACTION and event.value in {"on", "off"}:
            chosen = replace(chosen, named_elsewhere=event.value == "on")
        else:
            return None
        await self._settings.put(self.org, platform, event.person.id, chosen, self._clock.now())
        return ShowHome(await self._home(platform, event.person))

    # --- thread replies -----------------------------------------------------------------------

    async def _message(self, event: MessageEvent) -> Response:
        dept, _ = await self._voice(
            self._dept(event.channel, event.workspace),
            event.channel.platform,
            event.person,
        )
        if dept is None or event.thread_id is None:
            return None  # chatter outside a department's prompt thread is not ours to keep
        prompt = await self._occurrences.find_prompt(
            self.org, event.channel.platform, event.channel.channel, event.thread_id
        )
        if prompt is None or prompt.kind is None:
            if self._followers is not None and 3 <= len(event.text.strip()) <= MAX_TEXT:
                translated = await self._followers.translation(event)
                if translated is not None:
                    self._followers.stored(translated)
                    return Ephemeral(self._plain(dept, "crosspost.translation_thanks"))
            return None
        text = event.text.strip()
        if len(text) < MIN_TEXT:
            return None
        if len(text) > MAX_TEXT:
            return Ephemeral(self._plain(dept, "answer.too_long", max=MAX_TEXT, length=len(text)))
        stored, created, _ = await self._store(
            NewContribution(
                organisation_id=self.org,
                department_id=dept.id,
                kind=prompt.kind,
                source=Source.REPLY,
                round_date=prompt.round_date,
                text=text,
                anonymous=False,
                author=event.person,
                platform=event.channel.platform,
                event_key=f"{event.channel.platform}:message:{event.event_id}",
                created_at=self._clock.now(),
                goal_id=prompt.goal_id,
            )
        )
        if not created:
            return None
        followup = self._followup_question(dept, prompt.kind, prompt.round_date)
        thanks = self._t(dept, "answer.thanks_reply", followup=followup)
        return Ephemeral(
            Message(text=thanks, blocks=(Section(thanks), *self._tagging(dept, stored)))
        )

    def _followup_question(self, dept: Department, kind: Kind, round_date: date) -> str:
        return self._t(dept, f"answer.followup.{kind.value}")

    # --- commands -----------------------------------------------------------------------------

    async def _command(self, event: CommandEvent) -> Response:
        dept, chosen = await self._voice(
            self._dept(event.channel, event.workspace),
            event.channel.platform,
            event.person,
        )
        words = event.text.strip().split()
        sub = words[0].lower() if words else ""
        if event.command.lstrip("/").lower() not in COMMANDS or sub in {"help", "hulp", "?"}:
            return Ephemeral(self._help(dept))
        if sub in {"mijn", "mine"}:
            return Ephemeral(await self._mine(dept, event.channel.platform, event.person))
        if sub in {"verwijder", "delete"}:
            if len(words) < 2:
                return Ephemeral(self._plain(dept, "delete.code_missing"))
            deleted = await self._contributions.delete_by_token(self.org, token_hash(words[1]))
            if deleted is not None and self._followers is not None:
                self._followers.deleted(deleted)
            key = "delete.done" if deleted is not None else "delete.code_unknown"
            return Ephemeral(self._plain(dept, key))
        if dept is None:
            return Ephemeral(self._plain(None, "share.not_a_department"))
        return ShowForm(self._share_form(dept, chosen, prefill=" ".join(words)))

    def _help(self, dept: Department | None) -> Message:
        text = self._t(dept, "help.text")
        return Message(
            text=text,
            blocks=(
                Header(self._t(dept, "help.title")),
                Section(text),
                Bullets(
                    (
                        self._t(dept, "help.deel"),
                        self._t(dept, "help.mijn"),
                        self._t(dept, "help.zoek"),
                        self._t(dept, "help.overzicht"),
                        self._t(dept, "help.dashboard"),
                        self._t(dept, "help.privacy"),
                        self._t(dept, "help.verwijder"),
                        self._t(dept, "help.help"),
                    )
                ),
            ),
        )

    def _plain(self, dept: Department | None, key: str, **params: object) -> Message:
        text = self._t(dept, key, **params)
        return Message(text=text, blocks=(Section(text),))

    async def _mine(self, dept: Department | None, platform: str, person: Person) -> Message:
        own = await self._contributions.by_author(self.org, platform, person.id, limit=10)
        if not own:
            return self._plain(dept, "mine.empty")
        blocks: list[Block] = [Header(self._t(dept, "mine.title"))]
        for c in own:
            where = self._config.department(c.department_id).name
            blocks.append(
                Section(
                    shorten(c.text, 500),
                    title=self._t(
                        dept,
                        "mine.item",
                        kind=self._t.kind_title(dept, c.kind),
                        department=where,
                        date=c.created_at.date().isoformat(),
                    ),
                )
            )
            blocks.append(Context(self._sharing_line(self._t.lang(dept), c)))
            blocks.append(
                Actions(
                    (
                        Button(EDIT_ACTION, self._t(dept, "mine.edit"), value=str(c.id)),
                        Button(THEMES_ACTION, self._t(dept, "tagging.correct"), value=str(c.id)),
                        Button(
                            DELETE_ACTION,
                            self._t(dept, "mine.delete"),
                            value=str(c.id),
                            style="danger",
                        ),
                    )
                )
            )
        blocks.append(Context(self._t(dept, "mine.anonymous_note")))
        return Message(text=self._t(dept, "mine.title"), blocks=tuple(blocks))

    # --- buttons ------------------------------------------------------------------------------

    async def _button(self, event: ButtonEvent) -> Response:
        if event.action_id in {LANGUAGE_ACTION, ANONYMOUS_ACTION, NAMED_ACTION}:
            return await self._change_settings(event)
        if event.action_id.startswith("boeket.crosspost.") and self._followers is not None:
            return await self._followers.on_button(event)
        dept, chosen = await self._voice(
            self._dept(event.channel, event.workspace),
            event.channel.platform,
            event.person,
        )
        if event.action_id == ANSWER_ACTION:
            if dept is None:
                return None
            try:
                round_date = date.fromisoformat(event.value)
            except ValueError:
                return None
            prompt = await self._occurrences.get(self.org, dept.id, Step.PROMPT, round_date)
            if prompt is None or prompt.kind is None:
                return Ephemeral(self._plain(dept, "answer.round_unknown"))
            return ShowForm(self._answer_form(dept, prompt.kind, round_date, chosen))
        if event.action_id in {EDIT_ACTION, DELETE_ACTION, THEMES_ACTION}:
            own = await self._own(event.person, event.channel.platform, event.value)
            if own is None:
                return Ephemeral(self._plain(dept, "mine.not_yours"))
            if event.action_id == DELETE_ACTION:
                if (
                    await self._contributions.delete_own(
                        self.org, own.id, event.channel.platform, event.person.id
                    )
                    and self._followers is not None
                ):
                    self._followers.deleted(own.id)
                log.info("contribution %s deleted by its author", own.id)
                if event.home:
                    return ShowHome(await self._home(event.channel.platform, event.person))
                return Ephemeral(self._plain(dept, "delete.done"))
            if event.action_id == THEMES_ACTION:
                return ShowForm(self._themes_form(dept, own))
            return ShowForm(self._edit_form(dept, own))
        return None

    async def _own(self, person: Person, platform: str, value: str) -> Contribution | None:
        if not value.isdigit():
            return None
        c = await self._contributions.get(self.org, int(value))
        if c is None or c.author is None or c.author.id != person.id or c.platform != platform:
            return None
        return c

    # --- forms --------------------------------------------------------------------------------

    def _anonymous_field(self, dept: Department, chosen: PersonSettings) -> tuple[Field, ...]:
        if not dept.anonymous_answers:
            return ()
        return (
            Field(
                "anonymous",
                self._t(dept, "form.anonymous"),
                kind="checkbox",
                hint=self._t(dept, "form.anonymous_hint"),
                initial="true" if chosen.anonymous_default else "",
            ),
        )

    def _not_shared_field(self, dept: Department | None, initial: bool = False) -> Field:
        return Field(
            NOT_SHARED,
            self._t(dept, "form.not_shared"),
            kind="checkbox",
            hint=self._t(dept, "form.not_shared_hint"),
            initial="true" if initial else "",
        )

    def _answer_form(
        self, dept: Department, kind: Kind, round_date: date, chosen: PersonSettings
    ) -> Form:
        return Form(
            form_id=ANSWER_FORM,
            title=self._t(dept, "answer.form_title"),
            submit_label=self._t(dept, "form.submit"),
            intro=self._t.kind_title(dept, kind),
            fields=(
                Field(
                    "text",
                    self._t(dept, "answer.field_text"),
                    kind="textarea",
                    required=True,
                    max_length=MAX_TEXT,
                ),
                Field(
                    "followup",
                    self._followup_question(dept, kind, round_date),
                    kind="textarea",
                    max_length=MAX_FIELD,
                ),
                self._not_shared_field(dept),
                *self._anonymous_field(dept, chosen),
            ),
            meta={"department": dept.id, "round": round_date.isoformat()},
        )

    def _share_form(self, dept: Department, chosen: PersonSettings, prefill: str = "") -> Form:
        goals = tuple(Option(g.id, g.title) for g in self._config.goals)
        themes = tuple(Option(t.id, self._t.theme_title(dept, t.id)) for t in self._config.themes)
        return Form(
            form_id=SHARE_FORM,
            title=self._t(dept, "share.form_title"),
            submit_label=self._t(dept, "form.submit"),
            intro=self._t(dept, "share.intro"),
            fields=(
                Field(
                    "what",
                    self._t(dept, "share.field_what"),
                    kind="textarea",
                    required=True,
                    max_length=MAX_FIELD,
                    hint=self._t(dept, "share.hint_what"),
                    initial=prefill[:MAX_FIELD],
                ),
                Field(
                    "preconditions",
                    self._t(dept, "share.field_preconditions"),
                    kind="textarea",
                    required=True,
                    max_length=MAX_FIELD,
                    hint=self._t(dept, "share.hint_preconditions"),
                ),
                Field(
                    "effect",
                    self._t(dept, "share.field_effect"),
                    kind="textarea",
                    max_length=MAX_FIELD,
                    hint=self._t(dept, "share.hint_effect"),
                ),
                Field("goal", self._t(dept, "share.field_goal"), kind="select", options=goals),
                Field(
                    "theme",
                    self._t(dept, "share.field_theme"),
                    kind="select",
                    options=themes,
                    hint=self._t(dept, "share.hint_theme"),
                ),
                self._not_shared_field(dept),
                *self._anonymous_field(dept, chosen),
            ),
            meta={"department": dept.id},
        )

    def _edit_form(self, dept: Department | None, c: Contribution) -> Form:
        home = self._config.department(c.department_id)
        return Form(
            form_id=EDIT_FORM,
            title=self._t(dept, "edit.form_title"),
            submit_label=self._t(dept, "form.submit"),
            fields=(
                Field(
                    "text",
                    self._t(dept, "edit.field_text"),
                    kind="textarea",
                    required=True,
                    max_length=MAX_TEXT,
                    initial=c.text,
                ),
            ),
            meta={"department": home.id, "contribution": str(c.id)},
        )

    def _themes_form(self, dept: Department | None, c: Contribution) -> Form:
        """The person corrects what Boeket found: a checkbox per theme (every platform renders
        checkboxes, and a list of them says "pick any number" without explanation), and
        whether it may be shared."""
        home = self._config.department(c.department_id)
        return Form(
            form_id=THEMES_FORM,
            title=self._t(dept, "tagging.form_title"),
            submit_label=self._t(dept, "form.submit"),
            intro=self._t(dept, "tagging.intro", text=shorten(c.text, 200)),
            fields=(
                *(
                    Field(
                        THEME_FIELD + theme.id,
                        self._t.theme_title(dept, theme.id),
                        kind="checkbox",
                        initial="true" if theme.id in c.themes else "",
                    )
                    for theme in self._config.themes
                ),
                self._not_shared_field(dept, initial=not c.shareable),
            ),
            meta={"department": home.id, "contribution": str(c.id)},
        )

    def _clean(
        self,
        dept: Department | None,
        values: dict[str, str],
        name: str,
        *,
        required: bool,
        limit: int,
    ) -> _Clean:
        value = (values.get(name) or "").strip()
        if required and len(value) < MIN_TEXT:
            return _Clean(value, self._t(dept, "form.error_required", min=MIN_TEXT))
        if len(value) > limit:
            return _Clean(value, self._t(dept, "form.error_too_long", max=limit, length=len(value)))
        return _Clean(value, None)

    async def _form(self, event: FormEvent) -> Response:
        dept_id = event.meta.get("department", "")
        try:
            dept = self._config.department(dept_id)
        except KeyError:
            return Ephemeral(self._plain(None, "form.expired"))
        if dept.workspace and event.workspace and dept.workspace != event.workspace:
            return Ephemeral(self._plain(None, "form.expired"))
        chosen = await self._settings.get(self.org, event.channel.platform, event.person.id)
        if chosen.language:
            dept = dept.model_copy(update={"language": chosen.language})
        if event.form_id == ANSWER_FORM:
            return await self._submit_answer(dept, event, chosen)
        if event.form_id == SHARE_FORM:
            return await self._submit_share(dept, event)
        if event.form_id == EDIT_FORM:
            return await self._submit_edit(dept, event)
        if event.form_id == THEMES_FORM:
            return await self._submit_themes(dept, event)
        return Ephemeral(self._plain(dept, "form.expired"))

    def _anonymous(self, dept: Department, values: dict[str, str], default: bool = False) -> bool:
        """Whether to store without a name. No choice at all (an answer form shown to a whole
        channel starts empty) means the person's own default."""
        if not (values.get("anonymous") or "").strip():
            return dept.anonymous_answers and default
        return dept.anonymous_answers and _checked(values, "anonymous")

    async def _tag(self, text: str, fields: Mapping[str, str]) -> tuple[str, ...]:
        """The themes Boeket finds in a contribution: its text with what was added to it."""
        about = [text, *(fields[n] for n in ("preconditions", "effect", "followup") if n in fields)]
        return await self._themes.tag("\n".join(about))

    async def _store(self, new: NewContribution) -> tuple[Contribution, bool, str | None]:
        token = secrets.token_hex(4).upper() if new.anonymous else None
        if token:
            new = _with_token(new, token_hash(token))
        if not new.themes_chosen:
            new = replace(new, themes=await self._tag(new.text, new.fields))
        stored, created = await self._contributions.add(new)
        if created:
            self._follow(stored)
        return stored, created, token if created else None

    def _follow(self, stored: Contribution) -> None:
        if self._followers is not None:
            self._followers.stored(stored)

    async def _submit_answer(
        self, dept: Department, event: FormEvent, chosen: PersonSettings
    ) -> Response:
        text = self._clean(dept, event.values, "text", required=True, limit=MAX_TEXT)
        followup = self._clean(dept, event.values, "followup", required=False, limit=MAX_FIELD)
        errors = {n: c.error for n, c in (("text", text), ("followup", followup)) if c.error}
        if errors:
            return FormErrors(errors)
        try:
            round_date = date.fromisoformat(event.meta.get("round", ""))
        except ValueError:
            return Ephemeral(self._plain(dept, "form.expired"))
        prompt = await self._occurrences.get(self.org, dept.id, Step.PROMPT, round_date)
        if prompt is None or prompt.kind is None:
            return Ephemeral(self._plain(dept, "answer.round_unknown"))
        anonymous = self._anonymous(dept, event.values, chosen.anonymous_default)
        fields = {"followup": followup.value} if followup.value else {}
        stored, created, token = await self._store(
            NewContribution(
                organisation_id=self.org,
                department_id=dept.id,
                kind=prompt.kind,
                source=Source.FORM,
                round_date=round_date,
                text=text.value,
                anonymous=anonymous,
                author=None if anonymous else event.person,
                platform=event.channel.platform,
                event_key=f"{event.channel.platform}:form:{event.submission_id}",
                created_at=self._clock.now(),
                fields=fields,
                goal_id=prompt.goal_id,
                shareable=not _checked(event.values, NOT_SHARED),
            )
        )
        return FormDone(self._confirmation(dept, "answer.thanks_form", stored, created, token))

    async def _submit_share(self, dept: Department, event: FormEvent) -> Response:
        cleaned = {
            "what": self._clean(dept, event.values, "what", required=True, limit=MAX_FIELD),
            "preconditions": self._clean(
                dept, event.values, "preconditions", required=True, limit=MAX_FIELD
            ),
            "effect": self._clean(dept, event.values, "effect", required=False, limit=MAX_FIELD),
        }
        errors = {name: c.error for name, c in cleaned.items() if c.error}
        goal = (event.values.get("goal") or "").strip() or None
        theme = (event.values.get("theme") or "").strip() or None
        if goal is not None and self._config.goal(goal) is None:
            errors["goal"] = self._t(dept, "form.error_choice")
        if theme is not None and self._config.theme(theme) is None:
            errors["theme"] = self._t(dept, "form.error_choice")
        if errors:
            return FormErrors(errors)
        now = self._clock.now()
        rnd = self._cycle.current_round(dept, now)
        anonymous = self._anonymous(dept, event.values)
        fields = {name: c.value for name, c in cleaned.items() if c.value}
        stored, created, token = await self._store(
            NewContribution(
                organisation_id=self.org,
                department_id=dept.id,
                kind=Kind.SUCCES,
                source=Source.SHARE,
                round_date=rnd.round_date,
                text=fields["what"],
                anonymous=anonymous,
                author=None if anonymous else event.person,
                platform=event.channel.platform,
                event_key=f"{event.channel.platform}:form:{event.submission_id}",
                created_at=now,
                fields=fields,
                goal_id=goal,
                # A theme the person picked is their choice; none picked: Boeket finds them.
                themes=(theme,) if theme else (),
                themes_chosen=theme is not None,
                shareable=not _checked(event.values, NOT_SHARED),
            )
        )
        return FormDone(self._confirmation(dept, "share.thanks", stored, created, token))

    async def _submit_edit(self, dept: Department, event: FormEvent) -> Response:
        text = self._clean(dept, event.values, "text", required=True, limit=MAX_TEXT)
        if text.error:
            return FormErrors({"text": text.error})
        own = await self._own(
            event.person, event.channel.platform, event.meta.get("contribution", "")
        )
        if own is None:
            return Ephemeral(self._plain(dept, "mine.not_yours"))
        fields = dict(own.fields)
        if own.source is Source.SHARE:
            fields["what"] = text.value
        edited = await self._contributions.update_own(
            self.org,
            own.id,
            event.channel.platform,
            event.person.id,
            text.value,
            fields if own.source is Source.SHARE else None,
            self._clock.now(),
            # What the person chose stays; what Boeket found, it finds again in the new text.
            themes=None if own.themes_chosen else await self._tag(text.value, fields),
        )
        if edited is not None and self._followers is not None:
            self._followers.edited(edited)
        return FormDone(self._plain(dept, "edit.done"))

    async def _submit_themes(self, dept: Department, event: FormEvent) -> Response:
        own = await self._own(
            event.person, event.channel.platform, event.meta.get("contribution", "")
        )
        if own is None:
            return Ephemeral(self._plain(dept, "mine.not_yours"))
        ticked = {
            theme.id
            for theme in self._config.themes
            if _checked(event.values, THEME_FIELD + theme.id)
        }
        # The themes kept stay in their order (the first is the primary one); added ones follow.
        themes = [t for t in own.themes if t in ticked] + [
            theme.id
            for theme in self._config.themes
            if theme.id in ticked and theme.id not in own.themes
        ]
        corrected = await self._contributions.correct_own(
            self.org,
            own.id,
            event.channel.platform,
            event.person.id,
            themes=themes,
            shareable=not _checked(event.values, NOT_SHARED),
            now=self._clock.now(),
        )
        if corrected is None:
            return Ephemeral(self._plain(dept, "mine.not_yours"))
        if self._followers is not None:
            self._followers.edited(corrected)
        lang = self._t.lang(dept)
        done = self._t(dept, "tagging.done")
        return FormDone(
            Message(
                text=done,
                blocks=(Section(done), Context(self._sharing_line(lang, corrected))),
            )
        )

    def _confirmation(
        self, dept: Department, key: str, stored: Contribution, created: bool, token: str | None
    ) -> Message:
        if not created:
            return self._plain(dept, "form.already_received")
        blocks: list[Block] = [Section(self._t(dept, key)), *self._tagging(dept, stored)]
        if token:
            blocks.append(Context(self._t(dept, "form.anonymous_code", code=token)))
        return Message(text=self._t(dept, key), blocks=tuple(blocks))

    def _travels(self, c: Contribution) -> str:
        """Whether a contribution may go to other departments, and if not, why not."""
        if not c.shareable:
            return "kept_by_person"
        try:
            dept = self._config.department(c.department_id)
        except KeyError:
            return "kept_by_department"
        if not self._config.crossposting.enabled or c.kind not in self._config.shareable(dept):
            return "kept_by_department"
        return "shared"

    def _sharing_line(self, lang: str, c: Contribution) -> str:
        """Which themes Boeket found (or the person chose), and whether it may travel."""
        t = self._t.for_language(lang)
        themes = (
            t(
                "tagging.found",
                themes=", ".join(self._t.theme_title_in(lang, th) for th in c.themes),
            )
            if c.themes
            else t("tagging.none")
        )
        return f"{themes} {t(f'tagging.{self._travels(c)}')}"

    def _tagging(self, dept: Department, c: Contribution) -> tuple[Block, ...]:
        """Under a confirmation: the themes and sharing, and a button to correct them. Only for
        a contribution on name: an anonymous one is linked to nobody who could correct it."""
        line = Context(self._sharing_line(self._t.lang(dept), c))
        if c.author is None:
            return (line,)
        button = Button(THEMES_ACTION, self._t(dept, "tagging.correct"), value=str(c.id))
        return (line, Actions((button,)))


def _checked(values: Mapping[str, str], name: str) -> bool:
    """Whether a checkbox was ticked, whatever the platform sends for "on"."""
    return values.get(name, "").strip().lower() in {"1", "true", "on", "yes", "ja"}


def _without_nul(event: Event) -> Event:
    """The event with NUL characters removed from what a person wrote and their name.

    Nobody types one, but a client can send one, and PostgreSQL stores none in text or JSON:
    the whole contribution would be refused there (SQLite takes it).
    """
    if not isinstance(event, MessageEvent | CommandEvent | FormEvent):
        return event
    person = replace(event.person, name=event.person.name.replace("\x00", ""))
    match event:
        case FormEvent(values=values):
            cleaned = {k: v.replace("\x00", "") for k, v in values.items()}
            return replace(event, values=cleaned, person=person)
        case MessageEvent(text=text) | CommandEvent(text=text):
            return replace(event, text=text.replace("\x00", ""), person=person)


def _with_token(new: NewContribution, token_hash_value: str) -> NewContribution:
    return replace(new, delete_token_hash=token_hash_value)
