"""How fast the matcher embeds, indexes and answers at 100,000 contributions, and how much memory.

    python bench/matcher_speed.py [--n 100000] [--embedder auto|ensemble|e5|e5-both|use|lexical]
                                  [--sample 200] [--queries 200] [--adds 50]

Builds `--n` realistic Dutch contributions (schools, hospitals and municipalities; departments,
themes and kinds varied) and reports:

- embedding throughput, measured on `--sample` of them and extrapolated to `--n` (all of them
  with `--sample 0`): a model embeds a few texts per second per core, so 100,000 texts take hours;
  that happens once per contribution, when it is stored, never again;
- the time to fill the index with `--n` vectors of the embedder's dimension, as at start. The
  vectors are the sample's real ones, each varied with a little noise (what a search costs does
  not depend on the values, only on their number and dimension);
- top-5 query latency, p50/p95 over `--queries` new texts: embedding the query text as a
  search (as `Matcher.embed_query` does: with e5, the "query: " prefix alone), and the search
  (with the crossposter's kind of filter: another department's lessons), and both; the recall
  of the index's two-stage search against the exact one; and how many of the exact top 5 are
  the same when the text is embedded as a stored contribution instead (both prefixes);
- adding one contribution to a full index: one embedding plus one append, no rebuild (p50/p95
  over `--adds`);
- peak memory of the process (VmHWM, Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bot.embedders import CHOICES, asymmetric, build_embedder
from bot.vectorindex import Entry, Filters, VectorIndex

SECTORS = {
    "school": (
        [
            "onderbouw",
            "bovenbouw",
            "brugklas",
            "mentoraat",
            "zorgteam",
            "sectie-talen",
            "sectie-exact",
            "administratie",
            "directie",
            "conciergerie",
        ],
        [
            "leerlingen",
            "docenten",
            "ouders",
            "mentoren",
            "stagiairs",
            "nieuwe collega's",
            "examenkandidaten",
            "invallers",
            "zorgleerlingen",
            "nieuwkomers",
        ],
        [
            "het rooster",
            "de toetsweek",
            "het huiswerk",
            "de ouderavond",
            "het rapport",
            "de pauzes",
            "de overdracht naar het voortgezet onderwijs",
            "het inwerken",
            "de lessen",
            "het leerlingvolgsysteem",
        ],
    ),
    "ziekenhuis": (
        [
            "verpleging",
            "spoedeisende-hulp",
            "operatiekamer",
            "polikliniek",
            "ic",
            "kinderafdeling",
            "apotheek",
            "facilitair",
            "hr",
            "ict",
        ],
        [
            "patiënten",
            "verpleegkundigen",
            "artsen in opleiding",
            "mantelzorgers",
            "nieuwe collega's",
            "bezoekers",
            "nachtdiensten",
            "leerlingen",
            "specialisten",
            "ouderen",
        ],
        [
            "de overdracht",
            "de medicatieronde",
            "het ontslag",
            "de wachtlijst",
            "de triage",
            "het rooster",
            "de visite",
            "het inwerken",
            "de nachtdienst",
            "het dossier",
        ],
    ),
    "gemeente": (
        [
            "burgerzaken",
            "wmo",
            "jeugd",
            "handhaving",
            "openbare-ruimte",
            "klantcontact",
            "vergunningen",
            "schuldhulp",
            "griffie",
            "ict",
        ],
        [
            "inwoners",
            "ondernemers",
            "raadsleden",
            "consulenten",
            "handhavers",
            "nieuwe medewerkers",
            "statushouders",
            "ouderen",
            "jongeren",
            "vrijwilligers",
        ],
        [
            "de balie",
            "de aanvraag",
            "de brieven",
            "de inspraak",
            "de bezwaren",
            "het inwerken",
            "de meldingen",
            "de wachttijd",
            "de vergunning",
            "het keukentafelgesprek",
        ],
    ),
}
THEMES = [
    "werkdruk",
    "inwerken",
    "samenwerking",
    "communicatie",
    "kwaliteit",
    "veiligheid",
    "digitalisering",
    "verzuim",
    "klantcontact",
    "innovatie",
    None,
]
KINDS = ["les", "succes", "casus", "koers", "waardering", "perspectief"]
ACTIONS = [
    "Sinds we {thing} elke week kort samen doornemen, weten {who} beter waar ze aan toe zijn.",
    "Bij {thing} ging het mis doordat {who} niet wisten wie wat deed; nu is er één vast "
    "aanspreekpunt.",
    "{Who} klagen over {thing}: het kost te veel tijd en niemand voelt zich eigenaar.",
    "We hebben {thing} vereenvoudigd met een vast lijstje van vijf punten; {who} zijn tevredener.",
    "Een maatje voor {who} in de eerste maand maakte {thing} veel minder zwaar.",
    "Door {thing} 's ochtends te plannen in plaats van 's middags, hebben {who} meer rust.",
    "Wat werkte: {who} zelf laten meedenken over {thing}, vanaf het begin.",
    "{Thing} loopt vast omdat {who} pas laat worden betrokken; volgende keer eerder.",
]
EFFECTS = [
    "",
    " Het verzuim daalde.",
    " Er komen minder klachten binnen.",
    " Dat scheelt ongeveer een uur per week.",
    " We willen dit ook bij andere teams proberen.",
    " Randvoorwaarde: iedereen houdt zich aan de afspraak.",
]


def contributions(n: int, seed: int = 7) -> list[tuple[str, str, str, str | None]]:
    """(text, department, kind, theme) for n varied, realistic contributions."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sector = rng.choice(list(SECTORS))
        departments, people, things = SECTORS[sector]
        who, thing = rng.choice(people), rng.choice(things)
        text = rng.choice(ACTIONS).format(
            who=who, Who=who[0].upper() + who[1:], thing=thing, Thing=thing[0].upper() + thing[1:]
        )
        text += rng.choice(EFFECTS)
        if i % 3 == 0:  # some length variety, as real answers have
            text += f" ({rng.choice(departments)}, week {rng.randint(1, 52)})"
        out.append(
            (text, f"{sector}:{rng.choice(departments)}", rng.choice(KINDS), rng.choice(THEMES))
        )
    return out


