"""The in-memory vector index: order, filters, replace, remove, growth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from numpy.typing import NDArray

from bot.vectorindex import APPROXIMATE_FROM, Entry, Filters, VectorIndex

T0 = datetime(2027, 3, 1, tzinfo=UTC)


def unit(*values: float) -> NDArray[np.float32]:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def entry(
    i: int, dept: str = "ok", kind: str = "les", theme: str | None = "werkdruk", days: int = 0
) -> Entry:
    return Entry(i, dept, kind, theme, T0 + timedelta(days=days))


@pytest.fixture
def index() -> VectorIndex:
    idx = VectorIndex(dims=3, capacity=2)  # small, so adding grows it
    idx.add(entry(1, "ok", "les", "werkdruk", 0), unit(1, 0, 0))
    idx.add(entry(2, "verpleging", "les", "verzuim", 5), unit(0.9, 0.1, 0))
    idx.add(entry(3, "ict", "succes", "innovatie", 10), unit(0, 1, 0))
    idx.add(entry(4, "hr", "succes", None, 20), unit(0.7, 0.7, 0))
    return idx


def test_best_first(index: VectorIndex) -> None:
    hits = index.search(unit(1, 0, 0), k=4)
    assert [h.contribution_id for h in hits] == [1, 2, 4, 3]
    assert hits[0].score == pytest.approx(1.0) and hits[0].department_id == "ok"
    assert len(index.search(unit(1, 0, 0), k=2)) == 2


def test_filters(index: VectorIndex) -> None:
    q = unit(1, 0, 0)

    def ids(f: Filters) -> list[int]:
        return [h.contribution_id for h in index.search(q, 10, f)]

    assert ids(Filters(exclude_department="ok")) == [2, 4, 3]
    assert ids(Filters(kinds=frozenset({"succes"}))) == [4, 3]
    assert ids(Filters(theme="verzuim")) == [2]
    assert ids(Filters(theme="onbekend")) == []
    assert ids(Filters(since=T0 + timedelta(days=6))) == [4, 3]
    assert ids(Filters(departments=frozenset({"ict", "hr"}))) == [4, 3]
    assert ids(Filters(departments=frozenset({"nergens"}))) == []
    assert ids(Filters(exclude_ids=frozenset({1, 2}))) == [4, 3]


def test_replace_and_remove(index: VectorIndex) -> None:
    index.add(entry(1, "ok"), unit(0, 1, 0))  # an edit: new vector, same id
    assert len(index) == 4
    assert index.search(unit(0, 1, 0), 1)[0].contribution_id in {1, 3}
    index.remove(3)
    index.remove(99)  # unknown: nothing happens
    assert 3 not in index and len(index) == 3
    assert [h.contribution_id for h in index.search(unit(0, 1, 0), 1)] == [1]


def test_wrong_dimensions_are_refused(index: VectorIndex) -> None:
    with pytest.raises(ValueError, match="3 dimensions"):
        index.add(entry(9), np.zeros(4, dtype=np.float32))


def test_empty_index_and_zero_k() -> None:
    idx = VectorIndex(dims=2)
    assert idx.search(unit(1, 0), 5) == []
    idx.add(entry(1), unit(1, 0))
    assert idx.search(unit(1, 0), 0) == []


# --- large indexes: the projected first stage -------------------------------------------------


def embedding_like(n: int, dims: int, seed: int) -> NDArray[np.float32]:
    """Unit vectors that, like sentence embeddings, vary mostly along a few directions."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((40, dims)).astype(np.float32)
    mix = rng.standard_normal((n, 40)).astype(np.float32) ** 3
    v = mix @ topics + 0.3 * rng.standard_normal((n, dims)).astype(np.float32)
    out: NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def large() -> tuple[VectorIndex, NDArray[np.float32]]:
    n, dims = APPROXIMATE_FROM + 4000, 256
    vectors = embedding_like(n, dims, seed=1)
    idx = VectorIndex(dims)
    for i, v in enumerate(vectors):
        idx.add(entry(i, f"afdeling-{i % 20}", days=i % 300), v)
    return idx, vectors


def test_a_large_index_finds_what_the_exact_search_finds(
    large: tuple[VectorIndex, NDArray[np.float32]],
) -> None:
    idx, vectors = large
    queries = embedding_like(40, vectors.shape[1], seed=2)
    found = 0
    for q in queries:
        exact = set(np.argsort(-(vectors @ q))[:5].tolist())
        hits = idx.search(q, 5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        found += len(exact & {h.contribution_id for h in hits})
    assert found / (5 * len(queries)) >= 0.95
    own = idx.search(vectors[1234], 1)[0]
    assert own.contribution_id == 1234 and own.score == pytest.approx(1.0, abs=1e-5)


def test_a_large_index_keeps_its_filters(
    large: tuple[VectorIndex, NDArray[np.float32]],
) -> None:
    idx, vectors = large
    q = vectors[77]  # stored in afdeling-17
    hits = idx.search(q, 10, Filters(exclude_department="afdeling-17"))
    assert len(hits) == 10 and all(h.department_id != "afdeling-17" for h in hits)
    only = idx.search(q, 10, Filters(departments=frozenset({"afdeling-3"})))
    assert len(only) == 10 and {h.department_id for h in only} == {"afdeling-3"}
    exact = [i for i in np.argsort(-(vectors @ q)) if i % 20 == 3][:10]
    assert [h.contribution_id for h in only] == exact  # a narrow filter is scored exactly


def test_adding_to_a_large_index_is_found_at_once(
    large: tuple[VectorIndex, NDArray[np.float32]],
) -> None:
    idx, vectors = large
    idx.search(vectors[0], 5)  # the projection is in use
    new = embedding_like(1, vectors.shape[1], seed=3)[0]
    idx.add(entry(10**6, "nieuw"), new)
    assert idx.search(new, 1)[0].contribution_id == 10**6
    idx.remove(10**6)
    assert 10**6 not in {h.contribution_id for h in idx.search(new, 5)}
