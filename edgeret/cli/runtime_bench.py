"""``edgeret runtime-bench BUNDLE``: query latency on a large index, cold start, peak RSS and a concurrency soak.

    edgeret runtime-bench artifacts/bundles/student-int8 --items 100000 --cold-python .venv-base/bin/python

The study is :func:`edgeret.bench.runtime_bench.run_runtime_bench`; this module turns the flags into its
:class:`~edgeret.bench.runtime_bench.RuntimeBenchOptions` and prints the headline numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeret.bench.runtime_bench import INDEX_VECTORS, RuntimeBenchOptions, run_runtime_bench
from edgeret.data.results import invocation

PROG = "edgeret runtime-bench"
DESCRIPTION = "Runtime benchmark: end-to-end query latency on a large index, cold start, peak RSS, concurrency soak."
DEFAULTS = RuntimeBenchOptions


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``edgeret runtime-bench``."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--items", type=int, default=DEFAULTS.items, help="index size")
    parser.add_argument("--queries", type=int, default=DEFAULTS.queries)
    parser.add_argument("--soak-items", type=int, default=DEFAULTS.soak_items)
    parser.add_argument("--out", type=Path, default=DEFAULTS.out)
    parser.add_argument("--name", default=DEFAULTS.name, help="results file stem")
    parser.add_argument("--vectors", choices=tuple(INDEX_VECTORS), default=DEFAULTS.vectors,
                        help="index content: real embeddings + synthetic neighbours, or uniform random unit vectors")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULTS.cache_dir, help="real embeddings cache")
    parser.add_argument("--cold-python", help="interpreter for the cold-start processes (e.g. a base-install venv)")
    parser.add_argument("--cold-repeats", type=int, default=DEFAULTS.cold_repeats,
                        help="fresh processes per cold-start measure")
    return parser


def parse_options(argv: list[str] | None = None) -> RuntimeBenchOptions:
    """``argv`` (None: ``sys.argv[1:]``) as :class:`RuntimeBenchOptions`, the command line recorded."""
    args = build_parser().parse_args(argv)
    return RuntimeBenchOptions(
        bundle=args.bundle, items=args.items, queries=args.queries, soak_items=args.soak_items, out=args.out,
        name=args.name, vectors=args.vectors, cache_dir=args.cache_dir, cold_python=args.cold_python,
        cold_repeats=args.cold_repeats, command=invocation(PROG, argv),
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeret runtime-bench``; returns the exit status."""
    options = parse_options(argv)
    result = run_runtime_bench(options)
    image = result["image_query"]
    print(f"wrote {options.out / (options.name + '.json')}, {options.name}.md: text query p50 "
          f"{result['text_query']['p50_ms']:.2f} ms" + (f", image {image['p50_ms']:.2f} ms" if image else "")
          + f", cold start {result['cold_start']['size']['cold_start_ms']:.0f} ms with {options.items} items, "
          f"soak {result['soak']['errors']} errors")
    return 0
