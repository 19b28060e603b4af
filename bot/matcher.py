"""The matcher: contributions as vectors, the most similar ones, and which could help where.

Vectors are computed once, when a contribution is stored (or edited), and kept in the database;
at start the index is filled from there, and only contributions without a vector are embedded.
Searching is in memory (`bot.vectorindex`), one index per organisation, so nothing crosses
organisations.

Two questions, two measures. *Similarity* ("do these say the same?") is symmetric: the cosine of
the stored vectors. *Relevance* ("could lesson A help in situation B?") is not: a lesson and the
problem it solves often share few words, and a text that shares many can be useless — and an
embedding's cosine follows shared words. Relevance therefore looks at what the lesson says
*beyond* the situation's own words: the lesson with every word whose stem the situation also has
taken out (`WordMask`), embedded as an e5 passage against the situation as an e5 query (what e5
was trained for: a question and the text that answers it). That is weighed (`MASK_WEIGHT`) with
the whole lesson's cosine, and character n-gram overlap above what a helpful lesson typically
shares (`OVERLAP_FREE`) still costs `OVERLAP_PENALTY` per unit. The constants were chosen on the
dev half of `bench/data/relevance-nl.tsv` (`bench/matcher_relevance.py --tune`) and are reported
on the other half. Without a model (lexical n-grams only) relevance is plain likeness: n-grams
have no meaning apart from the wording to fall back on.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
import snowballstemmer
from numpy.typing import NDArray

from bot.domain import Contribution, Source
from bot.embedders import _STOPWORDS as STOPWORDS  # the lexical embedder's: weigh little there
from bot.embedders import Embedder, Kind, LexicalEmbedder, asymmetric
from bot.embedders import _fold as fold
from bot.ports import Clock
from bot.vectorindex import Entry, Filters, Hit, VectorIndex
from storage.repositories import ContributionRepository, VectorRepository

log = logging.getLogger(__name__)

Mode = Literal["similarity", "relevance"]

# How much of relevance is the cosine of the lesson without the situation's words; the rest is
# the whole lesson's cosine. The dev half chose all of it: the whole lesson's cosine mostly
# measures the shared words.
MASK_WEIGHT = 1.0
# Shared wording up to this lexical cosine is what a helpful lesson and its situation typically
# have in common (unrelated Dutch texts: ~0.05); above it, overlap is discounted at this rate.
OVERLAP_FREE = 0.15
OVERLAP_PENALTY = 0.5
_ROLE_CACHE = 4096
_WORD = re.compile(r"\w+")

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


class WordMask:
    """A lesson without the words of the situation it is set against.

    A word goes when its Snowball stem (case- and accent-folded) is among the content words'
    stems of the other text: "de nieuwe docenten kregen hun laptop" set against "drie nieuwe
    docenten zijn vertrokken" keeps "de kregen hun laptop". Function words stay; they carry
    little, and removing them would only garble the sentence. Pure Python, microseconds a text.
    """

    def __init__(self) -> None:
        self._stemmer = snowballstemmer.stemmer("dutch")
        self._stem = lru_cache(maxsize=65536)(self._stemmer.stemWord)

    def _content_stems(self, text: str) -> set[str]:
        words = (fold(w) for w in _WORD.findall(text))
        return {self._stem(w) for w in words if w not in STOPWORDS}

    def without(self, text: str, other: str) -> str:
        """`text` without the words whose stems `other` has; `text` itself when none are."""
        shared = self._content_stems(other)
        removed = False

        def keep(match: re.Match[str]) -> str:
            nonlocal removed
            word = fold(match.group(0))
            if word not in STOPWORDS and self._stem(word) in shared:
                removed = True
                return ""
            return match.group(0)

        out = _WORD.sub(keep, text)
        if not removed:
            return text
        out = re.sub(r"(?<!\w)['’](?!\w)", "", out)  # what is left of "'s avonds"
        out = re.sub(r"\s+([;,.:!?])", r"\1", out)
        return re.sub(r"\s+", " ", out).strip()


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
        self._relevance = Relevance(embedder)
        self._search = asymmetric(embedder)
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
        pairs = [(a, b) for a in texts for b in texts if a != b]
        helps = await self._relevance.pairs(pairs)
        self._help_floor = min(0.95, max(0.0, float(helps.mean())))
        return self._floor

    def relevance(self, cosine: float) -> float:
        """A cosine similarity on a 0–1 scale: 0 for unrelated texts, 1 for the same text."""
        floor = self._floor
        return float(min(1.0, max(0.0, (cosine - floor) / (1.0 - floor))))

    def helpfulness(self, score: float) -> float:
        """A `help_score` on a 0–1 scale: 0 for a lesson from an unrelated text."""
        floor = self._help_floor
        return float(min(1.0, max(0.0, (score - floor) / (1.0 - floor))))

    async def _role_vectors(
        self, keyed: Sequence[tuple[tuple[str, int, str], str]], kind: Kind | Literal["words"]
    ) -> NDArray[np.float32]:
        """Vectors of texts under their keys (organisation, contribution, role), computed once
        and kept (bounded) in memory, so that a department's situation is not embedded again
        for every lesson (an endpoint embedder costs a call each time)."""
        todo = list({key: text for key, text in keyed if key not in self._roles}.items())
        if todo:
            vectors = await self._relevance.embed([text for _, text in todo], kind)
            for (key, _), vector in zip(todo, vectors, strict=True):
                self._roles[key] = np.ascontiguousarray(vector, dtype=np.float32)
        rows = []
        for key, _ in keyed:
            self._roles.move_to_end(key)
            rows.append(self._roles[key])
        while len(self._roles) > _ROLE_CACHE:
            self._roles.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 1), dtype=np.float32)

    def _forget_roles(self, organisation_id: str, contribution_id: int) -> None:
        """Drop its vectors, and those of other lessons without its words (an edit changes
        which words those are; a deleted contribution leaves nothing behind)."""
        without = f"without:{contribution_id}"
        for key in [
            k
            for k in self._roles
            if k[0] == organisation_id and (k[1] == contribution_id or k[2] == without)
        ]:
            del self._roles[key]

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
        text = contribution_text(lesson)
        lesson_vector = (
            await self._role_vectors([((org, lesson.id, "passage"), text)], "passage")
        )[0]
        lesson_words = (await self._role_vectors([((org, lesson.id, "words"), text)], "words"))[0]
        theirs = await self._role_vectors([((org, cid, "query"), t) for cid, t in found], "query")
        words = await self._role_vectors([((org, cid, "words"), t) for cid, t in found], "words")
        cosine = theirs @ lesson_vector
        # What the lesson says beyond each situation's words; unchanged, that is the lesson.
        masked = [self._relevance.mask.without(text, t) for _, t in found]
        changed = [i for i, m in enumerate(masked) if m != text]
        masked_cosine = cosine.copy()
        if changed:
            vectors = await self._role_vectors(
                [((org, lesson.id, f"without:{found[i][0]}"), masked[i]) for i in changed],
                "passage",
            )
            masked_cosine[changed] = np.einsum("ij,ij->i", vectors, theirs[changed])
        scores = self._relevance.score(cosine, masked_cosine, words @ lesson_words)
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
        """A free text's vector for searching the stored contributions: a search, so an e5
        *query* (the "query: " prefix alone: one pass of the model instead of the two that a
        stored contribution's both prefixes take) against their vectors. Embedders without
        roles embed it as they embed everything."""
        vectors = await self._search.embed([text], kind="query")
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
    masked_cosine: NDArray[np.float32],
    overlap: NDArray[np.float32],
    *,
    weight: float = MASK_WEIGHT,
    free: float = OVERLAP_FREE,
    penalty: float = OVERLAP_PENALTY,
) -> NDArray[np.float32]:
    """How much lessons could help in situations, element by element: from the asymmetric cosine
    (lesson as passage, situation as query), the same for the lesson without the situation's
    words (`masked_cosine`, weighed by `weight`), and the lexical overlap: shared wording beyond
    `free` costs `penalty` per unit."""
    blended = (1.0 - weight) * cosine + weight * masked_cosine
    discount = penalty * np.maximum(0.0, overlap - free)
    scores: NDArray[np.float32] = np.asarray(blended - discount, dtype=np.float32)
    return scores


class Relevance:
    """`help_score` for an embedder: its asymmetric view, n-grams for the overlap, the word mask.

    With only the lexical embedder there is no meaning apart from the wording, so relevance is
    its likeness (no mask, no discount).
    """

    def __init__(self, embedder: Embedder) -> None:
        lexical_only = isinstance(embedder, LexicalEmbedder)
        self.view = asymmetric(embedder)
        self.lexical = embedder if isinstance(embedder, LexicalEmbedder) else LexicalEmbedder()
        self.mask = WordMask()
        self.weight = 0.0 if lexical_only else MASK_WEIGHT
        self.penalty = 0.0 if lexical_only else OVERLAP_PENALTY

    async def embed(self, texts: list[str], kind: Kind | Literal["words"]) -> NDArray[np.float32]:
        """Lessons ("passage") and situations ("query") in the asymmetric view; "words": n-grams."""
        if kind == "words":
            return await _embed_unique(self.lexical, texts, "passage")
        return await _embed_unique(self.view, texts, kind)

    def score(
        self,
        cosine: NDArray[np.float32],
        masked_cosine: NDArray[np.float32],
        overlap: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        return help_score(cosine, masked_cosine, overlap, weight=self.weight, penalty=self.penalty)

    async def pairs(self, pairs: Sequence[tuple[str, str]]) -> NDArray[np.float32]:
        """The score of each (lesson, situation) pair, in order."""
        lesson_texts = [a for a, _ in pairs]
        situation_texts = [b for _, b in pairs]
        situations = await self.embed(situation_texts, "query")
        cosine = np.einsum("ij,ij->i", await self.embed(lesson_texts, "passage"), situations)
        masked_cosine = cosine.copy()
        if self.weight:
            masked = [self.mask.without(a, b) for a, b in pairs]
            changed = [
                i for i, (m, a) in enumerate(zip(masked, lesson_texts, strict=True)) if m != a
            ]
            if changed:
                vectors = await self.embed([masked[i] for i in changed], "passage")
                masked_cosine[changed] = np.einsum("ij,ij->i", vectors, situations[changed])
        overlap = np.einsum(
            "ij,ij->i",
            await self.embed(lesson_texts, "words"),
            await self.embed(situation_texts, "words"),
        )
        return self.score(cosine, masked_cosine, overlap)


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
    return [float(x) for x in await Relevance(embedder).pairs(pairs)]
