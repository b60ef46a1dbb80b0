"""The side of the ARM64 check that runs the runtime: identical on x86 (host Python) and ARM64 (emulated Python).

    python guest_worker.py JOB.json

Run as a plain script (not imported through ``tools``), it needs only the runtime and its dependencies:
it opens the job's bundle (with the index saved on x86), embeds the job's texts and images, runs the job's
queries (host-made vectors, texts, images) through the saved HNSW graph, then answers query sets through each
index of the job's ``formats`` (saved on x86 by :mod:`tools.arm64.formats`), and writes into the job's ``out``
folder ``texts.npy``, ``images.npy`` and ``result.json`` (top-k ids and scores, timings, versions).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("numpy", "onnxruntime", "tokenizers", "pillow", "hnswlib", "faiss-cpu")
#: query sets of x86-made vectors (identical inputs on both machines) answered by every format's saved index:
#: through the graph, exactly, and through the graph under the job's filter
SHARED_INPUT_MODES = ("vector", "exact", "filtered")
#: query sets of this machine's own embeddings of the query texts and images, through the graph
OWN_INPUT_MODES = ("text", "image")
#: the metadata field the formats' filtered query set filters on
FILTER_FIELD = "kind"


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _faiss_build() -> str | None:
    """faiss's compile options (its SIMD level: AVX2 on x86, ARM_NEON on aarch64), if a format imported faiss."""
    faiss = sys.modules.get("faiss")
    return None if faiss is None else faiss.get_compile_options().strip()


def _timed(timings: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    timings[name] = round(time.perf_counter() - start, 3)
    return value


def _search_all(retriever: Any, kind: str, queries: list[Any], k: int) -> dict[str, list]:
    """Top-k ids and scores of every query, through the HNSW graph (``exact=False``)."""
    ids, scores = [], []
    for query in queries:
        hits = retriever.search(**{kind: query}, k=k, exact=False)
        ids.append([hit.id for hit in hits])
        scores.append([float(hit.score) for hit in hits])
    return {"ids": ids, "scores": scores}


def _search_index(index: Any, queries: Any, k: int, **options: Any) -> dict[str, list]:
    """Top-k ids and scores of every query vector, straight from a :class:`VectorIndex`."""
    ids, scores = [], []
    for query in queries:
        hits = index.search(query, k=k, **options)
        ids.append([hit.id for hit in hits])
        scores.append([float(hit.score) for hit in hits])
    return {"ids": ids, "scores": scores}


def _answer_format(spec: dict[str, Any], vectors: Any, own: dict[str, Any], job: dict[str, Any],
                   timings: dict[str, float]) -> dict[str, dict[str, list]]:
    """Open one format's saved index and answer every query set (see :data:`SHARED_INPUT_MODES`)."""
    from edgeret.runtime.index import VectorIndex  # reason: a plain script; the runtime is imported in run_job
    from edgeret.runtime.persist import read_saved_index  # reason: as above

    name = spec["format"]
    index = _timed(timings, f"open {name}", lambda: VectorIndex.load(read_saved_index(spec["index"]),
                                                                     threads=job["threads"]))
    sets = {"vector": (vectors, {"exact": False}), "exact": (vectors, {"exact": True}),
            "filtered": (vectors, {"exact": False, "filter": spec["filter"]}),
            "text": (own["text"], {"exact": False}), "image": (own["image"], {"exact": False})}
    start = time.perf_counter()
    try:
        answers = {mode: _search_index(index, queries, job["k"], **options) for mode, (queries, options) in
                   sets.items()}
    finally:
        index.close()
    timings[f"search {name}"] = round(time.perf_counter() - start, 3)
    return answers


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Embed and search as the job says; returns the result (and writes the embeddings as .npy)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    import numpy as np

    from edgeret.runtime.retriever import Retriever

    timings["import"] = round(time.perf_counter() - start, 3)
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    retriever = _timed(timings, "open", Retriever.open, job["bundle"], threads=job["threads"])
    texts = _timed(timings, "embed_texts", retriever.embed_texts, job["texts"])
    images = _timed(timings, "embed_images", retriever.embed_images, job["images"])
    np.save(out / "texts.npy", texts)
    np.save(out / "images.npy", images)
    vectors = np.load(job["query_vectors"])
    topk = {
        "vector": _timed(timings, "search_vectors", _search_all, retriever, "vector", list(vectors), job["k"]),
        "text": _timed(timings, "search_texts", _search_all, retriever, "text", job["query_texts"], job["k"]),
        "image": _timed(timings, "search_images", _search_all, retriever, "image", job["query_images"], job["k"]),
    }
    own = {"text": texts[:len(job["query_texts"])], "image": images[:len(job["query_images"])]}
    formats = {spec["format"]: _answer_format(spec, vectors, own, job, timings) for spec in job.get("formats", [])}
    timings["total"] = round(time.perf_counter() - start, 3)
    return {"machine": platform.machine(), "python": platform.python_version(), "versions": _versions(),
            "index_items": len(retriever), "timings_s": timings, "topk": topk, "formats": formats,
            "faiss_build": _faiss_build()}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run_job(job)
    Path(job["out"], "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
