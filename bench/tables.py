"""Markdown of ``summary.md``: an overview line per variant, accuracy and cost per task, retention of the teacher's
Recall@10 (test splits and style shift), agreement with fp32, speed-ups over the INT8 teacher, latency ratios."""

from __future__ import annotations

from typing import Any

from edgeret.data.results import markdown_table
from edgeret.data.style_shift import STYLES

from .tasks import CLEAN_TASKS, STYLE_TASKS

REFERENCE = "student-int8"
RATIO_OF = ("teacher-torch", "teacher-onnx", "teacher-onnx-int8", "gme2b-arch", "peer-st-minilm")
TEACHER = "teacher-torch"
#: variant -> the variant its Recall@10 is also compared with (pruning must keep 97% of the unpruned model's)
UNPRUNED = {"student-pruned": "student-fp32", "student-pruned-int8": "student-int8"}
LATENCY_KEYS = ("text_query_ms_p50_1t", "image_query_ms_p50_1t", "text_query_ms_p50_all", "image_query_ms_p50_all")


def _by_variant(rows: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for row in rows:
        out.setdefault(row["variant"], {})[row["task"]] = row
    return out


def _first(tasks: dict[str, dict], key: str) -> Any:
    return next((r[key] for r in tasks.values() if r.get(key) is not None), None)


def _mb(value: Any) -> Any:
    return None if value is None else _num(value / 1e6)


def _num(value: Any) -> Any:
    """A readable number: 3 decimals below 1, then fewer as the value grows; thousands separated."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    for limit, spec in ((1, ".3f"), (10, ".2f"), (100, ".1f")):
        if abs(value) < limit:
            return format(value, spec)
    return format(value, ",.0f")


def overview(rows: list[dict]) -> list[dict]:
    """One line per variant: Recall@10 per task, latencies, throughput, size, memory, cold start."""
    lines = []
    for variant, tasks in _by_variant(rows).items():
        text = tasks.get("t2t") or tasks.get("t2i") or {}
        image = tasks.get("i2t") or {}
        lines.append({
            "variant": variant, "dim": _first(tasks, "dim"),
            **{f"R@10 {t}": tasks.get(t, {}).get("recall@10") for t in (*CLEAN_TASKS, *STYLE_TASKS)},
            "text ms 1t": text.get("text_query_ms_p50_1t"), "image ms 1t": image.get("image_query_ms_p50_1t"),
            "text ms all": text.get("text_query_ms_p50_all"), "image ms all": image.get("image_query_ms_p50_all"),
            "texts/s (64)": _first(tasks, "text_batch64_items_per_s"),
            "images/s (64)": _first(tasks, "image_batch64_items_per_s"),
            "model MB": _mb(_first(tasks, "model_bytes")), "peak RSS MB": _first(tasks, "peak_rss_mb"),
            "peak RSS MB (batch 64)": _first(tasks, "peak_rss_batch_mb"),
            "cold start ms": _first(tasks, "cold_start_ms"),
        })
    return [{k: v if k == "variant" else _num(v) for k, v in line.items()} for line in lines]


def latency_ratios(rows: list[dict], reference: str = REFERENCE) -> dict[str, dict[str, float | None]]:
    """p50 latency of each reference-point variant divided by ``reference``'s, per modality and threads."""
    variants = _by_variant(rows)
    if reference not in variants:
        return {}
    ref = variants[reference]
    out = {}
    for variant in RATIO_OF:
        if variant not in variants:
            continue
        ratios = {}
        for key in ("text_query_ms_p50_1t", "image_query_ms_p50_1t", "text_query_ms_p50_all", "image_query_ms_p50_all"):
            mine, theirs = _first(variants[variant], key), _first(ref, key)
            ratios[key] = None if mine is None or not theirs else mine / theirs
        out[variant] = ratios
    return out


def _students(rows: list[dict]) -> list[str]:
    """Full-dim student variants, in row order."""
    return [v for v in _by_variant(rows) if v.startswith("student") and "@" not in v]


def speedups(rows: list[dict], peer: str) -> dict[str, dict[str, float | None]]:
    """How many times faster each full-dim student variant is than ``peer`` (p50 latency, per modality/threads)."""
    variants = _by_variant(rows)
    if peer not in variants:
        return {}
    out = {}
    for variant in _students(rows):
        ratios = {}
        for key in LATENCY_KEYS:
            mine, theirs = _first(variants[variant], key), _first(variants[peer], key)
            ratios[key] = None if not mine or theirs is None else theirs / mine
        out[variant] = ratios
    return out


def _pct(value: float | None, of: float | None) -> str | None:
    return None if value is None or not of else f"{100 * value / of:.0f}%"


def retention(rows: list[dict]) -> list[dict]:
    """Per variant (full dim, not the teacher's): Recall@10 as a share of the teacher's, per task; pruned
    variants also as a share of their unpruned model's (``/ unpruned``)."""
    variants = _by_variant(rows)
    teacher = variants.get(TEACHER, {})
    tasks = [t for t in (*CLEAN_TASKS, *STYLE_TASKS) if t in teacher]
    lines = []
    for variant, by_task in variants.items():
        if variant == TEACHER or "@" in variant or variant == "gme2b-arch":
            continue
        line: dict[str, Any] = {"variant": variant, "of": "teacher"}
        line.update({t: _pct(by_task.get(t, {}).get("recall@10"), teacher[t].get("recall@10")) for t in tasks})
        lines.append(line)
        base = variants.get(UNPRUNED.get(variant, ""))
        if base:
            line = {"variant": variant, "of": UNPRUNED[variant]}
            line.update({t: _pct(by_task.get(t, {}).get("recall@10"), base.get(t, {}).get("recall@10")) for t in tasks})
            lines.append(line)
    return lines


def agreement_lines(rows: list[dict]) -> list[dict]:
    """Per student variant with ``fp32_overlap@10``: its top-10 overlap with student-fp32's, per task."""
    lines = []
    for variant, by_task in _by_variant(rows).items():
        if "@" in variant or not any("fp32_overlap@10" in r for r in by_task.values()):
            continue
        lines.append({"variant": variant, **{t: _num(r.get("fp32_overlap@10")) for t, r in by_task.items()}})
    return lines


def style_lines(rows: list[dict], task: str = "i2i") -> list[dict]:
    """Recall@10 per style of ``task`` for every full-dim variant that has it."""
    lines = []
    for variant, by_task in _by_variant(rows).items():
        styles = by_task.get(task, {}).get("by_style")
        if styles and "@" not in variant:
            lines.append({"variant": variant, **{s: _num(styles.get(s)) for s in STYLES}})
    return lines


def _ratio_lines(ratios: dict[str, dict[str, float | None]], reference: str, suffix: str = "/") -> list[dict]:
    def fmt(value: float | None) -> str | None:
        return None if value is None else f"{value:,.1f}x"

    return [{"variant": v, f"text 1t {suffix} {reference}": fmt(r["text_query_ms_p50_1t"]),
             f"image 1t {suffix} {reference}": fmt(r["image_query_ms_p50_1t"]),
             f"text all {suffix} {reference}": fmt(r["text_query_ms_p50_all"]),
             f"image all {suffix} {reference}": fmt(r["image_query_ms_p50_all"])} for v, r in ratios.items()]


def summary_markdown(summary: dict[str, Any]) -> str:
    """The whole ``summary.md``: command, machine, the tables and how each cost column was measured."""
    rows = summary["rows"]
    machine = summary["machine"]
    accuracy_cols = ["variant", "task", "dim", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10",
                     "teacher_overlap@10", "query_ms_p50_1t", "query_ms_p95_1t", "query_ms_p50_all", "index_build_s",
                     "index_items"]
    ratios = summary.get("latency_ratios", {})
    speed = {k: v for k, v in summary.get("speedup_vs_peer", {}).items() if k != "peer"}
    peer = summary.get("speedup_vs_peer", {}).get("peer")
    parts = [
        f"`{summary['command']}`", "",
        f"{summary['created']} · {machine['cpu']}, {machine['cores']} cores · threads {machine['threads_used']} · "
        + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v), "",
        "## Overview (one line per variant)", "", markdown_table(overview(rows), list(overview(rows)[0])), "",
        "## Per task", "", markdown_table(rows, accuracy_cols), "",
    ]
    for title, lines in (
        ("Recall@10 retained (of the teacher's; pruned variants also of their unpruned model's)", retention(rows)),
        ("Top-10 agreement with student-fp32 (fp32_overlap@10)", agreement_lines(rows)),
        ("image -> image Recall@10 per style (style shift -> clean render)", style_lines(rows, "i2i")),
        ("image -> text Recall@10 per style", style_lines(rows, "i2t-style")),
    ):
        if lines:
            parts += [f"## {title}", "", markdown_table(lines, list(lines[0])), ""]
    if speed:
        lines = _ratio_lines(speed, peer, suffix="x faster than")
        parts += [f"## Speed-up of each student over {peer} (p50 {peer} / p50 variant, same run, through the runtime)",
                  "", markdown_table(lines, list(lines[0])), ""]
    if ratios:
        lines = _ratio_lines(ratios, REFERENCE)
        parts += [f"## Latency relative to {REFERENCE} (p50, same run)", "", markdown_table(lines, list(lines[0])), ""]
    parts += ["## How the cost columns are measured", "", *(f"- {note}" for note in summary.get("notes", [])), ""]
    return "\n".join(parts)
