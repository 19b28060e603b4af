"""Themes found in what people write: keywords in Dutch and English, and similarity."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from bot.config import OrgConfig, Theme, parse_config
from bot.embedders import Embedder, EmbeddingServiceError, LexicalEmbedder, Vectors
from bot.settings import EXAMPLE_CONFIG
from bot.themes import ThemeTagger

HANDOVER = "We hebben de overdracht ingekort zodat de werkdruk op de avonddienst daalt"
UNRELATED = (
    "De kerstborrel is dit jaar op donderdag in de kantine.",
    "Het dak van de fietsenstalling lekt sinds de storm.",
    "Wij hebben de jaarplanning voor de audits afgerond.",
    "Het ziekenhuis krijgt in het voorjaar een nieuwe hoofdingang.",
    "The new parking rules apply from June.",
    "De huddle werkt.",
)


def hospital(themes: list[dict[str, object]] | None = None) -> OrgConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    if themes is not None:
        data["themes"] = themes
    return parse_config(data, Path("hospital.yaml"))


@pytest.fixture(params=["keywords", "lexical", "model"])
def tagger(request: pytest.FixtureRequest, default_embedder: Embedder) -> ThemeTagger:
    """The tagger with keywords alone, with n-grams, and with this installation's best
    embedder (e5 where it runs); a generous timeout, so the model is always heard here."""
    embedder: Embedder | None = {
        "keywords": None,
        "lexical": LexicalEmbedder(),
        "model": default_embedder,
    }[request.param]
    return ThemeTagger(
        hospital().themes,
        embedder=(lambda: embedder) if embedder is not None else None,
        timeout=300,
    )


async def test_the_handover_that_lowers_workload_is_about_werkdruk(tagger: ThemeTagger) -> None:
    themes = await tagger.tag(HANDOVER)
    assert "werkdruk" in themes and "overdracht" in themes
    assert len(themes) <= 3


async def test_an_unrelated_text_gets_no_theme(tagger: ThemeTagger) -> None:
    for text in UNRELATED:
        assert await tagger.tag(text) == (), text


@pytest.mark.parametrize(
    ("text", "theme"),
    [
        ("werkdruk", "werkdruk"),
        ("We willen de werkdruk verlagen.", "werkdruk"),
        ("WERKDRUK!", "werkdruk"),
        ("The workload of the night team went down.", "werkdruk"),
        ("Minder avondwerkdruk sinds de nieuwe planning.", "werkdruk"),  # a compound
        ("Twee nieuwe collega's zijn goed ingewerkt.", "inwerken"),  # another form of the verb
        ("Na haar burnout kwam ze in stappen terug.", "verzuim"),
        ("Na haar burn-out kwam ze in stappen terug.", "verzuim"),
        ("Het ziekteverzuim is gehalveerd.", "verzuim"),
        ("Sick leave dropped after we changed the rosters.", "verzuim"),
        ("Een pilot met spraakherkenning bij de visite.", "innovatie"),
        ("Er kwamen minder klachten over de wachttijden.", "klanttevredenheid"),
        # The example organisation's own themes and words.
        ("Een vaste buddy voor elke nieuwe collega.", "inwerken"),
        ("A better handover between the shifts.", "overdracht"),
    ],
)
async def test_keywords_hit_in_any_form_and_both_languages(text: str, theme: str) -> None:
    tagger = ThemeTagger(hospital().themes)  # keywords alone
    assert (await tagger.tag(text))[:1] == (theme,), text


async def test_a_short_keyword_is_not_found_inside_another_word() -> None:
    tagger = ThemeTagger(hospital().themes)
    # "ziek" (verzuim) is in "ziekenhuis", and "druk" in "indruk": neither is about the theme.
    assert await tagger.tag("Het ziekenhuis maakte een goede indruk op de bezoekers.") == ()


async def test_similarity_finds_a_theme_without_its_words() -> None:
    tagger = ThemeTagger(hospital().themes, embedder=LexicalEmbedder)
    text = "Patiënten gaven ons een 9 voor de nieuwe wachtkamer."
    assert tagger.keywords(text) == {}
    assert await tagger.tag(text) == ("klanttevredenheid",)


async def test_best_first_and_at_most_three() -> None:
    tagger = ThemeTagger(hospital().themes, embedder=LexicalEmbedder)
    text = (
        "Door de werkdruk en de overuren was het verzuim hoog; met een pilot voor de "
        "overdracht zijn er minder klachten en minder overwerk."
    )
    matches = await tagger.matches(text)
    assert len(matches) >= 4  # werkdruk, verzuim, innovatie, overdracht, klanttevredenheid
    themes = await tagger.tag(text)
    assert len(themes) == 3
    assert themes[0] == "werkdruk"  # three of its words: werkdruk, overuren, overwerk
    assert themes == tuple(m.theme_id for m in matches[:3])


async def test_the_organisations_own_keywords_count_and_replace_the_defaults() -> None:
    config = hospital(
        [
            {"id": "overdracht", "title": "Overdracht", "keywords": ["handover", "overdragen"]},
            {"id": "werkdruk", "title": "Werkdruk", "keywords": ["personeelsdruk"]},
            {"id": "inwerken", "title": "Inwerken"},
        ]
    )
    tagger = ThemeTagger(config.themes)
    assert await tagger.tag("A shorter handover at the bedside.") == ("overdracht",)
    assert await tagger.tag("We dragen de patiënt over met een lijstje.") == ()
    assert await tagger.tag("Het overdragen gaat sneller.") == ("overdracht",)
    assert await tagger.tag("Minder personeelsdruk in de zomer.") == ("werkdruk",)
    # Its own words replace the default ones; its name still counts.
    assert await tagger.tag("Veel overuren deze maand.") == ()
    assert await tagger.tag("De werkdruk is gedaald.") == ("werkdruk",)


class Unreachable:
    """An embeddings endpoint that is down."""

    name = "unreachable"
    dimensions = 8

    async def embed(self, texts: Sequence[str], *, kind: str) -> Vectors:
        raise EmbeddingServiceError("connection refused")


async def test_keywords_still_tag_when_the_embedder_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.themes")
    tagger = ThemeTagger(hospital().themes, embedder=Unreachable)
    assert await tagger.tag(HANDOVER) == ("werkdruk", "overdracht")
    assert "keywords only" in caplog.text


def test_default_themes_keep_their_place_in_the_config() -> None:
    ids = [t.id for t in hospital().themes]
    assert ids[:4] == ["werkdruk", "verzuim", "innovatie", "klanttevredenheid"]
    assert Theme(id="x").keywords == ()
