"""``edgeret ann-study``: the index formats at scale — recall@10 vs exact search across ef_search, latency, build
time, bytes per vector (file, RSS), cold start, a 1% filter.

    edgeret ann-study --bundle artifacts/bundles/student-int8 --sizes 100000 1000000 --queries 1000 \
        --formats hnswlib-f32 faiss-hnsw-sq8

The study is :func:`edgeret.bench.ann_study.run_ann_study`; this module turns the flags into its
:class:`~edgeret.bench.ann_study.AnnStudyOptions` and prints the best recall per size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeret.bench.ann_study import AnnStudyOptions, run_ann_study
from edgeret.data.results import invocation
from edgeret.runtime.index_formats import FORMATS

PROG = "edgeret ann-study"
DEFAULTS = AnnStudyOptions()


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``edgeret ann-study``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle whose real embeddings come first (none: all synthetic)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULTS.sizes), help="index sizes")
    parser.add_argument("--queries", type=int, default=DEFAULTS.queries, help="held-out query vectors")
    parser.add_argument("--ef", type=int, nargs="+", default=list(DEFAULTS.ef), help="ef_search values")
    parser.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=list(DEFAULTS.formats),
                        help="index formats, side by side (faiss-hnsw-sq8 needs pip install 'edgeret[faiss]')")
    parser.add_argument("--probe-ef", type=int, default=DEFAULTS.probe_ef,
                        help="ef_search of the 1,000 queries before the RSS reading")
    parser.add_argument("--M", type=int, default=DEFAULTS.M)
    parser.add_argument("--ef-construction", type=int, default=DEFAULTS.ef_construction)
    parser.add_argument("--build-threads", type=int, default=DEFAULTS.build_threads)
    parser.add_argument("--dim", type=int, default=DEFAULTS.dim,
                        help="dim of synthetic vectors when there is no bundle")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULTS.cache_dir, help="real embeddings cache")
    parser.add_argument("--out", type=Path, default=DEFAULTS.out)
    parser.add_argument("--name", default=DEFAULTS.name, help="results file stem")
    return parser


def parse_options(argv: list[str] | None = None) -> AnnStudyOptions:
    """``argv`` (None: ``sys.argv[1:]``) as :class:`AnnStudyOptions`, the command line recorded."""
    args = build_parser().parse_args(argv)
    return AnnStudyOptions(
        bundle=args.bundle, sizes=tuple(args.sizes), queries=args.queries, ef=tuple(args.ef),
        formats=tuple(args.formats), probe_ef=args.probe_ef, M=args.M,
        ef_construction=args.ef_construction, build_threads=args.build_threads, dim=args.dim, seed=args.seed,
        cache_dir=args.cache_dir, out=args.out, name=args.name, command=invocation(PROG, argv),
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeret ann-study``; returns the exit status."""
    options = parse_options(argv)
    summary = run_ann_study(options)
    best = []
    for result in summary["sizes"]:
        for fmt in result["formats"]:
            top = max(fmt["sweep"], key=lambda s: s["ef_search"])
            best.append(f"{result['size']:,} {fmt['format']}: recall@10 {top['recall@10']:.3f} at ef "
                        f"{top['ef_search']} ({top['query_ms_p50_1t']:.3f} ms)")
    print(f"wrote {options.out / (options.name + '.json')}, {options.name}.md, {options.name}.png; " + "; ".join(best))
    return 0
