"""The fresh process of ``edgeret ann-study`` that opens one saved index and measures it (``python -m
edgeret.bench.ann_probe MODE INDEX_DIR TASK_DIR``; prints one JSON line).

``cold``: the index's files are dropped from the page cache (``posix_fadvise(DONTNEED)``; only clean pages go),
then open (:meth:`VectorIndex.load`) and the first graph query are timed. ``warm``: open and first query with the
files in the page cache (just written), RSS (``VmRSS``, ``RssAnon``, ``RssFile`` from ``/proc/self/status``,
minus the process's before the open: the libraries are imported first) after the open and after 1,000 queries at
``probe_ef``, then for every ef_search recall@10 and per-query latency at 1 thread of ``VectorIndex.search`` (ids
and metadata included) and of the format's graph search alone, then the filtered search. ``TASK_DIR`` holds
``queries.npy``, ``exact.npy``, ``filter_exact.npy`` (row numbers = ids) and ``task.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.timing import percentiles, time_calls
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.index_formats import backend_class
from edgeret.runtime.persist import read_saved_index

from .ann_vectors import recall_at_k

_RSS_FIELDS = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}


def rss_bytes() -> dict[str, int]:
    """This process's resident memory in bytes: ``rss``, ``anon`` and ``file`` (0 where /proc is missing)."""
    out = dict.fromkeys(_RSS_FIELDS.values(), 0)
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in _RSS_FIELDS:
            out[_RSS_FIELDS[key]] = int(value.split()[0]) * 1024
    return out


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after}


def drop_page_cache(folder: Path) -> None:
    """Ask the kernel to drop the clean cached pages of every file in ``folder``."""
    for path in folder.iterdir():
        if path.is_file() and hasattr(os, "posix_fadvise"):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _open_and_first(index_dir: Path, query: np.ndarray) -> tuple[VectorIndex, float, float]:
    start = time.perf_counter()
    index = VectorIndex.load(read_saved_index(index_dir, verify="size"), exact_threshold=0, threads=1)
    opened = time.perf_counter()
    index.search(query, k=10, exact=False)
    return index, (opened - start) * 1e3, (time.perf_counter() - opened) * 1e3


def _ids(hits: list) -> np.ndarray:
    found = np.full(10, -1, dtype=np.int64)
    found[: len(hits)] = [int(hit.id) for hit in hits]
    return found


def _timed(fn: Any, queries: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    results: list[list] = []
    fn(queries[0])  # warm-up
    times = time_calls(fn, list(queries), outputs=results)
    return percentiles(times), np.stack([_ids(hits) for hits in results])


def sweep(index: VectorIndex, queries: np.ndarray, exact: np.ndarray, efs: list[int]) -> list[dict]:
    """Recall@10 and 1-thread latency per ef_search: ``VectorIndex.search`` and the graph search alone."""
    backend = index._backend  # the format's own graph search, as the hnswlib-only study timed it
    prepared = [q[None, :].astype(np.float32) / np.linalg.norm(q) for q in queries]
    out = []
    for ef in efs:
        index.ef_search = max(ef, 10)
        stats, found = _timed(lambda q: index.search(q, k=10, exact=False), queries)
        graph = percentiles(time_calls(lambda q: backend.search(q, 10, None), prepared, warmup=20))
        out.append({"ef_search": ef, "recall@10": recall_at_k(found, exact), "query_ms_p50_1t": graph["p50"],
                    "query_ms_p95_1t": graph["p95"], "search_ms_p50_1t": stats["p50"],
                    "search_ms_p95_1t": stats["p95"]})
    return out


def filtered(index: VectorIndex, queries: np.ndarray, exact: np.ndarray, where: dict) -> dict:
    """The filtered row: first call (label set + gather), then recall@10 and latency of the memoised filter."""
    start = time.perf_counter()
    index.search(queries[0], k=10, filter=where)
    first_ms = (time.perf_counter() - start) * 1e3
    stats, found = _timed(lambda q: index.search(q, k=10, filter=where), queries)
    return {"first_ms": first_ms, "recall@10": recall_at_k(found, exact), "ms_p50_1t": stats["p50"],
            "ms_p95_1t": stats["p95"]}


def probe(mode: str, index_dir: Path, task_dir: Path) -> dict:
    """What ``mode`` measures (see the module docstring)."""
    task = json.loads((task_dir / "task.json").read_text())
    backend_class(task["format"])  # the library is imported before the baseline: it is not the index
    queries = np.load(task_dir / "queries.npy")
    if mode == "cold":
        drop_page_cache(next(index_dir.glob("gen-*")))
    before = rss_bytes()
    index, open_ms, first_ms = _open_and_first(index_dir, queries[0])
    result: dict[str, Any] = {"open_ms": open_ms, "first_query_ms": first_ms,
                              "rss_after_open": _minus(rss_bytes(), before)}
    if mode == "warm":
        index.ef_search = task["probe_ef"]
        for query in queries[:1000]:
            index.search(query, k=10, exact=False)
        result["rss_after_queries"] = _minus(rss_bytes(), before)
        result["rss_queries"] = min(1000, len(queries))
        result["sweep"] = sweep(index, queries, np.load(task_dir / "exact.npy"), task["efs"])
        result["filtered"] = filtered(index, queries, np.load(task_dir / "filter_exact.npy"), task["filter"])
    index.close()
    return result


def main(argv: list[str]) -> int:
    """Run one probe and print its JSON on one line."""
    mode, index_dir, task_dir = argv
    if mode not in ("cold", "warm"):
        raise SystemExit(f"mode must be cold or warm, not {mode!r}")
    try:  # 1 thread for faiss too (OpenMP), as for hnswlib's searches
        import faiss  # optional: only when the faiss extra is installed

        faiss.omp_set_num_threads(1)
    except ImportError:
        pass
    print(json.dumps(probe(mode, Path(index_dir), Path(task_dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
