"""``edgeret ann-study``: hnswlib at scale — recall@10 vs exact search across ef_search, query latency,
build time and memory per vector, at 100k and 1M normalised vectors.

Vectors (:mod:`edgeret.bench.ann_vectors`): a bundle's real embeddings (WordNet + OpenMoji, ~66k) first,
synthetic clustered ones beyond; 1,000 held-out real vectors are the queries (never indexed).
Ground truth is exact inner-product top-10 (numpy). Each size builds one hnswlib index
(``cosine`` space as the runtime; M=16, ef_construction=100, 2 build threads by default), then for
every ef_search times each query alone at 1 thread. Memory per vector: the saved index file's bytes
/ n, and the process RSS growth over the build / n.

:func:`run_ann_study` writes ``ann.json``, ``ann.md`` and ``ann.png`` into ``--out``; ``edgeret ann-study``
(:mod:`edgeret.cli.ann_study`) is its command line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from edgeret.data.results import machine_info, markdown_table, now_iso, package_versions, write_json
from edgeret.data.timing import Stopwatch, percentiles, time_calls

from .ann_vectors import (
    collection,
    exact_topk,
    random_centres,
    real_embeddings,
    recall_at_k,
    split_queries,
    synthetic,
)
from .memory import rss_mb
from .plots import ann_plot

try:  # optional: holds BLAS to 1 thread for the exact-search reference (comes with scikit-learn)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None

logger = logging.getLogger(__name__)

EF_SEARCH = (10, 20, 40, 80, 160, 320)


@dataclass(frozen=True)
class AnnStudyOptions:
    """What one ANN study measures (``edgeret ann-study``'s flags, typed)."""

    bundle: Path | None = None  #: bundle whose real embeddings come first (None: all synthetic)
    sizes: tuple[int, ...] = (100_000, 1_000_000)  #: index sizes
    queries: int = 1000  #: held-out query vectors
    ef: tuple[int, ...] = EF_SEARCH  #: ef_search values
    M: int = 16
    ef_construction: int = 100
    build_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    dim: int = 384  #: dim of synthetic vectors when there is no bundle
    seed: int = 0
    cache_dir: Path = Path("artifacts/ann")  #: real embeddings cache
    out: Path = Path("bench/results")
    name: str = "ann"  #: results file stem
    command: str = "edgeret ann-study"  #: the command line recorded in the results


def build_index(data: np.ndarray, M: int, ef_construction: int, threads: int, seed: int) -> tuple[Any, dict]:
    """hnswlib index of ``data`` (labels = row numbers); returns it and build time / memory numbers."""
    before = rss_mb()
    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=M, ef_construction=ef_construction, random_seed=100 + seed)
    watch = Stopwatch()
    index.add_items(data, np.arange(len(data)), num_threads=threads)
    build_s = watch.seconds
    grown = rss_mb() - before
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.bin"
        index.save_index(str(path))
        file_bytes = path.stat().st_size
    return index, {"build_s": build_s, "build_threads": threads, "inserts_per_s": len(data) / build_s,
                   "index_file_bytes": file_bytes, "file_bytes_per_vector": file_bytes / len(data),
                   "rss_delta_mb": grown, "rss_bytes_per_vector": grown * 2**20 / len(data)}


def sweep(index: Any, queries: np.ndarray, exact: np.ndarray, efs: list[int], k: int = 10) -> list[dict]:
    """Recall@k and single-query latency (1 thread) at each ef_search."""
    index.set_num_threads(1)
    out = []
    for ef in efs:
        index.set_ef(max(ef, k))
        index.knn_query(queries[: min(20, len(queries))], k=k)  # warm-up
        results: list[tuple[np.ndarray, np.ndarray]] = []
        times = time_calls(lambda i: index.knn_query(queries[i : i + 1], k=k), range(len(queries)), outputs=results)
        found = np.stack([labels[0] for labels, _ in results]).astype(np.int64)
        stats = percentiles(times)
        out.append({"ef_search": ef, "recall@10": recall_at_k(found, exact),
                    "query_ms_p50_1t": stats["p50"], "query_ms_p95_1t": stats["p95"]})
        logger.info("  ef %d: recall@10 %.4f, p50 %.3f ms", ef, out[-1]["recall@10"], out[-1]["query_ms_p50_1t"])
    return out


