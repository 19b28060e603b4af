"""The bouquet poster: what it shows (every department, kind counts, connections, goals), what it
never shows (people, their words), that nothing overlaps, and the PNG and PDF a workshop prints."""

from __future__ import annotations

import asyncio
import re
import struct
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cairocffi
import pytest

from bot.cli import main
from bot.config import OrgConfig
from bot.domain import Kind, NewContribution, Person, Source
from bot.poster import (
    CAPS,
    KIND_COLOURS,
    KINDS,
    PAGE_MM,
    PosterConnection,
    PosterData,
    PosterDepartment,
    PosterGoal,
    collect,
    fit_text,
    layout,
    png_size,
    render_svg,
    shown_counts,
    text_width,
    to_pdf,
    to_png,
)
from bot.settings import EXAMPLE_CONFIG
from prompts.library import SYMBOLISMS, PromptLibrary
from storage.db import Database
from storage.digests import DigestRepository
from storage.repositories import ContributionRepository, CrosspostRepository

SVG = "{http://www.w3.org/2000/svg}"
ORG = "ziekenhuis-de-linde"
LONG = "Verpleegafdeling Interne Geneeskunde"
TWELVE = (
    LONG,
    "Operatiekamer",
    "ICT",
    "HR",
    "Spoedeisende Hulp",
    "Radiologie en Nucleaire Geneeskunde",
    "Apotheek",
    "Facilitair Bedrijf",
    "Kinderafdeling",
    "Poliklinieken Chirurgie",
    "Financiën en Control",
    "Kwaliteit en Veiligheid",
)
MORE = (
    "Intensive Care",
    "Laboratorium",
    "Psychiatrie",
    "Revalidatie",
    "Geriatrie",
    "Oncologisch Centrum",
    "Medische Microbiologie en Infectiepreventie",
    "Communicatie",
)
PEOPLE = ("Fatima el Amrani", "Jeroen de Vries", "Sanne Bakker")


def counts(*values: int) -> dict[Kind, int]:
    return dict(zip(KINDS, values, strict=False)) | {k: 0 for k in KINDS[len(values) :]}


def organisation(
    names: tuple[str, ...], symbolism: str = "bloemen", lang: str = "nl"
) -> PosterData:
    departments = tuple(
        PosterDepartment(f"d{i}", name, counts(*(((i + j) % 4) for j in range(6))))
        for i, name in enumerate(names)
    )
    connections = tuple(
        PosterConnection(f"d{i}", f"d{(i * 5 + 3) % len(names)}", 1 + i % 3)
        for i in range(len(names))
        if (i * 5 + 3) % len(names) != i
    )
    goals = (
        PosterGoal("veilig", "Veilige zorg", 4),
        PosterGoal("gezond", "Gezond en met plezier werken", 0),
        PosterGoal("samen", "Samen met de patiënt", 1),
    )
    return PosterData(
        "Ziekenhuis De Linde",
        lang,
        symbolism,
        date(2027, 1, 1),
        date(2027, 3, 31),
        departments,
        connections,
        goals,
    )


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))  # noqa: S314 - our own output, under test


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def shapes_per_kind(group: ET.Element) -> Counter[str]:
    return Counter(kind for e in group.iter() if (kind := e.get("data-kind")))


# --- what it shows -------------------------------------------------------------------------------


@pytest.mark.parametrize("symbolism", SYMBOLISMS)
@pytest.mark.parametrize("lang", ["nl", "en"])
def test_every_department_and_goal_on_a_well_formed_svg(
    prompts: PromptLibrary, symbolism: str, lang: str
) -> None:
    data = organisation(TWELVE[:7], symbolism, lang)
    root = parse(render_svg(data, prompts))
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == "0 0 1190 1684"
    assert (root.get("width"), root.get("height")) == ("297mm", "420mm")
    labels = [" ".join(texts(g)) for g in groups(root, "label")]
    for dept in data.departments:
        assert any(label.startswith(dept.name) for label in labels), dept.name
    goal_texts = " ".join(" ".join(texts(g)) for g in groups(root, "goal"))
    for goal in data.goals:
        assert goal.title in goal_texts
    everything = " ".join(texts(root))
    kicker = prompts.text(lang, f"poster.{symbolism}.kicker")
    assert kicker.upper() in everything
    for kind in KINDS:  # the legend names every kind
        assert prompts.kind_title(lang, kind.value) in everything


