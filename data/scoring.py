"""Embed an evaluation set with any encoder and score it (numpy only).

An encoder is anything with ``embed_texts(texts, ...)`` and ``embed_images(images, ...)`` returning
L2-normalised float32 rows: a teacher, a torch student, or the runtime's ``Retriever``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .evalset import EvalSet
from .items import CorpusItem
from .metrics import rank_corpus, retrieval_metrics, topk_overlap

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """Anything that embeds texts and images into L2-normalised float32 rows."""
    def embed_texts(self, texts: Sequence[str], *args: Any, **kwargs: Any) -> np.ndarray:
        """L2-normalised text embeddings."""
        ...
    def embed_images(self, images: Sequence[Any], *args: Any, **kwargs: Any) -> np.ndarray:
        """L2-normalised image embeddings."""
        ...


def embed_items(
    encoder: Encoder, items: Sequence[CorpusItem], progress: bool = False, memo: dict | None = None
) -> np.ndarray:
    """Embed mixed text/image items in order; texts are grouped by their instruction.

    ``memo`` (a dict kept by the caller) reuses embeddings of items already embedded, keyed by
    (id, instruction), so overlapping eval sets are embedded once.
    """
    memo = {} if memo is None else memo
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, item in enumerate(items):
        if (item.id, item.instruction) not in memo:
            groups.setdefault((item.kind, item.instruction), []).append(i)
    takes_instruction = "instruction" in inspect.signature(encoder.embed_texts).parameters
    for (kind, instruction), rows in groups.items():
        if kind == "text":
            texts = [items[i].load() for i in rows]
            kwargs = {"instruction": instruction} if takes_instruction and instruction else {}
            emb = encoder.embed_texts(texts, progress=progress, **kwargs)
        else:
            emb = encoder.embed_images([items[i].load() for i in rows], progress=progress)
        for i, row in zip(rows, emb, strict=True):
            memo[(items[i].id, items[i].instruction)] = row
    if not items:
        return np.zeros((0, 0), np.float32)
    return np.stack([memo[(item.id, item.instruction)] for item in items]).astype(np.float32)


def score_evalset(
    query_emb: np.ndarray, corpus_emb: np.ndarray, evalset: EvalSet, reference_ranked: np.ndarray | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics for one eval set from embeddings; returns (metrics, top-10 corpus indices per query).

    With ``reference_ranked`` (the teacher's top-10), adds ``teacher_overlap@10``.
    """
    ranked = rank_corpus(query_emb @ corpus_emb.T, k=10)
    metrics = retrieval_metrics(
        ranked, [q.id for q in evalset.queries], [c.id for c in evalset.corpus], evalset.relevant
    )
    if reference_ranked is not None:
        metrics["teacher_overlap@10"] = topk_overlap(ranked, reference_ranked, k=10)
    return metrics, ranked


def evaluate_encoder(
    encoder: Encoder, evalset: EvalSet, progress: bool = False, memo: dict | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """Embed queries and corpus of ``evalset`` with ``encoder`` and score the ranking."""
    memo = {} if memo is None else memo
    query_emb = embed_items(encoder, evalset.queries, progress, memo)
    corpus_emb = embed_items(encoder, evalset.corpus, progress, memo)
    return score_evalset(query_emb, corpus_emb, evalset)