def exact_latency(data: np.ndarray, queries: np.ndarray, n: int = 20) -> float:
    """p50 ms of one brute-force query (numpy matrix-vector product + top-10), for reference.

    BLAS is held to 1 thread when ``threadpoolctl`` is installed (it comes with scikit-learn).
    """
    with threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext():
        times = time_calls(lambda q: np.argpartition(-(data @ q), 10)[:10], queries[:n])
    return percentiles(times, points=(50,))["p50"]


def study_size(size: int, base: np.ndarray, queries: np.ndarray, options: AnnStudyOptions, real: bool) -> dict:
    """Build, ground truth and ef sweep at one collection size (``real``: ``base`` holds real embeddings)."""
    rng = np.random.default_rng(options.seed + size)
    data, n_real = collection(size, base, rng)
    n_real = n_real if real else 0
    logger.info("size %d (%d real, %d synthetic): exact top-10 of %d queries", size, n_real, size - n_real,
                len(queries))
    watch = Stopwatch()
    exact = exact_topk(data, queries)
    exact_s = watch.seconds
    logger.info("building hnswlib (M=%d, ef_construction=%d, %d threads)", options.M, options.ef_construction,
                options.build_threads)
    index, build = build_index(data, options.M, options.ef_construction, options.build_threads, options.seed)
    logger.info("built in %.1f s (%.0f inserts/s), %.0f bytes/vector on disk", build["build_s"],
                build["inserts_per_s"], build["file_bytes_per_vector"])
    result = {"size": size, "real": n_real, "synthetic": size - n_real, "dim": int(data.shape[1]), **build,
              "exact_ground_truth_s": exact_s, "exact_query_ms_p50_1t": exact_latency(data, queries),
              "sweep": sweep(index, queries, exact, list(options.ef))}
    del index, data
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


def run_ann_study(options: AnnStudyOptions) -> dict:
    """Run the study at every size; write ``<name>.json`` / ``.md`` / ``.png`` into ``options.out``; returns the
    summary (what the JSON holds)."""
    base, queries, source = load_vectors(options)
    real = options.bundle is not None
    results = [study_size(size, base, queries, options, real) for size in options.sizes]
    summary = {
        "command": options.command, "created": now_iso(), "machine": machine_info([1]),
        "versions": package_versions(("edgeret", "numpy", "hnswlib")), "vectors": source,
        "queries": len(queries), "real_queries": real, "k": 10, "M": options.M,
        "ef_construction": options.ef_construction, "space": "cosine", "sizes": results,
    }
    out, name = options.out, options.name
    write_json(out / f"{name}.json", summary)
    markdown = ann_markdown(summary)
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    ann_plot(summary, out / f"{name}.png")
    logger.info("wrote %s\n%s", out / f"{name}.json", markdown)
    return summary


def ann_markdown(summary: dict) -> str:
    """Command, the build/memory table per size and the recall/latency table per ef_search."""
    builds = [{"vectors": f"{r['size']:,}", "real / synthetic": f"{r['real']:,} / {r['synthetic']:,}",
               "build s": r["build_s"], "build threads": r["build_threads"], "inserts/s": round(r["inserts_per_s"]),
               "bytes/vector (file)": round(r["file_bytes_per_vector"]),
               "bytes/vector (RSS)": round(r["rss_bytes_per_vector"]),
               "exact query ms (1t)": r["exact_query_ms_p50_1t"]} for r in summary["sizes"]]
    sweeps = [{"vectors": f"{r['size']:,}", "ef_search": s["ef_search"], "recall@10": s["recall@10"],
               "query ms p50 (1t)": s["query_ms_p50_1t"], "query ms p95 (1t)": s["query_ms_p95_1t"]}
              for r in summary["sizes"] for s in r["sweep"]]
    return "\n".join([
        f"`{summary['command']}`", "",
        f"{summary['created']} · {summary['machine']['cpu']}, {summary['machine']['cores']} cores · "
        f"vectors: {summary['vectors']}, synthetic clustered beyond · {summary['queries']} held-out "
        f"{'real' if summary['real_queries'] else 'synthetic'} queries · "
        f"hnswlib {summary['versions'].get('hnswlib')} space={summary['space']} M={summary['M']} "
        f"ef_construction={summary['ef_construction']}", "",
        markdown_table(builds, list(builds[0])), "", markdown_table(sweeps, list(sweeps[0])), "",
    ])
