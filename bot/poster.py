"""The bouquet poster: what grows in the organisation, drawn in its own symbolism.

For a workshop, the seed's posters make visible what already grows in an organisation. This module
draws that poster on an A3 page, as a self-contained SVG:

- `bloemen`: a wreath of flowers, one per department, each petal one contribution coloured by its
  kind, ribbons between departments where lessons travelled;
- `briljanten`: a necklace of gems, each facet one contribution, golden threads for connections;
- `bouwstenen`: a building whose pillars are departments, each stone one contribution, arches for
  connections;

with the organisation's goals as labels (and how many `koers` answers each drew) and a legend of
the kinds in the Okabe–Ito palette, which stays distinguishable for colour-blind readers.

The poster shows counts, department names and goal titles — never a person, never a contribution's
words — so nothing on it can reveal who answered, anonymous or not.

The API, for the CLI and the dashboard:

- ``await collect(config, digests, start=..., end=...)`` → `PosterData` (read-only queries);
- ``render_svg(data, prompts)`` → the SVG text;
- ``await to_png(svg, dpi=150)`` and ``await to_pdf(svg)`` → bytes, converted by CairoSVG in a
  worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Literal

from bot.config import OrgConfig
from bot.domain import Kind
from prompts.library import PromptLibrary
from storage.digests import DigestRepository

Format = Literal["svg", "png", "pdf"]
FORMATS: tuple[Format, ...] = ("svg", "png", "pdf")

# A3 portrait: 297 × 420 mm, drawn in a 1190 × 1684 user space (4 units per point).
WIDTH = 1190.0
HEIGHT = 1684.0
PAGE_MM = (297, 420)
MARGIN = 56.0

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. Yellow is left out: too pale on paper for small shapes.
KIND_COLOURS: Mapping[Kind, str] = {
    Kind.SUCCES: "#E69F00",
    Kind.LES: "#009E73",
    Kind.CASUS: "#0072B2",
    Kind.KOERS: "#D55E00",
    Kind.WAARDERING: "#CC79A7",
    Kind.PERSPECTIEF: "#56B4E9",
}
KINDS: tuple[Kind, ...] = tuple(KIND_COLOURS)

# The most contributions one department's figure draws; the rest is a "+n" badge.
CAPS: Mapping[str, int] = {"bloemen": 24, "briljanten": 32, "bouwstenen": 30}

FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
INK = "#1F2A33"
MUTED = "#56616C"
PAPER = "#FBF7EF"
ACCENTS: Mapping[str, str] = {
    "bloemen": "#2E6B4F",
    "briljanten": "#2B4C7E",
    "bouwstenen": "#7A4E2D",
}
GOLD = "#B58E2E"
THREADS: Mapping[str, str] = {
    "bloemen": "#A47551",
    "briljanten": "#6F7F91",
    "bouwstenen": "#6F6A64",
}


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PosterDepartment:
    """A department and how many contributions of each kind it made in the period."""

    id: str
    name: str
    counts: Mapping[Kind, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class PosterConnection:
    """Lessons from `source` that landed in `target` (found useful, talked about or translated)."""

    source: str
    target: str
    weight: int


@dataclass(frozen=True, slots=True)
class PosterGoal:
    """An organisation goal; `koers` counts the answers to the direction question about it."""

    id: str
    title: str
    koers: int | None = None


@dataclass(frozen=True, slots=True)
class PosterData:
    """Everything the poster shows; `start` and `end` are inclusive days."""

    organisation: str
    language: str
    symbolism: str
    start: date
    end: date
    departments: tuple[PosterDepartment, ...]
    connections: tuple[PosterConnection, ...] = ()
    goals: tuple[PosterGoal, ...] = ()

    @property
    def total(self) -> int:
        return sum(d.total for d in self.departments)


async def collect(
    config: OrgConfig,
    digests: DigestRepository,
    *,
    start: date,
    end: date,
    language: str | None = None,
) -> PosterData:
    """The poster's data for the days `start` to `end` (inclusive, in the organisation's zone).

    Only reads. Counts what each configured department contributed per kind, the connections
    between departments (suggestions that got a useful, let's-talk or translated verdict in the
    period), and the `koers` answers per goal. Departments no longer in the config are left out.
    """
    zone = config.zone_of_organisation()
    since = datetime.combine(start, time(0), tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)
    org = config.organisation.id
    known = {d.id for d in config.departments}

    counts: dict[str, Counter[Kind]] = {d.id: Counter() for d in config.departments}
    koers: Counter[str] = Counter()
    for c in await digests.contributions(org, since, until):
        if c.department_id in known:
            counts[c.department_id][c.kind] += 1
        if c.kind is Kind.KOERS and c.goal_id:
            koers[c.goal_id] += 1

    links: Counter[tuple[str, str]] = Counter()
    for conn in await digests.connections(org, since, until):
        source = conn.crosspost.source_department_id
        kind, _, target = conn.crosspost.target.partition(":")
        if kind == "department" and source in known and target in known and source != target:
            links[(source, target)] += 1

    return PosterData(
        organisation=config.organisation.name,
        language=language or config.language,
        symbolism=config.symbolism,
        start=start,
        end=end,
        departments=tuple(
            PosterDepartment(d.id, d.name, {k: counts[d.id][k] for k in KINDS})
            for d in config.departments
        ),
        connections=tuple(
            PosterConnection(source, target, weight)
            for (source, target), weight in sorted(links.items())
        ),
        goals=tuple(PosterGoal(g.id, g.title, koers[g.id]) for g in config.goals),
    )


# --- text measure ---------------------------------------------------------------------------------

# Advance widths in em, on the generous side of DejaVu Sans Bold (the font CairoSVG draws with),
# so a label measured here is never narrower than it prints. tests/test_poster.py checks this
# against Cairo's own measurements.
_WIDTHS: dict[str, float] = {
    **dict.fromkeys(" ", 0.36),
    **dict.fromkeys("ijlïìíîIJ'|.,·‘’:;", 0.41),
    **dict.fromkeys('-f!()[]tr_`"*–/\\', 0.54),
    **dict.fromkeys("?zcçs", 0.62),
    **dict.fromkeys("w", 0.93),
    **dict.fromkeys("m", 1.06),
    **dict.fromkeys("MW%@—…", 1.12),
}


def text_width(text: str, size: float) -> float:
    """The width of `text` at font size `size`, never less than DejaVu Sans (Bold) draws it."""
    return _em(text) * size


@functools.lru_cache(maxsize=4096)
def _em(text: str) -> float:
    """The width of `text` in em; layouts measure the same words many times over."""
    width = 0.0
    for char in text:
        if char in _WIDTHS:
            width += _WIDTHS[char]
        elif char.isupper():
            width += 0.88
        else:
            width += 0.74
    return width


def _wrap(text: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}" if current else word
        if current and text_width(trial, size) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines or [""]


def _cut(text: str, size: float, width: float) -> str:
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def fit_text(
    text: str, width: float, size: float, *, min_size: float, max_lines: int
) -> tuple[tuple[str, ...], float]:
    """Wrap `text` into at most `max_lines` lines of `width`, shrinking the font to `min_size`.

    What still does not fit is cut with an ellipsis: a poster never lets a label run over.
    """
    current = size
    while True:
        lines = _wrap(text, current, width)
        if len(lines) <= max_lines and all(text_width(li, current) <= width for li in lines):
            return tuple(lines), current
        if current <= min_size:
            break
        current = max(min_size, current - 0.5)
    # Words too long for a line (Dutch compounds: "Bestuurssecretariaat") are hyphenated, and
    # only what then still does not fit is cut with an ellipsis.
    lines = _wrap(" ".join(_hyphenate(text, current, width)), current, width)
    lines = [li.replace("\u00ad ", "") for li in lines]
    lines = [li[:-1] + "-" if li.endswith("\u00ad") else li for li in lines]
    kept = lines[:max_lines]
    if len(lines) > max_lines:
        kept[-1] = kept[-1] + " " + " ".join(lines[max_lines:])
    return tuple(_cut(li, current, width) for li in kept), current


def _hyphenate(text: str, size: float, width: float) -> list[str]:
    """The words of `text`, each too wide for `width` split into pieces that end in a soft
    hyphen (kept together on a line when they fit, shown as "-" where the line breaks)."""
    pieces: list[str] = []
    for word in text.split():
        while text_width(word, size) > width and len(word) >= 8:
            cut = len(word) - 4  # never fewer than four letters on either side
            while cut > 4 and text_width(word[:cut] + "-", size) > width:
                cut -= 1
            pieces.append(word[:cut] + "\u00ad")
            word = word[cut:]
        pieces.append(word)
    return pieces


# --- layout --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def overlaps(self, other: Box) -> bool:
        return (
            self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1
        )

    def within(self, other: Box) -> bool:
        return (
            self.x0 >= other.x0
            and self.y0 >= other.y0
            and self.x1 <= other.x1
            and self.y1 <= other.y1
        )

    def grow(self, by: float) -> Box:
        return Box(self.x0 - by, self.y0 - by, self.x1 + by, self.y1 + by)

    def union(self, other: Box) -> Box:
        return Box(
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
        )


@dataclass(frozen=True, slots=True)
class Label:
    """A department's name (wrapped) and its count line, centred in `box`."""

    lines: tuple[str, ...]
    size: float
    note: str
    note_size: float
    box: Box

    def baselines(self) -> list[float]:
        y = self.box.y0 + _PAD_Y + self.size * 0.94
        ys = []
        for _ in self.lines:
            ys.append(y)
            y += self.size * _LEADING
        ys.append(y - self.size * _LEADING + self.size * 0.3 + self.note_size * 1.15)
        return ys


