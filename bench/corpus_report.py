"""The report of a build on its own corpus's held-out split: the teacher and every variant side by side.

For each variant (a bundle, through the torch-free runtime, 1 thread):

* label-free agreement, always: for held-out items of each kind, the overlap of the variant's top-10 neighbours
  among the held-out items with the teacher's (``teacher_overlap@10``), and the mean cosine of the variant's
  embeddings to the teacher's;
* where the records carry pairs: Recall@1/5/10, MRR@10, nDCG@10 per task (t2i, i2t, t2t), the overlap with the
  teacher's ranking, and the asymmetric case: variant queries against the teacher-embedded corpus;
* per-query latency (text and image, p50 at 1 thread, encode + normalise), bundle bytes.

The teacher's rows come from the caches (it never runs). Writes ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.evalset import EvalSet, sample_keys
from edgeret.data.items import CorpusItem
from edgeret.data.metrics import rank_corpus, topk_overlap
from edgeret.data.results import machine_info, markdown_table, now_iso, package_versions, write_json
from edgeret.data.scoring import embed_items, score_evalset
from edgeret.data.timing import percentiles, time_calls
from edgeret.distill.cache import TeacherCache
from edgeret.distill.held_out import teacher_rows
from edgeret.distill.train import eval_sets
from edgeret.runtime.retriever import Retriever

from .compare import shipped_bytes

logger = logging.getLogger(__name__)

METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def neighbour_sets(caches: Sequence[TeacherCache], split: str, sample: int | None, seed: int = 0) -> list[EvalSet]:
    """Label-free sets: held-out items of each kind find each other (every item is its own only 'relevant' one,
    which only the overlap with the teacher uses)."""
    out = []
    for cache in caches:
        if cache.items is None:
            continue
        for kind in ("image", "text"):
            rows = cache.items.select("id, text, path, origin", "split = ? AND kind = ?", (split, kind))
            keep = set(sample_keys([r[0] for r in rows], sample, seed))
            items = [CorpusItem(id=i, kind=kind, text=t, path=p, origin=o) for i, t, p, o in rows if i in keep]
            if len(items) > 1:
                out.append(EvalSet(f"{cache.corpus_name}-{split}", f"{kind[0]}2{kind[0]}-neighbours", items, items,
                                   {it.id: {it.id} for it in items}))
    return out


def _runs(evalset: EvalSet, retriever: Retriever) -> bool:
    kinds = {it.kind for it in (*evalset.queries, *evalset.corpus)}
    return ("image" not in kinds or retriever.has_image_encoder) and ("text" not in kinds or
                                                                      retriever.text_encoder is not None)


def _row(name: str, evalset: EvalSet, queries: np.ndarray, corpus: np.ndarray, reference: np.ndarray | None,
         labelled: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": name, "task": evalset.task, "dataset": evalset.name,
                           "queries": len(evalset.queries), "corpus": len(evalset.corpus)}
    if labelled:
        metrics, _ = score_evalset(queries, corpus, evalset, reference)
        row.update(metrics)
    elif reference is not None:
        row["teacher_overlap@10"] = topk_overlap(rank_corpus(queries @ corpus.T, k=11)[:, 1:], reference, k=10)
    return row


def _latency(retriever: Retriever, texts: list[str], images: list[CorpusItem]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"text_query_ms_p50_1t": None, "image_query_ms_p50_1t": None}
    if texts and retriever.text_encoder is not None:
        out["text_query_ms_p50_1t"] = percentiles(time_calls(lambda t: retriever.embed_texts([t]), texts,
                                                             warmup=3))["p50"]
    if images and retriever.has_image_encoder:
        loaded = [it.load() for it in images]
        out["image_query_ms_p50_1t"] = percentiles(time_calls(lambda i: retriever.embed_images([i]), loaded,
                                                              warmup=3))["p50"]
    return out


def _teacher_embeddings(caches: Sequence[TeacherCache], evalset: EvalSet) -> tuple[np.ndarray, np.ndarray] | None:
    queries = teacher_rows(caches, [q.id for q in evalset.queries])
    corpus = teacher_rows(caches, [c.id for c in evalset.corpus])
    return None if queries is None or corpus is None else (queries, corpus)


def corpus_report(caches: Sequence[TeacherCache], bundles: dict[str, Path], *, split: str = "test",
                  sample: int | None = 2000, latency_queries: int = 30, out: Path, command: str) -> dict[str, Any]:
    """Measure the teacher (from its caches) and every bundle on ``split``; writes ``out/report.{json,md}``."""
    labelled = eval_sets(caches, split, sample)
    unlabelled = neighbour_sets(caches, split, sample)
    rows, reference = [], {}
    for evalset in [*labelled, *unlabelled]:
        teacher = _teacher_embeddings(caches, evalset)
        if teacher is None:
            continue
        is_labelled = evalset in labelled
        key = id(evalset)
        reference[key] = (teacher, rank_corpus(teacher[0] @ teacher[1].T, k=11 if not is_labelled else 10))
        if not is_labelled:
            reference[key] = (teacher, reference[key][1][:, 1:])
        rows.append({**_row("teacher", evalset, *teacher, None, is_labelled), "teacher_overlap@10": 1.0,
                     "mean_cosine": 1.0})
    texts = [t for e in labelled + unlabelled for t in (q.text for q in e.queries) if t][:latency_queries]
    images = [q for e in labelled + unlabelled for q in e.queries if q.kind == "image"][:latency_queries]
    for name, path in bundles.items():
        rows += _variant_rows(name, path, [*labelled, *unlabelled], labelled, reference, texts, images)
    report = {"command": command, "created": now_iso(), "machine": machine_info([1]), "split": split,
              "versions": package_versions(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    logger.info("wrote %s\n%s", out / "report.json", report_markdown(report))
    return report


def _variant_rows(name: str, path: Path, evalsets: list[EvalSet], labelled: list[EvalSet],
                  reference: dict[int, Any], texts: list[str], images: list[CorpusItem]) -> list[dict[str, Any]]:
    retriever = Retriever.open(path, threads=1, verify="size")
    extra = {"bundle_bytes": shipped_bytes(retriever), **_latency(retriever, texts, images)}
    rows, memo = [], {}
    for evalset in evalsets:
        if id(evalset) not in reference or not _runs(evalset, retriever):
            continue
        (t_queries, t_corpus), ranked = reference[id(evalset)]
        queries = embed_items(retriever, evalset.queries, memo=memo)
        corpus = embed_items(retriever, evalset.corpus, memo=memo)
        row = _row(name, evalset, queries, corpus, ranked, evalset in labelled)
        row["mean_cosine"] = float(np.concatenate([(queries * t_queries).sum(1), (corpus * t_corpus).sum(1)]).mean())
        if evalset in labelled:
            asym, _ = score_evalset(queries, t_corpus, evalset)
            row["query_vs_teacher_corpus_recall@10"] = asym["recall@10"]
        rows.append({**row, **extra})
    return rows


def report_markdown(report: dict[str, Any]) -> str:
    """The command, then one table of every (variant, task) row."""
    columns = ["variant", "task", "dataset", "queries", "corpus", *METRICS, "teacher_overlap@10", "mean_cosine",
               "query_vs_teacher_corpus_recall@10", "text_query_ms_p50_1t", "image_query_ms_p50_1t", "bundle_bytes"]
    present = [c for c in columns if any(c in r for r in report["rows"])]
    return "\n".join([f"`{report['command']}`", "", f"{report['created']} · held-out split: {report['split']}", "",
                      markdown_table(report["rows"], present), ""])

