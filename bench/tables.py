"""Markdown of ``summary.md``: an overview line per variant, accuracy and cost per task, latency ratios."""

from __future__ import annotations

from typing import Any

from edgeret.data.results import markdown_table

REFERENCE = "student-int8"
RATIO_OF = ("teacher-torch", "teacher-onnx", "gme2b-arch", "peer-st-minilm")


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
            **{f"R@10 {t}": tasks.get(t, {}).get("recall@10") for t in ("t2i", "i2t", "t2t")},
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


def _ratio_lines(ratios: dict[str, dict[str, float | None]], reference: str) -> list[dict]:
    def fmt(value: float | None) -> str | None:
        return None if value is None else f"{value:,.1f}x"

    return [{"variant": v, f"text 1t / {reference}": fmt(r["text_query_ms_p50_1t"]),
             f"image 1t / {reference}": fmt(r["image_query_ms_p50_1t"]),
             f"text all / {reference}": fmt(r["text_query_ms_p50_all"]),
             f"image all / {reference}": fmt(r["image_query_ms_p50_all"])} for v, r in ratios.items()]


def summary_markdown(summary: dict[str, Any]) -> str:
    """The whole ``summary.md``: command, machine, the tables and how each cost column was measured."""
    rows = summary["rows"]
    machine = summary["machine"]
    accuracy_cols = ["variant", "task", "dim", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10",
                     "teacher_overlap@10", "query_ms_p50_1t", "query_ms_p95_1t", "query_ms_p50_all", "index_build_s",
                     "index_items"]
    ratios = summary.get("latency_ratios", {})
    parts = [
        f"`{summary['command']}`", "",
        f"{summary['created']} · {machine['cpu']}, {machine['cores']} cores · threads {machine['threads_used']} · "
        + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v), "",
        "## Overview (one line per variant)", "", markdown_table(overview(rows), list(overview(rows)[0])), "",
        "## Per task", "", markdown_table(rows, accuracy_cols), "",
    ]
    if ratios:
        lines = _ratio_lines(ratios, REFERENCE)
        parts += [f"## Latency relative to {REFERENCE} (p50, same run)", "", markdown_table(lines, list(lines[0])), ""]
    parts += ["## How the cost columns are measured", "", *(f"- {note}" for note in summary.get("notes", [])), ""]
    return "\n".join(parts)
