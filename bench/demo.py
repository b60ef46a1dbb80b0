"""``edgeret demo``: the embedded default, end to end, on the offline data.

Today: data -> stand-in teacher (image head fitted on the train split) -> teacher caches for
OpenMoji and WordNet -> the teacher's held-out quality table. Later stages (distil, compress,
index, bench) join as they land. Every stage reuses its outputs unless ``--force``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret demo", description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("artifacts"), help="where stage outputs go")
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="where result tables go")
    parser.add_argument("--augment-copies", type=int, default=4, help="augmented renders per train emoji")
    parser.add_argument("--wordnet-train", type=int, default=8000, help="WordNet train synsets to cache")
    parser.add_argument("--limit", type=int, help="only the first N items per split (a quick smoke run)")
    parser.add_argument("--force", action="store_true", help="recompute every stage")
    return parser


def _stage(name: str) -> float:
    logger.info("==> %s", name)
    return time.time()


def main(argv: list[str] | None = None) -> dict:
    """Run the pipeline; returns a summary with per-stage seconds."""
    args = build_parser().parse_args(argv)
    from bench.datasets.openmoji import emojis
    from bench.datasets.wordnet import synsets
    from distill.cache import build_cache
    from distill.corpora import build_corpus
    from distill.teachers.standin import StandinTeacher

    from .teacher_quality import main as teacher_quality

    timings: dict[str, float] = {}
    start = _stage("data")
    for split in ("train", "val", "test"):
        logger.info(
            "  OpenMoji %s: %d emoji; WordNet %s: %d synsets", split, len(emojis(split)), split, len(synsets(split))
        )
    timings["data"] = time.time() - start

    start = _stage("stand-in teacher (fits its image head on the OpenMoji train split once)")
    head = args.work_dir / "teacher" / "standin_image_head.safetensors"
    if args.force and head.exists():
        head.unlink()
    teacher = StandinTeacher(head_path=head)
    timings["teacher"] = time.time() - start

    for data in ("openmoji", "wordnet"):
        start = _stage(f"teacher cache: {data}")
        corpus = build_corpus(
            data, augment_copies=args.augment_copies, limit=args.limit, max_train=args.wordnet_train
        )
        cache = build_cache(teacher, corpus, args.work_dir / "cache" / f"{teacher.id}--{data}", force=args.force)
        timings[f"cache_{data}"] = time.time() - start
        logger.info("  %d x %d in %.0f s", len(cache), cache.dim, timings[f"cache_{data}"])

    start = _stage("teacher quality on held-out splits")
    caches = [str(args.work_dir / "cache" / f"{teacher.id}--{data}") for data in ("openmoji", "wordnet")]
    teacher_quality(["--out", str(args.results), "--head-path", str(head), "--teacher-cache", *caches], teacher=teacher)
    timings["teacher_quality"] = time.time() - start
    logger.info("stage seconds: %s", {k: round(v, 1) for k, v in timings.items()})
    return {"seconds": timings}
