"""Rows of ``summary.json``: accuracy per (variant, task) from embeddings, Matryoshka rows, and the
fixed set of columns every row carries (a metric that does not apply is null)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.catalog import QUERY_INSTRUCTIONS
from edgeret.data.evalset import EvalSet
from edgeret.data.scoring import embed_items, score_evalset
from edgeret.data.style_shift import by_style
from edgeret.distill.cache import load_cache
from edgeret.runtime.vectors import truncate

from .tasks import QUERY_KIND

logger = logging.getLogger(__name__)

#: bytes per parameter of each dtype gme2b-arch can be built in (its ``--dtype`` choices)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "teacher_overlap@10")
LATENCY = tuple(f"{m}_query_ms_{p}_{t}" for m in ("text", "image") for t in ("1t", "all") for p in ("p50", "p95"))
QUERY = ("query_ms_p50_1t", "query_ms_p95_1t", "query_ms_p50_all", "query_ms_p95_all")
FOOTPRINT = ("cold_start_ms", "peak_rss_mb", "peak_rss_batch_mb", "text_batch64_items_per_s",
             "image_batch64_items_per_s", "index_build_s", "index_items")
#: every row has exactly these keys, in this order
COLUMNS = ("variant", "task", "dataset", "dim", *METRICS, *QUERY, *LATENCY, "model_bytes", "params", *FOOTPRINT,
           "cost_of", "note")

Embeddings = dict[str, tuple[np.ndarray, np.ndarray]]


def teacher_memo(cache_dirs: list[Path]) -> dict:
    """Embeddings from the caches of an instruction-free teacher (the stand-in), keyed like
    :func:`edgeret.data.scoring.embed_items`'s memo: each row serves the item under any instruction."""
    memo: dict = {}
    for cache_dir in cache_dirs:
        cache = load_cache(cache_dir)
        rows = cache.rows(cache.ids)
        for item_id, row in zip(cache.ids, rows, strict=True):
            for instruction in {None, *QUERY_INSTRUCTIONS.values()}:
                memo[(item_id, instruction)] = row
    return memo


def embed_tasks(encoder: Any, evalsets: dict[str, EvalSet], memo: dict | None = None) -> Embeddings:
    """(query, corpus) embeddings of every task's eval set."""
    memo = {} if memo is None else memo
    return {task: (embed_items(encoder, e.queries, memo=memo), embed_items(encoder, e.corpus, memo=memo))
            for task, e in evalsets.items()}


def truncated(embeddings: Embeddings, dim: int) -> Embeddings:
    """Matryoshka prefix of every embedding, renormalised (as the runtime's ``dim=``)."""
    return {task: (truncate(q, dim), truncate(c, dim)) for task, (q, c) in embeddings.items()}


def accuracy_rows(variant: str, embeddings: Embeddings, evalsets: dict[str, EvalSet],
                  reference: dict[str, np.ndarray] | None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One row per task with the metrics (``reference`` None: this is the teacher, overlap 1); a style-shift
    task's row also has ``by_style`` (Recall@10 per style)."""
    rows, ranked_by_task = [], {}
    for task, (queries, corpus) in embeddings.items():
        evalset = evalsets[task]
        metrics, ranked = score_evalset(queries, corpus, evalset, reference.get(task) if reference else None)
        if reference is None:
            metrics["teacher_overlap@10"] = 1.0
        ranked_by_task[task] = ranked
        row = {"variant": variant, "task": task, "dataset": dataset_of(evalset), "dim": int(queries.shape[1]),
               **metrics}
        styles = style_recall(ranked, evalset)
        if styles:
            row["by_style"] = styles
        rows.append(row)
    return rows, ranked_by_task


def style_recall(ranked: np.ndarray, evalset: EvalSet, k: int = 10) -> dict[str, float]:
    """Recall@k of ``evalset``'s queries per style (empty for a set without styled images)."""
    corpus_ids = [c.id for c in evalset.corpus]
    hit = np.array([any(corpus_ids[j] in evalset.relevant[q.id] for j in row[:k])
                    for row, q in zip(ranked, evalset.queries, strict=True)], dtype=bool)
    return {style: float(hit[rows].mean()) for style, rows in by_style(evalset).items()}


def dataset_of(evalset: EvalSet) -> str:
    """``openmoji-test`` / ``wordnet-test`` / ``openmoji-style-test`` (the eval set's name without a task suffix)."""
    name = evalset.name
    for task in ("-t2i", "-i2t", "-t2t", "-i2i"):
        name = name.replace(task, "")
    return name


def with_cost(row: dict, cost: dict[str, Any]) -> dict:
    """Add the cost columns; ``query_ms_*`` is the latency of this task's query modality."""
    modality = QUERY_KIND.get(row["task"], "text")
    row.update(cost)
    for key in ("p50_1t", "p95_1t", "p50_all", "p95_all"):
        row[f"query_ms_{key}"] = cost.get(f"{modality}_query_ms_{key}")
    return row


def complete(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every column of :data:`COLUMNS` (missing ones null), in that order; extra keys kept last."""
    out = {key: row.get(key) for key in COLUMNS}
    out.update({k: v for k, v in row.items() if k not in out})
    return out


def gme_rows(result: dict[str, Any], datasets: dict[str, str]) -> list[dict[str, Any]]:
    """``gme2b-arch`` rows (one per task, accuracy null) from :func:`edgeret.bench.gme_arch.measure`'s result."""
    cost = {k: result.get(k) for k in LATENCY}
    element = DTYPE_BYTES[result["dtype"]]
    note = (f"Qwen2-VL-2B architecture, random weights, {result['dtype']}; text query {result['text_sequence']} "
            f"tokens, image {result['image_px'][0]}x{result['image_px'][1]} px ({result['image_tokens']} visual "
            f"tokens, {result['image_sequence']} tokens); p50 of {result['text_repeats']} text / "
            f"{result['image_repeats']} image runs")
    rows = []
    for task, dataset in datasets.items():
        row = {"variant": "gme2b-arch", "task": task, "dataset": dataset, "dim": result["embedding_dim"],
               "model_bytes": result["params"] * element, "params": result["params"],
               "peak_rss_mb": result["peak_rss_mb"], "note": note}
        rows.append(complete(with_cost(row, cost)))
    return rows
