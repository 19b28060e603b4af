"""An in-memory vector index with the filters the matcher needs, one per organisation.

Vectors are L2-normalised float32 rows, so a dot product is the cosine similarity. Adding one costs
an append (amortised O(1)); removing one marks it dead; filters are a boolean mask.

A search reads every row it scores, so it is bound by memory bandwidth: 100,000 rows of the
default embedder's 896 dimensions are 358 MB, tens of milliseconds per query. From
`APPROXIMATE_FROM` rows on, a search is therefore two-staged: every row is scored in a
`LOW_DIMS`-dimensional projection (the principal directions of the stored vectors: what
embeddings vary along), and only the best `CANDIDATES` are scored exactly. The projection is
fitted on the first search that needs it and again when the index has grown fourfold, so its
cost is amortised; adding a vector projects it (one small product), never refits.
`bench/matcher_speed.py` measures the recall against the exact search.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

_GROW = 1.5
APPROXIMATE_FROM = 16_384  # rows; below this every search is exact
LOW_DIMS = 128
CANDIDATES = 256  # rows scored exactly after the projected first stage (at least 32 × k)
_REFIT = 4  # refit the projection when the index has grown this many times since the last fit
_FIT_SAMPLE = 20_000


@dataclass(frozen=True, slots=True)
class Entry:
    """What the index keeps beside a vector, to filter on."""

    contribution_id: int
    department_id: str
    kind: str
    theme: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Hit:
    contribution_id: int
    score: float
    department_id: str


@dataclass(frozen=True, slots=True)
class Filters:
    exclude_department: str | None = None
    departments: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    theme: str | None = None
    since: datetime | None = None
    exclude_ids: frozenset[int] = frozenset()


class _Codes:
    """Small integer codes for repeated strings, so filters are array comparisons."""

    def __init__(self) -> None:
        self._codes: dict[str | None, int] = {None: 0}

    def code(self, value: str | None) -> int:
        if value not in self._codes:
            self._codes[value] = len(self._codes)
        return self._codes[value]

    def known(self, value: str | None) -> int | None:
        return self._codes.get(value)


class VectorIndex:
    def __init__(self, dims: int, capacity: int = 1024) -> None:
        self.dims = dims
        self._n = 0
        self._vecs: NDArray[np.float32] = np.zeros((capacity, dims), dtype=np.float32)
        self._ids: NDArray[np.int64] = np.zeros(capacity, dtype=np.int64)
        self._dept: NDArray[np.int32] = np.zeros(capacity, dtype=np.int32)
        self._kind: NDArray[np.int32] = np.zeros(capacity, dtype=np.int32)
        self._theme: NDArray[np.int32] = np.zeros(capacity, dtype=np.int32)
        self._created: NDArray[np.float64] = np.zeros(capacity, dtype=np.float64)
        self._alive: NDArray[np.bool_] = np.zeros(capacity, dtype=np.bool_)
        self._row: dict[int, int] = {}
        self._departments = _Codes()
        self._kinds = _Codes()
        self._themes = _Codes()
        self._dept_names: dict[int, str] = {}
        self._basis: NDArray[np.float32] | None = None  # (dims, LOW_DIMS)
        self._low: NDArray[np.float32] | None = None  # (capacity, LOW_DIMS)
        self._fitted_rows = 0

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, contribution_id: int) -> bool:
        return contribution_id in self._row

    def _grow(self) -> None:
        capacity = max(16, int(len(self._ids) * _GROW))
        names = ["_vecs", "_ids", "_dept", "_kind", "_theme", "_created", "_alive"]
        if self._low is not None:
            names.append("_low")
        for name in names:
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def add(self, entry: Entry, vector: NDArray[np.float32]) -> None:
        """Add or replace the vector of one contribution."""
        if vector.shape != (self.dims,):
            raise ValueError(f"expected a vector of {self.dims} dimensions, got {vector.shape}")
        self.remove(entry.contribution_id)
        if self._n == len(self._ids):
            self._grow()
        row = self._n
        self._n += 1
        self._vecs[row] = vector
        if self._low is not None and self._basis is not None:
            self._low[row] = vector @ self._basis
        self._ids[row] = entry.contribution_id
        dept = self._departments.code(entry.department_id)
        self._dept_names[dept] = entry.department_id
        self._dept[row] = dept
        self._kind[row] = self._kinds.code(entry.kind)
        self._theme[row] = self._themes.code(entry.theme)
        self._created[row] = entry.created_at.timestamp()
        self._alive[row] = True
        self._row[entry.contribution_id] = row

    def add_many(self, items: Iterable[tuple[Entry, NDArray[np.float32]]]) -> None:
        for entry, vector in items:
            self.add(entry, vector)

    def remove(self, contribution_id: int) -> None:
        row = self._row.pop(contribution_id, None)
        if row is not None:
            self._alive[row] = False

    def vector(self, contribution_id: int) -> NDArray[np.float32] | None:
        row = self._row.get(contribution_id)
        return None if row is None else self._vecs[row].copy()

    def _mask(self, filters: Filters) -> NDArray[np.bool_] | None:
        n = self._n
        mask = self._alive[:n].copy()
        if filters.exclude_department is not None:
            code = self._departments.known(filters.exclude_department)
            if code is not None:
                mask &= self._dept[:n] != code
        if filters.departments is not None:
            codes = [c for d in filters.departments if (c := self._departments.known(d))]
            if not codes:
                return None
            mask &= np.isin(self._dept[:n], codes)
        if filters.kinds is not None:
            codes = [c for k in filters.kinds if (c := self._kinds.known(k))]
            if not codes:
                return None
            mask &= np.isin(self._kind[:n], codes)
        if filters.theme is not None:
            code = self._themes.known(filters.theme)
            if code is None:
                return None
            mask &= self._theme[:n] == code
        if filters.since is not None:
            mask &= self._created[:n] >= filters.since.timestamp()
        for contribution_id in filters.exclude_ids:
            row = self._row.get(contribution_id)
            if row is not None:
                mask[row] = False
        return mask

    def _fit(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The LOW_DIMS principal directions of the stored vectors (uncentred, as dot products
        are), and every row projected on them."""
        n = self._n
        rows = np.linspace(0, n - 1, num=min(n, _FIT_SAMPLE), dtype=np.int64)
        sample = self._vecs[rows].astype(np.float64)
        _, eigenvectors = np.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
        basis = np.ascontiguousarray(eigenvectors[:, ::-1][:, :LOW_DIMS], dtype=np.float32)
        low = np.zeros((len(self._ids), LOW_DIMS), dtype=np.float32)
        low[:n] = self._vecs[:n] @ basis
        self._basis, self._low, self._fitted_rows = basis, low, n
        return basis, low

    def _candidates(
        self, query: NDArray[np.float32], mask: NDArray[np.bool_], k: int
    ) -> NDArray[np.int64] | None:
        """Rows worth scoring exactly, from the projected first stage; None: score all of them."""
        n = self._n
        if n < APPROXIMATE_FROM or self.dims <= LOW_DIMS:
            return None
        wanted = max(CANDIDATES, 32 * k)
        live = np.flatnonzero(mask)
        if len(live) <= 4 * wanted or len(live) * 8 < n:
            return live  # a narrow filter: its rows are few enough to score exactly
        basis, projected = self._basis, self._low
        if basis is None or projected is None or n >= _REFIT * self._fitted_rows:
            basis, projected = self._fit()
        low = projected[:n] @ (query @ basis)
        low[~mask] = -np.inf
        return np.argpartition(-low, wanted - 1)[:wanted].astype(np.int64)

    def search(
        self,
        query: NDArray[np.float32],
        k: int,
        filters: Filters | None = None,
        *,
        exact: bool = False,
    ) -> list[Hit]:
        """The `k` most similar live contributions that pass `filters`, best first (`exact`:
        without the projected first stage, to measure what it misses)."""
        if k <= 0 or self._n == 0:
            return []
        mask = self._mask(filters or Filters())
        if mask is None or not mask.any():
            return []
        query = query.astype(np.float32, copy=False)
        k = min(k, int(mask.sum()))
        rows = None if exact else self._candidates(query, mask, k)
        if rows is None:
            scores = self._vecs[: self._n] @ query
            scores = np.where(mask, scores, -np.inf)
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            best = [(int(row), float(scores[row])) for row in top]
        else:
            scored = self._vecs[rows] @ query
            order = np.argsort(-scored, kind="stable")[:k]
            best = [(int(rows[i]), float(scored[i])) for i in order]
        return [
            Hit(int(self._ids[row]), score, self._dept_names[int(self._dept[row])])
            for row, score in best
        ]
