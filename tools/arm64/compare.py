"""Compare what x86 and ARM64 computed: per-item cosine of embeddings, agreement of top-k lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: every item's x86 and ARM64 embeddings must have at least this cosine
MIN_COSINE = 0.999
#: largest score difference at one rank allowed for x86-made (bit-identical) query vectors, in every index format.
#: Both machines compute the same float32 dot products of unit vectors, in another summation order (AVX2's 8 lanes
#: vs NEON's 4, fused multiply-adds or not). On the demo bundle's 384-d vectors a float32 product is within 3.8e-7
#: of float64's (the worst-case bound d * 2**-24 = 2.3e-5 assumes that no rounding error ever cancels), and x86 and
#: ARM64 differed by at most 1.1e-6 (hnswlib: scalar loops on ARM, AVX on x86) and 2.4e-7 (faiss, also at 100k
#: items). A stored vector read differently shifts a score far more: one 8-bit code of ``faiss-hnsw-sq8`` one step
#: off moves it by range/255 * |q_i|, median 5.5e-5 over dimensions and queries (3e-4 in a query's largest one).
SCORE_TOLERANCE = 1e-5


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of ``a`` with row i of ``b`` (rows need not be normalised).

    Raises:
        ValueError: the shapes differ, or a row is all zeros (its direction is undefined).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two matrices of one shape, got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    if (norms == 0).any():
        raise ValueError(f"row {int(np.argmax(norms == 0))} is all zeros")
    return np.einsum("ij,ij->i", a, b) / norms


def cosine_summary(ids: Sequence[str], host: np.ndarray, guest: np.ndarray, threshold: float = MIN_COSINE) -> dict:
    """Minimum / mean cosine, the worst item and how many items fall below ``threshold``."""
    if len(ids) != len(host):
        raise ValueError(f"{len(ids)} ids for {len(host)} embeddings")
    cos = rowwise_cosine(host, guest)
    worst = int(np.argmin(cos))
    return {
        "items": len(ids),
        "min_cosine": float(cos[worst]),
        "mean_cosine": float(cos.mean()),
        "worst_item": ids[worst],
        "below_threshold": int((cos < threshold).sum()),
        "max_abs_diff": float(np.abs(np.asarray(host, np.float64) - np.asarray(guest, np.float64)).max()),
        "ok": bool((cos >= threshold).all()),
    }


def topk_agreement(host: dict[str, list], guest: dict[str, list]) -> dict[str, Any]:
    """How many queries got the identical top-k list (same ids, same order) on both machines.

    ``host`` and ``guest`` are ``{"ids": [[...], ...], "scores": [[...], ...]}`` for the same queries.
    Also reports the mean overlap of the top-k sets, the largest score difference of an item both returned,
    and the largest difference of the scores at the same rank (small when lists differ only by near-ties).
    """
    host_ids, guest_ids = host["ids"], guest["ids"]
    if len(host_ids) != len(guest_ids):
        raise ValueError(f"{len(host_ids)} host queries but {len(guest_ids)} guest queries")
    if not host_ids:
        raise ValueError("no queries to compare")
    identical = sum(h == g for h, g in zip(host_ids, guest_ids, strict=True))
    overlaps = [len(set(h) & set(g)) / max(len(h), 1) for h, g in zip(host_ids, guest_ids, strict=True)]
    diffs = [
        abs(hs - gs_by_id[i])
        for h, hsc, g, gsc in zip(host_ids, host["scores"], guest_ids, guest["scores"], strict=True)
        for gs_by_id in [dict(zip(g, gsc, strict=True))]
        for i, hs in zip(h, hsc, strict=True)
        if i in gs_by_id
    ]
    return {
        "queries": len(host_ids),
        "identical": identical,
        "agreement": identical / len(host_ids),
        "mean_overlap": float(np.mean(overlaps)),
        "max_score_diff": float(max(diffs)) if diffs else None,
        "max_rank_score_diff": max((abs(a - b) for hs, gs in zip(host["scores"], guest["scores"], strict=True)
                                    for a, b in zip(hs, gs, strict=False)), default=None),
        "first_difference": _first_difference(host_ids, guest_ids),
    }


def _first_difference(host_ids: list[list[str]], guest_ids: list[list[str]]) -> dict | None:
    for q, (h, g) in enumerate(zip(host_ids, guest_ids, strict=True)):
        if h != g:
            return {"query": q, "x86": h, "arm64": g}
    return None
