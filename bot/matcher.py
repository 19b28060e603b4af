"""The matcher: contributions as vectors, and the most similar ones for a contribution or a text.

Vectors are computed once, when a contribution is stored (or edited), and kept in the database;
at start the index is filled from there, and only contributions without a vector are embedded.
Searching is in memory (`bot.vectorindex`), one index per organisation, so nothing crosses
organisations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bot.domain import Contribution, Source
from bot.embedders import Embedder
from bot.ports import Clock
from bot.vectorindex import Entry, Filters, Hit, VectorIndex
from storage.repositories import ContributionRepository, VectorRepository

log = logging.getLogger(__name__)

Mode = Literal["similarity", "relevance"]

# Texts about unrelated things, to measure what "unrelated" looks like to an embedder.
UNRELATED = (
    "De printer op de tweede verdieping heeft een nieuwe toner nodig.",
    "Volgende week is de kantine op vrijdag gesloten.",
    "We hebben de roosters voor de zomervakantie rondgestuurd.",
    "De parkeerplaats wordt in mei opnieuw geasfalteerd.",
    "Het nieuwe logo hangt sinds maandag bij de ingang.",
    "Leerlingen van groep acht gaan op schoolreis naar de Efteling.",
    "De gemeente opent een nieuw loket voor paspoorten.",
    "Na de operatie mocht de patiënt dezelfde dag naar huis.",
    "Het wifi-wachtwoord voor gasten is veranderd.",
    "Onze collega van financiën gaat na dertig jaar met pensioen.",
    "De brandoefening duurde langer dan gepland.",
    "Er staan verse bloemen bij de receptie.",
)


def contribution_text(c: Contribution) -> str:
    """What a contribution says, for matching: the lesson with its preconditions and effect."""
    parts = [c.fields.get("what", c.text)] if c.source is Source.SHARE else [c.text]
    for name in ("preconditions", "effect", "followup"):
        if c.fields.get(name):
            parts.append(c.fields[name])
    return "\n".join(p.strip() for p in parts if p.strip())


class Matcher:
    """Embeds contributions, keeps their vectors, and finds similar ones within an organisation."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        vectors: VectorRepository,
        contributions: ContributionRepository,
        clock: Clock,
    ) -> None:
        self.embedder = embedder
        self._vectors = vectors
        self._contributions = contributions
        self._clock = clock
        self._indexes: dict[str, VectorIndex] = {}
        self._floor = 0.0
        self._locks: dict[str, asyncio.Lock] = {}

    async def calibrate(self) -> float:
        """Measure how similar unrelated texts look to this embedder (e5 rarely says less than
        0.75; n-grams say about 0.05), so that `relevance` means the same for every embedder."""
        vectors = await self.embedder.embed(list(UNRELATED), kind="passage")
        sims = vectors @ vectors.T
        pairs = sims[np.triu_indices(len(UNRELATED), k=1)]
        self._floor = min(0.95, max(0.0, float(pairs.mean())))
        return self._floor

    def relevance(self, cosine: float) -> float:
        """A cosine similarity on a 0–1 scale: 0 for unrelated texts, 1 for the same text."""
        floor = self._floor
        return float(min(1.0, max(0.0, (cosine - floor) / (1.0 - floor))))

    def _index(self, organisation_id: str) -> VectorIndex:
        if organisation_id not in self._indexes:
            self._indexes[organisation_id] = VectorIndex(self.embedder.dimensions)
        return self._indexes[organisation_id]

    async def load(self, organisation_id: str) -> int:
        """Fill the index from stored vectors; embed contributions that have none yet."""
        await self.calibrate()
        async with self._locks.setdefault(organisation_id, asyncio.Lock()):
            index = VectorIndex(self.embedder.dimensions)
            for stored in await self._vectors.load(organisation_id, self.embedder.name):
                vector = np.frombuffer(stored.vector, dtype=np.float32)
                if vector.shape != (self.embedder.dimensions,):
                    continue  # written by another version of the embedder: embed again below
                index.add(
                    Entry(
                        stored.contribution_id,
                        stored.department_id,
                        stored.kind.value,
                        stored.theme,
                        stored.created_at,
                    ),
                    vector,
                )
            self._indexes[organisation_id] = index
        while missing := await self._vectors.missing(organisation_id, self.embedder.name):
            found = [
                c
                for cid in missing
                if (c := await self._contributions.get(organisation_id, cid)) is not None
            ]
            await self.index_many(found)
            if len(found) < len(missing):  # deleted meanwhile; avoid looping on them
                break
        return len(self._index(organisation_id))

    async def index(self, contribution: Contribution) -> None:
        """Embed and keep one contribution (new or edited): one embedding, no rebuild."""
        await self.index_many([contribution])

    async def index_many(self, contributions: Sequence[Contribution]) -> None:
        if not contributions:
            return
        vectors = await self.embedder.embed(
            [contribution_text(c) for c in contributions], kind="passage"
        )
        now = self._clock.now()
        for c, vector in zip(contributions, vectors, strict=True):
            vec = np.ascontiguousarray(vector, dtype=np.float32)
            await self._vectors.put(
                c.organisation_id, c.id, self.embedder.name, int(vec.shape[0]), vec.tobytes(), now
            )
            self._index(c.organisation_id).add(
                Entry(c.id, c.department_id, c.kind.value, c.theme, c.created_at), vec
            )

    def forget(self, organisation_id: str, contribution_id: int) -> None:
        """Drop a deleted contribution from the index (its row went with the contribution)."""
        self._index(organisation_id).remove(contribution_id)

    def vector(self, organisation_id: str, contribution_id: int) -> NDArray[np.float32] | None:
        return self._index(organisation_id).vector(contribution_id)

    async def embed_query(self, text: str) -> NDArray[np.float32]:
        vectors = await self.embedder.embed([text], kind="query")
        return np.ascontiguousarray(vectors[0], dtype=np.float32)

    def search(
        self,
        organisation_id: str,
        query: NDArray[np.float32],
        k: int = 5,
        filters: Filters | None = None,
    ) -> list[Hit]:
        return self._index(organisation_id).search(query, k, filters)

    async def similar_to(
        self, contribution: Contribution, k: int = 5, filters: Filters | None = None
    ) -> list[Hit]:
        """The k contributions most like this one (never itself)."""
        vector = self.vector(contribution.organisation_id, contribution.id)
        if vector is None:
            await self.index(contribution)
            vector = self.vector(contribution.organisation_id, contribution.id)
        assert vector is not None  # noqa: S101 - index() just added it
        base = filters or Filters()
        own = Filters(
            exclude_department=base.exclude_department,
            departments=base.departments,
            kinds=base.kinds,
            theme=base.theme,
            since=base.since,
            exclude_ids=base.exclude_ids | {contribution.id},
        )
        return self.search(contribution.organisation_id, vector, k, own)

    async def similar_text(
        self, organisation_id: str, text: str, k: int = 5, filters: Filters | None = None
    ) -> list[Hit]:
        return self.search(organisation_id, await self.embed_query(text), k, filters)

    async def score_pairs(
        self, pairs: Sequence[tuple[str, str]], mode: Mode = "similarity"
    ) -> list[float]:
        return await score_pairs(self.embedder, pairs, mode)


async def score_pairs(
    embedder: Embedder, pairs: Sequence[tuple[str, str]], mode: Mode = "similarity"
) -> list[float]:
    """Cosine similarity per pair; in relevance mode, how much lesson `a` could help in
    situation `b`: the lesson embedded as a passage, the situation as a query."""
    if not pairs:
        return []
    left_kind: Literal["query", "passage"] = "passage" if mode == "relevance" else "query"
    left = await embedder.embed([a for a, _ in pairs], kind=left_kind)
    right = await embedder.embed([b for _, b in pairs], kind="query")
    return [float(x) for x in np.einsum("ij,ij->i", left, right)]
