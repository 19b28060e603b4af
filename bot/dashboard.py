"""The dashboard and a person's own overview, served by Boeket's aiohttp application.

Server-rendered HTML in Dutch or English; no scripts. No page is open: the dashboard opens with
the admin token (`BOEKET_ADMIN_TOKEN`: a login form, or `Authorization: Bearer`) or with a signed,
expiring link Boeket gives in chat (`/deel dashboard`, the weekly digest). "Mijn bijdragen" opens
only with the person's own signed link (`/deel mijn`): the admin token does not open it.

A link's token is moved into an HttpOnly cookie at once and the address cleaned, so it does not
linger in the browser's history or leak in a Referer header.
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from urllib.parse import urlencode

from aiohttp import web

from bot.config import Department, OrgConfig
from bot.cycle import Texts
from bot.domain import ChannelRef, Kind
from bot.links import Signer, person_scope
from bot.overview import Entry, Overview, build_overview
from bot.ports import Adapter, Clock
from bot.privacy import Visibility
from storage.digests import DigestRepository
from storage.repositories import PersonSettingsRepository

log = logging.getLogger(__name__)

DASHBOARD_COOKIE = "boeket_dashboard"
OWN_COOKIE = "boeket_mijn"
LOGIN_VALID = timedelta(hours=12)
LINK_VALID = timedelta(days=14)
OWN_LINK_VALID = timedelta(hours=24)

# Poster bytes and content type for (since, until, language, format); set when available.
PosterMaker = Callable[[date, date, str, str], Awaitable[tuple[bytes, str]]]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f6f2}
header{background:#234;color:#fff;padding:1rem 2rem}header h1{margin:0;font-size:1.5rem}
main{padding:1rem 2rem;max-width:72rem}section{background:#fff;border-radius:8px;
padding:1rem 1.5rem;margin:1rem 0;box-shadow:0 1px 2px #0002}h2{margin-top:0;font-size:1.2rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #ddd}td.n,th.n{text-align:right}form.filter{display:flex;gap:.8rem;
align-items:end;flex-wrap:wrap}label{display:flex;flex-direction:column;font-size:.85rem}
.bar{background:#0072B2;height:.8rem;border-radius:3px}.muted{color:#5a6270;font-size:.9rem}
blockquote{margin:.3rem 0 .6rem;padding-left:.8rem;border-left:3px solid #E69F00}
ul.journey{margin:.2rem 0 .8rem}a{color:#0057a0}
"""


@dataclass(frozen=True, slots=True)
class Period:
    since: date
    until: date


