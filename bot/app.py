"""The composition root: the one place that wires settings, storage, adapters and the core."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
from aiohttp import web

from adapters.local.adapter import LocalAdapter, LocalChannel, LocalSettings
from bot.background import Background, InFlight
from bot.config import OrgConfig
from bot.contributions import ContributionService
from bot.crosspost import Crossposter, LessonTravel
from bot.cycle import CycleEngine, Texts
from bot.dashboard import Dashboard
from bot.digest import ACTIONS as DIGEST_ACTIONS
from bot.digest import DigestEngine
from bot.domain import Person
from bot.embedders import Embedder, LexicalEmbedder, OpenAIEmbedder, build_embedder
from bot.links import Signer
from bot.matcher import Matcher
from bot.messages import ButtonEvent, Ephemeral, Event, HomeEvent, Message, Response, Section
from bot.observability import Metrics, metrics_handler, middleware, ready_handler
from bot.ports import Adapter, Clock
from bot.privacy import PersonalData, Visibility
from bot.scheduler import Ticker, tick_interval
from bot.search import Search
from bot.selfservice import SelfService
from bot.settings import Settings
from bot.themes import ThemeTagger
from prompts.library import PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.privacy import PrivacyRepository
from storage.repositories import (
    ContributionRepository,
    CrosspostRepository,
    OccurrenceRepository,
    PersonSettingsRepository,
    StateStore,
    VectorRepository,
)

log = logging.getLogger(__name__)

BOEKET: web.AppKey[Boeket] = web.AppKey("boeket")
RETENTION_EVERY = timedelta(hours=1)


def local_settings(config: OrgConfig, texts: Texts) -> LocalSettings:
    """The local chat's channels and people, from the organisation config."""
    channels = [
        LocalChannel(d.channel, d.name, d.id) for d in config.departments if d.platform == "local"
    ]
    if config.cross_department.platform == "local":
        cross = config.cross_department
        channels.append(LocalChannel(cross.channel, cross.name or cross.channel, None))
    # Theme channels (communities of practice), unless one is also a channel listed above.
    for theme in config.themes:
        if theme.platform == "local" and theme.channel not in {"", *(c.id for c in channels)}:
            channels.append(LocalChannel(theme.channel, theme.title or theme.id, None))
    lang = config.language
    # Raw templates: the page fills {count} and {speed} itself.
    ui = {
        key.removeprefix("local."): texts.prompts.template(lang, key)
        for key in texts.prompts.ui_keys(lang)
        if key.startswith("local.")
    }
    return LocalSettings(
        channels=tuple(channels),
        people=tuple(Person(p.id, p.name) for p in config.local.people),
        person_departments={p.id: p.department for p in config.local.people if p.department},
        ui=ui,
        language=lang,
    )


