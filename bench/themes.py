"""How well and how fast the theme tagger finds the example hospital's themes.

    .venv/bin/python bench/themes.py [--embedders keywords,lexical,auto]

Prints, per embedder: how many of the labelled sentences get exactly their themes, how many
themes were found that do not belong (false) or missed, the milliseconds per text, and for the
similarity alone how far (in off-topic standard deviations above the calibrated threshold) the
right themes and the wrong ones come — the margin `bot.themes.SIGMAS` is chosen on.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bot.config import load_config
from bot.embedders import Embedder, best_available, build_embedder
from bot.settings import EXAMPLE_CONFIG
from bot.themes import ThemeTagger

CASES: list[tuple[str, set[str]]] = [
    (
        "We hebben de overdracht ingekort zodat de werkdruk op de avonddienst daalt",
        {"werkdruk", "overdracht"},
    ),
    (
        "We hebben de overdracht na de operatie vernieuwd: een vast lijstje van vijf punten, aan "
        "het bed. Collega's hoeven minder na te bellen en de werkdruk aan het eind van de dienst "
        "is gedaald.",
        {"werkdruk", "overdracht"},
    ),
    ("Een vaste buddy voor elke nieuwe collega, de eerste zes weken.", {"inwerken"}),
    ("Minder uitloop.", {"werkdruk"}),
    ("De huddle werkt.", set()),
    (
        "Collega's die ziek thuis zitten bellen we elke week even op; ze komen sneller terug.",
        {"verzuim"},
    ),
    ("Patiënten gaven ons een 9 voor de nieuwe wachtkamer.", {"klanttevredenheid"}),
    ("We probeerden een nieuwe app uit voor het plannen van diensten.", {"innovatie"}),
    ("Too much workload for the night team, so we split the rounds.", {"werkdruk"}),
    ("Het ticketsysteem werkt beter sinds we vaste categorieën voor storingen gebruiken.", set()),
    ("De kerstborrel is op 18 december in de kantine.", set()),
    ("Het dak van de fietsenstalling lekt.", set()),
    ("Onze nieuwe collega's werden goed ingewerkt dankzij een vast programma.", {"inwerken"}),
    ("Na een burn-out kwam Mirjam stap voor stap terug, met een vaste begeleider.", {"verzuim"}),
    (
        "De wachttijd op de poli is gehalveerd sinds we de afspraken anders plannen.",
        {"klanttevredenheid"},
    ),
    (
        "Sinds we in de pilot met spraakherkenning werken, schrijven we verslagen sneller.",
        {"innovatie"},
    ),
    ("Door de griepgolf viel de helft van het team uit.", {"verzuim"}),
    ("Het was zo druk op de afdeling dat niemand pauze kon nemen.", {"werkdruk"}),
    ("Families voelden zich niet gehoord bij het ontslaggesprek.", {"klanttevredenheid"}),
    ("De vergaderingen van het managementteam worden voortaan digitaal genotuleerd.", set()),
    ("Wij hebben de jaarplanning voor de audits afgerond.", set()),
    ("The new parking rules apply from June.", set()),
]


async def measure(name: str, embedder: Embedder | None) -> None:
    config = load_config(EXAMPLE_CONFIG)
    tagger = ThemeTagger(
        config.themes, embedder=(lambda: embedder) if embedder else None, timeout=600
    )
    await tagger.tag("opwarmen")  # loads the model and calibrates: once per process
    exact = false = missed = 0
    right: list[float] = []
    wrong: list[float] = []
    started = time.perf_counter()
    for text, want in CASES:
        got = set(await tagger.tag(text))
        exact += got == want
        false += len(got - want)
        missed += len(want - got)
    per_text = (time.perf_counter() - started) / len(CASES) * 1000
    for text, want in CASES:
        for theme, excess in (await tagger.similarities(text)).items():
            (right if theme in want else wrong).append(excess)
    print(
        f"{name:9} exact {exact}/{len(CASES)}  false {false}  missed {missed}  "
        f"{per_text:.1f} ms/text"
    )
    if right:
        print(
            f"{'':9} similarity alone: right themes above threshold "
            f"{sum(e > 0 for e in right)}/{len(right)}, wrong ones {sum(e > 0 for e in wrong)}/"
            f"{len(wrong)}; highest wrong {max(wrong):+.2f} σ"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedders", default="keywords,lexical,auto")
    args = parser.parse_args()
    for name in args.embedders.split(","):
        embedder = (
            None
            if name == "keywords"
            else (best_available() if name == "auto" else build_embedder(name))
        )
        await measure(name, embedder)


if __name__ == "__main__":
    asyncio.run(main())