@pytest.mark.parametrize("symbolism", SYMBOLISMS)
def test_each_contribution_is_one_shape_of_its_kinds_colour(
    prompts: PromptLibrary, symbolism: str
) -> None:
    data = organisation(TWELVE[:5], symbolism)
    root = parse(render_svg(data, prompts))
    drawn = {g.get("data-department"): g for g in groups(root, "department")}
    assert set(drawn) == {d.id for d in data.departments}
    for dept in data.departments:
        group = drawn[dept.id]
        expected = {k.value: n for k, n in dept.counts.items() if n}
        assert shapes_per_kind(group) == expected, dept.name
        assert group.get("data-total") == str(dept.total)
        for shape in group.iter():
            if kind := shape.get("data-kind"):
                assert shape.get("fill") == KIND_COLOURS[Kind(kind)]
        assert not groups(group, "more")


@pytest.mark.parametrize("symbolism", SYMBOLISMS)
def test_a_busy_department_is_capped_with_a_plus_n_badge(
    prompts: PromptLibrary, symbolism: str
) -> None:
    busy = PosterDepartment("busy", "Spoedeisende Hulp", counts(61, 20, 9, 5, 4, 1))
    quiet = PosterDepartment("quiet", "HR", counts(0, 0, 0, 0, 0, 0))
    data = PosterData("Org", "nl", symbolism, date(2027, 1, 1), date(2027, 1, 31), (busy, quiet))
    root = parse(render_svg(data, prompts))
    drawn = {g.get("data-department"): g for g in groups(root, "department")}
    cap = CAPS[symbolism]
    shapes = shapes_per_kind(drawn["busy"])
    assert sum(shapes.values()) == cap
    assert set(shapes) == {k.value for k in KINDS}  # every kind that occurs keeps a shape
    assert shapes["succes"] > shapes["les"] > shapes["perspectief"]
    (badge,) = groups(drawn["busy"], "more")
    assert f"+{100 - cap}" in texts(badge)
    assert drawn["busy"].get("data-total") == "100"
    assert shapes_per_kind(drawn["quiet"]) == {}
    label = next(" ".join(texts(g)) for g in groups(root, "label") if "HR" in texts(g))
    assert prompts.text("nl", f"poster.{symbolism}.empty") in label


def test_shown_counts_share_the_cap_proportionally() -> None:
    few = counts(3, 2, 0, 1, 0, 0)
    assert shown_counts(few, 24) == few
    many = counts(90, 9, 1, 0, 0, 0)
    shown = shown_counts(many, 24)
    assert sum(shown.values()) == 24
    assert shown[Kind.CASUS] == 1  # rare, but there
    assert shown[Kind.SUCCES] >= 20
    assert shown[Kind.KOERS] == 0


@pytest.mark.parametrize("symbolism", SYMBOLISMS)
def test_connections_are_drawn_once_per_pair_with_their_weight(
    prompts: PromptLibrary, symbolism: str
) -> None:
    data = PosterData(
        "Org",
        "nl",
        symbolism,
        date(2027, 1, 1),
        date(2027, 1, 31),
        tuple(PosterDepartment(f"d{i}", f"Afdeling {i}", counts(1)) for i in range(4)),
        (
            PosterConnection("d0", "d1", 2),
            PosterConnection("d1", "d0", 1),  # the other way: the same ribbon, thicker
            PosterConnection("d2", "d3", 1),
        ),
    )
    root = parse(render_svg(data, prompts))
    drawn = {
        frozenset((g.get("data-from"), g.get("data-to"))): g.get("data-weight")
        for g in groups(root, "connection")
    }
    assert drawn == {frozenset(("d0", "d1")): "3", frozenset(("d2", "d3")): "1"}
    assert "2 verbindingen" in " ".join(texts(root))


