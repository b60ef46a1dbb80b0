"""Cost columns of a bench variant: per-query latency (in the bench process) and the footprint
(cold start, batch throughput, peak RSS, index build; in a fresh process, see :mod:`edgeret.bench.footprint`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeret.data.evalset import EvalSet
from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.timing import percentiles, time_calls
from edgeret.data.wordnet import synsets

from .tasks import CORPUS_KIND

logger = logging.getLogger(__name__)


def time_per_query(fn: Callable[[Any], Any], queries: list, repeats: int = 3, warmup: int = 5) -> dict[str, float]:
    """p50/p95 milliseconds of ``fn(query)`` over ``queries`` x ``repeats`` after a warm-up."""
    return percentiles(time_calls(fn, queries, repeats=repeats, warmup=warmup))


def latency_queries(n_text: int = 40, n_image: int = 15) -> tuple[list[str], list]:
    """Real single queries: WordNet glosses and rendered emoji (val split, not the scored test)."""
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


def _text_corpus(folder: Path, evalset: EvalSet) -> list[str]:
    """A text corpus goes into the spec itself."""
    return [item.load() for item in evalset.corpus]


def _image_corpus(folder: Path, evalset: EvalSet) -> list[str]:
    """An image corpus is written to ``folder`` as PNG files (the encoder decodes them)."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i, item in enumerate(evalset.corpus):
        paths.append(str(folder / f"{i}.png"))
        item.load().save(paths[-1])
    return paths


#: corpus kind -> how a footprint process gets that corpus
CORPUS_WRITERS: dict[str, Callable[[Path, EvalSet], list[str]]] = {"text": _text_corpus, "image": _image_corpus}


class FootprintInputs:
    """Files a footprint process reads: 64 batch texts + 64 batch images, and the test corpora per task."""

    def __init__(self, root: Path, evalsets: dict[str, EvalSet], batch: int = 64) -> None:
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

    def _corpus(self, task: str, evalset: EvalSet) -> dict[str, Any]:
        kind = CORPUS_KIND[task]
        return {"kind": kind, "items": CORPUS_WRITERS[kind](self.root / f"corpus-{task}", evalset)}

    def spec(self, kind: str, path: str | None, dim: int | None = None) -> dict[str, Any]:
        """The JSON spec of one footprint process: the variant and every input file."""
        return {"kind": kind, "path": path, "dim": dim, "first_query": "a small yellow fruit",
                "texts": str(self.texts), "images": self.images, "corpora": self.corpora}


def json_process(module: str, args: list[str], what: str, timeout: float, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``python -m module *args`` in a fresh process; its last stdout line is the JSON result."""
    cmd = [sys.executable, "-m", module, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def footprint(inputs: FootprintInputs, kind: str, path: str | None, timeout: float = 1800) -> dict[str, Any]:
    """Run :mod:`edgeret.bench.footprint` for one variant in a fresh process; returns its JSON result."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=inputs.root, delete=False) as handle:
        json.dump(inputs.spec(kind, path), handle)
    result = json_process("edgeret.bench.footprint", [handle.name], f"footprint of {kind} {path}", timeout,
                          cwd=Path(__file__).parent.parent)
    logger.info("footprint of %s: cold start %.0f ms, peak RSS %.0f MB", path or kind, result["cold_start_ms"],
                result["peak_rss_mb"])
    return result


def measure_gme_arch(dtype: str = "float32", text_repeats: int = 5, image_repeats: int = 2,
                     timeout: float = 1800) -> dict[str, Any]:
    """:func:`edgeret.bench.gme_arch.measure` of GME-2B in a fresh Python process (its ~9 GB stay out of
    this one); returns its JSON result."""
    args = ["--dtype", dtype, "--text-repeats", str(text_repeats), "--image-repeats", str(image_repeats)]
    logger.info("gme2b-arch: %s", " ".join([sys.executable, "-m", "edgeret.bench.gme_arch", *args]))
    return json_process("edgeret.bench.gme_arch", args, "gme2b-arch subprocess", timeout)


def footprint_columns(result: dict[str, Any], task: str) -> dict[str, Any]:
    """The row columns of one task from a footprint result."""
    build = result.get("index_build", {}).get(task) or {}
    return {"cold_start_ms": result.get("cold_start_ms"), "peak_rss_mb": result.get("peak_rss_mb"),
            "peak_rss_batch_mb": result.get("peak_rss_batch_mb"),
            "text_batch64_items_per_s": result.get("text_batch64_items_per_s"),
            "image_batch64_items_per_s": result.get("image_batch64_items_per_s"),
            "index_build_s": build.get("seconds"), "index_items": build.get("items")}