_PAD_X = 8.0
_PAD_Y = 6.0
_LEADING = 1.2


def _label_size(names: Sequence[str], width: float, size: float) -> float:
    """One font size for all names, unless a single long name would make them all small."""
    fitted = [fit_text(name, width, size, min_size=11.5, max_lines=3)[1] for name in names]
    return max(min(fitted), size * 0.82)


def _label(name: str, note: str, cx: float, top: float, width: float, size: float) -> Label:
    lines, fitted = fit_text(name, width, size, min_size=min(size, 11.5), max_lines=3)
    note_size = max(11.0, round(fitted * 0.8, 1))
    note = _cut(note, note_size, width)
    inner = max([text_width(li, fitted) for li in lines] + [text_width(note, note_size)])
    height = (
        2 * _PAD_Y
        + fitted * 0.94
        + (len(lines) - 1) * fitted * _LEADING
        + fitted * 0.3
        + note_size * 1.15
        + note_size * 0.3
    )
    half = inner / 2 + _PAD_X
    return Label(lines, fitted, note, note_size, Box(cx - half, top, cx + half, top + height))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one department is drawn: its figure's centre and size, and its label."""

    department: PosterDepartment
    x: float
    y: float
    size: float
    figure: Box
    label: Label


@dataclass(frozen=True, slots=True)
class Tag:
    goal: PosterGoal
    lines: tuple[str, ...]
    size: float
    note: str
    box: Box


@dataclass(frozen=True, slots=True)
class PosterLayout:
    """Every region of the page; the departments' figures and labels are disjoint (tested)."""

    header: Box
    kicker: str
    title: tuple[str, ...]
    title_size: float
    subtitle: tuple[str, ...]
    meta: tuple[str, ...]
    main: Box
    placements: tuple[Placement, ...]
    # Indices into `placements`, per row: the bouquet's tiers, the necklace's strands, the
    # building's storeys.
    rows: tuple[tuple[int, ...], ...]
    # The bouquet's knot; the necklace's two neck points.
    anchors: tuple[tuple[float, float], ...]
    goals_title_y: float
    tags: tuple[Tag, ...]
    legend: Box
    footer: tuple[str, ...]
    footer_y: float
    bands: tuple[Box, ...] = ()  # the building's friezes, which carry the names
    roof: Box | None = None

    def boxes(self) -> list[Box]:
        """Every department's figure and label."""
        return [b for p in self.placements for b in (p.figure, p.label.box)]


class _Words:
    """The poster's words in one language and symbolism."""

    def __init__(self, prompts: PromptLibrary, data: PosterData) -> None:
        self.prompts = prompts
        self.lang = data.language
        self.symbolism = data.symbolism

    def __call__(self, key: str, **params: object) -> str:
        return self.prompts.text(self.lang, f"poster.{key}", symbolism=self.symbolism, **params)

    def sym(self, key: str) -> str:
        return self(f"{self.symbolism}.{key}")

    def count(self, key: str, count: int, *, zero: bool = False) -> str:
        form = "none" if zero and count == 0 else "one" if count == 1 else "many"
        return self(f"{key}.{form}", count=count)

    def day(self, day: date) -> str:
        month = self.prompts.text(self.lang, f"calendar.month.{day.month}")
        return self("date", day=day.day, month=month, year=day.year)

    def kind(self, kind: Kind) -> str:
        return self.prompts.kind_title(self.lang, kind.value)

    def discipline(self, kind: Kind) -> str:
        return self.prompts.kinds(self.lang)[kind.value].discipline


def _links(data: PosterData) -> dict[tuple[str, str], int]:
    """Connections without direction: both ways between two departments are one ribbon."""
    order = {d.id: i for i, d in enumerate(data.departments)}
    merged: Counter[tuple[str, str]] = Counter()
    for conn in data.connections:
        if conn.source in order and conn.target in order and conn.source != conn.target:
            a, b = sorted((conn.source, conn.target), key=order.__getitem__)
            merged[(a, b)] += conn.weight
    return dict(merged)