def test_user_text_is_escaped(prompts: PromptLibrary) -> None:
    name = 'R&D <script>alert("x")</script>'
    data = PosterData(
        'Org & "Co" <b>',
        "nl",
        "bloemen",
        date(2027, 1, 1),
        date(2027, 1, 31),
        (PosterDepartment("rd", name + "\x07", counts(1)),),
        goals=(PosterGoal("g", "Doel <1> & 2", 1),),
    )
    svg = render_svg(data, prompts)
    root = parse(svg)
    assert "<script>" not in svg
    assert not list(root.iter(f"{SVG}script"))
    assert "R&D" in " ".join(texts(root))
    assert "Doel <1> & 2" in " ".join(texts(root))


# --- layout --------------------------------------------------------------------------------------


def _assert_no_overlaps(data: PosterData, prompts: PromptLibrary) -> None:
    lay = layout(data, prompts)
    boxes = lay.boxes()
    assert len(boxes) == 2 * len(data.departments)
    for i, a in enumerate(boxes):
        assert a.within(lay.main), (i, a, lay.main)
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    assert not lay.main.overlaps(lay.header)
    assert not lay.main.overlaps(lay.legend)
    for tag in lay.tags:
        assert not tag.box.overlaps(lay.main)
        assert not tag.box.overlaps(lay.legend)
        assert tag.box.x0 >= 0
        assert tag.box.x1 <= 1190


@pytest.mark.parametrize("symbolism", SYMBOLISMS)
def test_twelve_departments_with_long_dutch_names_never_overlap(
    prompts: PromptLibrary, symbolism: str
) -> None:
    data = organisation(TWELVE, symbolism)
    _assert_no_overlaps(data, prompts)
    lay = layout(data, prompts)
    long = next(p.label for p in lay.placements if p.department.name == LONG)
    assert len(long.lines) >= 2  # wrapped onto lines
    assert " ".join(long.lines) == LONG  # whole words, nothing cut
    assert min(p.label.size for p in lay.placements) >= 11.5
    assert min(p.size for p in lay.placements) >= 40  # figures big enough to count shapes


@pytest.mark.parametrize("symbolism", SYMBOLISMS)
@pytest.mark.parametrize("n", range(1, 21))
def test_one_to_twenty_departments_fit(prompts: PromptLibrary, symbolism: str, n: int) -> None:
    _assert_no_overlaps(organisation((TWELVE + MORE)[:n], symbolism), prompts)


def test_label_measure_is_never_narrower_than_cairo_draws() -> None:
    """Labels are laid out with `text_width`; Cairo (DejaVu Sans) must not draw them wider."""
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, 10, 10)
    context = cairocffi.Context(surface)
    samples = [*TWELVE, *MORE, "Ziekenhuis De Linde", "43 bijdragen", "MWMW %@ wmwm", "ïéëçÉ"]
    for weight in (cairocffi.FONT_WEIGHT_BOLD, cairocffi.FONT_WEIGHT_NORMAL):
        context.select_font_face("DejaVu Sans", cairocffi.FONT_SLANT_NORMAL, weight)
        for size in (12.0, 17.0, 24.0, 56.0):
            context.set_font_size(size)
            for text in samples:
                drawn = context.text_extents(text)[4]
                assert text_width(text, size) >= drawn, (text, size, drawn)


def test_long_words_are_hyphenated_not_cut() -> None:
    lines, size = fit_text("Bestuurssecretariaat", 110, 16, min_size=12, max_lines=3)
    assert len(lines) == 2
    assert lines[0].endswith("-")
    assert "".join(lines).replace("-", "") == "Bestuurssecretariaat"
    assert all(text_width(line, size) <= 110 for line in lines)


# --- PNG and PDF ---------------------------------------------------------------------------------


async def test_png_is_an_a3_page_at_150_dpi(prompts: PromptLibrary) -> None:
    png = await to_png(render_svg(organisation(TWELVE), prompts))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == png_size(150) == (1754, 2480)
    small = await to_png(render_svg(organisation(TWELVE[:3]), prompts), dpi=72)
    assert struct.unpack(">II", small[16:24]) == (842, 1191)


async def test_pdf_is_one_a3_page(prompts: PromptLibrary) -> None:
    pdf = await to_pdf(render_svg(organisation(TWELVE, "briljanten"), prompts))
    assert pdf.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert len(boxes) == 1
    width, height = (float(v) for v in boxes[0])
    a3 = (PAGE_MM[0] / 25.4 * 72, PAGE_MM[1] / 25.4 * 72)
    assert abs(width - a3[0]) < 1 and abs(height - a3[1]) < 1  # 841.9 × 1190.6 pt
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 1


