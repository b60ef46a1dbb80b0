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

The spec (written by :func:`edgeret.bench.costs.footprint`) names the variant (``kind``, ``path``, ``dim``), the
first query, the batch inputs and the corpora. One JSON line goes to stdout.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import json  # noqa: E402 - after the cold-start clock
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from edgeret.data.timing import Stopwatch, percentiles, time_calls  # noqa: E402

from .encoders import has_images, open_encoder  # noqa: E402
from .memory import peak_rss_mb  # noqa: E402

BATCH = 64
#: corpus kind -> the encoder method that embeds it
EMBED = {"text": "embed_texts", "image": "embed_images"}


def _items_per_s(fn: Any, n: int, runs: int = 3) -> float:
    """Items per second of ``fn()`` (``n`` items): the median of ``runs`` timed calls after one warm-up."""
    median_ms = percentiles(time_calls(fn, 1, repeats=runs, warmup=1), points=(50,))["p50"]
    return n / (median_ms / 1e3)


def _index_build(encoder: Any, corpus: dict[str, Any]) -> float:
    """Seconds to embed ``corpus`` and insert it into a fresh HNSW index."""
    # lazy: after the cold-start measure (hnswlib is no part of a torch variant's start-up)
    from edgeret.runtime.bundle import INDEX_DEFAULTS
    from edgeret.runtime.index import VectorIndex  # lazy: as above

    watch = Stopwatch()
    items = corpus["items"]
    emb = getattr(encoder, EMBED[corpus["kind"]])(items)
    index = VectorIndex(emb.shape[1], space="cosine", M=INDEX_DEFAULTS["M"],
                        ef_construction=INDEX_DEFAULTS["ef_construction"])
    index.add([f"item-{i}" for i in range(len(items))], emb)
    return watch.seconds


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Cold start, throughput, peak RSS and index builds of the variant in ``spec``."""
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
    """``python -m edgeret.bench.footprint SPEC.json``: measure, print one JSON line, return the result."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result = measure(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
