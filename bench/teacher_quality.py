"""Held-out quality of a teacher: Recall@1/5/10, MRR@10, nDCG@10 on OpenMoji and WordNet test splits.

``edgeret teacher-quality [--teacher standin|gme] [--out bench/results]`` prints a markdown table and
writes ``teacher_quality.json`` and ``teacher_quality.md``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from edgeret.data.catalog import load_eval
from edgeret.data.results import invocation, machine_info, markdown_table, now_iso, package_versions, write_json
from edgeret.data.scoring import evaluate_encoder

logger = logging.getLogger(__name__)

DEFAULT_SETS = (
    "openmoji-test400-t2i",
    "openmoji-test400-i2t",
    "openmoji-test-t2i",
    "openmoji-test-i2t",
    "wordnet-test-t2t",
)
COLUMNS = ["dataset", "task", "queries", "corpus", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]


def measure_teacher(
    teacher, sets: tuple[str, ...] = DEFAULT_SETS, progress: bool = True, memo: dict | None = None
) -> list[dict]:
    """Evaluate ``teacher`` on each named eval set; embeddings shared across sets are computed once.

    ``memo`` may hold embeddings already computed (e.g. from the teacher's cache).
    """
    memo = {} if memo is None else memo
    rows = []
    for name in sets:
        evalset = load_eval(name)
        start = time.time()
        metrics, _ = evaluate_encoder(teacher, evalset, progress=progress, memo=memo)
        rows.append(
            {
                "dataset": evalset.name,
                "task": evalset.task,
                "queries": len(evalset.queries),
                "corpus": len(evalset.corpus),
                **metrics,
                "seconds": round(time.time() - start, 1),
            }
        )
        logger.info("%s %s: R@10 %.3f", evalset.name, evalset.task, metrics["recall@10"])
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret teacher-quality", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="standin", choices=["standin", "gme"])
    parser.add_argument("--head-path", type=Path, help="stand-in image head file (fitted there if missing)")
    parser.add_argument("--model-path", help="local GME folder (for --teacher gme)")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), help="evaluation sets to run")
    parser.add_argument("--teacher-cache", type=Path, nargs="*", default=[], help="reuse these teacher caches")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    return parser


def main(argv: list[str] | None = None, teacher=None) -> list[dict]:
    """Entry point; returns the result rows. ``teacher`` reuses an already loaded teacher."""
    args = build_parser().parse_args(argv)
    if teacher is None:
        from edgeret.distill.teachers import load_teacher

        teacher = load_teacher(args.teacher, model_path=args.model_path, head_path=args.head_path)
    memo = None
    if args.teacher_cache and args.teacher == "standin":  # GME's query instructions are not in its cache
        from .compare import teacher_memo

        memo = teacher_memo(args.teacher_cache)
    rows = measure_teacher(teacher, tuple(args.sets), memo=memo)
    table = markdown_table(rows, COLUMNS)
    result = {
        "command": invocation("edgeret teacher-quality", argv),
        "created": now_iso(),
        "machine": machine_info(),
        "versions": package_versions(),
        "teacher": teacher.describe(),
        "rows": rows,
    }
    write_json(args.out / "teacher_quality.json", result)
    header = f"Teacher `{teacher.id}` on held-out splits (`{result['command']}`):\n\n"
    (args.out / "teacher_quality.md").write_text(header + table + "\n", encoding="utf-8")
    print(header + table)
    return rows
