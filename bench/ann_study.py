"""``edgeret ann-study``: the index formats at scale, side by side — recall@10 vs exact search across
ef_search, query latency, build time, bytes per vector (file and RSS), cold start and a 1% filter, at 100k and
1M normalised vectors.

Vectors (:mod:`edgeret.bench.ann_vectors`): a bundle's real embeddings (WordNet + OpenMoji, ~66k) first,
synthetic clustered ones beyond; 1,000 held-out real vectors are the queries (never indexed).
Ground truth is exact float32 inner-product top-10 (numpy), of all items and of the 1% the filter keeps. Each
size builds one index per format (``--formats``; ``hnswlib-f32`` and ``faiss-hnsw-sq8`` by default) through
:class:`edgeret.runtime.index.VectorIndex` (``cosine``; M=16, ef_construction=100, 2 build threads by default),
saves it, and measures the saved index in fresh processes (:mod:`edgeret.bench.ann_formats`,
:mod:`edgeret.bench.ann_probe`): cold start, RSS after 1,000 queries, and for every ef_search each query alone
at 1 thread.

:func:`run_ann_study` writes ``ann.json``, ``ann.md`` and ``ann.png`` into ``--out``; ``edgeret ann-study``
(:mod:`edgeret.cli.ann_study`) is its command line.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeret.data.results import machine_info, now_iso, package_versions, write_json
from edgeret.data.timing import Stopwatch, percentiles, time_calls
from edgeret.runtime.errors import BundleError
from edgeret.runtime.index_formats import index_format, missing_library

from .ann_formats import FILTER, filter_rows, study_format
from .ann_report import ann_markdown
from .ann_vectors import (
    collection,
    exact_topk,
    random_centres,
    real_embeddings,
    split_queries,
    synthetic,
)
from .plots import ann_plot

try:  # optional: holds BLAS to 1 thread for the exact-search reference (comes with scikit-learn)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None

logger = logging.getLogger(__name__)

EF_SEARCH = (10, 20, 40, 80, 160, 320)
FORMATS = ("hnswlib-f32", "faiss-hnsw-sq8")


@dataclass(frozen=True)
class AnnStudyOptions:
    """What one ANN study measures (``edgeret ann-study``'s flags, typed)."""

    bundle: Path | None = None  #: bundle whose real embeddings come first (None: all synthetic)
    sizes: tuple[int, ...] = (100_000, 1_000_000)  #: index sizes
    queries: int = 1000  #: held-out query vectors
    ef: tuple[int, ...] = EF_SEARCH  #: ef_search values
    formats: tuple[str, ...] = FORMATS  #: index formats, side by side
    probe_ef: int = 160  #: ef_search of the 1,000 queries before the RSS reading
    M: int = 16
    ef_construction: int = 100
    build_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    dim: int = 384  #: dim of synthetic vectors when there is no bundle
    seed: int = 0
    cache_dir: Path = Path("artifacts/ann")  #: real embeddings cache
    out: Path = Path("bench/results")
    name: str = "ann"  #: results file stem
    command: str = "edgeret ann-study"  #: the command line recorded in the results


def exact_latency(data: np.ndarray, queries: np.ndarray, n: int = 20) -> float:
    """p50 ms of one brute-force query (numpy matrix-vector product + top-10), for reference.

    BLAS is held to 1 thread when ``threadpoolctl`` is installed (it comes with scikit-learn).
    """
    with threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext():
        times = time_calls(lambda q: np.argpartition(-(data @ q), 10)[:10], queries[:n])
    return percentiles(times, points=(50,))["p50"]


def study_size(size: int, base: np.ndarray, queries: np.ndarray, options: AnnStudyOptions, real: bool) -> dict:
    """Ground truth, then every format's build, probes and ef sweep at one collection size (``real``: ``base``
    holds real embeddings)."""
    rng = np.random.default_rng(options.seed + size)
    data, n_real = collection(size, base, rng)
    n_real = n_real if real else 0
    logger.info("size %d (%d real, %d synthetic): exact top-10 of %d queries", size, n_real, size - n_real,
                len(queries))
    watch = Stopwatch()
    exact = exact_topk(data, queries)
    exact_s = watch.seconds
    kept = filter_rows(size)
    filter_exact = kept[exact_topk(data[kept], queries)]
    result = {"size": size, "real": n_real, "synthetic": size - n_real, "dim": int(data.shape[1]),
              "exact_ground_truth_s": exact_s, "exact_query_ms_p50_1t": exact_latency(data, queries),
              "filter": {"where": FILTER, "kept": len(kept)},
              "formats": [study_format(fmt, data, queries, exact, filter_exact, options) for fmt in options.formats]}
    del data
    return result


def load_vectors(options: AnnStudyOptions) -> tuple[np.ndarray, np.ndarray, str]:
    """(base, queries, description) from a bundle's real embeddings, or random centres without one."""
    rng = np.random.default_rng(options.seed)
    if options.bundle is not None:
        real = real_embeddings(options.bundle, options.cache_dir)
        base, queries = split_queries(real, options.queries, rng)
        return base, queries, f"{len(real)} real {options.bundle.name} embeddings (WordNet + OpenMoji)"
    smallest = min(options.sizes)
    centres = random_centres(max(10, smallest // 20), options.dim, rng)
    pool = synthetic(smallest + options.queries, centres, rng)
    return pool[options.queries :], pool[: options.queries], f"synthetic only ({len(centres)} random centres)"


def check_formats(formats: tuple[str, ...]) -> None:
    """BundleError for an unknown format or one whose library is missing (before anything is built)."""
    for name in formats:
        problem = missing_library(index_format(name, "ann-study"))
        if problem:
            raise BundleError(f"ann-study: {problem}")


def run_ann_study(options: AnnStudyOptions) -> dict:
    """Run the study at every size; write ``<name>.json`` / ``.md`` / ``.png`` into ``options.out``; returns the
    summary (what the JSON holds)."""
    check_formats(options.formats)
    base, queries, source = load_vectors(options)
    real = options.bundle is not None
    results = [study_size(size, base, queries, options, real) for size in options.sizes]
    summary = {
        "command": options.command, "created": now_iso(), "machine": machine_info([1]),
        "versions": package_versions(("edgeret", "numpy", "hnswlib", "faiss-cpu")), "vectors": source,
        "queries": len(queries), "real_queries": real, "k": 10, "M": options.M,
        "ef_construction": options.ef_construction, "space": "cosine", "formats": list(options.formats),
        "probe_ef": options.probe_ef, "sizes": results,
    }
    out, name = options.out, options.name
    write_json(out / f"{name}.json", summary)
    markdown = ann_markdown(summary)
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    ann_plot(summary, out / f"{name}.png")
    logger.info("wrote %s\n%s", out / f"{name}.json", markdown)
    return summary
