"""``edgeret bench``: teacher and student variants side by side — accuracy lost versus latency gained.

    edgeret bench --head-path artifacts/teacher/standin_image_head.safetensors \\
        --teacher-cache artifacts/cache/*--openmoji artifacts/cache/*--wordnet \\
        --teacher-onnx artifacts/bundles/teacher-onnx --peer --bundle student-int8=artifacts/bundles/student-int8

The study is :func:`edgeret.bench.compare.run_bench`; this module turns the flags into its
:class:`~edgeret.bench.compare.BenchConfig` and prints where the results went.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeret.bench.compare import BenchConfig, run_bench
from edgeret.bench.rows import DTYPE_BYTES
from edgeret.data.results import invocation

PROG = "edgeret bench"


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``edgeret bench``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--head-path", type=Path, required=True, help="the stand-in teacher's fitted image head")
    parser.add_argument("--teacher-cache", type=Path, nargs="*", default=[], help="teacher cache folders to reuse")
    parser.add_argument("--bundle", nargs="*", default=[], metavar="NAME=DIR", help="bundles, e.g. student-int8=DIR")
    parser.add_argument("--teacher-onnx", type=Path, metavar="DIR",
                        help="add the teacher-onnx row; its bundle is exported here once and reused")
    parser.add_argument("--peer", action="store_true", help="add the peer-st-minilm row (text->text)")
    parser.add_argument("--gme-arch", action="store_true", help="add the gme2b-arch row (slow: a few minutes, ~10 GB)")
    parser.add_argument("--gme-dtype", default=BenchConfig.gme_dtype, choices=tuple(DTYPE_BYTES),
                        help="gme2b-arch dtype (GME's CPU default is float32)")
    parser.add_argument("--gme-repeats", type=int, nargs=2, default=list(BenchConfig.gme_repeats),
                        metavar=("TEXT", "IMAGE"), help="timed gme2b-arch runs per thread count after one warm-up")
    parser.add_argument("--no-matryoshka", action="store_true", help="skip the variant@dim rows")
    parser.add_argument("--no-footprint", action="store_true", help="skip the fresh-process cost columns")
    parser.add_argument("--out", type=Path, default=BenchConfig.out)
    return parser


def config_from_args(args: argparse.Namespace, command: str) -> BenchConfig:
    """The :class:`BenchConfig` of parsed flags; ``command`` is recorded in summary.json."""
    bundles = []
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        bundles.append((name, path))
    return BenchConfig(
        head_path=args.head_path, teacher_cache=tuple(args.teacher_cache), bundles=tuple(bundles),
        teacher_onnx=args.teacher_onnx, peer=args.peer, gme_arch=args.gme_arch, gme_dtype=args.gme_dtype,
        gme_repeats=(args.gme_repeats[0], args.gme_repeats[1]), matryoshka=not args.no_matryoshka,
        footprint=not args.no_footprint, out=args.out, command=command,
    )


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    """``argv`` (None: ``sys.argv[1:]``) as a :class:`BenchConfig`."""
    return config_from_args(build_parser().parse_args(argv), invocation(PROG, argv))


def argv_of(config: BenchConfig) -> list[str]:
    """The ``edgeret bench`` arguments that give ``config`` (its ``command`` aside), e.g. to record a run started
    from code: ``invocation("edgeret bench", argv_of(config))``."""
    argv = ["--head-path", str(config.head_path)]
    if config.teacher_cache:
        argv += ["--teacher-cache", *map(str, config.teacher_cache)]
    argv += ["--out", str(config.out)]
    if config.teacher_onnx:
        argv += ["--teacher-onnx", str(config.teacher_onnx)]
    argv += [flag for flag, on in (("--peer", config.peer), ("--gme-arch", config.gme_arch)) if on]
    if config.gme_dtype != BenchConfig.gme_dtype:
        argv += ["--gme-dtype", config.gme_dtype]
    if config.gme_repeats != BenchConfig.gme_repeats:
        argv += ["--gme-repeats", *map(str, config.gme_repeats)]
    argv += [flag for flag, off in (("--no-matryoshka", not config.matryoshka),
                                    ("--no-footprint", not config.footprint)) if off]
    if config.bundles:
        argv += ["--bundle", *(f"{name}={path}" for name, path in config.bundles)]
    return argv


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeret bench``; returns the exit status."""
    config = parse_config(argv)
    summary = run_bench(config)
    variants = list(dict.fromkeys(row["variant"] for row in summary["rows"]))
    print(f"wrote {config.out / 'summary.json'}, summary.md, pareto.png: {len(variants)} variants "
          f"({', '.join(variants)}), {len(summary['rows'])} rows")
    return 0