def layout(data: PosterData, prompts: PromptLibrary) -> PosterLayout:
    """Place everything on the A3 page: header, departments, goals, legend and footer."""
    words = _Words(prompts, data)
    inner = WIDTH - 2 * MARGIN

    # Header, top down.
    kicker = words.sym("kicker").upper()
    title, title_size = fit_text(data.organisation, inner, 56, min_size=34, max_lines=2)
    y = 96 + 14 + title_size
    title_end = y + (len(title) - 1) * title_size * 1.12
    subtitle, _ = fit_text(words.sym("subtitle"), inner, 24, min_size=24, max_lines=2)
    subtitle_end = title_end + 44 + (len(subtitle) - 1) * 24 * 1.25
    period = words("period", start=words.day(data.start), end=words.day(data.end))
    totals = words(
        "totals",
        contributions=words.count("contributions", data.total),
        departments=words.count("departments", len(data.departments)),
        connections=words.count("connections", len(_links(data)), zero=True),
    )
    meta_line = f"{period}  ·  {totals}"
    parts = [meta_line] if text_width(meta_line, 19) <= inner else [period, totals]
    meta = tuple(_cut(m, 19, inner) for m in parts)
    header_end = subtitle_end + 36 + (len(meta) - 1) * 19 * 1.3 + 22
    header = Box(MARGIN, 0, WIDTH - MARGIN, header_end)

    # Footer, bottom up.
    footer, _ = fit_text(words("privacy"), inner - 240, 15, min_size=13, max_lines=3)
    footer_y = HEIGHT - 40 - (len(footer) - 1) * 15 * 1.3

    # Legend: a title, the six kinds in three columns, then how to read figures and threads.
    legend_text = _legend_lines(words, inner - 44)
    legend_h = 22 + 24 + 14 + 2 * 62 + sum(len(block) for block in legend_text) * 15 * 1.35 + 24
    legend_y1 = footer_y - 15 - 22
    legend = Box(MARGIN, legend_y1 - legend_h, WIDTH - MARGIN, legend_y1)

    # Goals, as tags that flow left to right above the legend.
    tags = _tags(data, words, legend.y0 - 26, inner)
    goals_top = min((t.box.y0 for t in tags), default=legend.y0 - 26 - 40) - 44
    main = Box(MARGIN, header_end + 18, WIDTH - MARGIN, goals_top - 18)

    page = PosterLayout(
        header=header,
        kicker=kicker,
        title=title,
        title_size=title_size,
        subtitle=subtitle,
        meta=meta,
        main=main,
        placements=(),
        rows=(),
        anchors=(),
        goals_title_y=goals_top + 26,
        tags=tags,
        legend=legend,
        footer=footer,
        footer_y=footer_y,
    )
    if data.symbolism == "bouwstenen":
        placements, rows, bands, roof = _building(data, words, main)
        return replace(page, placements=placements, rows=rows, bands=bands, roof=roof)
    placements, rows, anchors = _tiers(data, words, main)
    return replace(page, placements=placements, rows=rows, anchors=anchors)


def _legend_lines(words: _Words, width: float) -> tuple[tuple[str, ...], ...]:
    unit, _ = fit_text(words.sym("unit"), width, 15, min_size=15, max_lines=2)
    thread, _ = fit_text(words.sym("connection"), width, 15, min_size=15, max_lines=3)
    return unit, thread


def _tags(data: PosterData, words: _Words, bottom: float, inner: float) -> tuple[Tag, ...]:
    """Goal tags in rows, filled from the top; the last row ends at `bottom`."""
    if not data.goals:
        return ()
    gap = 16.0
    rows: list[list[tuple[PosterGoal, tuple[str, ...], float, str, float, float]]] = [[]]
    used = 0.0
    for goal in data.goals:
        lines, size = fit_text(goal.title, inner / 2 - 70, 19, min_size=15, max_lines=2)
        note = words.count("goal_koers", goal.koers, zero=True) if goal.koers is not None else ""
        width = max([text_width(li, size) for li in lines] + [text_width(note, 14)]) + 60
        height = 18 + len(lines) * size * 1.2 + (20 if note else 0) + 10
        if rows[-1] and used + gap + width > inner:
            rows.append([])
            used = 0.0
        used += (gap if rows[-1] else 0) + width
        rows[-1].append((goal, lines, size, note, width, height))
    heights = [max(item[5] for item in row) for row in rows]
    y = bottom - sum(heights) - gap * (len(rows) - 1)
    tags: list[Tag] = []
    for row, height in zip(rows, heights, strict=True):
        total = sum(item[4] for item in row) + gap * (len(row) - 1)
        x = (WIDTH - total) / 2
        for goal, lines, size, note, width, _h in row:
            tags.append(Tag(goal, lines, size, note, Box(x, y, x + width, y + height)))
            x += width + gap
        y += height + gap
    return tuple(tags)


def _note(words: _Words, dept: PosterDepartment) -> str:
    if dept.total == 0:
        return words.sym("empty")
    return words.count("contributions", dept.total)


def _badge_box(x: float, y: float, r: float, text: str) -> Box:
    size = _badge_size(r)
    w = text_width(text, size) + 12
    h = size + 10
    bx = x + r * 0.72
    by = y - r * 0.72
    return Box(bx - w / 2, by - h / 2, bx + w / 2, by + h / 2)


def _badge_size(r: float) -> float:
    return max(12.0, min(16.0, r * 0.2))


def _more(dept: PosterDepartment, cap: int) -> int:
    return max(0, dept.total - cap)


def _row_options(n: int, widest_first: bool) -> list[tuple[int, ...]]:
    """Ways to put `n` departments in rows: tapering by one a row, or as even as can be."""
    options: set[tuple[int, ...]] = set()
    for widest in range(1, n + 1):
        taper: list[int] = []
        count = widest
        while sum(taper) < n:
            taper.append(min(count, n - sum(taper)))
            count = max(1, count - 1)
        if len(taper) <= 5:
            options.add(tuple(taper))
        rows = math.ceil(n / widest)
        base, extra = divmod(n, rows)
        options.add(tuple([base + 1] * extra + [base] * (rows - extra)))
    ordered = sorted(options, key=lambda o: (len(o), o))
    return [o if widest_first else tuple(reversed(o)) for o in ordered]


def _tiers(
    data: PosterData, words: _Words, main: Box
) -> tuple[tuple[Placement, ...], tuple[tuple[int, ...], ...], tuple[tuple[float, float], ...]]:
    """Flowers in tiers that narrow towards the bow, or gems on strands that widen downwards.

    Of all row arrangements, the one with the largest figures wins (a tapering one when it is
    nearly as large: that is the bouquet's, or the necklace's, shape). Every arrangement is checked
    for overlaps before it can win.
    """
    depts = data.departments
    n = len(depts)
    cap = CAPS[data.symbolism]
    bouquet = data.symbolism == "bloemen"
    notes = [_note(words, d) for d in depts]
    top_reserve = 0.0 if bouquet else 64.0
    bottom_reserve = min(170.0, main.height * 0.18) if bouquet else 0.0
    r_cap = 150.0 if n == 1 else 130.0 if n == 2 else 112.0
    gap = 10.0
    best: tuple[float, bool, list[Placement], list[list[int]], float] | None = None
    for counts in _row_options(n, widest_first=bouquet):
        widest = max(counts)
        tapering = len(set(counts)) == len(counts) and len(counts) > 1
        cell = main.width / widest
        bonus = 1.1 if tapering else 1.0
        if best is not None and min(cell * 0.42, r_cap) * bonus <= best[0]:
            continue  # cannot beat the best so far, whatever its labels need
        label_w = min(cell - 18, 340.0)
        size = _label_size([d.name for d in depts], label_w, max(13.0, min(21.0, cell * 0.09)))
        labels = [
            _label(d.name, note, 0, 0, label_w, size) for d, note in zip(depts, notes, strict=True)
        ]
        lh = max(lb.box.height for lb in labels)
        area = main.height - top_reserve - bottom_reserve
        # The necklace's strands sag in the middle; the bouquet's tiers arch like a dome.
        sag = min(44.0, cell * 0.22) * (-0.7 if bouquet else 1.0)
        pitch = area / len(counts)
        r = min(cell * 0.42, r_cap, (pitch - abs(sag) - lh - gap - 18) / 2)
        if r < 20:
            continue
        pitch = min(pitch, 2 * r + abs(sag) + lh + gap + 18 + 36)
        block = pitch * len(counts)
        top = main.y0 + top_reserve + (area - block) / 2
        if bouquet:
            top = main.y0 + (area - block) * 0.6
        cx = (main.x0 + main.x1) / 2
        placements: list[Placement] = []
        rows: list[list[int]] = []
        index = 0
        for i, count in enumerate(counts):
            rows.append([])
            for k in range(count):
                dept, note = depts[index], notes[index]
                offset = k - (count - 1) / 2
                x = cx + offset * cell
                u = offset / max((widest - 1) / 2, 1)
                y = top + i * pitch + 9 + r + (sag * (1 - u * u) if sag > 0 else -sag * u * u)
                figure = Box(x - r, y - r, x + r, y + r)
                more = _more(dept, cap)
                if more:
                    figure = figure.union(_badge_box(x, y, r, words("more", count=more)))
                label = _label(dept.name, note, x, y + r + gap, label_w, size)
                placements.append(Placement(dept, x, y, r, figure, label))
                rows[-1].append(index)
                index += 1
        if not _disjoint(placements, main):
            continue
        score = r * bonus
        if best is None or score > best[0]:
            best = (score, tapering, placements, rows, top + block)
    if best is None:  # pragma: no cover - only with absurd page sizes
        raise ValueError("the departments do not fit on the page")
    _score, _tapering, placements, rows, bottom = best
    cx = (main.x0 + main.x1) / 2
    anchors: tuple[tuple[float, float], ...]
    if bouquet:
        anchors = ((cx, min(bottom + bottom_reserve * 0.35, main.y1 - 100)),)
    else:
        first = [placements[i] for i in rows[0]]
        half = max(70.0, (max(p.x for p in first) - min(p.x for p in first)) / 2 * 0.55)
        anchors = ((cx - half, main.y0 + 40), (cx + half, main.y0 + 40))
    return tuple(placements), tuple(tuple(r) for r in rows), anchors


