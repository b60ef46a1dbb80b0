"""The Pareto plot of ``edgeret bench``: Recall@10 against 1-thread query latency, one panel per task."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TASK_TITLES = {"t2i": "text -> image (OpenMoji)", "i2t": "image -> text (OpenMoji)", "t2t": "text -> text (WordNet)"}
LATENCY_ONLY = "gme2b-arch"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - bench extra missing
        logger.warning("matplotlib is not installed (pip install 'edgeret[bench]'): no plot")
        return None
    return plt


def _colour(variant: str) -> str:
    base = variant.split("@")[0]
    return {"teacher-torch": "tab:red", "teacher-onnx": "tab:orange", "peer-st-minilm": "tab:purple",
            "student-fp32": "tab:blue", "student-pruned": "tab:cyan", "student-int8": "tab:green",
            "student-int4": "tab:olive"}.get(base, "tab:gray")


def _panel(ax: Any, rows: list[dict], task: str) -> None:
    import matplotlib.ticker

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
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title(TASK_TITLES.get(task, task), fontsize=10)
    ax.set_xlabel(f"{'image' if task == 'i2t' else 'text'} query p50, 1 thread, ms (log)")
    ax.grid(True, which="both", alpha=0.3)


def pareto_plot(rows: list[dict], path: Path) -> None:
    """Recall@10 per task against 1-thread latency of that task's query; latency-only rows as dashed lines.

    Matryoshka rows (``variant@dim``) are small dots next to their bundle, labelled ``@dim``.
    """
    plt = _pyplot()
    if plt is None:
        return
    tasks = [t for t in TASK_TITLES if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        _panel(ax, rows, task)
    axes[0][0].set_ylabel("Recall@10 (held-out test)")
    fig.suptitle("edgeret: accuracy vs latency (one run, same CPU); small dots: Matryoshka dims of a bundle")
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