@dataclass
class Boeket:
    """Everything one Boeket process runs, built by `build` and started by `start`."""

    settings: Settings
    config: OrgConfig
    db: Database
    clock: Clock
    texts: Texts
    adapters: dict[str, Adapter]
    cycle: CycleEngine
    contributions: ContributionService
    local: LocalAdapter
    matcher: Matcher
    crossposter: Crossposter
    background: Background
    in_flight: InFlight
    digest: DigestEngine
    dashboard: Dashboard
    personal: PersonalData
    selfservice: SelfService
    search: Search
    ticker: Ticker | None = None
    metrics: Metrics = field(default_factory=Metrics)
    _started: bool = field(default=False, repr=False)
    _retention_at: datetime | None = field(default=None, repr=False)
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def handle(self, event: Event) -> Response:
        """Every adapter's way in. A failure answers the person kindly and is logged.

        An event from a Slack team or Teams tenant none of the organisation's channels is in
        (an app shared with another workspace) is not this organisation's: it is dropped.
        """
        platform = event.platform if isinstance(event, HomeEvent) else event.channel.platform
        if not self.config.serves(platform, event.workspace):
            log.warning("dropped a %s event from workspace %s", platform, event.workspace)
            return None
        try:
            own = await self.selfservice.handle(event)
            if own is not None:
                return own
            found = await self.search.handle(event)
            if found is not None:
                return found
            if isinstance(event, ButtonEvent) and event.action_id.startswith(DIGEST_ACTIONS):
                return await self.digest.on_button(event)
            return await self.contributions.handle(event)
        except Exception:
            log.exception("handling %s failed", type(event).__name__)
            channel = getattr(event, "channel", None)
            dept = (
                self.config.department_for_channel(channel.platform, channel.channel)
                if channel is not None
                else None
            )
            text = self.texts(dept, "errors.internal")
            return Ephemeral(Message(text=text, blocks=(Section(text),)))

    @property
    def started(self) -> bool:
        return self._started

    async def tick(self) -> None:
        """One beat of the timer: the learning cycle's due steps, due suggestions, the digest."""
        await self.cycle.tick()
        await self.crossposter.tick()
        await self.digest.tick()
        now = self.clock.now()
        if self._retention_at is None or now - self._retention_at >= RETENTION_EVERY:
            self._retention_at = now
            await self.personal.apply_retention()

    async def start(self, *, timer: bool = True) -> None:
        if self.settings.auto_migrate:
            await self.db.upgrade()
        endpoint = self.settings.embeddings
        if self.settings.embedder == "openai" and endpoint is not None:
            # The endpoint's HTTP session lives as long as Boeket does.
            self._session = aiohttp.ClientSession()
            self.matcher.embedder = OpenAIEmbedder(
                session=self._session,
                base_url=endpoint.base_url,
                model=endpoint.model,
                dimensions=endpoint.dimensions,
                api_key=endpoint.api_key or None,
                api_version=endpoint.api_version or None,
                auth_header="api-key" if endpoint.api_version else "authorization",
            )
        indexed = await self.matcher.load(self.config.organisation.id)
        log.info("matcher: %d contributions indexed with %s", indexed, self.matcher.embedder.name)
        for adapter in self.adapters.values():
            await adapter.start(self.handle)
        if timer:
            self.ticker = Ticker(
                self.tick, tick_interval(self.settings.tick_seconds, self.settings.speed)
            )
            self.ticker.start()
        self._started = True

    async def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        # Adapters first: the work that follows their last acknowledgements (a thread reply
        # handed to the core) may still start background work.
        for adapter in self.adapters.values():
            await adapter.stop()
        await self.background.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.db.dispose()
        self._started = False