def _disjoint(placements: Sequence[Placement], main: Box) -> bool:
    boxes = [b for p in placements for b in (p.figure, p.label.box)]
    if not all(b.within(main) for b in boxes):
        return False
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if a.grow(3).overlaps(b.grow(3)):
                return False
    return True


def _grid(n: int) -> tuple[int, int]:
    """Columns and rows of the building: at most six (or seven, for many) pillars a storey."""
    if n <= 6:
        return n, 1
    per = 6 if n <= 12 else 7
    rows = math.ceil(n / per)
    return math.ceil(n / rows), rows


def _building(
    data: PosterData, words: _Words, main: Box
) -> tuple[tuple[Placement, ...], tuple[tuple[int, ...], ...], tuple[Box, ...], Box]:
    """Pillars on storeys under a roof: each storey's frieze carries its departments' names."""
    depts = data.departments
    n = len(depts)
    cols, storeys = _grid(n)
    body = Box(main.x0 + 24, main.y0, main.x1 - 24, main.y1)
    col_w = body.width / cols
    roof_h = min(120.0 if storeys == 1 else 84.0, main.height * 0.13)
    architrave = 16.0
    steps = 24.0
    label_w = col_w - 16
    size = _label_size(
        [d.name for d in depts], label_w, 20.0 if cols <= 4 else 18.0 if cols <= 6 else 16.0
    )
    notes = [_note(words, d) for d in depts]
    labels = [
        _label(d.name, note, 0, 0, label_w, size) for d, note in zip(depts, notes, strict=True)
    ]
    frieze_h = max(lb.box.height for lb in labels) + 16
    zone = (main.height - roof_h - architrave - steps - storeys * frieze_h) / storeys
    # Few storeys need not fill the page: the building stands in the middle of its area.
    zone = min(zone, 400.0)
    height = roof_h + architrave + storeys * (zone + frieze_h) + steps
    shift = (main.height - height) / 2
    placements: list[Placement] = []
    rows: list[tuple[int, ...]] = []
    bands: list[Box] = []
    top = main.y0 + shift + roof_h + architrave
    for storey in range(storeys):
        indices = tuple(range(storey * cols, min(n, (storey + 1) * cols)))
        rows.append(indices)
        floor = top + zone
        bands.append(Box(body.x0, floor, body.x1, floor + frieze_h))
        offset = (cols - len(indices)) * col_w / 2
        for i, index in enumerate(indices):
            dept = depts[index]
            x = body.x0 + offset + (i + 0.5) * col_w
            half = min(col_w * 0.3, 66.0)
            figure = Box(x - half - 6, top + 8, x + half + 6, floor)
            label = _label(dept.name, notes[index], x, floor + 8, label_w, size)
            placements.append(Placement(dept, x, floor, half, figure, label))
        top = floor + frieze_h
    roof = Box(body.x0 - 14, main.y0 + shift, body.x1 + 14, main.y0 + shift + roof_h)
    return tuple(placements), tuple(rows), tuple(bands), roof


# --- drawing -------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _esc(text: str) -> str:
    """Text for XML content and double-quoted attributes; control characters XML forbids go."""
    text = _CONTROL.sub("", text).replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _f(value: float) -> str:
    text = f"{value:.1f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in {"-0", ""} else text


def _text(
    x: float,
    y: float,
    content: str,
    size: float,
    *,
    weight: str = "normal",
    anchor: str = "middle",
    fill: str = INK,
    spacing: float | None = None,
    style: str = "",
) -> str:
    extra = f' letter-spacing="{_f(spacing)}"' if spacing else ""
    extra += f' font-style="{style}"' if style else ""
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" font-size="{_f(size)}" font-weight="{weight}" '
        f'text-anchor="{anchor}" fill="{fill}"{extra}>{_esc(content)}</text>'
    )


def shown_counts(counts: Mapping[Kind, int], cap: int) -> dict[Kind, int]:
    """How many shapes of each kind a figure draws: all, or `cap` shared out proportionally.

    Every kind that occurs keeps at least one shape; the remainder goes by largest fraction.
    """
    total = sum(counts.values())
    if total <= cap:
        return {k: counts.get(k, 0) for k in KINDS}
    present = [k for k in KINDS if counts.get(k, 0) > 0]
    shares = {k: max(1, math.floor(counts[k] * cap / total)) for k in present}
    while sum(shares.values()) > cap:
        biggest = max(present, key=lambda k: (shares[k], -KINDS.index(k)))
        shares[biggest] -= 1
    remainders = sorted(
        present, key=lambda k: (-(counts[k] * cap / total - shares[k]), KINDS.index(k))
    )
    for k in remainders[: cap - sum(shares.values())]:
        shares[k] += 1
    return {k: shares.get(k, 0) for k in KINDS}


def _sequence(counts: Mapping[Kind, int]) -> list[Kind]:
    return [k for k in KINDS for _ in range(counts.get(k, 0))]


def _petal(length: float, width: float, base: float) -> str:
    tip = base + length
    return (
        f"M0 {_f(-base)} C{_f(width * 1.1)} {_f(-(base + length * 0.25))} "
        f"{_f(width)} {_f(-(base + length * 0.8))} 0 {_f(-tip)} "
        f"C{_f(-width)} {_f(-(base + length * 0.8))} {_f(-width * 1.1)} "
        f"{_f(-(base + length * 0.25))} 0 {_f(-base)}Z"
    )


