"""`boeket export`: a period per goal, theme and department, in md, csv and json — and no names
that may not be there."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from bot.cycle import Texts
from bot.domain import Kind, NewContribution, OccurrenceStatus, Person, PersonSettings, Source
from bot.export import export
from bot.overview import build_overview
from bot.settings import EXAMPLE_CONFIG
from prompts.library import PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.repositories import (
    ContributionRepository,
    CrosspostRepository,
    PersonSettingsRepository,
)

ORG = "ziekenhuis-de-linde"
AT = datetime(2027, 3, 3, 10, 0, tzinfo=UTC)


async def seed(db: Database) -> None:
    repo = ContributionRepository(db)
    n = 0

    async def add(dept: str, text: str, **kw: object) -> int:
        nonlocal n
        n += 1
        author = kw.pop("author", None)
        stored, _ = await repo.add(
            NewContribution(
                organisation_id=ORG,
                department_id=dept,
                kind=kw.pop("kind", Kind.LES),  # type: ignore[arg-type]
                source=kw.pop("source", Source.REPLY),  # type: ignore[arg-type]
                round_date=date(2027, 3, 2),
                text=text,
                anonymous=author is None,
                author=author,  # type: ignore[arg-type]
                platform="local",
                event_key=f"export:{n}",
                created_at=kw.pop("at", AT),  # type: ignore[arg-type]
                **kw,  # type: ignore[arg-type]
            )
        )
        return stored.id

    lesson = await add(
        "ok",
        "Een vaste overdracht aan het bed met vijf punten.",
        author=Person("fatima", "Fatima el Amrani"),
        themes=("werkdruk", "overdracht"),
        goal_id="gezond-werken",
        fields={
            "what": "Een vaste overdracht aan het bed met vijf punten.",
            "effect": "Minder nabellen.",
        },
        source=Source.SHARE,
        kind=Kind.SUCCES,
    )
    await PersonSettingsRepository(db).put(
        ORG, "local", "fatima", PersonSettings(named_elsewhere=True), AT
    )
    await add(
        "ict",
        'Jeroen zei: =HYPERLINK("http://x") werkt niet.',
        author=Person("jeroen", "Jeroen de Vries"),
    )
    await add("verpleging", "Anoniem: de avonddienst is te zwaar.", theme="werkdruk")
    await add(
        "hr",
        "Doen we de goede dingen? [klik](http://evil.example)",
        kind=Kind.KOERS,
        goal_id="gezond-werken",
    )
    await add(
        "seh",
        "Geheim: alleen voor ons team.",
        shareable=False,
        author=Person("anouk", "Anouk de Boer"),
    )
    await add("ok", "Van vorige maand.", at=datetime(2027, 2, 1, 10, 0, tzinfo=UTC))
    crossposts = CrosspostRepository(db)
    await crossposts.plan(ORG, lesson, "ok", "department:verpleging", 0.8, AT, AT)
    [cp] = await crossposts.all(ORG)
    await crossposts.claim(cp.id, "w", AT, timedelta(minutes=5))
    await crossposts.finish(
        cp.id,
        "w",
        OccurrenceStatus.SENT,
        AT,
        platform="local",
        channel="verpleegafdeling",
        message_id="m1",
        thread_id="m1",
    )
    await add(
        "verpleging",
        "Wij gaan de vijf punten proberen bij de avondoverdracht.",
        source=Source.TRANSLATION,
        fields={"translates": str(lesson)},
        author=Person("sanne", "Sanne Bakker"),
    )


async def exported(db: Database, fmt: str, lang: str = "nl") -> str:
    """What `boeket export` writes, from the same functions, on either database."""
    config = load_config(EXAMPLE_CONFIG)
    prompts = PromptLibrary.load()
    overview = await build_overview(
        config=config,
        texts=Texts(config, prompts),
        digests=DigestRepository(db),
        settings=PersonSettingsRepository(db),
        since=date(2027, 3, 1),
        until=date(2027, 3, 7),
        language=lang,
    )

    def t(key: str, **params: object) -> str:
        return prompts.text(lang, key, symbolism=config.symbolism, **params)

    return export(overview, fmt, t)


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    return db


async def test_markdown_per_goal_theme_and_department(seeded: Database) -> None:
    out = await exported(seeded, "md")
    assert out.startswith("# Wat er groeide bij Ziekenhuis De Linde")
    goal = out.split("### Gezond en met plezier werken")[1].split("###")[0]
    assert "vaste overdracht aan het bed" in goal and "Doen we de goede dingen" in goal
    theme = out.split("### Werkdruk")[1].split("###")[0]
    assert "vaste overdracht" in theme and "avonddienst is te zwaar" in theme
    assert "### Overdracht (1)" in out
    assert "Gereisd naar: Verpleegafdeling Interne Geneeskunde" in out
    assert "Vertaald door Verpleegafdeling Interne Geneeskunde: Wij gaan de vijf punten" in out
    # Names: Fatima agreed to be named elsewhere; Jeroen did not; anonymous stays anonymous.
    assert "Fatima el Amrani" in out
    assert "Jeroen" not in out.replace("Jeroen zei", "")
    assert "Sanne" not in out
    # What its author did not want shared, and what lies outside the period, is not there.
    assert "Geheim" not in out and "Anouk" not in out and "Van vorige maand" not in out
    assert "1 bijdragen zijn niet opgenomen" in out
    # A person's Markdown is text, not a link.
    assert "[klik](http://evil.example)" not in out and r"\[klik\]" in out


async def test_csv_is_one_row_per_contribution_and_safe_in_a_spreadsheet(
    seeded: Database,
) -> None:
    out = await exported(seeded, "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5  # six in the period, one withheld
    by_text = {r["text"]: r for r in rows}
    lesson = by_text["Een vaste overdracht aan het bed met vijf punten."]
    assert lesson["themes"] == "werkdruk;overdracht" and lesson["goal"] == "gezond-werken"
    assert lesson["author"] == "Fatima el Amrani"
    assert lesson["travelled_to"] == "Verpleegafdeling Interne Geneeskunde"
    anonymous = by_text["Anoniem: de avonddienst is te zwaar."]
    assert anonymous["author"] in {"anoniem", "anonymous"}
    assert not any(r["text"].startswith("=") for r in rows)
    assert all(r["author"] != "Jeroen de Vries" for r in rows)


async def test_json_for_other_tools(seeded: Database) -> None:
    out = await exported(seeded, "json", "en")
    data = json.loads(out)
    assert data["from"] == "2027-03-01" and data["to"] == "2027-03-07"
    assert data["withheld"] == 1
    authors = {c["author"] for c in data["contributions"]}
    assert authors == {"Fatima el Amrani", None}
    assert data["per_department"]["ok"] == {"succes": 1}
    assert sorted(data["per_theme"]) == ["overdracht", "werkdruk"]
    assert len(data["per_goal"]["gezond-werken"]) == 2
    [lesson] = [c for c in data["contributions"] if c["kind"] == "succes"]
    assert lesson["travelled_to"][0]["translations"] == [
        "Wij gaan de vijf punten proberen bij de avondoverdracht."
    ]


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["export", "--database", url, "--config", str(EXAMPLE_CONFIG), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'boeket.sqlite3'}"

    async def prepare() -> None:
        db = Database.connect(url)
        try:
            await db.upgrade()
            await seed(db)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    period = ("--from", "2027-03-01", "--to", "2027-03-07")
    code, out, _ = cli(capsys, url, *period, "--format", "json")
    assert code == 0 and len(json.loads(out)["contributions"]) == 5
    target = tmp_path / "export.md"
    code, _, err = cli(capsys, url, *period, "--out", str(target))
    assert code == 0 and target.read_text(encoding="utf-8").startswith("# ")
    assert str(target) in err
    code, _, err = cli(capsys, url, *period, "--out", str(tmp_path / "missing" / "x.md"))
    assert code == 2 and "Traceback" not in err and "missing" in err
    code, _, err = cli(capsys, url, "--from", "2027-03-08", "--to", "2027-03-01")
    assert code == 2 and "2027-03-08" in err
    with pytest.raises(SystemExit) as exit_:
        cli(capsys, url, "--from", "maart")
    assert exit_.value.code == 2 and "YYYY-MM-DD" in capsys.readouterr().err