def build(
    settings: Settings,
    config: OrgConfig,
    *,
    clock: Clock,
    prompts: PromptLibrary | None = None,
    db: Database | None = None,
    extra_adapters: dict[str, Adapter] | None = None,
    embedder: Embedder | None = None,
) -> Boeket:
    """Wire a Boeket from settings and a validated organisation config."""
    prompts = prompts or PromptLibrary.load()
    texts = Texts(config, prompts)
    db = db or Database.connect(settings.database_url, schema=settings.database_schema or None)
    lease = timedelta(seconds=settings.claim_lease_seconds)
    occurrences = OccurrenceRepository(db)
    contributions = ContributionRepository(db)
    adapters: dict[str, Adapter] = {}
    in_flight = InFlight()
    local = LocalAdapter(
        local_settings(config, texts),
        clock=clock,
        state=StateStore(db, "local", namespace=config.organisation.id),
    )
    adapters[local.platform] = local
    if settings.slack is not None:
        # Imported only when configured: the Slack SDK stays out of processes that do not use it.
        from adapters.slack.adapter import SlackAdapter

        slack = SlackAdapter(
            settings.slack,
            engine=db.engine,
            # Its inbox is the organisation's own: another's Boeket on this database must not
            # hand on (or drop) replies that were acknowledged here.
            state=StateStore(db, "slack", namespace=config.organisation.id),
            close_label=texts(None, "form.cancel"),
            in_flight=in_flight,
        )
        adapters[slack.platform] = slack
    if settings.teams is not None:
        # Imported only when configured, like Slack: the Agents SDK is large.
        from adapters.teams.adapter import TeamsAdapter

        teams = TeamsAdapter(
            settings.teams,
            state=StateStore(db, "teams"),
            clock=clock,
            received_text=texts(None, "teams.received"),
            received_count=lambda count: texts(
                None, "teams.received_one" if count == 1 else "teams.received_many", count=count
            ),
            not_saved_text=texts(None, "teams.not_saved"),
        )
        adapters[teams.platform] = teams
    adapters.update(extra_adapters or {})
    signer: list[Signer] = []

    async def shared_signer() -> Signer:
        if not signer:
            signer.append(
                await Signer.shared(
                    settings.secret,
                    StateStore(db, "boeket"),
                    clock.now(),
                    organisation=config.organisation.id,
                )
            )
        return signer[0]

    cycle = CycleEngine(
        config=config,
        texts=texts,
        occurrences=occurrences,
        contributions=contributions,
        adapters=adapters,
        clock=clock,
        worker=settings.worker_id,
        lease=lease,
    )
    matcher = Matcher(
        embedder=embedder or _embedder(settings),
        vectors=VectorRepository(db),
        contributions=contributions,
        clock=clock,
    )
    settings_repo = PersonSettingsRepository(db)
    # The tagger follows the matcher's embedder, which `start` may replace (an endpoint).
    themes = ThemeTagger(config.themes, embedder=lambda: matcher.embedder)
    crossposter = Crossposter(
        themes=themes,
        config=config,
        texts=texts,
        matcher=matcher,
        crossposts=CrosspostRepository(db),
        contributions=contributions,
        settings=settings_repo,
        adapters=adapters,
        clock=clock,
        worker=settings.worker_id,
        lease=lease,
    )
    background = Background(in_flight=in_flight)
    service = ContributionService(
        themes=themes,
        config=config,
        texts=texts,
        contributions=contributions,
        occurrences=occurrences,
        cycle=cycle,
        clock=clock,
        settings=settings_repo,
        followers=LessonTravel(
            organisation_id=config.organisation.id,
            matcher=matcher,
            crossposter=crossposter,
            background=background,
        ),
    )
    dashboard = Dashboard(
        config=config,
        texts=texts,
        digests=DigestRepository(db),
        settings=settings_repo,
        adapters=adapters,
        clock=clock,
        signer=shared_signer,
        admin_token=settings.admin_token,
        public_url=settings.public_url,
    )
    personal = PersonalData(
        config=config,
        repo=PrivacyRepository(db),
        adapters=adapters,
        clock=clock,
        on_deleted=lambda contribution_id: matcher.forget(config.organisation.id, contribution_id),
        removed_text=lambda lang: prompts.text(lang or config.language, "privacy.withdrawn"),
    )
    return Boeket(
        settings=settings,
        config=config,
        db=db,
        clock=clock,
        texts=texts,
        adapters=adapters,
        cycle=cycle,
        contributions=service,
        local=local,
        matcher=matcher,
        crossposter=crossposter,
        background=background,
        in_flight=in_flight,
        digest=DigestEngine(
            config=config,
            texts=texts,
            digests=DigestRepository(db),
            adapters=adapters,
            clock=clock,
            worker=settings.worker_id,
            lease=lease,
            dashboard_link=dashboard.dashboard_link if settings.public_url else None,
            teller=crossposter,
        ),
        dashboard=dashboard,
        personal=personal,
        selfservice=SelfService(config=config, texts=texts, dashboard=dashboard, personal=personal),
        search=Search(
            config=config,
            texts=texts,
            matcher=matcher,
            contributions=contributions,
            settings=settings_repo,
            crossposter=crossposter,
            visibility=Visibility(adapters),
        ),
    )


def _embedder(settings: Settings) -> Embedder:
    """The configured embedder; for an endpoint, the lexical one until `start` connects it."""
    if settings.embedder == "openai":
        return LexicalEmbedder()
    return build_embedder(
        settings.embedder,  # type: ignore[arg-type]
        env=dict(settings.embedder_env),
    )


async def _health(request: web.Request) -> web.Response:
    boeket = request.app[BOEKET]
    try:
        await boeket.db.ping()
    except Exception as exc:
        log.warning("health check: database unreachable: %s", exc)
        return web.json_response({"status": "unhealthy", "database": "unreachable"}, status=503)
    return web.json_response(
        {"status": "ok", "database": boeket.db.backend, "now": boeket.clock.now().isoformat()}
    )


def freeze_startup_objects() -> None:
    """Call once start-up is done: what exists then (modules, models, the SDKs' objects, the
    configuration) lives as long as the process. Moved out of the garbage collector's reach, a
    full collection no longer walks all of it: one took 40-160 ms here, a pause that every
    request in flight waits for. Not for processes that start Boeket many times (tests)."""
    gc.collect()
    gc.freeze()


def web_app(boeket: Boeket, *, timer: bool = True) -> web.Application:
    """The one aiohttp application: every adapter's routes, the health check, start and stop."""
    app = web.Application(
        client_max_size=1024**2,
        middlewares=[middleware(boeket.metrics), boeket.in_flight.middleware()],
    )
    app[BOEKET] = boeket
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", ready_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_routes(boeket.dashboard.routes())
    for adapter in boeket.adapters.values():
        app.router.add_routes(adapter.routes())

    async def on_startup(_app: web.Application) -> None:
        await boeket.start(timer=timer)

    async def on_cleanup(_app: web.Application) -> None:
        await boeket.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
