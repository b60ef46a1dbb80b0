"""The plots of the studies: ``edgeret bench``'s Pareto plot (Recall@10 against 1-thread query latency, one
panel per task) and ``edgeret ann-study``'s recall/latency curves.

matplotlib (the ``bench`` extra) is imported when a plot is drawn; without it the studies write no plot.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .tasks import QUERY_KIND, TASK_TITLES

logger = logging.getLogger(__name__)

LATENCY_ONLY = "gme2b-arch"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None (with a warning) when matplotlib is missing."""
    try:
        import matplotlib  # lazy: optional (the bench extra), and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: after choosing the backend
    except ImportError:  # pragma: no cover - bench extra missing
        logger.warning("matplotlib is not installed (pip install 'edgeret[bench]'): no plot")
        return None
    return plt


def _log_axis(ax: Any, minor_labels: bool = False) -> None:
    """A log x axis with plain-number tick labels."""
    import matplotlib.ticker  # lazy: only once pyplot() found matplotlib

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    minor = matplotlib.ticker.FormatStrFormatter("%g") if minor_labels else matplotlib.ticker.NullFormatter()
    ax.xaxis.set_minor_formatter(minor)


def _colour(variant: str) -> str:
    base = variant.split("@")[0]
    return {"teacher-torch": "tab:red", "teacher-onnx": "tab:orange", "teacher-onnx-int8": "tab:brown",
            "peer-st-minilm": "tab:purple", "student-fp32": "tab:blue", "student-pruned": "tab:cyan",
            "student-pruned-int8": "tab:pink", "student-int8": "tab:green",
            "student-int4": "tab:olive"}.get(base, "tab:gray")


def _panel(ax: Any, rows: list[dict], task: str) -> None:
    for row in rows:
        x, y, name = row.get("query_ms_p50_1t"), row.get("recall@10"), row["variant"]
        if row["task"] != task or not x:
            continue
        if name == LATENCY_ONLY or y is None:
            ax.axvline(x, color="black", linestyle="--", linewidth=1)
            ax.annotate(f"{name}\n(random weights:\nlatency only)\n{x:,.0f} ms", (x, 0.02), fontsize=7, ha="right",
                        xycoords=("data", "axes fraction"), xytext=(-3, 0), textcoords="offset points")
            continue
        if "@" in name:  # a Matryoshka dim: a small dot in its bundle's colour, labelled with the dim
            ax.scatter([x], [y], color=_colour(name), s=14, zorder=3)
            ax.annotate(name[name.index("@"):], (x, y), fontsize=5, xytext=(3, 1), textcoords="offset points")
        else:
            ax.scatter([x], [y], color=_colour(name), s=50, zorder=4, label=name, edgecolors="black",
                       linewidths=0.4)
    _log_axis(ax)
    ax.set_title(TASK_TITLES.get(task, task), fontsize=10)
    ax.set_xlabel(f"{QUERY_KIND.get(task, 'text')} query p50, 1 thread, ms (log)")
    ax.grid(True, which="both", alpha=0.3)


def pareto_plot(rows: list[dict], path: Path) -> None:
    """Recall@10 per task against 1-thread latency of that task's query; latency-only rows as dashed lines.

    One panel per task, three to a row (the clean test splits, then the style-shift tasks). Matryoshka rows
    (``variant@dim``) are small dots next to their bundle, labelled ``@dim``.
    """
    plt = pyplot()
    if plt is None:
        return
    tasks = [t for t in TASK_TITLES if any(r["task"] == t for r in rows)]
    ncols = min(3, len(tasks))
    nrows = -(-len(tasks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.3 * nrows + 0.6), squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax, task in zip(flat, tasks, strict=False):
        _panel(ax, rows, task)
    for ax in flat[len(tasks):]:
        ax.set_visible(False)
    for line in axes:
        line[0].set_ylabel("Recall@10 (held-out test)")
    fig.suptitle("edgeret: accuracy vs latency (one run, same CPU); small dots: Matryoshka dims of a bundle")
    handles: dict[str, Any] = {}
    for ax in flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.09 if len(handles) > 6 else 0.06, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def ann_plot(summary: dict, path: Path) -> None:
    """Recall@10 against 1-thread query latency, one curve per size and index format, points labelled with
    ef_search."""
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {"hnswlib-f32": "-", "faiss-hnsw-sq8": "--"}
    for r in summary["sizes"]:
        for f in r["formats"]:
            xs = [s["query_ms_p50_1t"] for s in f["sweep"]]
            ys = [s["recall@10"] for s in f["sweep"]]
            ax.plot(xs, ys, marker="o", linestyle=styles.get(f["format"], ":"),
                    label=f"{f['format']}, {r['size']:,} vectors")
            for s in f["sweep"]:
                ax.annotate(str(s["ef_search"]), (s["query_ms_p50_1t"], s["recall@10"]), fontsize=7,
                            xytext=(3, -9), textcoords="offset points")
    _log_axis(ax, minor_labels=True)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("query latency p50, 1 thread, ms (log); labels: ef_search")
    ax.set_ylabel("recall@10 vs exact fp32 search")
    dim = summary["sizes"][0]["dim"]
    ax.set_title(f"M={summary['M']}, ef_construction={summary['ef_construction']}, d={dim}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