# --- from the database ---------------------------------------------------------------------------


async def seed(db: Database) -> None:
    """Named and anonymous contributions in and around March 2027, and three connections."""
    repo = ContributionRepository(db)
    n = 0

    async def add(
        dept: str,
        kind: Kind,
        at: datetime,
        *,
        author: str | None = None,
        goal: str | None = None,
        source: Source = Source.REPLY,
    ) -> int:
        nonlocal n
        n += 1
        stored, _ = await repo.add(
            NewContribution(
                organisation_id=ORG,
                department_id=dept,
                kind=kind,
                source=source,
                round_date=at.date(),
                text=f"Geheime tekst {n} van {author or 'iemand anoniem'}",
                anonymous=author is None,
                author=Person(f"u{n}", author) if author else None,
                platform="local",
                event_key=f"poster-test:{n}",
                created_at=at,
                goal_id=goal,
            )
        )
        return stored.id

    march = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    lesson = await add("ok", Kind.LES, march, author=PEOPLE[0])
    await add("ok", Kind.SUCCES, march, author=PEOPLE[1])
    await add("ok", Kind.SUCCES, march)  # anonymous
    await add("ok", Kind.KOERS, march, author=PEOPLE[2], goal="veilige-zorg")
    await add("verpleging", Kind.KOERS, march, goal="veilige-zorg")
    await add("verpleging", Kind.KOERS, march, goal="samen-met-patient")
    await add("verpleging", Kind.LES, march, source=Source.TRANSLATION)
    await add("seh", Kind.WAARDERING, march, author=PEOPLE[1])
    # The first and last moments of the period count; a moment after it does not.
    await add("ict", Kind.CASUS, datetime(2027, 2, 28, 23, 0, tzinfo=UTC))  # 1 March, Amsterdam
    await add("ict", Kind.CASUS, datetime(2027, 3, 31, 21, 59, tzinfo=UTC))
    await add("ict", Kind.CASUS, datetime(2027, 3, 31, 22, 0, tzinfo=UTC))  # 1 April, Amsterdam
    await add("hr", Kind.SUCCES, datetime(2027, 1, 5, tzinfo=UTC), author=PEOPLE[0])
    await add("weg", Kind.SUCCES, march, author=PEOPLE[0])  # a department no longer configured

    crossposts = CrosspostRepository(db)
    for target in ("department:verpleging", "department:seh", "department:ict", "theme:werkdruk"):
        await crossposts.plan(ORG, lesson, "ok", target, 0.8, march, march)
    planned = {cp.target: cp.id for cp in await crossposts.all(ORG)}
    later = march + timedelta(days=1)
    await crossposts.give_feedback(planned["department:verpleging"], "k1", "useful", later)
    await crossposts.give_feedback(planned["department:verpleging"], "k2", "translated", later)
    await crossposts.give_feedback(planned["department:seh"], "k3", "talk", later)
    await crossposts.give_feedback(planned["department:ict"], "k4", "not_relevant", later)
    await crossposts.give_feedback(planned["theme:werkdruk"], "k5", "useful", later)


async def test_collect_counts_per_department_kind_connection_and_goal(
    db: Database, example_config: OrgConfig
) -> None:
    await seed(db)
    data = await collect(
        example_config, DigestRepository(db), start=date(2027, 3, 1), end=date(2027, 3, 31)
    )
    assert data.organisation == "Ziekenhuis De Linde"
    assert (data.language, data.symbolism) == ("nl", "bloemen")
    by_id = {d.id: d for d in data.departments}
    assert list(by_id) == [d.id for d in example_config.departments]
    assert by_id["ok"].counts == counts(2, 1, 0, 1, 0, 0)
    assert by_id["verpleging"].counts == counts(0, 1, 0, 2, 0, 0)
    assert by_id["ict"].counts == counts(0, 0, 2, 0, 0, 0)
    assert by_id["hr"].total == 0  # January is outside the period
    assert data.total == 10  # the unconfigured department's contribution is not drawn
    assert set(data.connections) == {
        PosterConnection("ok", "seh", 1),
        PosterConnection("ok", "verpleging", 1),
    }
    assert {g.id: g.koers for g in data.goals} == {
        "veilige-zorg": 2,
        "gezond-werken": 0,
        "samen-met-patient": 1,
    }


