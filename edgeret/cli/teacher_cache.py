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

import torch

from edgeret.data.corpora import CORPORA, build_corpus
from edgeret.distill.cache import TeacherCache, build_cache, init_distributed_from_env
from edgeret.distill.teachers import TEACHERS, load_teacher

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="edgeret teacher-cache", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", choices=list(TEACHERS), default="standin")
    parser.add_argument("--head-path", type=Path, help="stand-in image head file (fitted there if missing)")
    parser.add_argument("--model-path", help="local folder with the teacher's weights (for --teacher gme)")
    parser.add_argument("--data", choices=list(CORPORA), required=True, help="which corpus to embed")
    parser.add_argument("--out", type=Path, required=True, help="cache folder")
    parser.add_argument("--augment-copies", type=int, default=4, help="augmented renders per train emoji")
    parser.add_argument("--limit", type=int, help="only the first N items of each split (quick runs)")
    parser.add_argument("--max-train", type=int, help="WordNet: a seeded sample of N train synsets")
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--force", action="store_true", help="discard an existing cache and rebuild")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _device(world: int) -> str | None:
    """Under torchrun with GPUs, each rank uses GPU ``LOCAL_RANK``."""
    if world > 1 and os.environ.get("LOCAL_RANK") is not None and torch.cuda.is_available():
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return None


def run(argv: list[str] | None = None) -> TeacherCache:
    """Parse ``argv``, build (or reuse) the cache; returns it opened."""
    args = build_parser().parse_args(argv)
    rank, world = init_distributed_from_env()
    teacher = load_teacher(args.teacher, model_path=args.model_path, head_path=args.head_path, device=_device(world))
    corpus = build_corpus(args.data, augment_copies=args.augment_copies, limit=args.limit, max_train=args.max_train)
    start = time.time()
    cache = build_cache(teacher, corpus, args.out, shard_size=args.shard_size, batch_size=args.batch_size,
                        progress=not args.no_progress and rank == 0, force=args.force)
    if rank == 0:
        logger.info("teacher cache %s: %d x %d in %.1f s", args.out, len(cache), cache.dim, time.time() - start)
    return cache


def main(argv: list[str] | None = None) -> int:
    """``edgeret teacher-cache``; returns the exit status."""
    cache = run(argv)
    print(f"teacher cache {cache.path}: {len(cache)} items x {cache.dim}")
    return 0


if __name__ == "__main__":  # torchrun -m edgeret.cli.teacher_cache ...
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
