"""``edgeret teacher-quality``: held-out quality of a teacher (Recall@1/5/10, MRR@10, nDCG@10).

    edgeret teacher-quality --teacher standin [--teacher-cache CACHE ...] [--out bench/results]

Writes ``teacher_quality.json`` and ``teacher_quality.md`` (:func:`edgeret.bench.teacher_quality.run_teacher_quality`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeret.bench.teacher_quality import DEFAULT_SETS, run_teacher_quality
from edgeret.data.results import invocation
from edgeret.distill.teachers import TEACHERS, load_teacher

PROG = "edgeret teacher-quality"
DESCRIPTION = "Held-out quality of a teacher: Recall@1/5/10, MRR@10, nDCG@10 on OpenMoji and WordNet test splits."
#: teachers whose caches serve any query instruction (GME's query instructions are not in its cache)
INSTRUCTION_FREE = ("standin",)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``edgeret teacher-quality``."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--teacher", default="standin", choices=TEACHERS)
    parser.add_argument("--head-path", type=Path, help="stand-in image head file (fitted there if missing)")
    parser.add_argument("--model-path", help="local GME folder (for --teacher gme)")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), help="evaluation sets to run")
    parser.add_argument("--teacher-cache", type=Path, nargs="*", default=[], help="reuse these teacher caches")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeret teacher-quality``; returns the exit status."""
    args = build_parser().parse_args(argv)
    teacher = load_teacher(args.teacher, model_path=args.model_path, head_path=args.head_path)
    caches = tuple(args.teacher_cache) if args.teacher in INSTRUCTION_FREE else ()
    result = run_teacher_quality(teacher, tuple(args.sets), teacher_cache=caches, out=args.out,
                                 command=invocation(PROG, argv))
    recalls = ", ".join(f"{r['dataset']} {r['task']} {r['recall@10']:.3f}" for r in result["rows"])
    print(f"wrote {args.out / 'teacher_quality.json'}, teacher_quality.md; Recall@10: {recalls}")
    return 0
