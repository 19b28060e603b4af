"""The in-memory vector index: order, filters, replace, remove, growth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot.vectorindex import Entry, Filters, VectorIndex

T0 = datetime(2027, 3, 1, tzinfo=UTC)


def unit(*values: float) -> np.ndarray:  # type: ignore[type-arg]
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
    ids = lambda f: [h.contribution_id for h in index.search(q, 10, f)]  # noqa: E731
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
