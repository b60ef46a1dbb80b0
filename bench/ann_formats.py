"""One index format at one size for ``edgeret ann-study``: build and save through :class:`VectorIndex`, then measure
the saved index in fresh processes (:mod:`edgeret.bench.ann_probe`).

Build: one ``VectorIndex.add`` of every vector (ids = row numbers, metadata ``{"f": row % 100}``, so the filter
``{"f": FILTER_VALUE}`` keeps 1% of the items), timed, with the process RSS growth over it (the index: graph,
vectors, in-memory SQLite); then ``save`` (timed; the format's graph file and the whole generation, in bytes per
vector).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.timing import Stopwatch
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.index_formats import FORMATS

from .memory import rss_mb

logger = logging.getLogger(__name__)

#: items get ``{"f": row % FILTER_MODULUS}``; the filter keeps those with ``f == FILTER_VALUE`` (1%)
FILTER_MODULUS = 100
FILTER_VALUE = 7
FILTER = {"f": FILTER_VALUE}
_PROBE_TIMEOUT_S = 3600


def filter_rows(size: int) -> np.ndarray:
    """Row numbers the filter keeps."""
    return np.arange(FILTER_VALUE, size, FILTER_MODULUS)


def build_and_save(fmt: str, data: np.ndarray, index_dir: Path, *, M: int, ef_construction: int,
                   threads: int) -> dict[str, Any]:
    """Build ``data`` into a ``fmt`` index, save it into ``index_dir``; build/save times and bytes per vector."""
    n = len(data)
    ids, metadata = [str(i) for i in range(n)], [{"f": i % FILTER_MODULUS} for i in range(n)]
    before = rss_mb()
    index = VectorIndex(data.shape[1], format=fmt, M=M, ef_construction=ef_construction, threads=threads,
                        exact_threshold=0, capacity=n)
    watch = Stopwatch()
    index.add(ids, data, metadata)
    build_s = watch.seconds
    grown = rss_mb() - before
    watch.restart()
    saved = index.save(index_dir)
    save_s = watch.seconds
    index.close()
    del index
    files = saved.meta["files"]
    graph = sum(files[name]["bytes"] for name in FORMATS[fmt].files if name != "meta.sqlite")
    total = sum(entry["bytes"] for entry in files.values())
    return {"format": fmt, "build_s": build_s, "build_threads": threads, "inserts_per_s": n / build_s,
            "save_s": save_s, "index_file_bytes": graph, "file_bytes_per_vector": graph / n,
            "generation_bytes_per_vector": total / n, "rss_delta_mb": grown,
            "rss_bytes_per_vector": grown * 2**20 / n}


def write_task(task_dir: Path, fmt: str, queries: np.ndarray, exact: np.ndarray, filter_exact: np.ndarray,
               efs: list[int], probe_ef: int) -> None:
    """What a probe process reads (see :mod:`edgeret.bench.ann_probe`)."""
    np.save(task_dir / "queries.npy", queries)
    np.save(task_dir / "exact.npy", exact)
    np.save(task_dir / "filter_exact.npy", filter_exact)
    (task_dir / "task.json").write_text(json.dumps({"format": fmt, "efs": efs, "probe_ef": probe_ef,
                                                    "filter": FILTER}))


def run_probe(mode: str, index_dir: Path, task_dir: Path) -> dict[str, Any]:
    """One fresh ``python -m edgeret.bench.ann_probe`` process (1 OpenMP thread); its JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, "-m", "edgeret.bench.ann_probe", mode, str(index_dir), str(task_dir)],
                         capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, env=env, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"the {mode} probe of {index_dir} failed ({out.returncode}): {out.stderr[-1000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def study_format(fmt: str, data: np.ndarray, queries: np.ndarray, exact: np.ndarray, filter_exact: np.ndarray,
                 options: Any) -> dict[str, Any]:
    """Build, save and probe one format at one size (``options``: an ``AnnStudyOptions``)."""
    with tempfile.TemporaryDirectory(prefix=f"ann-{fmt}-") as tmp:
        index_dir, task_dir = Path(tmp) / "index", Path(tmp)
        logger.info("building %s (M=%d, ef_construction=%d, %d threads)", fmt, options.M, options.ef_construction,
                    options.build_threads)
        result = build_and_save(fmt, data, index_dir, M=options.M, ef_construction=options.ef_construction,
                                threads=options.build_threads)
        logger.info("built in %.1f s, %.0f bytes/vector on disk", result["build_s"], result["file_bytes_per_vector"])
        write_task(task_dir, fmt, queries, exact, filter_exact, list(options.ef), options.probe_ef)
        cold = run_probe("cold", index_dir, task_dir)
        warm = run_probe("warm", index_dir, task_dir)
    n = len(data)
    per_vector = {f"{when}_{kind}": warm[key][kind] / n for when, key in (("open", "rss_after_open"),
                                                                            ("queries", "rss_after_queries"))
                  for kind in ("rss", "anon", "file")}
    result.update(cold_open_ms=cold["open_ms"], cold_first_query_ms=cold["first_query_ms"],
                  warm_open_ms=warm["open_ms"], warm_first_query_ms=warm["first_query_ms"],
                  rss_bytes_per_vector_probe=per_vector, rss_queries=warm["rss_queries"], sweep=warm["sweep"],
                  filtered=warm["filtered"])
    for row in warm["sweep"]:
        logger.info("  %s ef %d: recall@10 %.4f, p50 %.3f ms (search %.3f ms)", fmt, row["ef_search"],
                    row["recall@10"], row["query_ms_p50_1t"], row["search_ms_p50_1t"])
    return result