class Dashboard:
    def __init__(
        self,
        *,
        config: OrgConfig,
        texts: Texts,
        digests: DigestRepository,
        settings: PersonSettingsRepository,
        adapters: dict[str, Adapter],
        clock: Clock,
        signer: Callable[[], Awaitable[Signer]],
        admin_token: str = "",
        public_url: str = "",
        poster: PosterMaker | None = None,
    ) -> None:
        self._config = config
        self._t = texts
        self._digests = digests
        self._settings = settings
        self._visibility = Visibility(adapters)
        self._clock = clock
        self._signer = signer
        self._admin_token = admin_token
        self._public_url = public_url
        self.poster = poster

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/dashboard", self.dashboard),
            web.get("/dashboard/login", self.login_form),
            web.post("/dashboard/login", self.login),
            web.get("/dashboard/poster.{fmt:svg|png|pdf}", self.poster_file),
            web.get("/mijn", self.own),
        ]

    # --- links for chat ------------------------------------------------------------------------

    async def dashboard_link(self, valid: timedelta = LINK_VALID) -> str:
        token = (await self._signer()).sign("dashboard", self._clock.now(), valid)
        return f"{self._public_url}/dashboard?{urlencode({'access': token})}"

    async def own_link(self, platform: str, person_id: str) -> str:
        token = (await self._signer()).sign(
            person_scope(platform, person_id), self._clock.now(), OWN_LINK_VALID
        )
        return f"{self._public_url}/mijn?{urlencode({'access': token})}"

    # --- access --------------------------------------------------------------------------------

    def _secure(self) -> bool:
        return self._public_url.startswith("https://")

    def _redirect_with_cookie(
        self, request: web.Request, cookie: str, token: str, path: str
    ) -> web.Response:
        query = {k: v for k, v in request.query.items() if k != "access"}
        location = path + (f"?{urlencode(query)}" if query else "")
        response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})
        response.set_cookie(
            cookie, token, httponly=True, samesite="Lax", secure=self._secure(), path=path
        )
        return response

    async def _scope(self, request: web.Request, cookie: str) -> str | None:
        token = request.cookies.get(cookie, "")
        if not token:
            return None
        return (await self._signer()).verify(token, self._clock.now())

    async def _admin(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self._admin_token and header.startswith("Bearer "):
            return hmac.compare_digest(
                header.removeprefix("Bearer ").encode(), self._admin_token.encode()
            )
        return await self._scope(request, DASHBOARD_COOKIE) == "dashboard"

    def _lang(self, request: web.Request) -> str:
        lang = request.query.get("lang", "")
        return lang if lang in ("nl", "en") else self._config.language

    def _text(self, lang: str) -> Callable[..., str]:
        return self._t.for_language(lang)

    def _page(self, lang: str, title: str, body: str, status: int = 200) -> web.Response:
        html = (
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1></header><main>{body}</main></body></html>"
        )
        return web.Response(
            text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS
        )

    def _refused(self, lang: str, key: str) -> web.Response:
        t = self._text(lang)
        body = f"<section><p>{escape(t(key))}</p></section>"
        return self._page(lang, t("dashboard.closed_title"), body, status=401)

    def _period(self, request: web.Request, default_days: int) -> Period | None:
        today = self._clock.now().astimezone(self._config.zone_of_organisation()).date()
        try:
            until = date.fromisoformat(request.query.get("to") or today.isoformat())
            since = date.fromisoformat(
                request.query.get("from") or (until - timedelta(days=default_days)).isoformat()
            )
        except ValueError:
            return None
        if since > until or (until - since).days > 3660:
            return None
        return Period(since, until)

    # --- the dashboard -------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        lang = self._lang(request)
        t = self._text(lang)
        body = (
            f'<section><form method="post" action="/dashboard/login">'
            f"<label>{escape(t('dashboard.token'))}"
            f'<input type="password" name="token" autocomplete="current-password" required></label>'
            f"<p><button>{escape(t('dashboard.login'))}</button></p></form>"
            f'<p class="muted">{escape(t("dashboard.login_hint"))}</p></section>'
        )
        return self._page(
            lang, t("dashboard.title", organisation=self._config.organisation.name), body
        )

    async def login(self, request: web.Request) -> web.Response:
        lang = self._lang(request)
        form = await request.post()
        given = str(form.get("token", ""))
        if not self._admin_token or not hmac.compare_digest(
            given.encode(), self._admin_token.encode()
        ):
            log.warning("dashboard: a login with a wrong admin token was refused")
            return self._refused(lang, "dashboard.wrong_token")
        token = (await self._signer()).sign("dashboard", self._clock.now(), LOGIN_VALID)
        return self._redirect_with_cookie(request, DASHBOARD_COOKIE, token, "/dashboard")

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        lang = self._lang(request)
        access = request.query.get("access")
        if access is not None:
            if (await self._signer()).verify(access, self._clock.now()) != "dashboard":
                return self._refused(lang, "dashboard.link_invalid")
            return self._redirect_with_cookie(request, DASHBOARD_COOKIE, access, "/dashboard")
        if not await self._admin(request):
            return self._refused(lang, "dashboard.closed")
        period = self._period(request, 28)
        if period is None:
            return self._page(
                lang, "400", f"<p>{escape(self._text(lang)('dashboard.bad_period'))}</p>", 400
            )
        overview = await self._overview(period, lang)
        return self._page(
            lang,
            self._text(lang)("dashboard.title", organisation=self._config.organisation.name),
            self._render_dashboard(overview, period, lang),
        )

    async def _visible(self, dept: Department) -> bool:
        cross = self._config.cross_department
        return await self._visibility.may_show(
            dept, ChannelRef(cross.platform, cross.channel, cross.workspace)
        )

    async def _overview(
        self, period: Period, lang: str, own: tuple[str, str] | None = None
    ) -> Overview:
        return await build_overview(
            config=self._config,
            texts=self._t,
            digests=self._digests,
            settings=self._settings,
            since=period.since,
            until=period.until,
            language=lang,
            visible=self._visible,
            own=own,
        )

    async def poster_file(self, request: web.Request) -> web.StreamResponse:
        lang = self._lang(request)
        access = request.query.get("access")
        linked = (
            access is not None
            and (await self._signer()).verify(access, self._clock.now()) == "dashboard"
        )
        if not linked and not await self._admin(request):
            return self._refused(lang, "dashboard.closed")
        period = self._period(request, 91)
        if period is None:
            return self._page(
                lang, "400", f"<p>{escape(self._text(lang)('dashboard.bad_period'))}</p>", 400
            )
        fmt = request.match_info["fmt"]
        make = self.poster or self._poster
        body, content_type = await make(period.since, period.until, lang, fmt)
        headers = dict(SECURITY_HEADERS)
        if fmt != "svg":
            headers["Content-Disposition"] = f'attachment; filename="boeket-poster.{fmt}"'
        return web.Response(body=body, content_type=content_type, headers=headers)

    async def _poster(self, since: date, until: date, lang: str, fmt: str) -> tuple[bytes, str]:
        from bot import poster  # CairoSVG loads only when a poster is asked for

        data = await poster.collect(
            self._config, self._digests, start=since, end=until, language=lang
        )
        svg = poster.render_svg(data, self._t.prompts)
        target: poster.Format = "png" if fmt == "png" else "pdf" if fmt == "pdf" else "svg"
        return await poster.export(svg, target), poster.media_type(target)

    def _filter(self, period: Period, lang: str, path: str) -> str:
        t = self._text(lang)
        options = "".join(
            f'<option value="{code}"{" selected" if code == lang else ""}>{name}</option>'
            for code, name in (("nl", "Nederlands"), ("en", "English"))
        )
        return (
            f'<section><form class="filter" method="get" action="{path}">'
            f'<label>{escape(t("dashboard.from"))}<input type="date" name="from" '
            f'value="{period.since.isoformat()}"></label>'
            f'<label>{escape(t("dashboard.to"))}<input type="date" name="to" '
            f'value="{period.until.isoformat()}"></label>'
            f"<label>{escape(t('dashboard.language'))}"
            f'<select name="lang">{options}</select></label>'
            f"<button>{escape(t('dashboard.show'))}</button></form></section>"
        )

    def _render_dashboard(self, o: Overview, period: Period, lang: str) -> str:
        t = self._text(lang)
        parts = [self._filter(period, lang, "/dashboard")]
        summary = t(
            "dashboard.summary",
            count=len(o.entries),
            departments=sum(1 for counts in o.per_department().values() if sum(counts.values())),
        )
        if o.withheld:
            summary += " " + t("dashboard.withheld", count=o.withheld)
        query = urlencode(
            {"from": period.since.isoformat(), "to": period.until.isoformat(), "lang": lang}
        )
        posters = " · ".join(
            f'<a href="/dashboard/poster.{fmt}?{query}">{fmt.upper()}</a>'
            for fmt in ("svg", "png", "pdf")
        )
        parts.append(
            f"<section><p>{escape(summary)}</p>"
            f"<p>{escape(t('dashboard.poster'))}: {posters}</p></section>"
        )
        # Per department: counts per kind.
        kinds = list(Kind)
        titles = {k: self._t.prompts.kind_title(lang, k.value) for k in kinds}
        head = "".join(f'<th class="n">{escape(titles[k])}</th>' for k in kinds)
        rows = []
        per_dept = o.per_department()
        for dept_id, name in o.departments:
            counts: Counter[Kind] = per_dept.get(dept_id, Counter())
            cells = "".join(f'<td class="n">{counts.get(k, 0)}</td>' for k in kinds)
            total = sum(counts.values()) if counts else 0
            rows.append(f'<tr><td>{escape(name)}</td>{cells}<td class="n">{total}</td></tr>')
        parts.append(
            f'<section id="departments"><h2>{escape(t("dashboard.per_department"))}</h2>'
            f"<table><tr><th>{escape(t('dashboard.department'))}</th>{head}"
            f'<th class="n">{escape(t("dashboard.total"))}</th></tr>{"".join(rows)}</table>'
            f'<p class="muted">{escape(t("dashboard.no_ranking"))}</p></section>'
        )
        # Per theme and per goal, with the contributions behind them.
        by_theme = o.per_theme()
        themed = [
            self._group(title, by_theme[theme_id], lang)
            for theme_id, title in o.themes
            if theme_id in by_theme
        ]
        parts.append(
            f'<section id="themes"><h2>{escape(t("dashboard.per_theme"))}</h2>'
            + ("".join(themed) or f"<p>{escape(t('dashboard.empty'))}</p>")
            + "</section>"
        )
        by_goal = o.per_goal()
        goals = [self._group(title, by_goal.get(goal_id, []), lang) for goal_id, title in o.goals]
        parts.append(
            f'<section id="goals"><h2>{escape(t("dashboard.per_goal"))}</h2>'
            f"{''.join(goals)}</section>"
        )
        # Senge's five disciplines across the prompt kinds.
        balance = o.discipline_balance()
        most = max((n for _, n in balance), default=0) or 1
        bars = "".join(
            f'<tr><td>{escape(d)}</td><td class="n">{n}</td><td style="width:60%">'
            f'<div class="bar" style="width:{100 * n // most}%"></div></td></tr>'
            for d, n in balance
        )
        parts.append(
            f'<section id="disciplines"><h2>{escape(t("dashboard.disciplines"))}</h2>'
            f'<p class="muted">{escape(t("dashboard.disciplines_intro"))}</p>'
            f"<table>{bars}</table></section>"
        )
        # Journeys: where lessons travelled and what they became there.
        travelled = [e for e in o.entries if any(s.posted for s in e.journey)]
        journeys = "".join(self._journey(e, lang) for e in travelled)
        parts.append(
            f'<section id="journeys"><h2>{escape(t("dashboard.journeys"))}</h2>'
            + (journeys or f"<p>{escape(t('dashboard.no_journeys'))}</p>")
            + "</section>"
        )
        return "".join(parts)

    def _who(self, e: Entry, lang: str) -> str:
        t = self._text(lang)
        who = e.author or (t("common.anonymous") if e.anonymous else "")
        bits = [e.department, e.kind_title, e.created_at.date().isoformat()]
        if who:
            bits.append(who)
        return " · ".join(bits)

    def _group(self, title: str, entries: list[Entry], lang: str) -> str:
        items = "".join(_quote(e.text, self._who(e, lang)) for e in entries[:5])
        more = len(entries) - 5
        tail = (
            f'<p class="muted">{escape(self._text(lang)("digest.more", count=more))}</p>'
            if more > 0
            else ""
        )
        return f"<h3>{escape(title)} ({len(entries)})</h3>{items}{tail}"

    def _journey(self, e: Entry, lang: str) -> str:
        t = self._text(lang)
        stops = []
        for s in e.journey:
            if not s.posted:
                continue
            verdicts = ", ".join(t(f"dashboard.verdict.{v}") for v in s.verdicts)
            line = escape(s.target) + (f" — {escape(verdicts)}" if verdicts else "")
            for said in s.translations:
                line += f"<blockquote>{escape(said)}</blockquote>"
            stops.append(f"<li>{line}</li>")
        return (
            f'<blockquote>{escape(e.text)}<div class="muted">{escape(self._who(e, lang))}</div>'
            f'</blockquote><ul class="journey">{"".join(stops)}</ul>'
        )

    # --- a person's own overview ---------------------------------------------------------------

    async def own(self, request: web.Request) -> web.StreamResponse:
        lang = self._lang(request)
        access = request.query.get("access")
        if access is not None:
            scope = (await self._signer()).verify(access, self._clock.now())
            if scope is None or not scope.startswith("person:"):
                return self._refused(lang, "dashboard.link_invalid")
            return self._redirect_with_cookie(request, OWN_COOKIE, access, "/mijn")
        scope = await self._scope(request, OWN_COOKIE)
        if scope is None or not scope.startswith("person:"):
            return self._refused(lang, "dashboard.own_closed")
        _, platform, person_id = scope.split(":", 2)
        period = self._period(request, 365)
        if period is None:
            return self._page(
                lang, "400", f"<p>{escape(self._text(lang)('dashboard.bad_period'))}</p>", 400
            )
        o = await self._overview(period, lang, own=(platform, person_id))
        t = self._text(lang)
        parts = [self._filter(period, lang, "/mijn")]
        parts.append(
            f"<section><p>{escape(t('dashboard.own_intro', count=len(o.entries)))}</p></section>"
        )
        items = []
        for e in o.entries:
            travelled = [s for s in e.journey if s.posted]
            where = (
                t("export.travelled", targets=", ".join(s.target for s in travelled))
                if travelled
                else ""
            )
            themes = ", ".join(e.theme_titles)
            meta = " · ".join(
                x
                for x in (e.department, e.kind_title, e.created_at.date().isoformat(), themes)
                if x
            )
            items.append(_quote(e.text, meta, where))
        parts.append(
            f'<section id="own"><h2>{escape(t("dashboard.own_list"))}</h2>'
            + ("".join(items) or f"<p>{escape(t('dashboard.empty'))}</p>")
            + "</section>"
        )
        return self._page(lang, t("dashboard.own_title"), "".join(parts))


def _quote(text: str, meta: str, extra: str = "") -> str:
    """A person's words with their small print; everything escaped."""
    tail = f'<div class="muted">{escape(extra)}</div>' if extra else ""
    return f'<blockquote>{escape(text)}<div class="muted">{escape(meta)}</div>{tail}</blockquote>'
