"""How closely an embedder's cosine similarity follows human judgements on Dutch sentence pairs.

    python bench/matcher_quality.py DATA_DIR [--embedder auto|ensemble|e5|e5-both|use|lexical]
                                             [--kind query|passage|search] [--all] [--check]
    python bench/matcher_quality.py DATA_DIR --embedder openai --base-url URL --model NAME \\
                                             --dimensions N [--api-key-env VAR]

DATA_DIR holds tab-separated files with the header `sentence_a  sentence_b  score` (for Boeket:
../shared/data/similarity; read from there, never copied into the project). Every *.tsv is read,
the large *train* files only with --all. Each distinct sentence is embedded once, both sides with
the same `--kind`; `--kind search` scores each pair both ways round with one side embedded as a
free-text search (`Matcher.embed_query`) and the other as a stored contribution. Per file it
prints the pairs, Spearman and Pearson correlation between cosine and score, the time taken and
sentences per second; then the model's load time, the process's memory, and the quality targets
with PASS/FAIL (`--check` exits 1 when one fails).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import numpy as np

from bot.embedders import CHOICES, Embedder, Kind, OpenAIEmbedder, asymmetric, build_embedder

# Spearman targets for the default install (the issue that asked for this benchmark).
TARGETS = {"sick-nl-trial.tsv": 0.72, "stsb-nl-dev.tsv": 0.78}


@dataclass(frozen=True)
class Pairs:
    path: Path
    left: list[str]
    right: list[str]
    scores: list[float]


@dataclass(frozen=True)
class Result:
    file: str
    pairs: int
    sentences: int
    spearman: float
    pearson: float
    seconds: float


def read_pairs(path: Path) -> Pairs:
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header != ["sentence_a", "sentence_b", "score"]:
            raise SystemExit(f"{path}: expected the header sentence_a, sentence_b, score")
        left, right, scores = [], [], []
        for number, row in enumerate(rows, start=2):
            if len(row) != 3:
                raise SystemExit(f"{path}:{number}: expected 3 tab-separated fields")
            left.append(row[0])
            right.append(row[1])
            scores.append(float(row[2]))
    return Pairs(path, left, right, scores)


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


async def measure(embedder: Embedder, pairs: Pairs, kind: Kind | Literal["search"]) -> Result:
    sentences = sorted(set(pairs.left) | set(pairs.right))
    row = {sentence: i for i, sentence in enumerate(sentences)}
    left = [row[s] for s in pairs.left]
    right = [row[s] for s in pairs.right]
    scores = pairs.scores
    started = time.perf_counter()
    if kind == "search":
        # One side as a free-text search (Matcher.embed_query), the other as a stored
        # contribution; each pair both ways round.
        stored = await embedder.embed(sentences, kind="passage")
        search = await asymmetric(embedder).embed(sentences, kind="query")
        a = np.vstack([search[left], stored[left]])
        b = np.vstack([stored[right], search[right]])
        scores = scores + scores
    else:
        vectors = await embedder.embed(sentences, kind=kind)
        a, b = vectors[left], vectors[right]
    seconds = time.perf_counter() - started
    cosines = np.einsum("ij,ij->i", a, b).astype(float).tolist()
    return Result(
        file=pairs.path.name,
        pairs=len(pairs.scores),
        sentences=len(sentences),
        spearman=statistics.correlation(cosines, scores, method="ranked"),
        pearson=statistics.correlation(cosines, scores, method="linear"),
        seconds=seconds,
    )


def read_folder(folder: Path, *, with_train: bool) -> list[Pairs]:
    files = sorted(folder.glob("*.tsv"))
    if not with_train:
        files = [f for f in files if "train" not in f.name]
    if not files:
        raise SystemExit(f"no *.tsv files in {folder}")
    return [read_pairs(f) for f in files]


async def run(args: argparse.Namespace, datasets: list[Pairs]) -> int:
    rss_before, _ = memory_mb()
    async with aiohttp.ClientSession() as session:
        embedder: Embedder
        if args.embedder == "openai":
            if not (args.base_url and args.model and args.dimensions):
                raise SystemExit("--embedder openai needs --base-url, --model and --dimensions")
            embedder = OpenAIEmbedder(
                session=session,
                base_url=args.base_url,
                model=args.model,
                dimensions=args.dimensions,
                api_key=os.environ.get(args.api_key_env) if args.api_key_env else None,
                api_version=args.api_version,
                auth_header=args.auth_header,
            )
        else:
            embedder = build_embedder(args.embedder, env=os.environ)  # XDG_CACHE_HOME etc.
        started = time.perf_counter()
        await embedder.embed(["Het model laden."], kind="query")  # loads the model, if any
        load_seconds = time.perf_counter() - started
        rss_loaded, _ = memory_mb()
        results = [await measure(embedder, pairs, args.kind) for pairs in datasets]
    rss_after, rss_peak = memory_mb()

    print(f"embedder: {embedder.name} ({embedder.dimensions} dimensions), kind={args.kind}")
    print(f"{'file':<22} {'pairs':>6} {'spearman':>9} {'pearson':>8} {'seconds':>8} {'sent/s':>7}")
    for r in results:
        print(
            f"{r.file:<22} {r.pairs:>6} {r.spearman:>9.4f} {r.pearson:>8.4f} "
            f"{r.seconds:>8.2f} {r.sentences / r.seconds:>7.0f}"
        )
    print(
        f"load + first text: {load_seconds:.2f} s; memory: {rss_before:.0f} MB before the "
        f"embedder, {rss_loaded:.0f} MB loaded, {rss_after:.0f} MB after, peak {rss_peak:.0f} MB"
    )
    failed = False
    for name, target in TARGETS.items():
        found = next((r for r in results if r.file == name), None)
        if found is None:
            print(f"target {name}: Spearman >= {target:.2f}: not measured (file missing)")
            continue
        ok = found.spearman >= target
        failed |= not ok
        verdict = "PASS" if ok else "FAIL"
        print(f"target {name}: Spearman >= {target:.2f}: {found.spearman:.4f} {verdict}")
    return 1 if failed and args.check else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data_dir", help="folder with the *.tsv pair files")
    parser.add_argument("--embedder", choices=[*CHOICES, "openai"], default="auto")
    parser.add_argument(
        "--kind",
        choices=["query", "passage", "search"],
        default="query",
        help="search: one side as a free-text search, the other as a stored contribution",
    )
    parser.add_argument("--all", action="store_true", help="also the large *train* files")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    openai = parser.add_argument_group("--embedder openai")
    openai.add_argument("--base-url")
    openai.add_argument("--model")
    openai.add_argument("--dimensions", type=int)
    openai.add_argument("--api-key-env", help="name of the environment variable with the key")
    openai.add_argument("--api-version", help="Azure OpenAI: the api-version query parameter")
    openai.add_argument(
        "--auth-header", choices=["authorization", "api-key"], default="authorization"
    )
    args = parser.parse_args(argv)
    datasets = read_folder(Path(args.data_dir), with_train=args.all)
    return asyncio.run(run(args, datasets))


if __name__ == "__main__":
    sys.exit(main())
