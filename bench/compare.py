"""The study behind ``edgeret bench``: teacher and student variants side by side — accuracy lost versus latency gained.

Accuracy (Recall@1/5/10, MRR@10, nDCG@10, teacher_overlap@10) on the held-out test splits for
text->image, image->text (OpenMoji) and text->text (WordNet), and on the style-shift set of the same test
emoji (styles training never used: text->image, image->text, and image->image from a styled render to the
clean one; :mod:`edgeret.data.style_shift`); cost per variant: single-query latency p50/p95 at 1 thread and
at all cores, model bytes, and, from a fresh process per variant, cold start, batch throughput, peak RSS and
index build time. Variants: the stand-in teacher in torch (its test embeddings from its cache when given),
exported to ONNX and that export quantised to INT8 (``teacher-onnx-int8``, the peer a user would pick on a
CPU), every bundle (through the torch-free runtime, as an app runs it) and its Matryoshka dims, a
sentence-transformers peer, and GME-2B's architecture with random weights (latency and memory only). Student
rows also carry ``fp32_overlap@10``: their top-10 overlap with ``student-fp32``'s.

:func:`run_bench` takes a :class:`BenchConfig` and writes ``summary.json`` (DESIGN.md's results contract),
``summary.md`` and ``pareto.png``; ``edgeret bench`` (:mod:`edgeret.cli.bench`) is its command line.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeret.data.catalog import load_eval
from edgeret.data.evalset import EvalSet
from edgeret.data.metrics import topk_overlap
from edgeret.data.results import machine_info, now_iso, package_versions, write_json
from edgeret.data.samples import real_images, real_texts
from edgeret.data.timing import Stopwatch
from edgeret.runtime.bundle import OPERATOR_CONFIG
from edgeret.runtime.retriever import Retriever

from .costs import FootprintInputs, cost_of, footprint, footprint_columns, latency_queries, measure_gme_arch
from .encoders import has_images, open_encoder
from .plots import pareto_plot
from .rows import (
    accuracy_rows,
    complete,
    dataset_of,
    embed_tasks,
    gme_rows,
    teacher_memo,
    truncated,
    with_cost,
)
from .tables import latency_ratios, speedups, summary_markdown
from .tasks import CLEAN_TASKS, NEEDS, TASK_SETS
from .teacher_onnx import build_teacher_bundle, build_teacher_int8_bundle

logger = logging.getLogger(__name__)

#: row order of the summary (bundles and their Matryoshka rows follow)
ORDER = ("teacher-torch", "teacher-onnx", "teacher-onnx-int8", "gme2b-arch", "peer-st-minilm")
#: the bundle other students' ``fp32_overlap@10`` is measured against
FP32_REFERENCE = "student-fp32"
#: the peer a student's speed-up is measured against (``speedup_vs_peer`` in summary.json)
PEER = "teacher-onnx-int8"
NOTES = [
    "query_ms_*: one query at a time (text: WordNet val glosses, 40 x 3; image: rendered val emoji, 15 x 3) after a "
    "warm-up, in the bench process; `1t` = 1 intra-op thread, `all` = all cores. Bundles run through the runtime "
    "(tokenise/preprocess + ONNX + normalise), torch rows through their own Python API.",
    "cold_start_ms, *_batch64_items_per_s, peak_rss_mb, index_build_s: each variant in a fresh process "
    "(`python -m edgeret.bench.footprint`), all cores. Cold start = import + open + first text query "
    "(interpreter start-up excluded, OS file cache warm; a bundle's image session is created on its first image, "
    "as the runtime does). "
    "Then one image query; peak_rss_mb = peak RSS (VmHWM) at that point (serving one query at a time). Throughput = "
    "median of 3 batches of 64 val glosses / 64 rendered val emoji PNG files; peak_rss_batch_mb = VmHWM after "
    "them (before any index is built). Index build = embed the task's test corpus and insert "
    "it into a fresh HNSW index (M=16, ef_construction=200).",
    "variant@dim rows: the bundle's own embeddings truncated to a Matryoshka prefix and renormalised (what "
    "`Retriever.open(dim=...)` does); their cost columns are those of the full-dim variant named in `cost_of` "
    "(the encoders are the same; truncation costs microseconds).",
    "gme2b-arch: Qwen2-VL-2B (GME-2B) architecture with random weights in a separate process "
    "(`python -m edgeret.bench.gme_arch`); see its note column for dtype, token counts and repeats; accuracy is null.",
    "peer-st-minilm: sentence-transformers on torch with all-MiniLM-L6-v2, text->text only.",
    "teacher-onnx-int8: teacher-onnx quantised with the student's tools (edgeret.compress.quantize): text tower "
    "dynamic INT8 (uint8 per-channel MatMul weights and embedding table, run from its .ort twin as the student's), "
    "image tower static QDQ INT8 calibrated on the student's 64 train renders, stem and blocks 0-3 float as in the "
    "student; run through the runtime like the students.",
    "t2i-style / i2t-style / i2i: the test emoji, each in one of six styles training never used (grayscale, outline "
    "only, recoloured, low resolution, JPEG artefacts, busy background; edgeret.data.style_shift); i2i = a styled "
    "render finds its emoji's clean render among the test split's clean renders. `by_style` in summary.json splits "
    "their Recall@10 per style.",
    "fp32_overlap@10: a student variant's top-10 overlap with student-fp32's on the same queries (INT8/INT4/pruned "
    "agreement with fp32).",
]


@dataclass(frozen=True)
class BenchConfig:
    """What one bench run measures (``edgeret bench``'s flags, typed) and where its results go."""

    head_path: Path  #: the stand-in teacher's fitted image head
    teacher_cache: tuple[Path, ...] = ()  #: teacher caches whose test embeddings the teacher row reuses
    bundles: tuple[tuple[str, str], ...] = ()  #: (row name, bundle folder), measured in this order
    teacher_onnx: Path | None = None  #: add teacher-onnx: its bundle is exported here once and reused
    #: with teacher_onnx: add teacher-onnx-int8, quantised once into ``<teacher_onnx>-int8`` and reused
    teacher_int8: bool = True
    peer: bool = False  #: add peer-st-minilm (text->text)
    gme_arch: bool = False  #: add gme2b-arch (a few minutes, ~10 GB)
    gme_dtype: str = "float32"
    gme_repeats: tuple[int, int] = (5, 2)  #: timed gme2b-arch runs (text, image) per thread count
    matryoshka: bool = True  #: the variant@dim rows
    footprint: bool = True  #: the fresh-process cost columns
    out: Path = Path("bench/results")
    command: str = "edgeret bench"  #: the command line recorded in summary.json


@dataclass
class Context:
    """What every variant is measured on."""

    config: BenchConfig
    evalsets: dict[str, EvalSet]
    texts: list[str]
    images: list
    inputs: FootprintInputs
    reference: dict[str, Any] = field(default_factory=dict)  #: the teacher's top-10 per task
    fp32: dict[str, Any] = field(default_factory=dict)  #: student-fp32's top-10 per task

    def footprint(self, kind: str, path: str | None) -> dict | None:
        """The fresh-process footprint of a variant, unless the config turns it off."""
        return footprint(self.inputs, kind, path) if self.config.footprint else None


def _teacher_bytes(teacher: Any) -> int:
    params = [*teacher.text_model.parameters(), *teacher.image_model.parameters()]
    return int(sum(p.numel() * p.element_size() for p in params)) + teacher.head_path.stat().st_size


def _finish(rows: list[dict], cost: dict, extra: dict, foot: dict | None) -> list[dict]:
    return [complete({**with_cost(row, cost), **extra, **(footprint_columns(foot, row["task"]) if foot else {})})
            for row in rows]


def measure_teacher(teacher: Any, ctx: Context) -> list[dict]:
    """teacher-torch rows; sets ``ctx.reference`` (the teacher's top-10 per task)."""
    caches = ctx.config.teacher_cache
    memo = teacher_memo(list(caches)) if caches else {}
    rows, ctx.reference = accuracy_rows("teacher-torch", embed_tasks(teacher, ctx.evalsets, memo), ctx.evalsets, None)
    cost = cost_of(lambda n: open_encoder("teacher-torch", None, n, cached=teacher), ctx.texts, ctx.images)
    foot = ctx.footprint("teacher-torch", str(ctx.config.head_path))
    modules = (teacher.text_model, teacher.image_model)
    params = sum(p.numel() for m in modules for p in m.parameters())
    params += teacher.head_weight.numel() + teacher.head_bias.numel()
    extra = {"model_bytes": _teacher_bytes(teacher), "params": params,
             "note": "test embeddings from the teacher cache" if memo else None}
    return _finish(rows, cost, extra, foot)


def shipped_bytes(retriever: Retriever) -> int:
    """Bytes of the bundle as the runtime uses it: every file except the tower twins it did not load
    (``.onnx`` vs ``.ort``) and the operator list for minimal builds (a build-time file)."""
    manifest = retriever.manifest
    encoders = [e for e in (retriever.text_encoder, retriever.image_encoder) if e is not None]
    loaded = {e.model_file for e in encoders}
    towers = {spec[key] for spec in (manifest.text, manifest.image) if spec for key in ("file", "ort_file")
              if spec.get(key)}
    skip = (towers - loaded) | {OPERATOR_CONFIG}
    return sum(entry["bytes"] for name, entry in manifest.data["files"].items() if name not in skip)


def _tasks_for(retriever: Retriever, evalsets: dict[str, EvalSet]) -> dict[str, EvalSet]:
    """The tasks a bundle's towers can run."""
    towers = {t for t, e in (("text", retriever.text_encoder), ("image", has_images(retriever))) if e}
    return {task: e for task, e in evalsets.items() if set(NEEDS.get(task, ("text", "image"))) <= towers}


def _fp32_overlap(rows: list[dict], ranked: dict[str, Any], ctx: Context) -> None:
    """Add ``fp32_overlap@10`` (top-10 overlap with student-fp32's) to a student's rows."""
    for row in rows:
        if row["task"] in ctx.fp32 and row["task"] in ranked:
            row["fp32_overlap@10"] = topk_overlap(ranked[row["task"]], ctx.fp32[row["task"]], k=10)


def measure_bundle(name: str, path: str, ctx: Context, note: str | None = None) -> list[dict]:
    """Rows of one bundle through the runtime, plus its Matryoshka rows."""
    retriever = open_encoder("bundle", path, threads=None)
    evalsets = _tasks_for(retriever, ctx.evalsets)
    embeddings = embed_tasks(retriever, evalsets)
    rows, ranked = accuracy_rows(name, embeddings, evalsets, ctx.reference)
    if name == FP32_REFERENCE:
        ctx.fp32 = ranked
    elif name.startswith("student"):
        _fp32_overlap(rows, ranked, ctx)
    images = ctx.images if has_images(retriever) else None
    cost = cost_of(lambda n: open_encoder("bundle", path, n), ctx.texts, images)
    foot = ctx.footprint("bundle", path)
    extra = {"model_bytes": shipped_bytes(retriever), "note": note}
    out = _finish(rows, cost, extra, foot)
    full = retriever.manifest.dim
    dims = [d for d in retriever.manifest.matryoshka_dims if d < full] if ctx.config.matryoshka else []
    for dim in dims:
        sub, _ = accuracy_rows(f"{name}@{dim}", truncated(embeddings, dim), evalsets, ctx.reference)
        out += _finish(sub, cost, {**extra, "cost_of": name}, foot)
    return out


def measure_peer(ctx: Context) -> list[dict]:
    """peer-st-minilm: sentence-transformers all-MiniLM-L6-v2 on torch, text->text only."""
    peer = open_encoder("peer-st", None)
    evalsets = {"t2t": ctx.evalsets["t2t"]}
    rows, _ = accuracy_rows("peer-st-minilm", embed_tasks(peer, evalsets), evalsets, ctx.reference)
    cost = cost_of(lambda n: open_encoder("peer-st", None, n, cached=peer), ctx.texts, None)
    foot = ctx.footprint("peer-st", None)
    params = sum(p.numel() for p in peer.model.parameters())
    return _finish(rows, cost, {"model_bytes": params * 4, "params": params}, foot)


def measure_teacher_onnx(teacher: Any, ctx: Context) -> list[dict]:
    """teacher-onnx: export (or reuse) the teacher's fp32 ONNX bundle, check parity, measure it as a bundle."""
    texts = real_texts(64) + [" ".join(["long"] * 400)]
    out = ctx.config.teacher_onnx
    info = build_teacher_bundle(teacher, out, texts, real_images(16))
    parity = info["parity"]
    note = (f"fp32 ONNX of the stand-in teacher; parity vs torch: min cosine text {parity['text']['min_cosine']:.7f}, "
            f"image {parity['image']['min_cosine']:.7f}")
    return measure_bundle("teacher-onnx", str(out), ctx, note=note)


def int8_path(teacher_onnx: Path) -> Path:
    """Where teacher-onnx-int8's bundle is kept: beside teacher-onnx's."""
    return teacher_onnx.with_name(teacher_onnx.name + "-int8")


def measure_teacher_onnx_int8(ctx: Context) -> list[dict]:
    """teacher-onnx-int8: quantise (or reuse) the teacher's ONNX bundle with the student's INT8 tools, measure it."""
    out = int8_path(ctx.config.teacher_onnx)
    build_teacher_int8_bundle(ctx.config.teacher_onnx, out)
    note = ("teacher-onnx quantised as the student: text dynamic INT8 (.ort twin), image static QDQ INT8 on the "
            "student's calibration renders, stem and blocks 0-3 float")
    return measure_bundle("teacher-onnx-int8", str(out), ctx, note=note)


def _measure_variants(config: BenchConfig, evalsets: dict[str, EvalSet]) -> list[dict]:
    """Every in-process variant (teacher, teacher-onnx, peer, bundles) on one set of inputs."""
    texts, images = latency_queries()
    with tempfile.TemporaryDirectory(prefix="edgeret-bench-") as tmp:
        clean = {task: evalsets[task] for task in CLEAN_TASKS if task in evalsets}  # index builds: clean corpora
        ctx = Context(config, evalsets, texts, images, FootprintInputs(Path(tmp), clean))
        teacher = open_encoder("teacher-torch", str(config.head_path))
        rows = _timed("teacher-torch", lambda t=teacher: measure_teacher(t, ctx))
        if config.teacher_onnx:
            rows += _timed("teacher-onnx", lambda t=teacher: measure_teacher_onnx(t, ctx))
        del teacher
        if config.teacher_onnx and config.teacher_int8:
            rows += _timed("teacher-onnx-int8", lambda: measure_teacher_onnx_int8(ctx))
        if config.peer:
            rows += _timed("peer-st-minilm", lambda: measure_peer(ctx))
        for name, path in config.bundles:
            rows += _timed(name, lambda n=name, p=path: measure_bundle(n, p, ctx))
    return rows


def run_bench(config: BenchConfig) -> dict:
    """Measure every variant ``config`` asks for; write summary.json / summary.md / pareto.png; returns the
    summary (what summary.json holds)."""
    evalsets = {task: load_eval(name) for task, name in TASK_SETS.items()}
    rows = _measure_variants(config, evalsets)
    if config.gme_arch:
        result = _timed("gme2b-arch", lambda: measure_gme_arch(config.gme_dtype, *config.gme_repeats))
        rows += gme_rows(result, {task: dataset_of(evalset) for task, evalset in evalsets.items()})
    rows.sort(key=lambda r: ORDER.index(r["variant"]) if r["variant"] in ORDER else len(ORDER))
    return write_results(rows, config.command, config.out)


def _timed(name: str, fn: Callable[[], Any]) -> Any:
    watch = Stopwatch()
    result = fn()
    logger.info("%s measured in %.0f s", name, watch.seconds)
    return result


def write_results(rows: list[dict], command: str, out: Path) -> dict:
    """summary.json in the DESIGN.md contract (plus latency ratios and notes), summary.md and the Pareto plot.

    ``command`` is the command line that produced the run (e.g. ``invocation("edgeret bench", argv)``).
    """
    threads = sorted({1, os.cpu_count() or 1})
    summary = {
        "command": command, "created": now_iso(), "machine": machine_info(threads),
        "versions": package_versions(("edgeret", "numpy", "onnxruntime", "torch", "transformers",
                                      "sentence-transformers", "hnswlib")),
        "rows": rows, "latency_ratios": latency_ratios(rows), "speedup_vs_peer": {"peer": PEER, **speedups(rows, PEER)},
        "notes": NOTES,
    }
    write_json(out / "summary.json", summary)
    markdown = summary_markdown(summary)
    (out / "summary.md").write_text(markdown, encoding="utf-8")
    pareto_plot(rows, out / "pareto.png")
    logger.info("wrote %s, summary.md, pareto.png\n%s", out / "summary.json", markdown)
    return summary