def memory_mb() -> tuple[float, float]:
    """Resident and peak resident memory of this process, in MB (Linux; zeros elsewhere)."""
    found = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, *value = line.split()
            if key in found:
                found[key] = int(value[0]) / 1024
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p95 {np.percentile(ms, 95):7.2f} ms"


async def run(args: argparse.Namespace) -> None:
    embedder = build_embedder(args.embedder, env=os.environ)  # XDG_CACHE_HOME, OMP_NUM_THREADS
    items = contributions(args.n + args.queries + args.adds)
    corpus, queries, adds = (
        items[: args.n],
        items[args.n : args.n + args.queries],
        items[args.n + args.queries :],
    )
    print(f"embedder: {embedder.name} ({embedder.dimensions} dimensions)")
    print(f"contributions: {args.n:,} ({len({c[0] for c in corpus}):,} distinct texts)")
    started = time.perf_counter()
    await embedder.embed(["Het model laden."], kind="passage")
    print(f"load + first text: {time.perf_counter() - started:.2f} s")

    sample_size = args.n if args.sample == 0 else min(args.sample, args.n)
    started = time.perf_counter()
    sample = await embedder.embed([c[0] for c in corpus[:sample_size]], kind="passage")
    seconds = time.perf_counter() - started
    rate = sample_size / seconds
    verb = "measured" if sample_size == args.n else f"extrapolated from {sample_size:,}"
    print(
        f"embed: {rate:,.1f} texts/s -> {args.n:,} contributions in {args.n / rate:,.0f} s "
        f"({args.n / rate / 3600:.2f} h), {verb}"
    )

    rng = np.random.default_rng(0)
    rss_before, _ = memory_mb()
    vectors = sample[np.arange(args.n) % sample_size]
    if sample_size < args.n:
        vectors[sample_size:] += np.float32(0.02) * rng.standard_normal(
            (args.n - sample_size, embedder.dimensions), dtype=np.float32
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [
        Entry(i, department, kind, theme, start + timedelta(minutes=i))
        for i, (_, department, kind, theme) in enumerate(corpus)
    ]
    index = VectorIndex(embedder.dimensions, capacity=args.n + 1024)  # as Matcher.load does
    started = time.perf_counter()
    for entry, vector in zip(entries, vectors, strict=True):
        index.add(entry, vector)
    index_seconds = time.perf_counter() - started
    del vector, vectors  # the index keeps its own copy (as at start, from the stored rows)
    rss_after, _ = memory_mb()
    print(
        f"index: {args.n:,} vectors added in {index_seconds:.2f} s "
        f"({index_seconds / args.n * 1e6:.1f} µs each); "
        f"resident memory +{rss_after - rss_before:,.0f} MB"
    )

    embed_times, search_times, total_times = [], [], []
    departments = itertools.cycle(sorted({c[1] for c in corpus}))
    found = same = 0
    search_view = asymmetric(embedder)  # a free text is a search, as in Matcher.embed_query
    for text, *_ in queries:
        t0 = time.perf_counter()
        [query] = await search_view.embed([text], kind="query")
        t1 = time.perf_counter()
        filters = Filters(exclude_department=next(departments))
        hits = index.search(query, 5, filters)
        t2 = time.perf_counter()
        exact = index.search(query, 5, filters, exact=True)
        found += len({h.contribution_id for h in hits} & {h.contribution_id for h in exact})
        [stored] = await embedder.embed([text], kind="passage")  # as if it were stored
        alike = index.search(stored, 5, filters, exact=True)
        same += len({h.contribution_id for h in alike} & {h.contribution_id for h in exact})
        if len(hits) != 5:
            raise SystemExit("a search found fewer than 5 hits: nothing was measured")
        embed_times.append(t1 - t0)
        search_times.append(t2 - t1)
        total_times.append(t2 - t0)
    print(f"query, embed the text:    {percentiles(embed_times)}")
    print(f"query, top-5 search:      {percentiles(search_times)}")
    print(f"query, total:             {percentiles(total_times)}")
    print(f"query, recall@5 against the exact search: {found / (5 * len(queries)):.3f}")
    print(
        "query, top-5 shared with the text embedded as a stored contribution: "
        f"{same / (5 * len(queries)):.3f}"
    )

    add_times, append_times = [], []
    for j, (text, department, kind, theme) in enumerate(adds):
        t0 = time.perf_counter()
        [vector] = await embedder.embed([text], kind="passage")
        t1 = time.perf_counter()
        index.add(Entry(args.n + j, department, kind, theme, datetime.now(UTC)), vector)
        t2 = time.perf_counter()
        add_times.append(t2 - t0)
        append_times.append(t2 - t1)
    print(f"add one, total:           {percentiles(add_times)}")
    print(f"add one, index append:    {percentiles(append_times)}  (no rebuild)")
    rss, peak = memory_mb()
    print(f"memory: {rss:,.0f} MB resident, peak {peak:,.0f} MB")
    p95 = float(np.percentile(np.array(total_times) * 1000, 95))
    print(
        f"targets at {args.n:,}: query p95 <= 20 ms: {p95:.1f} ms "
        f"{'PASS' if p95 <= 20 else 'FAIL'}; peak memory <= 1536 MB: {peak:,.0f} MB "
        f"{'PASS' if peak <= 1536 else 'FAIL'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--embedder", choices=CHOICES, default="auto")
    parser.add_argument("--sample", type=int, default=200, help="texts embedded; 0: all")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--adds", type=int, default=50)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
