"""Runtime benchmark: end-to-end query latency on a large index, cold start, peak RSS, concurrency soak.

:func:`run_runtime_bench` (the command line: ``edgeret runtime-bench BUNDLE [--items 100000]``) writes
``bench/results/runtime.json`` and ``runtime.md``. The index holds the bundle's own embeddings of every
WordNet synset and OpenMoji emoji plus synthetic neighbours of them up to ``--items`` (``--vectors random``:
uniform unit vectors, HNSW's worst case); memory depends on count and dim only, search time also on the
content. Queries are real WordNet glosses and rendered emoji, encoded by the bundle's own encoders, so a
query's time includes tokenising / preprocessing, the ONNX encoder and the HNSW search.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.results import machine_info, markdown_table, now_iso, package_versions, write_json
from edgeret.data.timing import Stopwatch, percentiles, time_calls
from edgeret.data.wordnet import synsets
from edgeret.runtime.retriever import Retriever

from .ann_vectors import collection, random_centres, real_embeddings

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
from edgeret.bench.memory import peak_rss_mb  # VmHWM: ru_maxrss would report the parent's peak after fork+exec
print(json.dumps({"cold_start_ms": (t1 - t0) * 1e3, "items": len(r), "torch_imported": "torch" in sys.modules,
                  "peak_rss_mb": peak_rss_mb()}))
"""


@dataclass(frozen=True)
class RuntimeBenchOptions:
    """What one runtime benchmark measures (``edgeret runtime-bench``'s flags, typed)."""

    bundle: Path
    items: int = 100_000  #: index size
    queries: int = 200
    soak_items: int = 10_000
    out: Path = Path("bench/results")
    name: str = "runtime"  #: results file stem
    vectors: str = "real"  #: index content, a key of :data:`INDEX_VECTORS`
    cache_dir: Path = Path("artifacts/ann")  #: real embeddings cache
    cold_python: str | None = None  #: interpreter for the cold-start processes (e.g. a base-install venv)
    cold_repeats: int = 7  #: fresh processes per cold-start measure
    command: str = "edgeret runtime-bench"  #: the command line recorded in the results


def real_index_vectors(items: int, dim: int, bundle: Path, cache_dir: Path, seed: int = 0) -> np.ndarray:
    """The bundle's embeddings of every WordNet synset and OpenMoji emoji, then synthetic neighbours of them
    up to ``items`` (clustered like a real collection)."""
    base = real_embeddings(bundle, cache_dir)[:, :dim]
    vectors, n_real = collection(items, base, np.random.default_rng(seed))
    logger.info("index vectors: %d real embeddings + %d synthetic neighbours", n_real, items - n_real)
    return vectors


def random_index_vectors(items: int, dim: int, bundle: Path, cache_dir: Path, seed: int = 0) -> np.ndarray:
    """Uniform unit vectors (no structure: HNSW's worst case, slower to search than any real corpus)."""
    return random_centres(items, dim, np.random.default_rng(seed))


#: ``--vectors`` choice -> what the index holds
INDEX_VECTORS: dict[str, Callable[..., np.ndarray]] = {"real": real_index_vectors, "random": random_index_vectors}


def index_vectors(kind: str, items: int, dim: int, bundle: Path, cache_dir: Path, seed: int = 0) -> np.ndarray:
    """What the index holds: ``items`` vectors of ``dim`` of the :data:`INDEX_VECTORS` kind ``kind``."""
    if kind not in INDEX_VECTORS:
        raise ValueError(f"unknown index vectors {kind!r}; known: {tuple(INDEX_VECTORS)}")
    return INDEX_VECTORS[kind](items, dim, bundle, cache_dir, seed)


def fill_index(retriever: Retriever, vectors: np.ndarray, chunk: int = 20000) -> float:
    """Add ``vectors`` (ids ``item-N``); returns seconds."""
    watch = Stopwatch()
    for lo in range(0, len(vectors), chunk):
        block = vectors[lo : lo + chunk]
        retriever.add_embeddings([f"item-{lo + i}" for i in range(len(block))], block)
    return watch.seconds


def time_queries(retriever: Retriever, queries: list, kind: str, warmup: int = 10) -> dict[str, float]:
    """Per-query end-to-end latency (encode + search) for text or image queries."""
    samples = time_calls(lambda q: retriever.search(**{kind: q}, k=10), queries, warmup=warmup)
    stats = percentiles(samples)
    return {"p50_ms": stats["p50"], "p95_ms": stats["p95"], "n": len(samples)}


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


