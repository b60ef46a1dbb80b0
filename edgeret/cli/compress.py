"""``edgeret compress``: student checkpoint -> on-device bundle.

    edgeret compress artifacts/student --quant int8 --out artifacts/bundles/int8
    edgeret compress artifacts/student --prune 0.3 --quant int8 --out artifacts/bundles/p30-int8 \\
        --cache artifacts/cache/standin-minilm-l6+effnet-lite0--openmoji \\
                artifacts/cache/standin-minilm-l6+effnet-lite0--wordnet

Pruning (:mod:`edgeret.distill.pruning`) recovers by distillation when teacher caches are given (otherwise it
only prunes); the student is then exported, quantised and bundled (:mod:`edgeret.compress`). The report
(params, FLOPs, parity, latency, bytes, agreement with fp32) is written to ``BUNDLE/compress_report.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from edgeret.compress.bundle import QUANT_MODES, CompressOptions
from edgeret.compress.embedding_split import COLD_BLOCKS
from edgeret.distill.cache import load_caches
from edgeret.distill.pruning.prune import PruneConfig
from edgeret.distill.pruning.recover import RECOVERY_TRAIN
from edgeret.pipeline.steps import Pruning, compress_student

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="edgeret compress", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="student checkpoint folder (distill's output)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced)")
    parser.add_argument("--prune", type=float, default=0.0, help="fraction of heads/FFN neurons/channels to remove")
    parser.add_argument("--prune-image", type=float, metavar="RATIO",
                        help="the image tower's fraction of channels to remove (default: --prune; 0 keeps it whole)")
    parser.add_argument("--prune-score", choices=("magnitude", "taylor"), default="magnitude")
    parser.add_argument("--quant", choices=QUANT_MODES, default="fp32")
    parser.add_argument("--block-size", type=int, default=32, help="INT4 block size")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel INT8 weights")
    parser.add_argument("--no-optimize", action="store_true", help="skip offline graph optimisation")
    parser.add_argument("--cache", nargs="+", default=[], metavar="DIR",
                        help="teacher caches for recovery distillation")
    parser.add_argument("--openmoji-cache", help="teacher cache for recovery distillation ('none' to skip)")
    parser.add_argument("--wordnet-cache", help="teacher cache for recovery distillation ('none' to skip)")
    parser.add_argument("--recovery-epochs", type=int, default=RECOVERY_TRAIN.epochs)
    parser.add_argument("--recovery-steps", type=int, help="stop recovery after this many steps")
    parser.add_argument("--agreement-sets", default=",".join(CompressOptions().agreement_sets),
                        help="comma-separated bench eval sets for agreement with fp32")
    parser.add_argument("--agreement-sample", type=int, help="queries per agreement set (default: all)")
    parser.add_argument("--no-agreement", action="store_true", help="skip the agreement evaluation")
    parser.add_argument("--keep-work", action="store_true", help="keep intermediate ONNX files")
    parser.add_argument("--embedding-cold-share", type=float, default=CompressOptions().embedding_cold_share,
                        help="INT8: share of the vocabulary (rarest tokens in the training texts) whose embedding "
                             "rows are stored at 4 bits (0: all at 8 bits)")
    parser.add_argument("--embedding-cold-block", type=int, default=CompressOptions().embedding_cold_block,
                        choices=COLD_BLOCKS, help="INT8: values per scale in the 4-bit embedding rows")
    parser.add_argument("--ort", action="store_true",
                        help="also write ORT-format models (.ort) and required_operators.config for onnxruntime mobile")
    return parser


def options_from_args(args: argparse.Namespace) -> CompressOptions:
    """The graph options of the command line."""
    return CompressOptions(
        quant=args.quant, block_size=args.block_size, per_channel=not args.per_tensor, optimize=not args.no_optimize,
        agreement_sets=tuple(s for s in args.agreement_sets.split(",") if s),
        agreement_sample=args.agreement_sample, check_agreement=not args.no_agreement,
        keep_work=args.keep_work, ort=args.ort, embedding_cold_share=args.embedding_cold_share,
        embedding_cold_block=args.embedding_cold_block,
    )


def pruning_from_args(args: argparse.Namespace) -> Pruning | None:
    """The pruning and recovery of the command line (None without ``--prune``)."""
    if args.prune <= 0:
        return None
    caches = load_caches([*args.cache, args.openmoji_cache, args.wordnet_cache])
    return Pruning(PruneConfig(ratio=args.prune, image_ratio=args.prune_image, score=args.prune_score), caches,
                   dataclasses.replace(RECOVERY_TRAIN, epochs=args.recovery_epochs), args.recovery_steps)


def run(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` and compress; returns the report (also in ``OUT/compress_report.json``)."""
    args = build_parser().parse_args(argv)
    return compress_student(args.checkpoint, args.out, options_from_args(args), pruning_from_args(args))


def main(argv: list[str] | None = None) -> int:
    """``edgeret compress``; returns the exit status."""
    report = run(argv)
    line = f"bundle {report['bundle']}: {report['bundle_bytes']:,} bytes, 1-thread ms {report['latency_ms_1t']}"
    for row in report.get("agreement", []):
        line += f"; {row['set']} top-10 overlap with fp32 {row['top10_overlap']:.3f}"
    print(line)
    return 0