def _flower(p: Placement, cap: int, words: _Words) -> list[str]:
    x, y, r = p.x, p.y, p.size
    out: list[str] = []
    kinds = _sequence(shown_counts(p.department.counts, cap))
    if not kinds:
        # A closed bud: nothing yet, but something may come.
        bud = f"translate({_f(x)} {_f(y + r * 0.35)})"
        out.append(
            f'<path d="{_petal(r * 0.75, r * 0.26, 0)}" transform="{bud}" fill="#B9D4B5" '
            f'stroke="#5E8C61" stroke-width="1.6"/>'
        )
        for side in (-1, 1):
            out.append(
                f'<path d="{_petal(r * 0.5, r * 0.14, 0)}" transform="{bud} rotate({side * 28})" '
                f'fill="#7FAF84" stroke="#5E8C61" stroke-width="1.2"/>'
            )
        return out
    disc = r * 0.27
    base = disc * 0.55
    rings: list[list[Kind]] = [kinds] if len(kinds) <= 12 else [kinds[0::2], kinds[1::2]]
    for ring_no, ring in enumerate(rings):
        length = (r - base) * (1.0 if ring_no == 0 else 0.64)
        count = len(ring)
        around = 2 * math.pi * (base + length * 0.55) / max(count, 1)
        width = min(0.34 * length, around * 0.62)
        offset = 0.5 if ring_no == 1 else 0.0
        for i, kind in enumerate(ring):
            angle = 360 * (i + offset) / count
            out.append(
                f'<path d="{_petal(length, width, base)}" transform="translate({_f(x)} {_f(y)}) '
                f'rotate({_f(angle)})" fill="{KIND_COLOURS[kind]}" stroke="#FFFFFF" '
                f'stroke-width="1.4" stroke-linejoin="round" data-kind="{kind.value}"/>'
            )
    out.append(
        f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(disc)}" fill="#5B4636" stroke="#F3E3B5" '
        f'stroke-width="{_f(max(1.5, disc * 0.1))}"/>'
    )
    if disc >= 14:
        label = str(p.department.total)
        size = min(disc * 0.85, disc * 1.5 / max(1, len(label)) * 1.2)
        out.append(_text(x, y + size * 0.36, label, size, weight="bold", fill="#FBF3DC"))
    return out


def _sector(x: float, y: float, radius: float, a0: float, a1: float) -> str:
    sx, sy = x + radius * math.sin(a0), y - radius * math.cos(a0)
    ex, ey = x + radius * math.sin(a1), y - radius * math.cos(a1)
    large = 1 if a1 - a0 > math.pi else 0
    return (
        f"M{_f(x)} {_f(y)} L{_f(sx)} {_f(sy)} A{_f(radius)} {_f(radius)} 0 {large} 1 "
        f"{_f(ex)} {_f(ey)}Z"
    )


def _polygon(x: float, y: float, radius: float, sides: int, turn: float = 0.0) -> str:
    points = []
    for k in range(sides):
        a = 2 * math.pi * (k + turn) / sides
        points.append(f"{_f(x + radius * math.sin(a))},{_f(y - radius * math.cos(a))}")
    return " ".join(points)


def _brilliant(radius: float) -> list[tuple[float, list[tuple[float, float]]]]:
    """The 32 crown facets of a round brilliant seen from above, as (angle, polygon) around 0,0.

    Eight star facets on the table's edges, eight kites, sixteen upper girdle facets — sorted by
    angle, so that runs of facets form sectors.
    """

    def at(angle: float, r: float) -> tuple[float, float]:
        return (r * math.sin(angle), -r * math.cos(angle))

    step = math.pi / 4
    table = 0.5 * radius
    facets: list[tuple[float, list[tuple[float, float]]]] = []
    for i in range(8):
        a = i * step  # a table corner, and the kite below it
        mid = a + step / 2  # a star point, between two corners
        star = at(mid, 0.74 * radius)
        facets.append((mid, [at(a, table), at(a + step, table), star]))
        facets.append((a, [at(a, table), at(a - step / 2, 0.74 * radius), at(a, radius), star]))
        facets.append((mid - step / 4, [star, at(a, radius), at(mid, radius)]))
        facets.append((mid + step / 4, [star, at(mid, radius), at(a + step, radius)]))
    facets.sort(key=lambda item: item[0] % (2 * math.pi))
    return facets


def _gem(p: Placement, cap: int, words: _Words) -> list[str]:
    x, y, r = p.x, p.y, p.size
    out: list[str] = []
    kinds = _sequence(shown_counts(p.department.counts, cap))
    radius = r * 0.92
    if not kinds:
        # A rough stone, not yet cut.
        rough = []
        for k, wobble in enumerate((1.0, 0.82, 0.95, 0.78, 0.9, 0.85, 1.0, 0.8)):
            a = 2 * math.pi * k / 8 + 0.3
            rough.append(
                f"{_f(x + radius * 0.6 * wobble * math.sin(a))},"
                f"{_f(y - radius * 0.52 * wobble * math.cos(a))}"
            )
        out.append(
            f'<polygon points="{" ".join(rough)}" fill="#D9D4CC" stroke="#8C857B" '
            f'stroke-width="1.6" stroke-dasharray="5 4"/>'
        )
        return out
    gold = GOLD
    out.append(
        f'<polygon points="{_polygon(x, y, radius + 4, 16)}" fill="{gold}" stroke="#7D6220" '
        f'stroke-width="1.5"/>'
    )
    facets = _brilliant(radius)
    # Contributions take facets spread evenly around the stone; the others stay clear.
    chosen = {math.floor(i * len(facets) / len(kinds)): kind for i, kind in enumerate(kinds)}
    for index, (_angle, polygon) in enumerate(facets):
        points = " ".join(f"{_f(x + px)},{_f(y + py)}" for px, py in polygon)
        kind = chosen.get(index)
        if kind is None:
            out.append(
                f'<polygon points="{points}" fill="#EEF3F6" stroke="#C3CED6" stroke-width="1"/>'
            )
        else:
            out.append(
                f'<polygon points="{points}" fill="{KIND_COLOURS[kind]}" stroke="#FFFFFF" '
                f'stroke-width="1.1" stroke-linejoin="round" data-kind="{kind.value}"/>'
            )
    out.append(
        f'<polygon points="{_polygon(x, y, radius * 0.5, 8)}" fill="#F7FAFC" stroke="#C3CED6" '
        f'stroke-width="1.2"/>'
    )
    label = str(p.department.total)
    size = min(radius * 0.36, radius * 0.75 / max(1, len(label)) * 1.25)
    out.append(_text(x, y + size * 0.36, label, size, weight="bold", fill="#2B4C7E"))
    return out


def _masonry(width: float, height: float, cap: int) -> tuple[int, float]:
    """Stones per course and course height for a pillar that holds `cap` stones in `height`:
    the bond whose stones come closest to a brick's proportions."""
    best: tuple[float, int, float] | None = None
    for per_course in (2, 3, 4, 5, 6):
        course_h = min(40.0, height / math.ceil(cap / per_course))
        stone_w = width / per_course
        misfit = abs(math.log(course_h / (stone_w * 0.62)))
        if best is None or misfit < best[0]:
            best = (misfit, per_course, course_h)
    assert best is not None  # noqa: S101 - the loop runs
    return best[1], best[2]


