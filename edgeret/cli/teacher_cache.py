"""``edgeret teacher-cache``: embed a corpus with a teacher into a resumable, sharded cache.

Single process: ``edgeret teacher-cache --teacher standin --data openmoji --out artifacts/cache/openmoji``.
Several GPUs or nodes: ``torchrun --nproc_per_node 8 -m edgeret.cli.teacher_cache --teacher gme --model-path P ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from edgeret.data.corpora import CORPORA, build_corpus
from edgeret.distill.cache import build_cache, init_distributed_from_env
from edgeret.distill.teachers import TEACHERS, load_teacher

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret teacher-cache", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", choices=TEACHERS, default="standin")
    parser.add_argument("--head-path", type=Path, help="stand-in image head file (fitted there if missing)")
    parser.add_argument("--model-path", help="local folder with the GME weights (for --teacher gme)")
    parser.add_argument("--data", choices=CORPORA, required=True, help="which corpus to embed")
    parser.add_argument("--out", type=Path, required=True, help="cache folder")
    parser.add_argument("--augment-copies", type=int, default=4, help="augmented renders per train emoji")
    parser.add_argument("--limit", type=int, help="only the first N items of each split (quick runs)")
    parser.add_argument("--max-train", type=int, help="WordNet: a seeded sample of N train synsets")
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--force", action="store_true", help="discard an existing cache and rebuild")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Build (or reuse) one teacher cache; returns a summary with throughput."""
    args = build_parser().parse_args(argv)
    rank, world = init_distributed_from_env()
    teacher_kwargs = {"head_path": args.head_path}
    if args.teacher == "gme" and world > 1 and os.environ.get("LOCAL_RANK") is not None:
        import torch

        if torch.cuda.is_available():
            teacher_kwargs["device"] = f"cuda:{os.environ['LOCAL_RANK']}"
    teacher = load_teacher(args.teacher, model_path=args.model_path, **teacher_kwargs)
    corpus = build_corpus(args.data, augment_copies=args.augment_copies, limit=args.limit, max_train=args.max_train)
    start = time.time()
    cache = build_cache(
        teacher,
        corpus,
        args.out,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        progress=not args.no_progress and rank == 0,
        force=args.force,
    )
    seconds = time.time() - start
    summary = {"out": str(args.out), "items": len(cache), "dim": cache.dim, "seconds": round(seconds, 1)}
    if rank == 0:
        logger.info("teacher cache %s: %d x %d in %.1f s", args.out, len(cache), cache.dim, seconds)
    return summary


if __name__ == "__main__":  # torchrun -m edgeret.cli.teacher_cache ...
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
