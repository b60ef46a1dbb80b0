"""Retrieval metrics from score matrices (numpy only): Recall@k, MRR@k, nDCG@k, teacher overlap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rank_corpus(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top-``k`` corpus items per query row, best first (ties broken by lower index)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def retrieval_metrics(
    ranked: np.ndarray,
    query_ids: Sequence[str],
    corpus_ids: Sequence[str],
    relevant: dict[str, set[str]],
    ks: Sequence[int] = (1, 5, 10),
    cutoff: int = 10,
) -> dict[str, float]:
    """Mean Recall@k (a hit if any relevant item is in the top k), MRR@cutoff and nDCG@cutoff.

    ``ranked`` holds corpus indices per query, best first, at least ``max(ks, cutoff)`` wide (or the
    whole corpus). nDCG uses binary gains with the ideal DCG of min(|relevant|, cutoff) hits.
    """
    if len(query_ids) != ranked.shape[0]:
        raise ValueError(f"{ranked.shape[0]} ranked rows for {len(query_ids)} queries")
    discounts = 1.0 / np.log2(np.arange(2, cutoff + 2))
    hits_at = {k: 0.0 for k in ks}
    mrr = ndcg = 0.0
    for row, qid in zip(ranked, query_ids, strict=True):
        rel = relevant[qid]
        hits = np.array([corpus_ids[j] in rel for j in row[: max(*ks, cutoff)]], dtype=bool)
        for k in ks:
            hits_at[k] += float(hits[:k].any())
        first = np.flatnonzero(hits[:cutoff])
        mrr += 1.0 / (first[0] + 1) if first.size else 0.0
        ideal = discounts[: min(len(rel), cutoff)].sum()
        ndcg += float((hits[:cutoff] * discounts[: hits[:cutoff].size]).sum() / ideal)
    n = max(len(query_ids), 1)
    out = {f"recall@{k}": hits_at[k] / n for k in ks}
    out[f"mrr@{cutoff}"] = mrr / n
    out[f"ndcg@{cutoff}"] = ndcg / n
    return out


def topk_overlap(ranked_a: np.ndarray, ranked_b: np.ndarray, k: int = 10) -> float:
    """Mean fraction of shared items between two top-k lists per query (order ignored)."""
    if ranked_a.shape[0] != ranked_b.shape[0]:
        raise ValueError("both rankings need the same number of queries")
    shared = [len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ranked_a, ranked_b, strict=True)]
    return float(np.mean(shared)) if shared else 0.0


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (float64; zero rows give 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
