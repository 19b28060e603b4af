"""Themes for a contribution: which of the organisation's themes it is about, best first.

Two signals, so a theme is found in a short reply as well as in a long share:

- **keywords**, Dutch and English, matched on Snowball stems of case- and accent-folded words
  ("werkdruk", "de werkdruk verlagen", "Workload" and "ingewerkt" all hit), with Dutch compounds
  ("avondwerkdruk", "ziekteverzuim") caught by a long keyword at either end of a word. A theme's
  id and title count as keywords; the four default themes bring a vocabulary of their own.
- **similarity** of the text to the theme's title, description and keywords, with the configured
  embedder. What counts as similar differs per embedder and per theme (e5 rarely says less than
  0.75, n-grams about 0.05), so each theme's threshold is calibrated on texts about nothing in
  particular: a theme is found by similarity alone only when the text is clearly closer to it
  than any of those are.

An embedder that fails (an endpoint that is down) costs the similarity, never the contribution:
the keywords still tag it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import snowballstemmer
from numpy.typing import NDArray

from bot.config import Theme
from bot.embedders import Embedder
from bot.embedders import _fold as fold  # the lexical embedder's folding: "Één" is "een"

log = logging.getLogger(__name__)

MAX_THEMES = 3
# A keyword at least this long also counts at the start or end of a compound word.
COMPOUND_MIN = 6
KEYWORD_SCORE = 1.0  # one keyword hit outweighs any similarity
EXTRA_KEYWORD_SCORE = 0.25  # each further distinct keyword of the same theme
# Similarity alone finds a theme when it beats the off-topic texts' highest similarity to that
# theme by this many of their standard deviations. Measured on 22 labelled sentences
# (bench/themes.py): no unrelated theme came within 0.86 σ of the off-topic maximum + 2 σ with
# e5 or 1.17 σ with n-grams; 1.5 σ keeps a margin and still finds what keywords miss.
SIGMAS = 1.5
# The similarity waits at most this long for the embedder (a busy model, a slow endpoint); then
# the keywords alone decide, so storing a contribution is never held up for long.
SIMILARITY_TIMEOUT = 1.5

# Words for the four default themes, for an organisation that does not give its own.
DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "werkdruk": (
        "werkdruk",
        "werkbelasting",
        "tijdsdruk",
        "drukte",
        "overwerk",
        "overuren",
        "piekbelasting",
        "taakverdeling",
        "onderbezetting",
        "personeelstekort",
        "uitloop",
        "workload",
        "work pressure",
        "overtime",
        "understaffed",
    ),
    "verzuim": (
        "verzuim",
        "ziekteverzuim",
        "ziek",
        "ziekmelding",
        "ziekgemeld",
        "burn-out",
        "burnout",
        "overspannen",
        "re-integratie",
        "vitaliteit",
        "absenteeism",
        "sick leave",
        "sickness absence",
        "sick",
        "return to work",
    ),
    "innovatie": (
        "innovatie",
        "innovatief",
        "innoveren",
        "experiment",
        "experimenteren",
        "pilot",
        "proeftuin",
        "uitproberen",
        "nieuwe werkwijze",
        "innovation",
        "innovative",
        "new way of working",
    ),
    "klanttevredenheid": (
        "klanttevredenheid",
        "tevredenheid",
        "ontevreden",
        "klacht",
        "compliment",
        "patiëntervaring",
        "patiënttevredenheid",
        "wachttijd",
        "bejegening",
        "customer satisfaction",
        "complaint",
        "patient experience",
        "waiting time",
    ),
}

# Things people say at work that are about none of the themes: what "unrelated" looks like to
# an embedder, per theme.
OFF_TOPIC = (
    "De printer op de tweede verdieping heeft een nieuwe toner nodig.",
    "Volgende week is de kantine op vrijdag gesloten.",
    "De parkeerplaats wordt in mei opnieuw geasfalteerd.",
    "Het nieuwe logo hangt sinds maandag bij de ingang.",
    "Het wifi-wachtwoord voor gasten is veranderd.",
    "Onze collega van financiën gaat na dertig jaar met pensioen.",
    "De brandoefening duurde langer dan gepland.",
    "Er staan verse bloemen bij de receptie.",
    "De kerstborrel is dit jaar op donderdag 18 december.",
    "Wie heeft de sleutel van kast drie gezien?",
    "De lift aan de oostkant doet het weer.",
    "Vergeet niet je declaraties voor het eind van de maand in te dienen.",
    "De nieuwe koffieautomaat maakt ook cappuccino.",
    "Het jaarverslag staat op intranet.",
    "The meeting room on the first floor has a new screen.",
    "Please return the borrowed laptops to the service desk.",
)

_WORD = re.compile(r"\w+(?:-\w+)*")


@dataclass(frozen=True, slots=True)
class _Calibration:
    vectors: NDArray[np.float32]  # one row per theme
    thresholds: NDArray[np.float32]  # per theme: the cosine a text must exceed
    spread: NDArray[np.float32]  # per theme: off-topic standard deviation, to scale the excess


# What was measured, per embedder (held weakly) and theme texts: the same model and the same
# words always measure the same, so another tagger in this process (a second organisation, the
# tests, the demo) does not embed the off-topic texts again. Nothing else is shared.
_MEASURED: weakref.WeakKeyDictionary[Embedder, dict[tuple[str, ...], _Calibration]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class ThemeMatch:
    """One theme found in a text, and why."""

    theme_id: str
    score: float
    keywords: tuple[str, ...]  # the keywords that hit, as configured
    similarity: float  # above the theme's calibrated threshold: > 0; at or below it: ≤ 0


@dataclass(frozen=True, slots=True)
class _Keyword:
    text: str
    stems: tuple[tuple[str, str], ...]  # per word: (Dutch stem, English stem)


class _Stemmer:
    """Dutch and English Snowball stems of folded words. Snowball stemmers keep state between
    calls, so each tagger has its own; they are only used on the event loop's thread."""

    def __init__(self) -> None:
        self._dutch = snowballstemmer.stemmer("dutch")
        self._english = snowballstemmer.stemmer("english")
        self.stem = lru_cache(maxsize=32768)(self._stem)

    def _stem(self, word: str) -> tuple[str, str]:
        return self._dutch.stemWord(word), self._english.stemWord(word)

    def words(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for word in _WORD.findall(fold(text)):
            out.append(self.stem(word))
            if "-" in word:  # "burn-out" is also "burnout"; "re-integratie" also "reintegratie"
                out[-1] = self.stem(word.replace("-", ""))
        return out


def _same(word: tuple[str, str], keyword: tuple[str, str], *, compound: bool) -> bool:
    if word[0] == keyword[0] or word[1] == keyword[1]:
        return True
    if not compound or len(keyword[0]) < COMPOUND_MIN:
        return False
    return word[0].startswith(keyword[0]) or word[0].endswith(keyword[0])


class ThemeTagger:
    """Finds the organisation's themes in a text. One per process; cheap to call.

    `embedder` is a function, not an embedder: the composition root may replace the matcher's
    embedder at start (an endpoint's session only exists then), and the tagger follows it.
    Without one, only keywords count.
    """

    def __init__(
        self,
        themes: Sequence[Theme],
        *,
        embedder: Callable[[], Embedder] | None = None,
        limit: int = MAX_THEMES,
        timeout: float = SIMILARITY_TIMEOUT,
    ) -> None:
        self.themes = tuple(themes)
        self._embedder = embedder
        self._limit = limit
        self._timeout = timeout
        self._stemmer = _Stemmer()
        self._keywords = {t.id: self._vocabulary(t) for t in self.themes}
        self._calibrations: dict[str, asyncio.Task[_Calibration]] = {}

    def _vocabulary(self, theme: Theme) -> tuple[_Keyword, ...]:
        words = [theme.id.replace("-", " ").replace("_", " "), theme.title, *theme.keywords]
        if not theme.keywords:
            words += DEFAULT_KEYWORDS.get(theme.id, ())
        seen: set[tuple[tuple[str, str], ...]] = set()
        out: list[_Keyword] = []
        for word in words:
            stems = tuple(self._stemmer.words(word))
            if stems and stems not in seen:
                seen.add(stems)
                out.append(_Keyword(word, stems))
        return tuple(out)

    def _theme_text(self, theme: Theme) -> str:
        words = theme.keywords or DEFAULT_KEYWORDS.get(theme.id, ())
        parts = [theme.title or theme.id, theme.description, ", ".join(words)]
        return ". ".join(p.strip() for p in parts if p.strip())

    # --- keywords -----------------------------------------------------------------------------

    def keywords(self, text: str) -> dict[str, tuple[str, ...]]:
        """Per theme, the keywords that occur in `text` (themes without any are left out)."""
        words = self._stemmer.words(text)
        found: dict[str, tuple[str, ...]] = {}
        for theme in self.themes:
            hits = tuple(kw.text for kw in self._keywords[theme.id] if _occurs(kw.stems, words))
            if hits:
                found[theme.id] = hits
        return found

    # --- similarity ---------------------------------------------------------------------------

    async def _calibration(self, embedder: Embedder) -> _Calibration:
        """The calibration for this embedder and these themes, measured once. It runs as a
        task of its own, so that a caller that stops waiting (timeout) does not stop it: the
        next caller finds it done."""
        texts = tuple(self._theme_text(t) for t in self.themes)
        measured = _MEASURED.get(embedder, {}).get(texts)
        if measured is not None:
            return measured
        task = self._calibrations.get(embedder.name)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.get_running_loop().create_task(self._calibrate(embedder, texts))
            self._calibrations = {embedder.name: task}
        return await asyncio.shield(task)

    async def _calibrate(self, embedder: Embedder, texts: tuple[str, ...]) -> _Calibration:
        vectors = await embedder.embed(list(texts), kind="passage")
        off = await embedder.embed(list(OFF_TOPIC), kind="query")
        sims = off @ vectors.T  # off-topic text × theme
        spread = np.maximum(sims.std(axis=0), np.float32(1e-3)).astype(np.float32)
        thresholds = (sims.max(axis=0) + SIGMAS * spread).astype(np.float32)
        calibration = _Calibration(vectors, thresholds, spread)
        _MEASURED.setdefault(embedder, {})[texts] = calibration
        return calibration

    async def similarities(self, text: str) -> dict[str, float]:
        """Per theme, how far `text` is above (> 0) or below the theme's calibrated threshold,
        in off-topic standard deviations. Empty when there is no embedder or it failed."""
        if self._embedder is None or not self.themes:
            return {}
        embedder = self._embedder()
        try:
            async with asyncio.timeout(self._timeout):
                calibration = await self._calibration(embedder)
                [vector] = await embedder.embed([text], kind="query")
        except Exception as exc:  # an endpoint down or slow must not lose the contribution
            log.warning("themes: similarity unavailable (%s); keywords only", exc)
            return {}
        excess = (calibration.vectors @ vector - calibration.thresholds) / calibration.spread
        return {t.id: float(e) for t, e in zip(self.themes, excess, strict=True)}

    # --- together -----------------------------------------------------------------------------

    async def matches(self, text: str) -> list[ThemeMatch]:
        """Every theme found in `text`, best first (not cut to the limit)."""
        if not text.strip():
            return []
        hits = self.keywords(text)
        similar = await self.similarities(text)
        out: list[ThemeMatch] = []
        for theme in self.themes:
            words = hits.get(theme.id, ())
            excess = similar.get(theme.id, float("-inf"))
            if not words and excess <= 0:
                continue
            score = (
                KEYWORD_SCORE + EXTRA_KEYWORD_SCORE * (len(words) - 1) if words else 0.0
            ) + max(0.0, min(excess, 3.0)) / 3.0
            out.append(ThemeMatch(theme.id, round(score, 4), words, round(excess, 4)))
        out.sort(key=lambda m: -m.score)
        return out

    async def tag(self, text: str) -> tuple[str, ...]:
        """The themes of `text`, best first, at most `limit`; none for an unrelated text."""
        return tuple(m.theme_id for m in (await self.matches(text))[: self._limit])


def _occurs(keyword: tuple[tuple[str, str], ...], words: list[tuple[str, str]]) -> bool:
    """Whether the keyword's words occur in order, next to each other, in `words`. Only a
    single-word keyword is looked for inside compounds."""
    n = len(keyword)
    if n == 1:
        return any(_same(w, keyword[0], compound=True) for w in words)
    return any(
        all(_same(words[i + j], keyword[j], compound=False) for j in range(n))
        for i in range(len(words) - n + 1)
    )
