"""Score a student on evaluation sets, beside the teacher read from its cache (no teacher run).

Evaluation sets come from the corpus registry for the built-in corpora, and from a cache's item table for
any other corpus (:func:`table_eval_sets`: the held-out split's pairs).

For each set: the student alone (queries and corpus embedded by the student), the teacher (both
sides from the cache), the student's agreement with the teacher's top-10, and student queries
against the teacher-embedded corpus (the on-device query, server-side index case).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from edgeret.data.evalset import EvalSet, sample_keys
from edgeret.data.items import CorpusItem
from edgeret.data.metrics import row_cosines
from edgeret.data.scoring import embed_items, score_evalset
from edgeret.runtime.vectors import truncate

from .cache import TeacherCache
from .cache.items import ItemTable

logger = logging.getLogger(__name__)


def teacher_rows(caches: Sequence[TeacherCache], ids: list[str]) -> np.ndarray | None:
    """The teacher embeddings of ``ids`` from whichever cache holds them all; None if none does."""
    for cache in caches:
        try:
            return cache.rows(ids)
        except KeyError:
            continue
    return None


def table_eval_sets(table: ItemTable, name: str, split: str, sample: int | None = None,
                    seed: int = 0) -> list[EvalSet]:
    """The retrieval tasks a cache's held-out ``split`` supports, from its pairs (empty when it has none):

    * ``t2i``: each caption finds its group's images among all images of the split;
    * ``i2t``: each captioned image finds its group's captions among all documents of the split;
    * ``t2t``: each query finds its group's documents among all documents of the split.

    ``sample`` keeps that many queries per task (seeded).
    """
    rows = table.select("id, kind, grp, role, text, path, origin", "split = ?", (split,))
    items = [CorpusItem(id=i, kind=k, text=t, path=p, origin=o, group=g, role=r, split=split)
             for i, k, g, r, t, p, o in rows]
    images = [it for it in items if it.kind == "image"]
    documents = [it for it in items if it.kind == "text" and it.role is None]
    queries = [it for it in items if it.kind == "text" and it.role == "query"]
    by_group: dict[str, set[str]] = {}
    for it in images:
        by_group.setdefault(f"image:{it.group}", set()).add(it.id)
    for it in documents:
        by_group.setdefault(f"text:{it.group}", set()).add(it.id)
    tasks = {
        "t2i": ([d for d in documents if d.group and f"image:{d.group}" in by_group], images, "image"),
        "i2t": ([m for m in images if m.group and f"text:{m.group}" in by_group], documents, "text"),
        "t2t": ([q for q in queries if q.group and f"text:{q.group}" in by_group], documents, "text"),
    }
    out = []
    for task, (task_queries, corpus, side) in tasks.items():
        keep = set(sample_keys([q.id for q in task_queries], sample, seed))
        task_queries = [q for q in task_queries if q.id in keep]
        if task_queries:
            relevant = {q.id: by_group[f"{side}:{q.group}"] for q in task_queries}
            out.append(EvalSet(f"{name}-{split}", task, task_queries, corpus, relevant))
    return out


def evaluate_sets(
    student, evalsets: Sequence[EvalSet], caches: Sequence[TeacherCache] = (), dim: int | None = None,
    memo: dict | None = None,
) -> list[dict]:
    """One row per eval set: student metrics, plus teacher / overlap / cross metrics where the caches allow.

    ``dim`` evaluates a Matryoshka prefix of the student (the cross-model scores always use the full dim):
    the full-dim embeddings truncated and re-normalised. ``memo`` (item id -> full-dim embedding) can be
    shared across calls so that every prefix reuses one embedding pass.
    """
    memo = {} if memo is None else memo
    rows = []
    for evalset in evalsets:
        s_query = _prefix(embed_items(student, evalset.queries, memo=memo), dim)
        s_corpus = _prefix(embed_items(student, evalset.corpus, memo=memo), dim)
        row: dict = {"dataset": evalset.name, "task": evalset.task, "queries": len(evalset.queries),
                     "corpus": len(evalset.corpus), "dim": dim or student.config.dim}
        t_query = teacher_rows(caches, [q.id for q in evalset.queries])
        t_corpus = teacher_rows(caches, [c.id for c in evalset.corpus])
        reference = None
        if t_query is not None and t_corpus is not None:
            teacher, reference = score_evalset(t_query, t_corpus, evalset)
            row["teacher"] = teacher
            if dim is None:
                row["student_query_teacher_corpus"], _ = score_evalset(s_query, t_corpus, evalset)
        row["student"], _ = score_evalset(s_query, s_corpus, evalset, reference)
        rows.append(row)
        logger.info("%s %s%s: student R@10 %.3f%s", evalset.name, evalset.task, f" @{dim}" if dim else "",
                    row["student"]["recall@10"],
                    f" (teacher {row['teacher']['recall@10']:.3f})" if "teacher" in row else "")
    return rows


def _prefix(embeddings: np.ndarray, dim: int | None) -> np.ndarray:
    """The first ``dim`` components, re-normalised (the full embeddings when ``dim`` is None)."""
    return embeddings if dim is None else truncate(embeddings, dim)


def teacher_agreement(student, caches: Sequence[TeacherCache], split: str, sample: int = 1000, seed: int = 0) -> float:
    """Mean cosine between the student's and the teacher's embeddings of up to ``sample`` items of ``split``
    (the towers the student has), over every cache with an item table; 0.0 when there are none."""
    cosines = []
    for cache in caches:
        if cache.items is None:
            continue
        kinds = [k for k, tower in (("text", student.text), ("image", student.image)) if tower is not None]
        where = f"split = ? AND kind IN ({','.join('?' * len(kinds))})"
        rows = cache.items.select("row, id, kind, text, path, origin", where, (split, *kinds))
        keep = set(sample_keys([r[1] for r in rows], sample, seed))
        items = [CorpusItem(id=i, kind=k, text=t, path=p, origin=o) for _, i, k, t, p, o in rows if i in keep]
        if items:
            emb = embed_items(student, items)
            teacher = np.asarray(cache.embeddings[[r[0] for r in rows if r[1] in keep]], dtype=np.float32)
            cosines.append(row_cosines(emb, teacher))
    return float(np.concatenate(cosines).mean()) if cosines else 0.0
