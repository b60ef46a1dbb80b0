"""Score a student on evaluation sets, beside the teacher read from its cache (no teacher run).

For each set: the student alone (queries and corpus embedded by the student), the teacher (both
sides from the cache), the student's agreement with the teacher's top-10, and student queries
against the teacher-embedded corpus (the on-device query, server-side index case).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from edgeret.data.evalset import EvalSet
from edgeret.data.scoring import embed_items, score_evalset
from edgeret.runtime.vectors import truncate

from .cache import TeacherCache

logger = logging.getLogger(__name__)


def teacher_rows(caches: Sequence[TeacherCache], ids: list[str]) -> np.ndarray | None:
    """The teacher embeddings of ``ids`` from whichever cache holds them all; None if none does."""
    for cache in caches:
        try:
            return cache.rows(ids)
        except KeyError:
            continue
    return None


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
