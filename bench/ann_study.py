"""``edgeret ann-study``: hnswlib at scale — recall@10 vs exact search across ef_search, query latency,
build time and memory per vector, at 100k and 1M normalised vectors.

Vectors (:mod:`bench.ann_vectors`): a bundle's real embeddings (WordNet + OpenMoji, ~66k) first,
synthetic clustered ones beyond; 1,000 held-out real vectors are the queries (never indexed).
Ground truth is exact inner-product top-10 (numpy). Each size builds one hnswlib index
(``cosine`` space as the runtime; M=16, ef_construction=100, 2 build threads by default), then for
every ef_search times each query alone at 1 thread. Memory per vector: the saved index file's bytes
/ n, and the process RSS growth over the build / n.

Writes ``ann.json``, ``ann.md`` and ``ann.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.results import invocation, machine_info, markdown_table, now_iso, package_versions, write_json

from .ann_vectors import (
    collection,
    exact_topk,
    random_centres,
    real_embeddings,
    recall_at_k,
    split_queries,
    synthetic,
)

logger = logging.getLogger(__name__)

EF_SEARCH = (10, 20, 40, 80, 160, 320)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret ann-study", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle whose real embeddings come first (none: all synthetic)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="index sizes")
    parser.add_argument("--queries", type=int, default=1000, help="held-out query vectors")
    parser.add_argument("--ef", type=int, nargs="+", default=list(EF_SEARCH), help="ef_search values")
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dim", type=int, default=384, help="dim of synthetic vectors when there is no bundle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/ann"), help="real embeddings cache")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="ann", help="results file stem")
    return parser


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def build_index(data: np.ndarray, M: int, ef_construction: int, threads: int, seed: int) -> tuple[Any, dict]:
    """hnswlib index of ``data`` (labels = row numbers); returns it and build time / memory numbers."""
    import hnswlib

    before = rss_mb()
    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=M, ef_construction=ef_construction, random_seed=100 + seed)
    start = time.perf_counter()
    index.add_items(data, np.arange(len(data)), num_threads=threads)
    build_s = time.perf_counter() - start
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
        found, times = np.empty((len(queries), k), dtype=np.int64), []
        for i in range(len(queries)):
            start = time.perf_counter()
            labels, _ = index.knn_query(queries[i : i + 1], k=k)
            times.append((time.perf_counter() - start) * 1e3)
            found[i] = labels[0]
        out.append({"ef_search": ef, "recall@10": recall_at_k(found, exact),
                    "query_ms_p50_1t": float(np.percentile(times, 50)),
                    "query_ms_p95_1t": float(np.percentile(times, 95))})
        logger.info("  ef %d: recall@10 %.4f, p50 %.3f ms", ef, out[-1]["recall@10"], out[-1]["query_ms_p50_1t"])
    return out


def exact_latency(data: np.ndarray, queries: np.ndarray, n: int = 20) -> float:
    """p50 ms of one brute-force query (numpy matrix-vector product + top-10), for reference.

    BLAS is held to 1 thread when ``threadpoolctl`` is installed (it comes with scikit-learn).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        threadpool_limits = None
    times = []
    with threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext():
        for q in queries[:n]:
            start = time.perf_counter()
            scores = data @ q
            np.argpartition(-scores, 10)[:10]
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50))


def study_size(size: int, base: np.ndarray, queries: np.ndarray, args: argparse.Namespace, real: bool) -> dict:
    """Build, ground truth and ef sweep at one collection size (``real``: ``base`` holds real embeddings)."""
    rng = np.random.default_rng(args.seed + size)
    data, n_real = collection(size, base, rng)
    n_real = n_real if real else 0
    logger.info("size %d (%d real, %d synthetic): exact top-10 of %d queries", size, n_real, size - n_real,
                len(queries))
    start = time.perf_counter()
    exact = exact_topk(data, queries)
    exact_s = time.perf_counter() - start
    logger.info("building hnswlib (M=%d, ef_construction=%d, %d threads)", args.M, args.ef_construction,
                args.build_threads)
    index, build = build_index(data, args.M, args.ef_construction, args.build_threads, args.seed)
    logger.info("built in %.1f s (%.0f inserts/s), %.0f bytes/vector on disk", build["build_s"],
                build["inserts_per_s"], build["file_bytes_per_vector"])
    result = {"size": size, "real": n_real, "synthetic": size - n_real, "dim": int(data.shape[1]), **build,
              "exact_ground_truth_s": exact_s, "exact_query_ms_p50_1t": exact_latency(data, queries),
              "sweep": sweep(index, queries, exact, args.ef)}
    del index, data
    return result


def load_vectors(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(base, queries, description) from a bundle's real embeddings, or random centres without one."""
    rng = np.random.default_rng(args.seed)
    if args.bundle is not None:
        real = real_embeddings(args.bundle, args.cache_dir)
        base, queries = split_queries(real, args.queries, rng)
        return base, queries, f"{len(real)} real {args.bundle.name} embeddings (WordNet + OpenMoji)"
    centres = random_centres(max(10, min(args.sizes) // 20), args.dim, rng)
    pool = synthetic(min(args.sizes) + args.queries, centres, rng)
    return pool[args.queries :], pool[: args.queries], f"synthetic only ({len(centres)} random centres)"


def main(argv: list[str] | None = None) -> dict:
    """Run the study at every size; write ann.json / ann.md / ann.png."""
    args = build_parser().parse_args(argv)
    base, queries, source = load_vectors(args)
    real = args.bundle is not None
    results = [study_size(size, base, queries, args, real) for size in args.sizes]
    summary = {
        "command": invocation("edgeret ann-study", argv), "created": now_iso(), "machine": machine_info([1]),
        "versions": package_versions(("edgeret", "numpy", "hnswlib")), "vectors": source,
        "queries": len(queries), "real_queries": real, "k": 10, "M": args.M, "ef_construction": args.ef_construction,
        "space": "cosine", "sizes": results,
    }
    write_json(args.out / f"{args.name}.json", summary)
    markdown = ann_markdown(summary)
    (args.out / f"{args.name}.md").write_text(markdown, encoding="utf-8")
    ann_plot(summary, args.out / f"{args.name}.png")
    logger.info("wrote %s\n%s", args.out / f"{args.name}.json", markdown)
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


def ann_plot(summary: dict, path: Path) -> None:
    """Recall@10 against 1-thread query latency, one curve per size, points labelled with ef_search."""
    from .plots import _pyplot

    plt = _pyplot()
    if plt is None:
        return
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in summary["sizes"]:
        xs = [s["query_ms_p50_1t"] for s in r["sweep"]]
        ys = [s["recall@10"] for s in r["sweep"]]
        ax.plot(xs, ys, marker="o", label=f"{r['size']:,} vectors")
        for s in r["sweep"]:
            ax.annotate(str(s["ef_search"]), (s["query_ms_p50_1t"], s["recall@10"]), fontsize=7,
                        xytext=(3, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("query latency p50, 1 thread, ms (log); labels: ef_search")
    ax.set_ylabel("recall@10 vs exact search")
    dim = summary["sizes"][0]["dim"]
    ax.set_title(f"hnswlib M={summary['M']}, ef_construction={summary['ef_construction']}, d={dim}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
