"""The matcher's two questions: are these alike (similarity), could this lesson help there
(relevance) — through `boeket match score` and the functions behind it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from bot.cli import main
from bot.clock import ManualClock
from bot.domain import Contribution, Kind, NewContribution, Person, Source
from bot.embedders import Embedder, LexicalEmbedder, asymmetric
from bot.embedders import Kind as EmbedKind
from bot.matcher import Matcher, WordMask, score_pairs
from bot.vectorindex import Filters
from storage.db import Database
from storage.repositories import ContributionRepository, VectorRepository

# From the product's own example: a lesson that shares few words with the problem it solves,
# and one that shares many words with it but not its need.
NEWCOMERS = "Drie van onze nieuwe docenten zijn dit schooljaar alweer vertrokken."
BUDDY = (
    "Elke nieuwkomer krijgt de eerste maand een vaste buddy uit het team; sindsdien blijven "
    "starters langer."
)
FIRE_DRILL = (
    "Nieuwe docenten krijgen dit schooljaar de checklist voor de brandoefening op hun eerste "
    "werkdag."
)
UNRELATED = "De parkeerplaats wordt in mei opnieuw geasfalteerd."
NOW = datetime(2027, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from BOEKET_* variables; the developer's own must not leak into a test."""
    for name in list(os.environ):
        if name.startswith("BOEKET_"):
            monkeypatch.delenv(name)


def _write_pairs(path: Path, pairs: list[tuple[str, str]]) -> None:
    lines = ["sentence_a\tsentence_b\tscore"] + [f"{a}\t{b}\t0" for a, b in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_match_score_relevance_prints_one_score_per_pair_in_input_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], default_embedder: Embedder
) -> None:
    pairs = [
        (BUDDY, NEWCOMERS),
        (UNRELATED, NEWCOMERS),
        (FIRE_DRILL, NEWCOMERS),
        (NEWCOMERS, BUDDY),  # the same two texts, roles swapped
        (BUDDY, NEWCOMERS),  # a repeated pair gets the same score
    ]
    path = tmp_path / "pairs.tsv"
    _write_pairs(path, pairs)

    assert main(["match", "score", "--pairs", str(path), "--mode", "relevance"]) == 0

    printed = [float(line) for line in capsys.readouterr().out.splitlines()]
    # Each pair scored on its own, in the file's order, gives the same numbers.
    alone = [asyncio.run(score_pairs(default_embedder, [pair], "relevance"))[0] for pair in pairs]
    assert printed == pytest.approx(alone, abs=1e-4)
    assert printed[0] == pytest.approx(printed[4], abs=1e-4)
    assert printed[0] > printed[1]  # a lesson that helps, above one about something else


def test_match_score_rejects_a_file_without_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text(f"{BUDDY}\t{NEWCOMERS}\n", encoding="utf-8")

    assert main(["match", "score", "--pairs", str(path), "--mode", "relevance"]) != 0
    assert capsys.readouterr().out == ""


async def test_relevance_is_asymmetric_and_similarity_is_not(default_embedder: Embedder) -> None:
    assert not isinstance(default_embedder, LexicalEmbedder), "this installation has a model"
    there, back = await score_pairs(
        default_embedder, [(BUDDY, NEWCOMERS), (NEWCOMERS, BUDDY)], "relevance"
    )
    alike_there, alike_back = await score_pairs(
        default_embedder, [(BUDDY, NEWCOMERS), (NEWCOMERS, BUDDY)], "similarity"
    )

    assert alike_there == pytest.approx(alike_back, abs=1e-5)
    assert abs(there - back) > 1e-3


async def test_relevance_prefers_the_lesson_that_helps_over_the_one_that_shares_words(
    default_embedder: Embedder,
) -> None:
    helps, decoy = await score_pairs(
        default_embedder, [(BUDDY, NEWCOMERS), (FIRE_DRILL, NEWCOMERS)], "relevance"
    )
    alike_helps, alike_decoy = await score_pairs(
        default_embedder, [(BUDDY, NEWCOMERS), (FIRE_DRILL, NEWCOMERS)], "similarity"
    )

    assert alike_decoy > alike_helps  # likeness is fooled by the shared words …
    assert helps > decoy  # … relevance is not


