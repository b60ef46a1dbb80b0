"""Evaluation sets as (queries, corpus, relevant ids): one loader shared by distill and bench."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .items import CorpusItem

#: Task instructions a query-aware teacher (GME) applies to query texts.
QUERY_INSTRUCTIONS = {
    "t2i": "Find an image that matches the given text.",
    "i2t": None,  # image queries carry no text instruction
    "t2t": "Find the word or phrase that the given definition describes.",
}


@dataclass
class EvalSet:
    """A retrieval task: rank ``corpus`` for each query; ``relevant`` maps query id -> relevant corpus ids."""

    name: str  # e.g. "openmoji-test"
    task: str  # "t2i", "i2t" or "t2t"
    queries: list[CorpusItem]
    corpus: list[CorpusItem]
    relevant: dict[str, set[str]]

    def __post_init__(self) -> None:
        corpus_ids = {item.id for item in self.corpus}
        if len(corpus_ids) != len(self.corpus):
            raise ValueError(f"{self.name}: duplicate corpus ids")
        for query in self.queries:
            rel = self.relevant.get(query.id)
            if not rel:
                raise ValueError(f"{self.name}: query {query.id!r} has no relevant documents")
            if not rel <= corpus_ids:
                raise ValueError(f"{self.name}: query {query.id!r} names ids missing from the corpus")

    @property
    def query_instruction(self) -> str | None:
        """The teacher's task instruction for this set's queries (None: none)."""
        return QUERY_INSTRUCTIONS[self.task]


def sample_keys(keys: list[str], n: int | None, seed: int) -> list[str]:
    """A fixed-seed random subset of ``n`` keys (all keys when n is None), in the original order."""
    if n is None or n >= len(keys):
        return list(keys)
    chosen = set(random.Random(seed).sample(keys, n))
    return [k for k in keys if k in chosen]
