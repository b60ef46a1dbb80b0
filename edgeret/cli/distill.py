"""``edgeret distill``: train the student dual encoder from teacher caches (the teacher never runs).

    edgeret distill --preset default --out artifacts/student
    edgeret distill --preset default --set loss.affinity=1 --out artifacts/student-aff   # an ablation
    edgeret distill --cache cache/photos cache/notes --out student/                       # any caches

Presets (``distill/presets/*.json``): ``tiny`` (tests, seconds), ``default`` (the embedded demo, minutes
on 2 CPU cores), ``large`` (GPU). Writes the student checkpoint (best validation epoch) to ``--out``,
resumable state to ``--out/train_state`` (rerun the same command to resume), and ``train_report.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from edgeret.distill.cache import load_caches
from edgeret.distill.presets import load_preset
from edgeret.distill.teachers.standin import STANDIN_ID
from edgeret.distill.train import TrainReport, train

logger = logging.getLogger(__name__)

CACHE_ROOT = Path("artifacts/cache")


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="edgeret distill", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="tiny | default | large, or a preset JSON file")
    parser.add_argument("--cache", type=Path, nargs="+", default=None, metavar="DIR",
                        help="teacher caches to train on (default: the demo's OpenMoji and WordNet caches)")
    parser.add_argument("--openmoji-cache", type=Path, default=CACHE_ROOT / f"{STANDIN_ID}--openmoji",
                        help="teacher cache of the openmoji corpus ('none' to skip images)")
    parser.add_argument("--wordnet-cache", type=Path, default=CACHE_ROOT / f"{STANDIN_ID}--wordnet",
                        help="teacher cache of the wordnet corpus ('none' to skip)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/student"), help="student checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset value, e.g. loss.affinity=0 or train.epochs=2 (JSON values)")
    parser.add_argument("--stop-after-steps", type=int, help="stop (state saved) after N steps, as an interruption")
    parser.add_argument("--fresh", action="store_true", help="ignore saved training state and start over")
    parser.add_argument("--test", action="store_true", help="score the best student on the test splits at the end")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(argv: list[str] | None = None) -> TrainReport:
    """Parse ``argv`` and train; returns the report."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    caches = load_caches(args.cache if args.cache else [args.openmoji_cache, args.wordnet_cache])
    return train(caches, load_preset(args.preset, args.overrides), args.out, test=args.test,
                 stop_after_steps=args.stop_after_steps, fresh=args.fresh, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    """``edgeret distill``; returns the exit status."""
    report = run(argv)
    state = "finished" if report.finished else f"stopped at step {report.global_step}"
    print(f"student: {state}, {report.epochs_done} epoch(s), best validation Recall@10 {report.best_val_score:.4f}, "
          f"{report.seconds:.0f} s")
    return 0