async def test_without_a_model_relevance_is_likeness() -> None:
    """n-grams cannot tell meaning from wording, so there is nothing to discount."""
    lexical = LexicalEmbedder()
    pairs = [(BUDDY, NEWCOMERS), (FIRE_DRILL, NEWCOMERS), (UNRELATED, NEWCOMERS)]

    relevance = await score_pairs(lexical, pairs, "relevance")
    similarity = await score_pairs(lexical, pairs, "similarity")

    assert relevance == pytest.approx(similarity, abs=1e-6)


def test_word_mask_takes_out_the_situations_words_and_keeps_the_rest() -> None:
    mask = WordMask()

    # Stems count ("Nieuwe docenten" is "nieuwe docenten"); function words stay.
    assert mask.without(FIRE_DRILL, NEWCOMERS) == (
        "krijgen dit de checklist voor de brandoefening op hun eerste werkdag."
    )
    assert mask.without(BUDDY, NEWCOMERS) == BUDDY  # nothing shared: the lesson itself
    assert mask.without("Veel leerlingen komen 's ochtends te laat.", "'s Ochtends") == (
        "Veel leerlingen komen te laat."
    )


# Hand-written for these tests (not from the benchmark): a situation, a lesson from elsewhere
# that addresses its need, and one that shares its words but not its need.
TRIPLES = [
    (
        "Op de kinderafdeling huilen kinderen van angst voordat ze een prik krijgen.",
        "We laten kinderen eerst met een knuffel oefenen en geven ze een koptelefoon met een "
        "verhaal; ze zijn veel rustiger.",
        "De kinderafdeling heeft een nieuwe koelkast voor de prikmaterialen en de vaccins.",
    ),
    (
        "Inwoners weten niet waar ze terechtkunnen met hun vragen over de Wmo en bellen steeds "
        "het verkeerde nummer.",
        "Er is nu één telefoonnummer voor alle zorgvragen, met een medewerker die zelf "
        "doorverbindt; er wordt minder doorgeschakeld.",
        "Het nummer van de Wmo-afdeling staat op de nieuwe visitekaartjes van de consulenten.",
    ),
    (
        "Leerlingen van groep 8 lezen nauwelijks voor hun plezier.",
        "Elke ochtend begint met een kwartier vrij lezen uit een boek dat ze zelf kiezen uit de "
        "bibliotheekkist; de leesmotivatie is gestegen.",
        "De leerlingen van groep 8 krijgen hun rapport voortaan een week eerder mee.",
    ),
]


@pytest.mark.parametrize(("situation", "helpful", "decoy"), TRIPLES)
async def test_relevance_ranks_the_helpful_lesson_above_the_word_sharing_one(
    default_embedder: Embedder, situation: str, helpful: str, decoy: str
) -> None:
    helps, shares_words = await score_pairs(
        default_embedder, [(helpful, situation), (decoy, situation)], "relevance"
    )

    assert helps > shares_words


def _matcher(db: Database, embedder: Embedder) -> Matcher:
    return Matcher(
        embedder=embedder,
        vectors=VectorRepository(db),
        contributions=ContributionRepository(db),
        clock=ManualClock(NOW),
    )


async def _store(db: Database, rows: list[tuple[str, Kind, str]]) -> list[Contribution]:
    """Each (department, kind, text) stored as a named person's reply in the school."""
    stored = []
    for i, (dept, kind, text) in enumerate(rows):
        contribution, _ = await ContributionRepository(db).add(
            NewContribution(
                organisation_id="school",
                department_id=dept,
                kind=kind,
                source=Source.REPLY,
                round_date=NOW.date(),
                text=text,
                anonymous=False,
                author=Person(f"p{i}", "Collega"),
                platform="local",
                event_key=f"test:{i}",
                created_at=NOW,
            )
        )
        stored.append(contribution)
    return stored


