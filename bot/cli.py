"""The `boeket` command: run, demo, db upgrade, config check.

A user's mistake (a bad config file, a bad setting, a port in use) prints a message in their
language and exits 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from adapters.slack.settings import SlackSettingsError
from adapters.teams.settings import TeamsSettingsError
from bot.config import ConfigError, OrgConfig, load_config
from bot.settings import EXAMPLE_CONFIG, Settings, SettingsError
from prompts.library import PromptError, PromptLibrary
from storage.db import DatabaseUrlError

EXIT_USAGE = 2
LISTEN_BACKLOG = 1024  # connections waiting to be accepted (aiohttp: 128)


class UserError(Exception):
    """Something the person running the command can fix; the message says how."""


def configure_logging(level: str, fmt: str = "text") -> None:
    """Boeket's logging: readable lines or JSON, each with its request id; database drivers never
    below WARNING."""
    from bot.observability import JsonFormatter, RequestIdFilter

    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s",
            datefmt="%H:%M:%S",
        )
    )
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler])
    # aiohttp's access log repeats every WebSocket ping; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Database drivers log statements with their parameters at DEBUG: people's words and ids.
    for name in ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.WARNING)


def format_config_error(exc: ConfigError, prompts: PromptLibrary, lang: str) -> str:
    lines = [prompts.text(lang, "config.header", file=str(exc.path), count=len(exc.problems))]
    keys = prompts.ui_keys(lang)
    for problem in exc.problems:
        key = f"config.errors.{problem.key}"
        params = {
            "value": "",
            "expected": "",
            "known": "",
            "reason": "",
            "other": "",
            **problem.params,
        }
        if key in keys:
            message = prompts.text(lang, key, **params)
        else:
            message = prompts.text(
                lang, "config.errors.other", message=params.get("message", problem.key)
            )
        line = prompts.text(lang, "config.problem", location=problem.location, message=message)
        lines.append("  " + line)
    return "\n".join(lines)


def _load(path: Path, prompts: PromptLibrary, lang: str) -> OrgConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UserError(format_config_error(exc, prompts, lang)) from None


# --- commands -----------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    config = _load(Path(args.file), prompts, settings.language)
    print(
        prompts.text(
            settings.language,
            "config.valid",
            file=args.file,
            departments=len(config.departments),
            goals=len(config.goals),
            themes=len(config.themes),
        )
    )
    return 0


def cmd_config_example(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    sys.stdout.write(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from storage.db import Database

    async def run() -> str:
        db = Database.connect(settings.database_url, schema=settings.database_schema or None)
        try:
            await db.upgrade()
            return await db.current_revision() or "-"
        finally:
            await db.dispose()

    try:
        revision = asyncio.run(run())
    except (OSError, ConnectionError) as exc:
        raise UserError(
            prompts.text(settings.language, "cli.database_error", reason=str(exc))
        ) from None
    from sqlalchemy.engine import make_url

    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    print(prompts.text(settings.language, "cli.upgraded", revision=revision, url=shown))
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from bot.app import build, freeze_startup_objects, web_app
    from bot.clock import ScaledClock, SystemClock

    config = _load(settings.config_path, prompts, settings.language)
    clock = ScaledClock(settings.speed) if settings.speed != 1 else SystemClock()
    boeket = build(settings, config, clock=clock, prompts=prompts)
    app = web_app(boeket)
    lang = config.language
    announcement = prompts.text(
        lang,
        "cli.serving",
        host=settings.host,
        port=settings.port,
        org=config.organisation.name,
        departments=len(config.departments),
        speed=f"{settings.speed:g}",
    )

    async def announce(_app: web.Application) -> None:
        # After Boeket's own start-up (database, migrations, adapters) has succeeded.
        freeze_startup_objects()
        print(announcement, flush=True)

    app.on_startup.append(announce)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            handle_signals=True,
            access_log=None,
            # Slack and Teams send bursts (a wave of replies, a busy channel): a full listen
            # queue drops connections, which the sender retries only after a second.
            backlog=LISTEN_BACKLOG,
        )
    except OSError as exc:
        if exc.errno in {98, 48}:  # EADDRINUSE on Linux and macOS
            raise UserError(prompts.text(lang, "cli.port_in_use", port=settings.port)) from None
        # Binding the port is handled above; the other network step at start is the database.
        raise UserError(prompts.text(lang, "cli.database_error", reason=str(exc))) from None
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from bot.demo import demo_database, run_demo

    config = _load(settings.config_path, prompts, settings.language)
    lang = config.language
    start = args.start or datetime.now(ZoneInfo(config.timezone)).date()
    quiet = args.quiet

    if quiet:
        logging.getLogger().setLevel(logging.WARNING)

    def progress(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="boeket-demo-") as folder:
        url = args.database or demo_database(Path(folder))
        result = asyncio.run(
            run_demo(
                config,
                database_url=url,
                start=start,
                days=args.days,
                prompts=prompts,
                progress=progress,
                embedder=args.embedder,
            )
        )
    print(
        prompts.text(
            lang,
            "cli.demo_title",
            org=config.organisation.name,
            days=args.days,
            start=result.start.isoformat(),
            end=result.end.isoformat(),
        )
    )
    for channel, (name, transcript) in result.transcripts.items():
        print()
        print(prompts.text(lang, "cli.demo_channel", channel=channel, name=name))
        print(transcript or "-")
    print()
    print(
        prompts.text(
            lang,
            "cli.demo_summary",
            sent=result.sent,
            contributions=result.contributions,
            seconds=f"{result.seconds:.1f}",
        )
    )
    return 0


def cmd_slack_manifest(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from adapters.slack.manifest import (
        ManifestError,
        build_manifest,
        manifest_json,
        manifest_yaml,
    )

    try:
        manifest = build_manifest(
            args.url,
            name=args.name,
            socket_mode=args.socket_mode,
            multi_workspace=args.multi_workspace,
        )
    except ManifestError as exc:
        key = f"cli.slack_{exc.field}_invalid"
        raise UserError(prompts.text(settings.language, key, value=exc.value)) from None
    sys.stdout.write(manifest_json(manifest) if args.json else manifest_yaml(manifest))
    return 0


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """The pairs of a TSV with the header sentence_a<TAB>sentence_b[<TAB>score]."""
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header is None or header[:2] != ["sentence_a", "sentence_b"]:
            raise ValueError("header")
        pairs = []
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise ValueError(f"line {number}")
            pairs.append((row[0], row[1]))
    return pairs


def cmd_match_score(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from bot.embedders import best_available
    from bot.matcher import score_pairs

    lang = settings.language
    try:
        pairs = read_pairs(args.pairs)
    except FileNotFoundError:
        raise UserError(prompts.text(lang, "cli.pairs_missing", path=str(args.pairs))) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            prompts.text(lang, "cli.pairs_unreadable", path=str(args.pairs), reason=str(exc))
        ) from None
    except ValueError as exc:
        raise UserError(
            prompts.text(lang, "cli.pairs_malformed", path=str(args.pairs), where=str(exc))
        ) from None
    embedder = best_available(env=dict(settings.embedder_env))
    scores = asyncio.run(score_pairs(embedder, pairs, args.mode))
    sys.stdout.write("".join(f"{s:.4f}\n" for s in scores))
    return 0


def cmd_teams_package(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from adapters.teams.manifest import PackageError, build_manifest, package

    lang = settings.language
    app_id = args.app_id or (settings.teams.client_id if settings.teams else "")
    if not app_id:
        raise UserError(prompts.text(lang, "cli.teams_app_id_missing"))
    try:
        data = package(build_manifest(app_id, domain=args.domain))
    except PackageError as exc:
        raise UserError(
            prompts.text(lang, f"cli.teams_{exc.field}_invalid", value=exc.value)
        ) from None
    out = Path(args.out)
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise UserError(
            prompts.text(lang, "cli.teams_out_error", path=str(out), reason=exc.strerror or exc)
        ) from None
    print(prompts.text(lang, "cli.teams_packaged", path=str(out), app_id=app_id.lower()))
    return 0


# --- parser -------------------------------------------------------------------------------------


def _write_out(text: str, out: Path | None, done: str, prompts: PromptLibrary, lang: str) -> int:
    """Standard output, or the file asked for with `done` said on standard error."""
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(
            prompts.text(lang, "export.unwritable", path=out, reason=exc.strerror or exc)
        ) from None
    print(done, file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from bot.cycle import Texts
    from bot.export import export
    from bot.overview import build_overview
    from storage.db import Database
    from storage.digests import DigestRepository
    from storage.repositories import PersonSettingsRepository

    lang = settings.language
    config = _load(settings.config_path, prompts, lang)
    today = datetime.now(ZoneInfo(config.timezone)).date()
    until = args.to or today
    since = args.since or until.replace(day=1)
    if since > until:
        raise UserError(prompts.text(lang, "export.bad_period", start=since, end=until))
    texts = Texts(config, prompts)
    out_lang = args.lang or config.language

    def t(key: str, **params: object) -> str:
        return prompts.text(out_lang, key, symbolism=config.symbolism, **params)

    async def run() -> tuple[str, int]:
        db = Database.connect(settings.database_url, schema=settings.database_schema or None)
        try:
            await db.upgrade()
            overview = await build_overview(
                config=config,
                texts=texts,
                digests=DigestRepository(db),
                settings=PersonSettingsRepository(db),
                since=since,
                until=until,
                language=out_lang,
            )
        finally:
            await db.dispose()
        return export(overview, args.format, t), len(overview.entries)

    try:
        text, count = asyncio.run(run())
    except (OSError, ConnectionError) as exc:
        raise UserError(prompts.text(lang, "cli.database_error", reason=str(exc))) from None
    return _write_out(
        text,
        args.out,
        prompts.text(lang, "export.written", path=args.out, count=count),
        prompts,
        lang,
    )


def cmd_poster(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from bot import poster
    from storage.db import Database, normalise_url
    from storage.digests import DigestRepository

    lang = settings.language
    config = _load(settings.config_path, prompts, lang)
    end = args.to or datetime.now(ZoneInfo(config.timezone)).date()
    start = args.since or end - timedelta(days=364)
    if start > end:
        raise UserError(prompts.text(lang, "poster.cli.period_error", start=start, end=end))
    url = make_url(normalise_url(settings.database_url))
    # Reading must not create an empty SQLite database where a wrong path points.
    path = url.database if url.get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not Path(path).exists():
        raise UserError(prompts.text(lang, "poster.cli.database_missing", path=path))

    async def run() -> tuple[poster.PosterData, bytes]:
        db = Database.connect(settings.database_url, schema=settings.database_schema or None)
        try:
            data = await poster.collect(
                config, DigestRepository(db), start=start, end=end, language=args.lang
            )
        finally:
            await db.dispose()
        svg = poster.render_svg(data, prompts)
        return data, await poster.export(svg, args.format)

    try:
        data, body = asyncio.run(run())
    except (OSError, ConnectionError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise UserError(prompts.text(lang, "poster.cli.database_error", reason=reason)) from None
    try:
        Path(args.out).write_bytes(body)
    except OSError as exc:
        raise UserError(
            prompts.text(
                lang, "poster.cli.out_error", path=args.out, reason=exc.strerror or str(exc)
            )
        ) from None
    out_lang = data.language

    def count(key: str, n: int) -> str:
        return prompts.text(out_lang, f"poster.{key}.{'one' if n == 1 else 'many'}", count=n)

    print(
        prompts.text(
            lang,
            "poster.cli.written",
            path=args.out,
            format=args.format.upper(),
            departments=count("departments", len(data.departments)),
            contributions=count("contributions", data.total),
            start=start.isoformat(),
            end=end.isoformat(),
        ),
        file=sys.stderr,
    )
    return 0


def cmd_privacy(args: argparse.Namespace, settings: Settings, prompts: PromptLibrary) -> int:
    """`boeket privacy export|forget --user ID`: a person's rights, run by an admin."""
    import getpass
    import json

    from bot.app import build
    from bot.clock import SystemClock
    from bot.embedders import LexicalEmbedder

    lang = settings.language
    config = _load(settings.config_path, prompts, lang)
    actor = args.actor or f"cli:{getpass.getuser()}"

    async def run() -> tuple[str, str]:
        # The whole Boeket, so that forgetting can edit what its adapters posted.
        boeket = build(settings, config, clock=SystemClock(), embedder=LexicalEmbedder())
        await boeket.start(timer=False)
        try:
            if args.privacy_command == "export":
                data = await boeket.personal.export(args.user, args.platform, actor)
                text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
                return text, str(len(data["contributions"]))
            done = await boeket.personal.forget(args.user, args.platform, actor)
            return "", prompts.text(
                lang,
                "privacy.cli_forgotten",
                count=done.contributions,
                posts=done.posts_edited,
                failed=done.posts_not_edited,
            )
        finally:
            await boeket.stop()

    try:
        text, note = asyncio.run(run())
    except (OSError, ConnectionError) as exc:
        raise UserError(prompts.text(lang, "cli.database_error", reason=str(exc))) from None
    if args.privacy_command == "forget":
        print(note)
        return 0
    return _write_out(
        text,
        args.out,
        prompts.text(lang, "privacy.cli_written", path=args.out, count=note),
        prompts,
        lang,
    )


