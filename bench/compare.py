"""``edgeret bench``: teacher and student variants side by side — accuracy lost versus latency gained.

Accuracy (Recall@1/5/10, MRR@10, nDCG@10, teacher_overlap@10) on the held-out test splits for
text->image, image->text (OpenMoji) and text->text (WordNet); cost per variant: single-query
latency p50/p95 at 1 thread and at all cores, model bytes. The teacher's test embeddings come from
its cache when present (no teacher re-run); bundles are measured through the torch-free runtime
(``Retriever``), exactly as an app would run them.

Writes ``summary.json`` (DESIGN.md's results contract), ``summary.md`` and ``pareto.png``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import load_eval
from .datasets.evalset import EvalSet
from .evaluate import embed_items, score_evalset
from .report import invocation, machine_info, markdown_table, now_iso, package_versions, write_json

logger = logging.getLogger(__name__)

TASK_SETS = {"t2i": "openmoji-test-t2i", "i2t": "openmoji-test-i2t", "t2t": "wordnet-test-t2t"}
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "teacher_overlap@10")


def teacher_memo(cache_dirs: list[Path]) -> dict:
    """Embeddings from the caches of an instruction-free teacher (the stand-in), keyed like
    ``bench.evaluate.embed_items``'s memo: each row serves the item under any instruction."""
    from distill.cache import load_cache

    from .datasets import QUERY_INSTRUCTIONS

    memo: dict = {}
    for cache_dir in cache_dirs:
        cache = load_cache(cache_dir)
        rows = cache.rows(cache.ids)
        for item_id, row in zip(cache.ids, rows, strict=True):
            for instruction in {None, *QUERY_INSTRUCTIONS.values()}:
                memo[(item_id, instruction)] = row
    return memo


def time_per_query(fn: Callable[[Any], Any], queries: list, repeats: int = 3, warmup: int = 5) -> dict[str, float]:
    """p50/p95 milliseconds of ``fn(query)`` over ``queries`` x ``repeats`` after a warm-up."""
    for q in queries[:warmup]:
        fn(q)
    samples = []
    for _ in range(repeats):
        for q in queries:
            start = time.perf_counter()
            fn(q)
            samples.append((time.perf_counter() - start) * 1e3)
    return {"p50": float(np.percentile(samples, 50)), "p95": float(np.percentile(samples, 95))}


def latency_queries(n_text: int = 40, n_image: int = 15) -> tuple[list[str], list]:
    """Real single queries: WordNet glosses and rendered emoji (val split, not the scored test)."""
    from .datasets.openmoji import emojis
    from .datasets.render import render_emoji
    from .datasets.wordnet import synsets

    return [s.gloss for s in synsets("val")[:n_text]], [render_emoji(e.text) for e in emojis("val")[:n_image]]


