"""The matcher: contributions as vectors, the most similar ones, and which could help where.

Vectors are computed once, when a contribution is stored (or edited), and kept in the database;
at start the index is filled from there, and only contributions without a vector are embedded.
Searching is in memory (`bot.vectorindex`), one index per organisation, so nothing crosses
organisations.

Two questions, two measures. *Similarity* ("do these say the same?") is symmetric: the cosine of
the stored vectors. *Relevance* ("could lesson A help in situation B?") is not: a lesson and the
problem it solves often share few words, and a text that shares many can be useless. Relevance
embeds the situation as an e5 query and the lesson as an e5 passage (what e5 was trained for:
a question and the text that answers it), and discounts the part of the likeness that is only
shared wording: character n-gram overlap above what a helpful lesson typically shares
(`OVERLAP_FREE`) costs `OVERLAP_PENALTY` per unit. Both constants were chosen on the dev half of
`bench/data/relevance-nl.tsv` (`bench/matcher_relevance.py --tune`) and are reported on the
other half.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bot.domain import Contribution, Source
from bot.embedders import Embedder, Kind, LexicalEmbedder, asymmetric
from bot.ports import Clock
from bot.vectorindex import Entry, Filters, Hit, VectorIndex
from storage.repositories import ContributionRepository, VectorRepository

log = logging.getLogger(__name__)

Mode = Literal["similarity", "relevance"]

# Shared wording up to this lexical cosine is what a helpful lesson and its situation typically
# have in common (unrelated Dutch texts: ~0.05); above it, overlap is discounted at this rate.
OVERLAP_FREE = 0.20
OVERLAP_PENALTY = 1.0
_ROLE_CACHE = 4096

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
        self._help_floor = 0.0
        self._asym = asymmetric(embedder)
        self._lexical = embedder if isinstance(embedder, LexicalEmbedder) else LexicalEmbedder()
        # Without a model there is no meaning apart from the wording to fall back on.
        self._penalty = 0.0 if isinstance(embedder, LexicalEmbedder) else OVERLAP_PENALTY
        self._roles: OrderedDict[tuple[str, int, str], NDArray[np.float32]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def calibrate(self) -> float:
        """Measure how similar unrelated texts look to this embedder (e5 rarely says less than
        0.75; n-grams say about 0.05), so that `relevance` means the same for every embedder;
        and how much unrelated lessons seem to help, for `helpfulness`."""
        texts = list(UNRELATED)
        vectors = await self.embedder.embed(texts, kind="passage")
        upper = np.triu_indices(len(texts), k=1)
        self._floor = min(0.95, max(0.0, float((vectors @ vectors.T)[upper].mean())))
        lessons = await self._asym.embed(texts, kind="passage")
        situations = await self._asym.embed(texts, kind="query")
        lexical = await self._lexical.embed(texts, kind="passage")
        helps = help_matrix(lessons, situations, lexical, lexical, penalty=self._penalty)
        off_diagonal = ~np.eye(len(texts), dtype=np.bool_)
        self._help_floor = min(0.95, max(0.0, float(helps[off_diagonal].mean())))
        return self._floor

    def relevance(self, cosine: float) -> float:
        """A cosine similarity on a 0–1 scale: 0 for unrelated texts, 1 for the same text."""
        floor = self._floor
        return float(min(1.0, max(0.0, (cosine - floor) / (1.0 - floor))))

    def helpfulness(self, score: float) -> float:
        """A `help_matrix` score on a 0–1 scale: 0 for a lesson from an unrelated text."""
        floor = self._help_floor
        return float(min(1.0, max(0.0, (score - floor) / (1.0 - floor))))

    async def _role_vectors(
        self, organisation_id: str, items: Sequence[tuple[int, str]], role: Kind | Literal["words"]
    ) -> NDArray[np.float32]:
        """Vectors of contributions in one role, computed once and kept (bounded) in memory."""
        keys = [(organisation_id, cid, role) for cid, _ in items]
        todo = [(key, text) for key, (_, text) in zip(keys, items, strict=True)]
        todo = [(key, text) for key, text in todo if key not in self._roles]
        if todo:
            texts = [text for _, text in todo]
            if role == "words":
                vectors = await self._lexical.embed(texts, kind="passage")
            else:
                vectors = await self._asym.embed(texts, kind=role)
            for (key, _), vector in zip(todo, vectors, strict=True):
                self._roles[key] = np.ascontiguousarray(vector, dtype=np.float32)
        rows = []
        for key in keys:
            self._roles.move_to_end(key)
            rows.append(self._roles[key])
        while len(self._roles) > _ROLE_CACHE:
            self._roles.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 1), dtype=np.float32)

    def _forget_roles(self, organisation_id: str, contribution_id: int) -> None:
        for role in ("query", "passage", "words"):
            self._roles.pop((organisation_id, contribution_id, role), None)

    async def helps(self, lesson: Contribution, situations: Sequence[int]) -> list[float]:
        """How much `lesson` could help in each of these contributions of its organisation (their
        situations), on the 0–1 scale of `helpfulness`; 0 for one that no longer exists."""
        org = lesson.organisation_id
        found = [
            (cid, contribution_text(c))
            for cid in dict.fromkeys(situations)
            if (c := await self._contributions.get(org, cid)) is not None
        ]
        if not found:
            return [0.0 for _ in situations]
        mine = [(lesson.id, contribution_text(lesson))]
        scores = help_matrix(
            await self._role_vectors(org, mine, "passage"),
            await self._role_vectors(org, found, "query"),
            await self._role_vectors(org, mine, "words"),
            await self._role_vectors(org, found, "words"),
            penalty=self._penalty,
        )[0]
        by_id = {cid: self.helpfulness(float(x)) for (cid, _), x in zip(found, scores, strict=True)}
        return [by_id.get(cid, 0.0) for cid in situations]

    async def help_in(self, lesson: Contribution, situation: Sequence[Hit]) -> float:
        """How much `lesson` could help where these contributions (found by `search`) are the
        situation, 0–1: the best of their `helps` and of their likeness (`relevance`).

        Help adds reach — a lesson that shares few words with a department's problems can still
        get there — but does not take away what likeness gives: a helpful lesson may share many
        words with its situation (a handover fix for a ward that struggles with handovers), and
        the overlap discount alone would then hide it.
        """
        if not situation:
            return 0.0
        helps = await self.helps(lesson, [h.contribution_id for h in situation])
        return max(*helps, *(self.relevance(h.score) for h in situation))

    def _index(self, organisation_id: str) -> VectorIndex:
        if organisation_id not in self._indexes:
            self._indexes[organisation_id] = VectorIndex(self.embedder.dimensions)
        return self._indexes[organisation_id]

    async def load(self, organisation_id: str) -> int:
        """Fill the index from stored vectors; embed contributions that have none yet."""
        await self.calibrate()
        async with self._locks.setdefault(organisation_id, asyncio.Lock()):
            rows = await self._vectors.load(organisation_id, self.embedder.name)
            # Room for all of them and some growth: no copying while it fills.
            index = VectorIndex(self.embedder.dimensions, capacity=len(rows) + 1024)
            for stored in rows:
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
            self._forget_roles(c.organisation_id, c.id)  # an edit changes what it says
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
        self._forget_roles(organisation_id, contribution_id)

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


def help_score(
    cosine: NDArray[np.float32],
    overlap: NDArray[np.float32],
    *,
    free: float = OVERLAP_FREE,
    penalty: float = OVERLAP_PENALTY,
) -> NDArray[np.float32]:
    """How much lessons could help in situations, from the asymmetric cosine (lesson as passage,
    situation as query) and the lexical overlap: shared wording beyond `free` costs `penalty`
    per unit."""
    discount = penalty * np.maximum(0.0, overlap - free)
    scores: NDArray[np.float32] = (cosine - discount).astype(np.float32)
    return scores


def help_matrix(
    lessons: NDArray[np.float32],
    situations: NDArray[np.float32],
    lesson_words: NDArray[np.float32],
    situation_words: NDArray[np.float32],
    *,
    penalty: float = OVERLAP_PENALTY,
) -> NDArray[np.float32]:
    """`help_score` of each lesson (rows) in each situation (columns)."""
    return help_score(lessons @ situations.T, lesson_words @ situation_words.T, penalty=penalty)


async def _embed_unique(embedder: Embedder, texts: list[str], kind: Kind) -> NDArray[np.float32]:
    """Each distinct text embedded once, rows in the order of `texts`."""
    unique = list(dict.fromkeys(texts))
    vectors = await embedder.embed(unique, kind=kind)
    row = {text: i for i, text in enumerate(unique)}
    return vectors[[row[t] for t in texts]]


async def score_pairs(
    embedder: Embedder, pairs: Sequence[tuple[str, str]], mode: Mode = "similarity"
) -> list[float]:
    """One score per pair, in order. "similarity": the cosine of both texts embedded alike.
    "relevance": how much the lesson `a` could help in the situation `b` (see the module's
    docstring) — not symmetric: swapping a lesson and a situation changes the score."""
    if not pairs:
        return []
    lesson_texts = [a for a, _ in pairs]
    situation_texts = [b for _, b in pairs]
    if mode == "similarity":
        left = await _embed_unique(embedder, lesson_texts, "query")
        right = await _embed_unique(embedder, situation_texts, "query")
        return [float(x) for x in np.einsum("ij,ij->i", left, right)]
    view = asymmetric(embedder)
    lexical_only = isinstance(embedder, LexicalEmbedder)
    lexical = embedder if isinstance(embedder, LexicalEmbedder) else LexicalEmbedder()
    lessons = await _embed_unique(view, lesson_texts, "passage")
    situations = await _embed_unique(view, situation_texts, "query")
    lesson_words = await _embed_unique(lexical, lesson_texts, "passage")
    situation_words = await _embed_unique(lexical, situation_texts, "passage")
    scores = help_score(
        np.einsum("ij,ij->i", lessons, situations),
        np.einsum("ij,ij->i", lesson_words, situation_words),
        penalty=0.0 if lexical_only else OVERLAP_PENALTY,
    )
    return [float(x) for x in scores]
