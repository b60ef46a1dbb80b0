"""One variant's footprint, measured in a fresh process: ``python -m edgeret.bench.footprint SPEC.json``.

In this order, all cores:

1. cold start: import + open + the first text query, timed from the top of this module (interpreter
   start-up excluded; OS file cache warm, as after any earlier run); then one image query;
2. batch throughput: one text batch of 64 and one image batch of 64 (files decoded by the encoder),
   median of 3 runs after one warm-up run, in items/s;
3. peak RSS (:func:`peak_rss_mb`, ``VmHWM``) of the process: after cold start and one image query (``peak_rss_mb``:
   serving one query at a time) and again after the batches (``peak_rss_batch_mb``), free of the
   bench's own data and of every other variant;
4. index build per test corpus: embed the corpus and insert it into a fresh HNSW index (the runtime's
   ``VectorIndex``, M=16, ef_construction=200), in seconds.

The spec (written by :func:`bench.costs.footprint`) names the variant (``kind``, ``path``, ``dim``), the
first query, the batch inputs and the corpora. One JSON line goes to stdout.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import json  # noqa: E402 - after the cold-start clock
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BATCH = 64


def peak_rss_mb() -> float:
    """Peak RSS of this process image in MB: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``ru_maxrss`` survives ``exec``: a child started by a big process reports the parent's peak if it
    stays below it. ``VmHWM`` belongs to the process's current address space, so it starts afresh.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def _items_per_s(fn: Any, n: int, runs: int = 3) -> float:
    fn()  # warm-up (allocations, kernel choice)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / sorted(times)[len(times) // 2]


def _index_build(encoder: Any, corpus: dict[str, Any]) -> float:
    """Seconds to embed ``corpus`` and insert it into a fresh HNSW index."""
    from edgeret.runtime.bundle import INDEX_DEFAULTS
    from edgeret.runtime.index import VectorIndex

    start = time.perf_counter()
    items = corpus["items"]
    emb = encoder.embed_images(items) if corpus["kind"] == "image" else encoder.embed_texts(items)
    index = VectorIndex(emb.shape[1], space="cosine", M=INDEX_DEFAULTS["M"],
                        ef_construction=INDEX_DEFAULTS["ef_construction"])
    index.add([f"item-{i}" for i in range(len(items))], emb)
    return time.perf_counter() - start


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Cold start, throughput, peak RSS and index builds of the variant in ``spec``."""
    from .encoders import has_images, open_encoder

    encoder = open_encoder(spec["kind"], spec.get("path"), threads=None, dim=spec.get("dim"))
    encoder.embed_texts([spec["first_query"]])
    result: dict[str, Any] = {"cold_start_ms": (time.perf_counter() - _T0) * 1e3}
    images = has_images(encoder) and spec.get("images")
    if images:
        encoder.embed_images(images[:1])
    result["peak_rss_mb"] = peak_rss_mb()  # serving single queries
    texts = json.loads(Path(spec["texts"]).read_text(encoding="utf-8"))[:BATCH]
    result["text_batch64_items_per_s"] = _items_per_s(lambda: encoder.embed_texts(texts, batch_size=BATCH), len(texts))
    if images:
        paths = images[:BATCH]
        result["image_batch64_items_per_s"] = _items_per_s(
            lambda: encoder.embed_images(paths, batch_size=BATCH), len(paths))
    result["peak_rss_batch_mb"] = peak_rss_mb()
    result["torch_imported"] = "torch" in sys.modules
    builds = {}
    for task, corpus in spec.get("corpora", {}).items():
        if corpus["kind"] == "image" and not images:
            continue
        builds[task] = {"seconds": _index_build(encoder, corpus), "items": len(corpus["items"])}
    result["index_build"] = builds
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result = measure(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
