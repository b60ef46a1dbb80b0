"""``edgeret teacher-cache``: embed a corpus with a teacher into a resumable, sharded cache.

Single process: ``edgeret teacher-cache --teacher standin --data openmoji --out artifacts/cache/openmoji``.
Your files: ``edgeret teacher-cache --teacher gme --model-path P --images photos/ --records captions.jsonl --out C``.
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
from edgeret.data.items import Corpus
from edgeret.data.sources import ImageFolderSource, RecordsSource, TextsSource, scan_sources
from edgeret.distill.cache import TeacherCache, build_cache, init_distributed_from_env
from edgeret.distill.teachers import TEACHERS, load_teacher

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="edgeret teacher-cache", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", choices=list(TEACHERS), default="standin")
    parser.add_argument("--head-path", type=Path, help="stand-in image head file (fitted there if missing)")
    parser.add_argument("--model-path", help="local folder of the teacher (gme, clip, sentence-transformers)")
    source = parser.add_argument_group("what to embed: a built-in corpus, or files (any mix of the three)")
    source.add_argument("--data", choices=list(CORPORA), help="a built-in corpus")
    source.add_argument("--images", action="append", default=[], metavar="DIR", help="a folder of images (recursive)")
    source.add_argument("--records", action="append", default=[], metavar="FILE",
                        help="a JSONL/CSV/TSV file of records (image, text, query, document, id, split)")
    source.add_argument("--texts", action="append", default=[], metavar="FILE",
                        help="a text file, one document a line")
    parser.add_argument("--max-bad", type=float, default=0.01, help="files: fail past this share of bad records")
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


def _corpus(args: argparse.Namespace) -> Corpus:
    files = [*(ImageFolderSource(Path(p)) for p in args.images), *(RecordsSource(Path(p)) for p in args.records),
             *(TextsSource(Path(p)) for p in args.texts)]
    if bool(files) == bool(args.data):
        raise ValueError("give either --data or files to embed (--images, --records, --texts)")
    if args.data:
        return build_corpus(args.data, augment_copies=args.augment_copies, limit=args.limit, max_train=args.max_train)
    corpus = scan_sources(files, max_bad=args.max_bad, workdir=args.out / "corpus", progress=not args.no_progress)
    logger.info("%s", corpus.report.summary())
    return corpus


def run(argv: list[str] | None = None) -> TeacherCache:
    """Parse ``argv``, build (or reuse) the cache; returns it opened."""
    args = build_parser().parse_args(argv)
    rank, world = init_distributed_from_env()
    teacher = load_teacher(args.teacher, model_path=args.model_path, head_path=args.head_path, device=_device(world))
    corpus = _corpus(args)
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