def _speed(value: str) -> float:
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("--speed: expected a number, e.g. 60") from None
    if speed <= 0:
        raise argparse.ArgumentTypeError("--speed: expected a number greater than 0")
    return speed


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError("--port: expected a number from 1 to 65535")
    return int(value)


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as YYYY-MM-DD") from None


def _positive_days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 366:
        raise argparse.ArgumentTypeError("--days: expected 1 to 366")
    return int(value)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="boeket",
        description="Boeket: organisational learning in the meetings teams already hold.",
        epilog="Environment: BOEKET_DATABASE_URL, BOEKET_CONFIG, BOEKET_HOST, BOEKET_PORT, "
        "BOEKET_SPEED, BOEKET_LANG, BOEKET_LOG_LEVEL. See the README.",
    )
    top.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="serve Boeket: the web chat, the platforms, the cycle timer")
    run.add_argument(
        "--config", type=Path, help="organisation config (default: the example hospital)"
    )
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=_port, help="port to listen on (default 8080)")
    run.add_argument(
        "--speed",
        type=_speed,
        help="run the clock this many times faster, to try the cycle out (e.g. 3600)",
    )
    run.add_argument("--database", help="database URL (default BOEKET_DATABASE_URL or SQLite)")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo", help="simulate two weeks on a virtual clock and print every channel"
    )
    demo.add_argument(
        "--config", type=Path, help="organisation config (default: the example hospital)"
    )
    demo.add_argument(
        "--days", type=_positive_days, default=14, help="days to simulate (default 14)"
    )
    demo.add_argument("--start", type=_date, help="first day, YYYY-MM-DD (default today)")
    demo.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    demo.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    demo.add_argument(
        "--embedder",
        choices=("lexical", "auto"),
        default="lexical",
        help="how lessons are matched: lexical (default; the demo runs in seconds) or auto "
        "(the best installed model, as `boeket run` uses)",
    )
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database tasks")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="TASK")
    upgrade = db_sub.add_parser("upgrade", help="apply the migrations (Alembic) up to the newest")
    upgrade.add_argument("--database", help="database URL (default BOEKET_DATABASE_URL or SQLite)")
    upgrade.set_defaults(func=cmd_db_upgrade)

    config = sub.add_parser("config", help="organisation config tasks")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="TASK")
    check = config_sub.add_parser("check", help="validate an organisation config file")
    check.add_argument("file", help="the YAML file to check")
    check.set_defaults(func=cmd_config_check)
    example = config_sub.add_parser("example", help="print the example config, to start your own")
    example.set_defaults(func=cmd_config_example)

    slack = sub.add_parser("slack", help="Slack app tasks")
    slack_sub = slack.add_subparsers(dest="slack_command", required=True, metavar="TASK")
    manifest = slack_sub.add_parser(
        "manifest",
        help="print the Slack app manifest, to create the app at api.slack.com/apps",
        description="Print Boeket's Slack app manifest (YAML, or JSON with --json). Paste it "
        "at api.slack.com/apps: Create New App, From an app manifest.",
    )
    manifest.add_argument(
        "--url",
        required=True,
        help="the https address where Slack reaches Boeket, e.g. https://boeket.example.nl; "
        "Boeket adds /slack/events itself",
    )
    manifest.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    manifest.add_argument(
        "--socket-mode",
        action="store_true",
        help="receive events over Socket Mode (SLACK_APP_TOKEN) instead of request URLs",
    )
    manifest.add_argument(
        "--multi-workspace",
        action="store_true",
        help="add the OAuth redirect URL, to install the app in several workspaces",
    )
    manifest.add_argument(
        "--name", default="Boeket", help="app and bot name in Slack (default Boeket)"
    )
    manifest.set_defaults(func=cmd_slack_manifest)

    match = sub.add_parser("match", help="the matcher that carries lessons between departments")
    match_sub = match.add_subparsers(dest="match_command", required=True, metavar="TASK")
    score = match_sub.add_parser(
        "score",
        help="print one similarity per sentence pair of a TSV file, in input order",
        description="Read a TSV with the header sentence_a<TAB>sentence_b[<TAB>score] and print "
        "one number per pair. --mode relevance scores how much the lesson in sentence_a could "
        "help in the situation in sentence_b.",
    )
    score.add_argument("--pairs", required=True, type=Path, help="the TSV file")
    score.add_argument("--mode", choices=("similarity", "relevance"), default="similarity")
    score.set_defaults(func=cmd_match_score)

    teams = sub.add_parser("teams", help="Microsoft Teams app tasks")
    teams_sub = teams.add_subparsers(dest="teams_command", required=True, metavar="TASK")
    teams_package = teams_sub.add_parser(
        "package",
        help="build the Teams app package (manifest.json and icons in a zip) to upload in Teams",
        description="Build Boeket's Teams app package. Upload it in Teams: Apps, Manage your "
        "apps, Upload an app (or in the Teams admin center, for the whole organisation).",
    )
    teams_package.add_argument(
        "--out",
        default="boeket-teams.zip",
        help="where to write the zip (default boeket-teams.zip)",
    )
    teams_package.add_argument(
        "--app-id",
        help="the bot's application (client) id, a GUID (default TEAMS_CLIENT_ID)",
    )
    teams_package.add_argument(
        "--domain",
        default="boeket.example.nl",
        help="the host name where Boeket runs, e.g. boeket.example.nl (the developer's website)",
    )
    teams_package.set_defaults(func=cmd_teams_package)

    exp = sub.add_parser(
        "export",
        help="export a period's contributions per goal, theme and department (md, csv, json)",
        description="Export what grew in a period, for a strategy session: per organisation "
        "goal, per theme and per department. Anonymous contributions carry no name; "
        "contributions their authors marked as not to be shared are left out.",
    )
    exp.add_argument(
        "--from",
        dest="since",
        metavar="DATE",
        type=_date,
        help="first day, YYYY-MM-DD (default: the first of --to's month)",
    )
    exp.add_argument(
        "--to", metavar="DATE", type=_date, help="last day, YYYY-MM-DD (default: today)"
    )
    exp.add_argument("--format", choices=("md", "csv", "json"), default="md")
    exp.add_argument("--out", type=Path, help="write to this file instead of standard output")
    exp.add_argument("--lang", choices=("nl", "en"), help="language of the export")
    exp.add_argument(
        "--config", type=Path, help="organisation config (default: the example hospital)"
    )
    exp.add_argument("--database", help="database URL (default BOEKET_DATABASE_URL or SQLite)")
    exp.set_defaults(func=cmd_export)

    privacy = sub.add_parser(
        "privacy",
        help="a person's rights (AVG/GDPR): export or forget what Boeket holds of them",
        description="Export or forget everything on one person's name. Anonymous contributions "
        "are linked to nobody and cannot be found by person. Every use is written to the "
        "audit log.",
    )
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True, metavar="TASK")
    for name, text in (
        ("export", "print (or --out) everything on the person's name as JSON"),
        ("forget", "erase everything on the person's name, and withdraw their posted lessons"),
    ):
        task = privacy_sub.add_parser(name, help=text, description=text)
        task.add_argument("--user", required=True, help="the person's id on the platform")
        task.add_argument(
            "--platform",
            choices=("local", "slack", "teams"),
            help="only this platform (default: every platform)",
        )
        task.add_argument("--actor", help="who asks, for the audit log (default: cli:USER)")
        task.add_argument(
            "--config", type=Path, help="organisation config (default: the example hospital)"
        )
        task.add_argument("--database", help="database URL (default BOEKET_DATABASE_URL)")
        if name == "export":
            task.add_argument("--out", type=Path, help="write to this file")
        task.set_defaults(func=cmd_privacy)

    post = sub.add_parser(
        "poster",
        help="draw the bouquet poster (A3) as SVG, PNG or PDF, for a workshop",
        description="Draw what grew in a period in the organisation's own symbolism (flowers, "
        "gems or building stones): every department with its contributions per kind, the "
        "connections between departments, the goals. Counts and department names only, never "
        "people. A3, for printing.",
    )
    post.add_argument("--format", choices=("svg", "png", "pdf"), default="pdf")
    post.add_argument("--out", required=True, type=Path, help="the file to write")
    post.add_argument(
        "--from",
        dest="since",
        metavar="DATE",
        type=_date,
        help="first day, YYYY-MM-DD (default: a year before --to)",
    )
    post.add_argument(
        "--to", metavar="DATE", type=_date, help="last day, YYYY-MM-DD (default: today)"
    )
    post.add_argument("--lang", choices=("nl", "en"), help="language of the poster")
    post.add_argument(
        "--config", type=Path, help="organisation config (default: the example hospital)"
    )
    post.add_argument("--database", help="database URL (default BOEKET_DATABASE_URL or SQLite)")
    post.set_defaults(func=cmd_poster)
    return top


def _settings(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    for flag, name in (
        ("config", "BOEKET_CONFIG"),
        ("host", "BOEKET_HOST"),
        ("port", "BOEKET_PORT"),
        ("speed", "BOEKET_SPEED"),
        ("database", "BOEKET_DATABASE_URL"),
        ("log_level", "BOEKET_LOG_LEVEL"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            env[name] = str(value)
    return Settings.from_env(env)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = _settings(args)
    except (SettingsError, SlackSettingsError, TeamsSettingsError) as exc:
        print(f"boeket: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        prompts = PromptLibrary.load()
    except PromptError as exc:
        print(f"boeket: the prompt library is damaged: {exc}", file=sys.stderr)
        return 1
    try:
        return int(args.func(args, settings, prompts))
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except DatabaseUrlError as exc:
        print(
            prompts.text(settings.language, "cli.database_url_error", reason=str(exc)),
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