def _pillar(p: Placement, cap: int, words: _Words) -> list[str]:
    x, floor = p.x, p.y
    half = p.size
    out: list[str] = []
    kinds = _sequence(shown_counts(p.department.counts, cap))
    per_course, course_h = _masonry(2 * half, p.figure.height - 34, cap)
    stone_w = 2 * half / per_course
    if not kinds:
        out.append(
            f'<rect x="{_f(x - half)}" y="{_f(floor - course_h)}" width="{_f(2 * half)}" '
            f'height="{_f(course_h)}" rx="2" fill="none" stroke="#8E7B63" stroke-width="1.6" '
            f'stroke-dasharray="5 4"/>'
        )
        return out
    for i, kind in enumerate(kinds):
        course, column = divmod(i, per_course)
        sx = x - half + column * stone_w
        sy = floor - (course + 1) * course_h
        out.append(
            f'<rect x="{_f(sx + 1)}" y="{_f(sy + 1)}" width="{_f(stone_w - 2)}" '
            f'height="{_f(course_h - 2)}" rx="2" fill="{KIND_COLOURS[kind]}" '
            f'stroke="#FFFFFF" stroke-width="0.8" data-kind="{kind.value}"/>'
        )
    top = floor - math.ceil(len(kinds) / per_course) * course_h
    out.append(
        f'<rect x="{_f(x - half - 6)}" y="{_f(top - 9)}" width="{_f(2 * half + 12)}" '
        f'height="9" rx="2" fill="#B9A78E" stroke="#8E7B63" stroke-width="1"/>'
    )
    return out


def _badge(p: Placement, more: int, words: _Words, building: bool) -> list[str]:
    text = words("more", count=more)
    tooltip = words("more_title", count=more)
    if building:
        size = 13.0
        w = text_width(text, size) + 12
        top = p.figure.y0 + 2
        box = Box(p.x - w / 2, top, p.x + w / 2, top + size + 8)
    else:
        size = _badge_size(p.size)
        box = _badge_box(p.x, p.y, p.size, text)
    return [
        f'<g class="more"><title>{_esc(tooltip)}</title>'
        f'<rect x="{_f(box.x0)}" y="{_f(box.y0)}" width="{_f(box.width)}" '
        f'height="{_f(box.height)}" rx="{_f(box.height / 2)}" fill="{INK}"/>'
        + _text(
            (box.x0 + box.x1) / 2,
            box.y1 - (box.height - size * 0.72) / 2,
            text,
            size,
            weight="bold",
            fill="#FFFFFF",
        )
        + "</g>"
    ]


def _label_svg(label: Label, plaque: str, opacity: float) -> list[str]:
    b = label.box
    out = [
        f'<rect x="{_f(b.x0)}" y="{_f(b.y0)}" width="{_f(b.width)}" height="{_f(b.height)}" '
        f'rx="8" fill="{plaque}" fill-opacity="{_f(opacity)}"/>'
    ]
    ys = label.baselines()
    cx = (b.x0 + b.x1) / 2
    for line, y in zip(label.lines, ys, strict=False):
        out.append(_text(cx, y, line, label.size, weight="bold"))
    out.append(_text(cx, ys[-1], label.note, label.note_size, fill=MUTED))
    return out


def _catmull(points: Sequence[tuple[float, float]], closed: bool) -> str:
    """A smooth path through `points` (Catmull–Rom as cubic Béziers)."""
    n = len(points)
    pts = list(points)
    parts = [f"M{_f(pts[0][0])} {_f(pts[0][1])}"]
    last = n if closed else n - 1
    for i in range(last):
        p0 = pts[(i - 1) % n] if closed or i > 0 else pts[0]
        p1 = pts[i]
        p2 = pts[(i + 1) % n]
        p3 = pts[(i + 2) % n] if closed or i + 2 < n else p2
        c1 = (p1[0] + (p2[0] - p0[0]) / 6, p1[1] + (p2[1] - p0[1]) / 6)
        c2 = (p2[0] - (p3[0] - p1[0]) / 6, p2[1] - (p3[1] - p1[1]) / 6)
        parts.append(f"C{_f(c1[0])} {_f(c1[1])} {_f(c2[0])} {_f(c2[1])} {_f(p2[0])} {_f(p2[1])}")
    if closed:
        parts.append("Z")
    return " ".join(parts)


def _stems(lay: PosterLayout) -> list[str]:
    """The bouquet's stems, gathered in a bow of raffia below the lowest tier."""
    ((kx, ky),) = lay.anchors
    out: list[str] = []
    for p in lay.placements:
        cx, cy = p.x + (kx - p.x) * 0.2, p.y + (ky - p.y) * 0.65
        out.append(
            f'<path d="M{_f(p.x)} {_f(p.y)} Q{_f(cx)} {_f(cy)} {_f(kx)} {_f(ky)}" fill="none" '
            f'stroke="#6E9B72" stroke-width="{_f(max(2.5, p.size * 0.05))}" '
            f'stroke-linecap="round"/>'
        )
    ends = max(3, min(7, len(lay.placements)))
    end_y = min(lay.main.y1 - 4, ky + 130)
    for i in range(ends):
        spread = (i - (ends - 1) / 2) * 11
        out.append(
            f'<path d="M{_f(kx)} {_f(ky)} L{_f(kx + spread)} {_f(end_y)}" stroke="#6E9B72" '
            f'stroke-width="3.5" stroke-linecap="round"/>'
        )
    ribbon, edge = THREADS["bloemen"], "#7A5536"
    k = 1.5
    for side in (-1, 1):
        bx, by = kx + side * 26 * k, ky - 6 * k
        out.append(
            f'<ellipse cx="{_f(bx)}" cy="{_f(by)}" rx="{_f(28 * k)}" ry="{_f(14 * k)}" '
            f'transform="rotate({side * -22} {_f(bx)} {_f(by)})" fill="{ribbon}" '
            f'stroke="{edge}" stroke-width="2"/>'
        )
        out.append(
            f'<path d="M{_f(kx)} {_f(ky)} L{_f(kx + side * 30 * k)} {_f(ky + 58 * k)} '
            f'L{_f(kx + side * 16 * k)} {_f(ky + 52 * k)} Z" fill="{ribbon}" stroke="{edge}" '
            f'stroke-width="2" stroke-linejoin="round"/>'
        )
    out.append(
        f'<rect x="{_f(kx - 11 * k)}" y="{_f(ky - 15 * k)}" width="{_f(22 * k)}" '
        f'height="{_f(26 * k)}" rx="{_f(7 * k)}" fill="{ribbon}" stroke="{edge}" '
        f'stroke-width="2"/>'
    )
    return out


def _strands(lay: PosterLayout) -> list[str]:
    """The necklace: a chain per strand, from one neck point through its gems to the other."""
    (lx, ly), (rx, ry) = lay.anchors
    gold = GOLD
    out = [
        f'<path d="M{_f(lx)} {_f(ly)} Q{_f((lx + rx) / 2)} {_f(ly - 34)} {_f(rx)} {_f(ry)}" '
        f'fill="none" stroke="{gold}" stroke-width="4"/>'
    ]
    for row in lay.rows:
        gems = sorted((lay.placements[i] for i in row), key=lambda p: p.x)
        points = [(lx, ly), *((p.x, p.y) for p in gems), (rx, ry)]
        path = _catmull(points, closed=False)
        out.append(f'<path d="{path}" fill="none" stroke="{gold}" stroke-width="4.5"/>')
        out.append(
            f'<path d="{path}" fill="none" stroke="#F3E2A9" stroke-width="1.6" '
            f'stroke-dasharray="2 7" stroke-linecap="round"/>'
        )
    for x, y in lay.anchors:
        out.append(
            f'<circle cx="{_f(x)}" cy="{_f(y)}" r="9" fill="{gold}" stroke="#7D6220" '
            f'stroke-width="1.5"/>'
        )
    return out


