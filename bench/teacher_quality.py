"""Held-out quality of a teacher: Recall@1/5/10, MRR@10, nDCG@10 on OpenMoji and WordNet test splits.

:func:`run_teacher_quality` writes ``teacher_quality.json`` and ``teacher_quality.md`` (a markdown
table); ``edgeret teacher-quality`` (:mod:`edgeret.cli.teacher_quality`) is its command line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeret.data.catalog import load_eval
from edgeret.data.results import machine_info, markdown_table, now_iso, package_versions, write_json
from edgeret.data.scoring import evaluate_encoder
from edgeret.data.timing import Stopwatch

from .rows import teacher_memo

logger = logging.getLogger(__name__)

DEFAULT_SETS = (
    "openmoji-test400-t2i",
    "openmoji-test400-i2t",
    "openmoji-test-t2i",
    "openmoji-test-i2t",
    "wordnet-test-t2t",
)
COLUMNS = ["dataset", "task", "queries", "corpus", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]


def measure_teacher_quality(teacher: Any, sets: Sequence[str] = DEFAULT_SETS, progress: bool = True,
                            memo: dict | None = None) -> list[dict]:
    """One row per named eval set; embeddings shared across sets are computed once.

    ``memo`` may hold embeddings already computed (e.g. from the teacher's cache).
    """
    memo = {} if memo is None else memo
    rows = []
    for name in sets:
        evalset = load_eval(name)
        watch = Stopwatch()
        metrics, _ = evaluate_encoder(teacher, evalset, progress=progress, memo=memo)
        rows.append(
            {
                "dataset": evalset.name,
                "task": evalset.task,
                "queries": len(evalset.queries),
                "corpus": len(evalset.corpus),
                **metrics,
                "seconds": round(watch.seconds, 1),
            }
        )
        logger.info("%s %s: R@10 %.3f", evalset.name, evalset.task, metrics["recall@10"])
    return rows


def run_teacher_quality(teacher: Any, sets: Sequence[str] = DEFAULT_SETS, teacher_cache: Sequence[Path] = (),
                        out: Path = Path("bench/results"), command: str = "edgeret teacher-quality") -> dict:
    """Measure ``teacher`` and write ``teacher_quality.json`` / ``.md`` into ``out``; returns the JSON's content.

    ``teacher_cache``: caches of this teacher whose embeddings are reused; only for an instruction-free
    teacher such as the stand-in (a cache row then serves its item under any query instruction).
    ``command`` is the command line recorded in the files.
    """
    memo = teacher_memo(list(teacher_cache)) if teacher_cache else None
    rows = measure_teacher_quality(teacher, tuple(sets), memo=memo)
    result = {
        "command": command,
        "created": now_iso(),
        "machine": machine_info(),
        "versions": package_versions(),
        "teacher": teacher.describe(),
        "rows": rows,
    }
    write_json(out / "teacher_quality.json", result)
    markdown = quality_markdown(teacher.id, command, rows)
    (out / "teacher_quality.md").write_text(markdown + "\n", encoding="utf-8")
    logger.info("wrote %s\n%s", out / "teacher_quality.json", markdown)
    return result


def quality_markdown(teacher_id: str, command: str, rows: list[dict]) -> str:
    """The header line and the table of ``teacher_quality.md``."""
    return f"Teacher `{teacher_id}` on held-out splits (`{command}`):\n\n" + markdown_table(rows, COLUMNS)