async def test_crossposting_scores_a_department_for_help_as_relevance_does(
    db: Database, default_embedder: Embedder
) -> None:
    """The crossposter asks `Matcher.helps`: a department whose situation the lesson addresses
    outranks one whose lessons only share its words, in the same order as `--mode relevance`."""
    matcher = _matcher(db, default_embedder)
    await matcher.calibrate()
    rows = [("sectie-engels", BUDDY), ("onderbouw", NEWCOMERS), ("facilitair", FIRE_DRILL)]
    contributions = await _store(db, [(dept, Kind.LES, text) for dept, text in rows])
    stored = {c.department_id: c for c in contributions}
    lesson = stored["sectie-engels"]

    needs, shares_words = await matcher.helps(
        lesson, [stored["onderbouw"].id, stored["facilitair"].id]
    )
    relevance = await score_pairs(
        default_embedder, [(BUDDY, NEWCOMERS), (BUDDY, FIRE_DRILL)], "relevance"
    )

    assert needs > shares_words
    assert needs == pytest.approx(matcher.helpfulness(relevance[0]), abs=1e-4)
    assert shares_words == pytest.approx(matcher.helpfulness(relevance[1]), abs=1e-4)


async def test_a_free_text_finds_the_closest_contributions_within_the_filters(
    db: Database, default_embedder: Embedder
) -> None:
    """`similar_text`: a free text (one not stored) against the stored contributions. It is a
    search, so it is embedded as one (with e5: the "query: " prefix alone, one pass of the
    model); the filters hold."""
    matcher = _matcher(db, default_embedder)
    rows = [
        ("sectie-engels", Kind.LES, BUDDY),
        ("onderbouw", Kind.CASUS, NEWCOMERS),
        ("facilitair", Kind.LES, FIRE_DRILL),
        ("facilitair", Kind.SUCCES, UNRELATED),
    ]
    ids = {}
    for contribution in await _store(db, rows):
        await matcher.index(contribution)
        ids[contribution.text] = contribution.id
    question = "Nieuwe collega's krijgen de eerste maand een maatje, zodat ze langer blijven."

    hits = await matcher.similar_text("school", question, k=4)
    elsewhere = await matcher.similar_text(
        "school", question, k=4, filters=Filters(exclude_department="sectie-engels")
    )
    lessons = await matcher.similar_text(
        "school", question, k=4, filters=Filters(kinds=frozenset({Kind.LES.value}))
    )

    assert hits[0].contribution_id == ids[BUDDY]
    assert len(hits) == 4 and ids[UNRELATED] == hits[-1].contribution_id
    assert ids[BUDDY] not in {h.contribution_id for h in elsewhere} and len(elsewhere) == 3
    assert {h.contribution_id for h in lessons} == {ids[BUDDY], ids[FIRE_DRILL]}
    assert await matcher.similar_text("another-organisation", question) == []
    [as_search] = await asymmetric(default_embedder).embed([question], kind="query")
    assert (await matcher.embed_query(question) == as_search).all()


class _Counting(LexicalEmbedder):
    """The lexical embedder, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind) -> NDArray[np.float32]:
        self.embedded.extend(texts)
        return await super().embed(texts, kind=kind)


async def test_vectors_are_stored_read_back_at_start_and_renewed_when_edited(db: Database) -> None:
    embedder = _Counting()
    stored = await _store(
        db, [("onderbouw", Kind.LES, BUDDY), ("facilitair", Kind.LES, FIRE_DRILL)]
    )
    first = _matcher(db, embedder)
    for c in stored:
        await first.index(c)
    assert len(embedder.embedded) == 2
    before = first.vector("school", stored[0].id)

    # A restart: a new matcher reads the stored vectors and embeds nothing again.
    embedder.embedded.clear()
    again = _matcher(db, embedder)
    assert await again.load("school") == 2
    assert [t for t in embedder.embedded if t in {BUDDY, FIRE_DRILL}] == []
    read_back = again.vector("school", stored[0].id)
    assert before is not None and read_back is not None and np.array_equal(read_back, before)

    # An edit: one new embedding, kept in the database for the next start.
    edited = replace(stored[0], text=UNRELATED)
    await again.index(edited)
    after = again.vector("school", stored[0].id)
    assert after is not None and before is not None and not np.array_equal(after, before)
    third = _matcher(db, _Counting())
    await third.load("school")
    at_the_next_start = third.vector("school", stored[0].id)
    assert at_the_next_start is not None and np.array_equal(at_the_next_start, after)
    [hit] = third.search("school", after, 1)
    assert hit.contribution_id == stored[0].id
