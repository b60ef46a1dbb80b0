"""Runtime benchmark: end-to-end query latency on a large index, cold start, peak RSS, concurrency soak.

``edgeret runtime-bench BUNDLE [--items 100000]`` writes ``bench/results/runtime.json`` and
``runtime.md``. The index holds the bundle's own embeddings of every WordNet synset and OpenMoji
emoji plus synthetic neighbours of them up to ``--items`` (``--vectors random``: uniform unit
vectors, HNSW's worst case); memory depends on count and dim only, search time also on the content.
Queries are real WordNet glosses and rendered emoji, encoded by the bundle's own encoders, so a
query's time includes tokenising / preprocessing, the ONNX encoder and the HNSW search.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgeret.data.results import invocation, machine_info, markdown_table, now_iso, package_versions, write_json

logger = logging.getLogger(__name__)

_COLD_START = """
import json, sys, time
t0 = time.perf_counter()
from edgeret.runtime.retriever import Retriever
r = Retriever.open(sys.argv[1], threads=1, verify=sys.argv[2] if sys.argv[2] != "True" else True)
hits = r.search(text="a small yellow fruit", k=10)
t1 = time.perf_counter()
for q in ["red heart", "a cat face", "the national flag of France"] * 30:
    r.search(text=q, k=10)
from edgeret.bench.footprint import peak_rss_mb  # VmHWM: ru_maxrss would report the parent's peak after fork+exec
print(json.dumps({"cold_start_ms": (t1 - t0) * 1e3, "items": len(r), "torch_imported": "torch" in sys.modules,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)), "n": len(arr)}


def index_vectors(kind: str, items: int, dim: int, bundle: Path, cache_dir: Path, seed: int = 0) -> np.ndarray:
    """What the index holds: ``real`` = the bundle's embeddings of every WordNet synset and OpenMoji emoji,
    then synthetic neighbours of them up to ``items`` (clustered like a real collection); ``random`` =
    uniform unit vectors (no structure: HNSW's worst case, slower to search than any real corpus)."""
    from .ann_vectors import collection, random_centres, real_embeddings

    if kind == "random":
        return random_centres(items, dim, np.random.default_rng(seed))
    base = real_embeddings(bundle, cache_dir)[:, :dim]
    vectors, n_real = collection(items, base, np.random.default_rng(seed))
    logger.info("index vectors: %d real embeddings + %d synthetic neighbours", n_real, items - n_real)
    return vectors


def fill_index(retriever, vectors: np.ndarray, chunk: int = 20000) -> float:
    """Add ``vectors`` (ids ``item-N``); returns seconds."""
    start = time.perf_counter()
    for lo in range(0, len(vectors), chunk):
        block = vectors[lo : lo + chunk]
        retriever.add_embeddings([f"item-{lo + i}" for i in range(len(block))], block)
    return time.perf_counter() - start


def time_queries(retriever, queries: list, kind: str, warmup: int = 10) -> dict[str, float]:
    """Per-query end-to-end latency (encode + search) for text or image queries."""
    for q in queries[:warmup]:
        retriever.search(**{kind: q}, k=10)
    samples = []
    for q in queries:
        start = time.perf_counter()
        retriever.search(**{kind: q}, k=10)
        samples.append((time.perf_counter() - start) * 1e3)
    return _percentiles(samples)


def cold_start(bundle: Path, verify: str, repeats: int = 5, python: str | None = None) -> dict:
    """Import + open + first text query in fresh processes (OS file cache warm): median time, max peak RSS.

    ``python``: the interpreter to start (default this one), e.g. a venv with only the base install,
    which is what an app ships (an editable dev install adds its own import hooks).
    """
    runs = []
    for _ in range(repeats):
        out = subprocess.run([python or sys.executable, "-c", _COLD_START, str(bundle), verify], capture_output=True,
                             text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    times = sorted(run["cold_start_ms"] for run in runs)
    return {**runs[0], "cold_start_ms": float(np.median(times)), "cold_start_runs_ms": times,
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs)}