def _threads(lay: PosterLayout, data: PosterData) -> list[str]:
    """Ribbons, threads or arches between connected departments; width grows with the count."""
    where = {p.department.id: p for p in lay.placements}
    colour = THREADS[data.symbolism]
    cx = sum(p.x for p in lay.placements) / len(lay.placements)
    cy = sum(p.y for p in lay.placements) / len(lay.placements)
    out: list[str] = []
    for (a, b), weight in sorted(_links(data).items(), key=lambda item: item[1]):
        pa, pb = sorted((where[a], where[b]), key=lambda p: (p.x, p.y))
        width = 3 + 3 * min(weight, 5)
        ya, yb = pa.y, pb.y
        # Curves bow towards the middle of the drawing, like the chords of a circle; the control
        # point stays inside the drawing's area, so the whole curve does too.
        mx, my = (pa.x + pb.x) / 2, (ya + yb) / 2
        if data.symbolism == "bouwstenen":
            # Arches: from the foot of one pillar over to the foot of the other.
            ya, yb = ya - 12, yb - 12
            mx, my = mx, min(ya, yb) - max(90.0, abs(pb.x - pa.x) * 0.45)
        elif abs(mx - cx) + abs(my - cy) < 1:
            mx, my = mx + (pb.y - pa.y) * 0.3, my - (pb.x - pa.x) * 0.3
        else:
            mx, my = mx + (cx - mx) * 0.55, my + (cy - my) * 0.55
        qx = min(max(mx, lay.main.x0 + 10), lay.main.x1 - 10)
        qy = min(max(my, lay.main.y0 + 10), lay.main.y1 - 10)
        d = f"M{_f(pa.x)} {_f(ya)} Q{_f(qx)} {_f(qy)} {_f(pb.x)} {_f(yb)}"
        out.append(
            f'<g class="connection" data-from="{_esc(a)}" data-to="{_esc(b)}" '
            f'data-weight="{weight}">'
            f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="{_f(width)}" '
            f'stroke-opacity="0.7" stroke-linecap="round"/>'
            f'<path d="{d}" fill="none" stroke="#FFFFFF" stroke-width="{_f(max(1, width / 5))}" '
            f'stroke-opacity="0.4" stroke-linecap="round"/></g>'
        )
    return out


def _building_frame(lay: PosterLayout) -> list[str]:
    assert lay.roof is not None  # noqa: S101 - only called for the building
    roof = lay.roof
    stone, edge = "#E4D6C0", "#8E7B63"
    cx = (roof.x0 + roof.x1) / 2
    out = [
        f'<polygon points="{_f(roof.x0)},{_f(roof.y1)} {_f(cx)},{_f(roof.y0)} '
        f'{_f(roof.x1)},{_f(roof.y1)}" fill="{stone}" stroke="{edge}" stroke-width="2" '
        f'stroke-linejoin="round"/>',
        f'<rect x="{_f(roof.x0)}" y="{_f(roof.y1)}" width="{_f(roof.width)}" height="16" '
        f'fill="#CDBBA0" stroke="{edge}" stroke-width="1.5"/>',
        f'<circle cx="{_f(cx)}" cy="{_f(roof.y1 - roof.height * 0.38)}" '
        f'r="{_f(roof.height * 0.2)}" fill="#F6EFE3" stroke="{edge}" stroke-width="2"/>',
        f'<circle cx="{_f(cx)}" cy="{_f(roof.y1 - roof.height * 0.38)}" '
        f'r="{_f(roof.height * 0.11)}" fill="none" stroke="{edge}" stroke-width="1.2"/>',
    ]
    walls_top = roof.y1 + 16
    for band in lay.bands:
        out.append(
            f'<rect x="{_f(band.x0)}" y="{_f(walls_top)}" width="{_f(band.width)}" '
            f'height="{_f(band.y0 - walls_top)}" fill="#F3EADC" stroke="{edge}" '
            f'stroke-width="1.2"/>'
        )
        walls_top = band.y1
    for i, band in enumerate(lay.bands):
        last = i == len(lay.bands) - 1
        out.append(
            f'<rect x="{_f(band.x0 - 10)}" y="{_f(band.y0)}" width="{_f(band.width + 20)}" '
            f'height="{_f(band.height)}" fill="#D9CBB4" stroke="{edge}" stroke-width="1.5"/>'
        )
        if last:
            for step in range(2):
                grow = 14 + step * 12
                out.append(
                    f'<rect x="{_f(band.x0 - grow)}" y="{_f(band.y1 + step * 12)}" '
                    f'width="{_f(band.width + 2 * grow)}" height="12" fill="#CDBBA0" '
                    f'stroke="{edge}" stroke-width="1.2"/>'
                )
    return out


def _legend(lay: PosterLayout, words: _Words, symbolism: str) -> list[str]:
    box = lay.legend
    out = [
        f'<rect x="{_f(box.x0)}" y="{_f(box.y0)}" width="{_f(box.width)}" '
        f'height="{_f(box.height)}" rx="14" fill="#FFFFFF" fill-opacity="0.7" stroke="#E2D8C6" '
        f'stroke-width="1.5"/>',
        _text(
            box.x0 + 22, box.y0 + 22 + 20, words("legend_title"), 21, weight="bold", anchor="start"
        ),
    ]
    col_w = (box.width - 44) / 3
    top = box.y0 + 22 + 24 + 14
    for i, kind in enumerate(KINDS):
        col, row = i % 3, i // 3
        x = box.x0 + 22 + col * col_w
        y = top + row * 62
        colour = KIND_COLOURS[kind]
        sx, sy = x + 16, y + 22
        if symbolism == "bloemen":
            swatch = (
                f'<path d="{_petal(30, 10, 0)}" transform="translate({_f(sx)} {_f(sy + 15)})" '
                f'fill="{colour}" stroke="#FFFFFF" stroke-width="1.2" data-legend="{kind.value}"/>'
            )
        elif symbolism == "briljanten":
            swatch = (
                f'<path d="{_sector(sx, sy + 14, 30, -0.45, 0.45)}" fill="{colour}" '
                f'stroke="#FFFFFF" stroke-width="1.2" data-legend="{kind.value}"/>'
            )
        else:
            swatch = (
                f'<rect x="{_f(sx - 15)}" y="{_f(sy - 10)}" width="30" height="20" rx="2" '
                f'fill="{colour}" data-legend="{kind.value}"/>'
            )
        out.append(swatch)
        title = _cut(words.kind(kind), 19, col_w - 52)
        discipline = _cut(words.discipline(kind), 15, col_w - 52)
        out.append(_text(x + 42, y + 20, title, 19, weight="bold", anchor="start"))
        out.append(_text(x + 42, y + 42, discipline, 15, anchor="start", fill=MUTED))
    y = top + 2 * 62 + 8
    unit, thread = _legend_lines(words, box.width - 44)
    for line in unit:
        out.append(_text(box.x0 + 22, y + 15, line, 15, anchor="start", fill=INK))
        y += 15 * 1.35
    for line in thread:
        out.append(_text(box.x0 + 22, y + 15, line, 15, anchor="start", fill=INK))
        y += 15 * 1.35
    return out