def soak(retriever: Retriever, texts: list[str], writers_items: int, searchers: int = 8) -> dict:
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
    watch = Stopwatch()
    try:
        for lo in range(0, writers_items, 256):
            batch = ids[lo : lo + 256]
            retriever.add_texts(batch, [f"{texts[(lo + j) % len(texts)]} #{lo + j}" for j in range(len(batch))])
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)
    seconds = watch.seconds
    stop.set()
    for t in threads:
        t.join()
    missing = [i for i in ids if i not in retriever]
    return {"searchers": searchers, "added": writers_items, "add_seconds": seconds, "searches": sum(searches),
            "errors": len(errors), "first_error": repr(errors[0]) if errors else None, "missing_ids": len(missing)}


def _queries(n: int, image_size: int) -> tuple[list[str], list]:
    texts = [s.gloss for s in synsets("test")[:n]]
    images = [render_emoji(e.text, image_size) for e in emojis("test")[: max(20, n // 4)]]
    return texts, images


def _measure(options: RuntimeBenchOptions, bundle: Path) -> dict:
    """Every measurement on ``bundle`` (a scratch copy of ``options.bundle``), in the results' key order."""
    measure_cold = functools.partial(cold_start, repeats=options.cold_repeats, python=options.cold_python)
    cold_empty = measure_cold(bundle, "size")  # before the large index exists
    retriever = Retriever.open(bundle, threads=1)
    texts, images = _queries(options.queries, 224)
    vectors = index_vectors(options.vectors, options.items, retriever.dim, options.bundle, options.cache_dir)
    build_s = fill_index(retriever, vectors)
    logger.info("index of %d built in %.1f s", options.items, build_s)
    text_lat = time_queries(retriever, texts, "text")
    image_lat = time_queries(retriever, images, "image") if retriever.image_encoder else None
    retriever.save()
    cold = {mode: measure_cold(bundle, mode) for mode in ("size", "True")}
    soak_result = soak(Retriever.open(bundle, threads=1, verify="size"), texts, options.soak_items)
    return {"dim": retriever.dim, "index_build_s": build_s, "text_query": text_lat, "image_query": image_lat,
            "cold_start": cold, "cold_start_empty_index": cold_empty, "soak": soak_result}


def run_runtime_bench(options: RuntimeBenchOptions) -> dict:
    """Run every measurement on a temporary copy of the bundle; write ``<name>.json`` / ``<name>.md`` into
    ``options.out``; returns the results (what the JSON holds)."""
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        shutil.copytree(options.bundle, bundle)
        measured = _measure(options, bundle)
    result = {
        "command": options.command, "created": now_iso(), "machine": machine_info([1]),
        "versions": package_versions(), "bundle": str(options.bundle), "items": options.items,
        "vectors": options.vectors, **measured, "cold_start_python": options.cold_python,
    }
    write_json(options.out / f"{options.name}.json", result)
    markdown = runtime_markdown(result)
    (options.out / f"{options.name}.md").write_text(markdown, encoding="utf-8")
    logger.info("wrote %s\n%s", options.out / f"{options.name}.json", markdown)
    return result


def _cold_text(result: dict) -> str:
    runs = result["cold_start_runs_ms"]
    return (f"{result['cold_start_ms']:.0f} ms median of {len(runs)} (min {runs[0]:.0f}, max {runs[-1]:.0f}), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB")


def _latency_text(latency: dict | None) -> str:
    return "–" if not latency else f"p50 {latency['p50_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms"


def runtime_markdown(result: dict) -> str:
    """``runtime.md``: the command and one table row per measure."""
    soak_result, items = result["soak"], result["items"]
    rows = [
        {"measure": "text query (tokenise+encode+search), 1 thread", "value": _latency_text(result["text_query"])},
        {"measure": "image query (preprocess+encode+search), 1 thread", "value": _latency_text(result["image_query"])},
        {"measure": f"index build ({items} x {result['dim']}, {result['vectors']} vectors, 1 thread)",
         "value": f"{result['index_build_s']:.1f} s"},
        {"measure": f"cold start, {result['cold_start_empty_index']['items']} items, verify=size",
         "value": _cold_text(result["cold_start_empty_index"])},
        *({"measure": f"cold start, {items} items, verify={m}", "value": _cold_text(c)}
          for m, c in result["cold_start"].items()),
        {"measure": "soak (8 searchers + 1 writer)", "value": f"{soak_result['errors']} errors, "
         f"{soak_result['missing_ids']} missing of {soak_result['added']}, {soak_result['searches']} searches"},
    ]
    return f"`{result['command']}`\n\n{markdown_table(rows, ['measure', 'value'])}\n"
