"""``edgeret demo``: the embedded default pipeline, end to end, on the offline data (see :mod:`edgeret.pipeline.demo`).

Every stage reuses its outputs in ``--work-dir`` unless ``--force``; ``EDGERET_DEMO_GME=1`` adds the
gme2b-arch bench row (GME-2B's architecture with random weights: ~5 min, ~9 GB of RAM).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgeret.pipeline.demo import DemoConfig, run_demo


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(prog="edgeret demo", description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=defaults.work_dir, help="where stage outputs go")
    parser.add_argument("--results", type=Path, default=defaults.results, help="where result tables go")
    parser.add_argument("--augment-copies", type=int, default=defaults.augment_copies,
                        help="augmented renders per train emoji")
    parser.add_argument("--wordnet-train", type=int, default=defaults.wordnet_train,
                        help="WordNet train synsets to cache (default: all 24,111)")
    parser.add_argument("--preset", default=defaults.preset, help="distillation preset")
    parser.add_argument("--limit", type=int, help="only the first N items per split (a quick smoke run)")
    parser.add_argument("--force", action="store_true", help="recompute every stage")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``edgeret demo``; returns the exit status."""
    args = build_parser().parse_args(argv)
    config = DemoConfig(work_dir=args.work_dir, results=args.results, augment_copies=args.augment_copies,
                        wordnet_train=args.wordnet_train, preset=args.preset, limit=args.limit, force=args.force,
                        gme_arch=os.environ.get("EDGERET_DEMO_GME") == "1")
    result = run_demo(config)
    print(result.stages.table())
    return 0