def accuracy_rows(
    variant: str, encoder: Any, evalsets: dict[str, EvalSet], reference: dict[str, np.ndarray] | None, memo: dict
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One row per task with the metrics; returns the rows and each task's top-10 ranking."""
    rows, ranked_by_task = [], {}
    for task, evalset in evalsets.items():
        queries = embed_items(encoder, evalset.queries, memo=memo)
        corpus = embed_items(encoder, evalset.corpus, memo=memo)
        metrics, ranked = score_evalset(queries, corpus, evalset, reference[task] if reference else None)
        if reference is None:
            metrics["teacher_overlap@10"] = 1.0 if variant.startswith("teacher") else None
        ranked_by_task[task] = ranked
        rows.append({"variant": variant, "task": task, "dataset": evalset.name.replace("-t2i", ""), **metrics})
    return rows, ranked_by_task


def cost_of(encoder_at: Callable[[int], Any], texts: list[str], images: list) -> dict[str, float]:
    """Single-query text and image latency at 1 thread and at all cores.

    ``encoder_at(threads)`` returns the encoder set up to use that many threads.
    """
    cost: dict[str, float] = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        encoder = encoder_at(threads)
        text = time_per_query(lambda q, e=encoder: e.embed_texts([q]), texts)
        image = time_per_query(lambda q, e=encoder: e.embed_images([q]), images)
        suffix = "1t" if threads == 1 else "all"
        cost.update({f"text_query_ms_p50_{suffix}": text["p50"], f"text_query_ms_p95_{suffix}": text["p95"],
                     f"image_query_ms_p50_{suffix}": image["p50"], f"image_query_ms_p95_{suffix}": image["p95"]})
    encoder_at(1)
    return cost


def with_cost(row: dict, cost: dict[str, float]) -> dict:
    """Add the cost columns; ``query_ms_*`` is the latency of this task's query modality."""
    modality = "image" if row["task"] == "i2t" else "text"
    row.update(cost)
    for key in ("p50_1t", "p95_1t", "p50_all", "p95_all"):
        row[f"query_ms_{key}"] = cost.get(f"{modality}_query_ms_{key}")
    return row


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret bench", description=__doc__.splitlines()[0])
    parser.add_argument("--head-path", type=Path, required=True, help="the stand-in teacher's fitted image head")
    parser.add_argument("--teacher-cache", type=Path, nargs="*", default=[], help="teacher cache folders to reuse")
    parser.add_argument("--bundle", nargs="*", default=[], metavar="NAME=DIR", help="bundles, e.g. student-int8=DIR")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    return parser


def _teacher_bytes(teacher: Any) -> int:
    params = [*teacher.text_model.parameters(), *teacher.image_model.parameters()]
    return int(sum(p.numel() * p.element_size() for p in params)) + teacher.head_path.stat().st_size


def main(argv: list[str] | None = None) -> dict:
    """Measure the teacher and every bundle; write summary.json / summary.md / pareto.png."""
    args = build_parser().parse_args(argv)
    import torch

    from distill.teachers.standin import StandinTeacher
    from runtime.retriever import Retriever

    evalsets = {task: load_eval(name) for task, name in TASK_SETS.items()}
    texts, images = latency_queries()
    teacher = StandinTeacher(head_path=args.head_path, fit_if_missing=False)
    memo = teacher_memo(args.teacher_cache) if args.teacher_cache else {}
    rows, reference = accuracy_rows("teacher-torch", teacher, evalsets, None, memo)
    teacher_cost = cost_of(lambda n: (torch.set_num_threads(n), teacher)[1], texts, images)
    for row in rows:
        with_cost(row, teacher_cost).update(model_bytes=_teacher_bytes(teacher), peak_rss_mb=_peak_rss_mb())
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        retriever = Retriever.open(path, threads=1)
        variant_rows, _ = accuracy_rows(name, retriever, evalsets, reference, {})
        cost = cost_of(lambda n, p=path: Retriever.open(p, threads=n, verify="size"), texts, images)
        size = sum(f["bytes"] for f in retriever.manifest.data["files"].values())
        for row in variant_rows:
            with_cost(row, cost).update(model_bytes=size, peak_rss_mb=None)
        rows += variant_rows
        logger.info("%s measured", name)
    return write_results(rows, argv, args.out)


def write_results(rows: list[dict], argv: list[str] | None, out: Path) -> dict:
    """summary.json in the DESIGN.md contract, the markdown table and the Pareto plot."""
    threads = sorted({1, os.cpu_count() or 1})
    summary = {
        "command": invocation("edgeret bench", argv), "created": now_iso(), "machine": machine_info(threads),
        "versions": package_versions(), "rows": rows,
    }
    write_json(out / "summary.json", summary)
    columns = ["variant", "task", "recall@1", "recall@10", "mrr@10", "ndcg@10", "teacher_overlap@10",
               "query_ms_p50_1t", "query_ms_p50_all", "model_bytes"]
    table = markdown_table(rows, columns)
    (out / "summary.md").write_text(f"`{summary['command']}`\n\n{table}\n", encoding="utf-8")
    pareto_plot(rows, out / "pareto.png")
    print(table)
    return summary


def pareto_plot(rows: list[dict], path: Path) -> None:
    """Quality (Recall@10 per task) against 1-thread text-query latency, log scale, one point per variant."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - bench extra missing
        logger.warning("matplotlib is not installed (pip install 'edgeret[bench]'): no Pareto plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for task, marker in zip(TASK_SETS, "os^", strict=True):
        points = [(r["query_ms_p50_1t"], r["recall@10"], r["variant"]) for r in rows
                  if r["task"] == task and r.get("query_ms_p50_1t") and r.get("recall@10") is not None]
        if not points:
            continue
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=task)
        for x, y, name in points:
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("query latency p50, 1 thread, ms, log scale (text query; image query for i2t)")
    ax.set_ylabel("Recall@10 (held-out test)")
    ax.set_title("edgeret: accuracy vs latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