def soak(retriever, texts: list[str], writers_items: int, searchers: int = 8) -> dict:
    """``searchers`` threads search while one thread adds ``writers_items`` texts; count errors and losses."""
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0] * searchers

    def search_loop(slot: int) -> None:
        rng = np.random.default_rng(slot)
        while not stop.is_set():
            try:
                retriever.search(text=texts[int(rng.integers(len(texts)))], k=10)
                searches[slot] += 1
            except BaseException as exc:  # noqa: BLE001 - any failure counts
                errors.append(exc)

    threads = [threading.Thread(target=search_loop, args=(i,)) for i in range(searchers)]
    for t in threads:
        t.start()
    ids = [f"soak-{i}" for i in range(writers_items)]
    start = time.perf_counter()
    try:
        for lo in range(0, writers_items, 256):
            batch = ids[lo : lo + 256]
            retriever.add_texts(batch, [f"{texts[(lo + j) % len(texts)]} #{lo + j}" for j in range(len(batch))])
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)
    seconds = time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    missing = [i for i in ids if i not in retriever]
    return {"searchers": searchers, "added": writers_items, "add_seconds": seconds, "searches": sum(searches),
            "errors": len(errors), "first_error": repr(errors[0]) if errors else None, "missing_ids": len(missing)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret runtime-bench", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--items", type=int, default=100_000, help="index size")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--soak-items", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="runtime", help="results file stem")
    parser.add_argument("--vectors", choices=("real", "random"), default="real",
                        help="index content: real embeddings + synthetic neighbours, or uniform random unit vectors")
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/ann"), help="real embeddings cache")
    parser.add_argument("--cold-python", help="interpreter for the cold-start processes (e.g. a base-install venv)")
    parser.add_argument("--cold-repeats", type=int, default=7, help="fresh processes per cold-start measure")
    return parser


def _queries(n: int, image_size: int) -> tuple[list[str], list]:
    from edgeret.data.openmoji import emojis
    from edgeret.data.render import render_emoji
    from edgeret.data.wordnet import synsets

    texts = [s.gloss for s in synsets("test")[:n]]
    images = [render_emoji(e.text, image_size) for e in emojis("test")[: max(20, n // 4)]]
    return texts, images


def _cold_text(result: dict) -> str:
    runs = result["cold_start_runs_ms"]
    return (f"{result['cold_start_ms']:.0f} ms median of {len(runs)} (min {runs[0]:.0f}, max {runs[-1]:.0f}), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB")


def main(argv: list[str] | None = None) -> dict:
    """Run every measurement on a temporary copy of the bundle; returns the results."""
    args = build_parser().parse_args(argv)
    from edgeret.runtime.retriever import Retriever

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        shutil.copytree(args.bundle, bundle)
        measure_cold = functools.partial(cold_start, repeats=args.cold_repeats, python=args.cold_python)
        cold_empty = measure_cold(bundle, "size")  # before the large index exists
        retriever = Retriever.open(bundle, threads=1)
        texts, images = _queries(args.queries, 224)
        vectors = index_vectors(args.vectors, args.items, retriever.dim, args.bundle, args.cache_dir)
        build_s = fill_index(retriever, vectors)
        logger.info("index of %d built in %.1f s", args.items, build_s)
        text_lat = time_queries(retriever, texts, "text")
        image_lat = time_queries(retriever, images, "image") if retriever.image_encoder else None
        retriever.save()
        cold = {mode: measure_cold(bundle, mode) for mode in ("size", "True")}
        soak_result = soak(Retriever.open(bundle, threads=1, verify="size"), texts, args.soak_items)
    result = {
        "command": invocation("edgeret runtime-bench", argv), "created": now_iso(),
        "machine": machine_info([1]), "versions": package_versions(), "bundle": str(args.bundle),
        "items": args.items, "vectors": args.vectors, "dim": retriever.dim, "index_build_s": build_s,
        "text_query": text_lat, "image_query": image_lat, "cold_start": cold,
        "cold_start_empty_index": cold_empty, "soak": soak_result, "cold_start_python": args.cold_python,
    }
    write_json(args.out / f"{args.name}.json", result)
    rows = [
        {"measure": "text query (tokenise+encode+search), 1 thread", "value": f"p50 {text_lat['p50_ms']:.2f} ms, "
         f"p95 {text_lat['p95_ms']:.2f} ms"},
        {"measure": "image query (preprocess+encode+search), 1 thread", "value": "–" if not image_lat else
         f"p50 {image_lat['p50_ms']:.2f} ms, p95 {image_lat['p95_ms']:.2f} ms"},
        {"measure": f"index build ({args.items} x {retriever.dim}, {args.vectors} vectors, 1 thread)",
         "value": f"{build_s:.1f} s"},
        {"measure": f"cold start, {cold_empty['items']} items, verify=size", "value": _cold_text(cold_empty)},
        *({"measure": f"cold start, {args.items} items, verify={m}", "value": _cold_text(c)} for m, c in cold.items()),
        {"measure": "soak (8 searchers + 1 writer)", "value": f"{soak_result['errors']} errors, "
         f"{soak_result['missing_ids']} missing of {soak_result['added']}, {soak_result['searches']} searches"},
    ]
    table = markdown_table(rows, ["measure", "value"])
    (args.out / f"{args.name}.md").write_text(f"`{result['command']}`\n\n{table}\n", encoding="utf-8")
    print(table)
    return result
