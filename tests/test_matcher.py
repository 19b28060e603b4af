"""The matcher's two questions: are these alike (similarity), could this lesson help there
(relevance) — through `boeket match score` and the functions behind it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.cli import main
from bot.embedders import Embedder, LexicalEmbedder
from bot.matcher import score_pairs

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