def _goals(lay: PosterLayout, words: _Words, symbolism: str) -> list[str]:
    out = [
        _text(
            WIDTH / 2,
            lay.goals_title_y,
            words("goals_title"),
            22,
            weight="bold",
            fill=ACCENTS[symbolism],
        )
    ]
    if not lay.tags:
        out.append(_text(WIDTH / 2, lay.goals_title_y + 34, words("goals_none"), 16, fill=MUTED))
    for tag in lay.tags:
        b = tag.box
        hole_x = b.x0 + 18
        out.append(
            f'<g class="goal" data-goal="{_esc(tag.goal.id)}">'
            f'<path d="M{_f(b.x0 + 14)} {_f(b.y0)} H{_f(b.x1 - 10)} Q{_f(b.x1)} {_f(b.y0)} '
            f"{_f(b.x1)} {_f(b.y0 + 10)} V{_f(b.y1 - 10)} Q{_f(b.x1)} {_f(b.y1)} {_f(b.x1 - 10)} "
            f'{_f(b.y1)} H{_f(b.x0 + 14)} L{_f(b.x0)} {_f(b.y1 - 14)} V{_f(b.y0 + 14)}Z" '
            f'fill="#FFFFFF" stroke="{ACCENTS[symbolism]}" stroke-width="1.8"/>'
            f'<circle cx="{_f(hole_x)}" cy="{_f((b.y0 + b.y1) / 2)}" r="5" fill="{PAPER}" '
            f'stroke="{ACCENTS[symbolism]}" stroke-width="1.5"/>'
        )
        y = b.y0 + 12 + tag.size
        for line in tag.lines:
            out.append(_text(b.x0 + 34, y, line, tag.size, weight="bold", anchor="start"))
            y += tag.size * 1.2
        if tag.note:
            out.append(_text(b.x0 + 34, y + 2, tag.note, 14, anchor="start", fill=MUTED))
        out.append("</g>")
    return out


def render_svg(data: PosterData, prompts: PromptLibrary) -> str:
    """The poster as a self-contained A3 SVG document (text, no external references)."""
    words = _Words(prompts, data)
    lay = layout(data, prompts)
    sym = data.symbolism
    cap = CAPS[sym]
    accent = ACCENTS[sym]
    title = words("title", organisation=data.organisation, kicker=words.sym("kicker"))
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_MM[0]}mm" '
        f'height="{PAGE_MM[1]}mm" viewBox="0 0 {_f(WIDTH)} {_f(HEIGHT)}" '
        f'font-family="{FONT}" xml:lang="{_esc(data.language)}" role="img" '
        f'data-symbolism="{_esc(sym)}">',
        f"<title>{_esc(title)}</title>",
        f"<desc>{_esc(words.sym('subtitle'))}. {_esc(lay.meta[0])}</desc>",
        f'<rect x="0" y="0" width="{_f(WIDTH)}" height="{_f(HEIGHT)}" fill="{PAPER}"/>',
        f'<rect x="18" y="18" width="{_f(WIDTH - 36)}" height="{_f(HEIGHT - 36)}" rx="18" '
        f'fill="none" stroke="{accent}" stroke-opacity="0.35" stroke-width="2"/>',
    ]

    # Header.
    out.append(_text(WIDTH / 2, 96, lay.kicker, 22, weight="bold", fill=accent, spacing=5))
    y = 96 + 14 + lay.title_size
    for line in lay.title:
        out.append(_text(WIDTH / 2, y, line, lay.title_size, weight="bold"))
        y += lay.title_size * 1.12
    y += 44 - lay.title_size * 1.12
    for line in lay.subtitle:
        out.append(_text(WIDTH / 2, y, line, 24, fill=MUTED, style="italic"))
        y += 24 * 1.25
    y += 36 - 24 * 1.25
    for line in lay.meta:
        out.append(_text(WIDTH / 2, y, line, 19, fill=MUTED))
        y += 19 * 1.3
    rule = lay.header.y1 - 4
    out.append(
        f'<path d="M{_f(WIDTH / 2 - 160)} {_f(rule)} H{_f(WIDTH / 2 + 160)}" stroke="{accent}" '
        f'stroke-width="2" stroke-opacity="0.6"/>'
    )

    # The figure: frame, threads behind the departments, the departments, their labels.
    out.append('<g class="figure">')
    if sym == "bouwstenen":
        out.extend(_building_frame(lay))
    elif sym == "briljanten":
        out.extend(_strands(lay))
    else:
        out.extend(_stems(lay))
    out.append('<g class="connections">')
    out.extend(_threads(lay, data))
    out.append("</g>")
    draw = {"bloemen": _flower, "briljanten": _gem, "bouwstenen": _pillar}[sym]
    for p in lay.placements:
        dept = p.department
        counts = " ".join(f"{k.value}:{dept.counts.get(k, 0)}" for k in KINDS)
        tooltip = words(
            "department_title",
            department=dept.name,
            contributions=words.count("contributions", dept.total),
        )
        out.append(
            f'<g class="department" data-department="{_esc(dept.id)}" '
            f'data-total="{dept.total}" data-counts="{counts}"><title>{_esc(tooltip)}</title>'
        )
        out.extend(draw(p, cap, words))
        more = _more(dept, cap)
        if more:
            out.extend(_badge(p, more, words, sym == "bouwstenen"))
        out.append("</g>")
    plaque = "#F6EFE3" if sym == "bouwstenen" else PAPER
    for p in lay.placements:
        out.append('<g class="label">')
        out.extend(_label_svg(p.label, plaque, 1.0 if sym == "bouwstenen" else 0.9))
        out.append("</g>")
    out.append("</g>")

    out.extend(_goals(lay, words, sym))
    out.extend(_legend(lay, words, sym))

    y = lay.footer_y
    for line in lay.footer:
        out.append(_text(MARGIN, y, line, 15, anchor="start", fill=MUTED))
        y += 15 * 1.3
    out.append(
        _text(
            WIDTH - MARGIN,
            lay.footer_y + (len(lay.footer) - 1) * 15 * 1.3,
            words("made_with"),
            15,
            anchor="end",
            fill=accent,
            weight="bold",
        )
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- conversion ----------------------------------------------------------------------------------

PNG_DPI = 150


def png_size(dpi: int = PNG_DPI) -> tuple[int, int]:
    """The pixel size of the A3 page at `dpi`."""
    return round(PAGE_MM[0] / 25.4 * dpi), round(PAGE_MM[1] / 25.4 * dpi)


def _convert(svg: str, target: Format, dpi: int) -> bytes:
    import cairosvg  # type: ignore[import-untyped]  # no type information published

    source = svg.encode("utf-8")
    if target == "png":
        width, height = png_size(dpi)
        data = cairosvg.svg2png(
            bytestring=source, output_width=width, output_height=height, unsafe=False
        )
    else:
        # The page size comes from the SVG's width and height in millimetres: A3.
        data = cairosvg.svg2pdf(bytestring=source, unsafe=False)
    return bytes(data)


async def to_png(svg: str, *, dpi: int = PNG_DPI) -> bytes:
    """The poster as a PNG of the A3 page at `dpi` (150: 1754 × 2480 pixels), off the loop."""
    return await asyncio.to_thread(_convert, svg, "png", dpi)


async def to_pdf(svg: str) -> bytes:
    """The poster as a one-page A3 PDF (841.9 × 1190.6 pt), vector, off the loop."""
    return await asyncio.to_thread(_convert, svg, "pdf", 72)


async def export(svg: str, target: Format, *, dpi: int = PNG_DPI) -> bytes:
    """The poster in `target` format: the SVG's own bytes, or a PNG or PDF conversion."""
    if target == "svg":
        return svg.encode("utf-8")
    if target == "png":
        return await to_png(svg, dpi=dpi)
    return await to_pdf(svg)


def media_type(target: Format) -> str:
    return {"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf"}[target]