async def test_the_poster_never_names_a_person_nor_quotes_anyone(
    db: Database, example_config: OrgConfig, prompts: PromptLibrary
) -> None:
    await seed(db)
    for symbolism in SYMBOLISMS:
        config = example_config.model_copy(update={"symbolism": symbolism})
        data = await collect(
            config, DigestRepository(db), start=date(2027, 1, 1), end=date(2027, 12, 31)
        )
        svg = render_svg(data, prompts)
        for person in PEOPLE:
            for part in person.split():
                if len(part) > 3:
                    assert part not in svg, (symbolism, part)
        assert "Geheime tekst" not in svg
        assert "iemand" not in svg
        assert "u1" not in re.findall(r'data-[a-z]+="([^"]*)"', svg)


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("BOEKET_DATABASE_URL", "BOEKET_CONFIG", "BOEKET_LANG"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'boeket.sqlite3'}"

    async def prepare() -> None:
        db = Database.connect(url)
        try:
            await db.upgrade()
            await seed(db)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    return url


def test_cli_writes_svg_png_and_pdf(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    period = ["--from", "2027-03-01", "--to", "2027-03-31", "--database", database]
    svg_path, png_path, pdf_path = (tmp_path / f"poster.{f}" for f in ("svg", "png", "pdf"))
    assert main(["poster", "--format", "svg", "--out", str(svg_path), *period]) == 0
    err = capsys.readouterr().err
    assert str(svg_path) in err and "10 bijdragen" in err and "5 afdelingen" in err
    svg = svg_path.read_text(encoding="utf-8")
    root = parse(svg)
    labels = " ".join(" ".join(texts(g)) for g in groups(root, "label"))
    for name in ("Operatiekamer", "ICT", "HR", "Spoedeisende Hulp"):
        assert name in labels
    assert "1 maart 2027 – 31 maart 2027" in " ".join(texts(root))
    assert not any(part in svg for person in PEOPLE for part in person.split() if len(part) > 3)

    assert main(["poster", "--format", "png", "--out", str(png_path), *period]) == 0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["poster", "--format", "pdf", "--out", str(pdf_path), *period, "--lang", "en"]) == 0
    assert pdf_path.read_bytes().startswith(b"%PDF-")
    assert "10 contributions" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2027-31-03"], "expected a date as YYYY-MM-DD"),
        (["--from", "2027-04-01", "--to", "2027-03-01"], "ligt na --to"),
        (["--format", "gif"], "invalid choice"),
    ],
)
def test_cli_bad_input_is_a_clear_message(
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    out = tmp_path / "poster.svg"
    try:
        code = main(["poster", "--out", str(out), "--database", database, *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_cli_unwritable_path_and_missing_database(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file", encoding="utf-8")
    out = blocked / "poster.pdf"
    assert main(["poster", "--out", str(out), "--database", database]) == 2
    err = capsys.readouterr().err
    assert f"Kan de poster niet opslaan in {out}" in err and "--out" in err
    assert "Traceback" not in err

    missing = tmp_path / "elders" / "boeket.sqlite3"
    url = f"sqlite:///{missing}"
    assert main(["poster", "--out", str(tmp_path / "p.svg"), "--database", url]) == 2
    err = capsys.readouterr().err
    assert f"Er is geen database in {missing}" in err
    assert not missing.exists() and not missing.parent.exists()


def test_example_config_renders_in_every_symbolism(
    prompts: PromptLibrary, example_config: OrgConfig
) -> None:
    assert EXAMPLE_CONFIG.exists()
    for symbolism in SYMBOLISMS:
        data = PosterData(
            example_config.organisation.name,
            "nl",
            symbolism,
            date(2027, 1, 1),
            date(2027, 12, 31),
            tuple(PosterDepartment(d.id, d.name, counts(2, 1)) for d in example_config.departments),
        )
        root = parse(render_svg(data, prompts))
        assert root.get("data-symbolism") == symbolism
        assert sum(sum(shapes_per_kind(g).values()) for g in groups(root, "department")) == 15
