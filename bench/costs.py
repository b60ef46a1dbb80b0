"""Cost columns of a bench variant: per-query latency (in the bench process) and the footprint
(cold start, batch throughput, peak RSS, index build; in a fresh process, see :mod:`bench.footprint`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: task -> what its corpus holds (index build is timed on each task's test corpus)
CORPUS_KIND = {"t2i": "image", "i2t": "text", "t2t": "text"}


def time_per_query(fn: Callable[[Any], Any], queries: list, repeats: int = 3, warmup: int = 5) -> dict[str, float]:
    """p50/p95 milliseconds of ``fn(query)`` over ``queries`` x ``repeats`` after a warm-up."""
    for q in queries[:warmup]:
        fn(q)
    samples = []
    for _ in range(repeats):
        for q in queries:
            start = time.perf_counter()
            fn(q)
            samples.append((time.perf_counter() - start) * 1e3)
    return {"p50": float(np.percentile(samples, 50)), "p95": float(np.percentile(samples, 95))}


def latency_queries(n_text: int = 40, n_image: int = 15) -> tuple[list[str], list]:
    """Real single queries: WordNet glosses and rendered emoji (val split, not the scored test)."""
    from edgeret.data.openmoji import emojis
    from edgeret.data.render import render_emoji
    from edgeret.data.wordnet import synsets

    return [s.gloss for s in synsets("val")[:n_text]], [render_emoji(e.text) for e in emojis("val")[:n_image]]


def cost_of(encoder_at: Callable[[int], Any], texts: list[str], images: list | None) -> dict[str, float]:
    """Single-query text (and image, unless ``images`` is None) latency at 1 thread and at all cores.

    ``encoder_at(threads)`` returns the encoder set up to use that many threads.
    """
    cost: dict[str, float] = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        encoder = encoder_at(threads)
        suffix = "1t" if threads == 1 else "all"
        text = time_per_query(lambda q, e=encoder: e.embed_texts([q]), texts)
        cost.update({f"text_query_ms_p50_{suffix}": text["p50"], f"text_query_ms_p95_{suffix}": text["p95"]})
        if images is not None:
            image = time_per_query(lambda q, e=encoder: e.embed_images([q]), images)
            cost.update({f"image_query_ms_p50_{suffix}": image["p50"], f"image_query_ms_p95_{suffix}": image["p95"]})
    encoder_at(1)
    return cost


class FootprintInputs:
    """Files a footprint process reads: 64 batch texts + 64 batch images, and the test corpora per task."""

    def __init__(self, root: Path, evalsets: dict[str, Any], batch: int = 64) -> None:
        from edgeret.data.openmoji import emojis
        from edgeret.data.render import render_emoji
        from edgeret.data.wordnet import synsets

        self.root = root
        images = root / "images"
        images.mkdir(parents=True, exist_ok=True)
        self.texts = root / "texts.json"
        self.texts.write_text(json.dumps([s.gloss for s in synsets("val")[:batch]]), encoding="utf-8")
        self.images = []
        for i, e in enumerate(emojis("val")[:batch]):
            self.images.append(str(images / f"batch-{i}.png"))
            render_emoji(e.text).save(self.images[-1])
        self.corpora = {task: self._corpus(task, evalset) for task, evalset in evalsets.items()}

    def _corpus(self, task: str, evalset: Any) -> dict[str, Any]:
        if CORPUS_KIND[task] == "text":
            return {"kind": "text", "items": [item.load() for item in evalset.corpus]}
        folder = self.root / f"corpus-{task}"
        folder.mkdir(exist_ok=True)
        paths = []
        for i, item in enumerate(evalset.corpus):
            paths.append(str(folder / f"{i}.png"))
            item.load().save(paths[-1])
        return {"kind": "image", "items": paths}

    def spec(self, kind: str, path: str | None, dim: int | None = None) -> dict[str, Any]:
        return {"kind": kind, "path": path, "dim": dim, "first_query": "a small yellow fruit",
                "texts": str(self.texts), "images": self.images, "corpora": self.corpora}


def footprint(inputs: FootprintInputs, kind: str, path: str | None, timeout: float = 1800) -> dict[str, Any]:
    """Run :mod:`bench.footprint` for one variant in a fresh process; returns its JSON result."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=inputs.root, delete=False) as handle:
        json.dump(inputs.spec(kind, path), handle)
    cmd = [sys.executable, "-m", "edgeret.bench.footprint", handle.name]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent.parent)
    if out.returncode != 0:
        raise RuntimeError(f"footprint of {kind} {path} failed ({out.returncode}): {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    logger.info("footprint of %s: cold start %.0f ms, peak RSS %.0f MB", path or kind, result["cold_start_ms"],
                result["peak_rss_mb"])
    return result


def footprint_columns(result: dict[str, Any], task: str) -> dict[str, Any]:
    """The row columns of one task from a footprint result."""
    build = result.get("index_build", {}).get(task) or {}
    return {"cold_start_ms": result.get("cold_start_ms"), "peak_rss_mb": result.get("peak_rss_mb"),
            "peak_rss_batch_mb": result.get("peak_rss_batch_mb"),
            "text_batch64_items_per_s": result.get("text_batch64_items_per_s"),
            "image_batch64_items_per_s": result.get("image_batch64_items_per_s"),
            "index_build_s": build.get("seconds"), "index_items": build.get("items")}
