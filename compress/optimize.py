"""Offline graph optimisation of exported towers, kept only where it is measurably faster.

Candidates for the text tower: the plain export (ORT still optimises it at session start), onnxruntime's
transformer optimizer (``model_type='bert'``: Attention / SkipLayerNorm / BiasGelu / EmbedLayerNorm
fusions) and ORT's own offline ``extended`` optimisation. The image tower: plain and ``extended``.
Each candidate must keep parity with the plain export; the fastest at 1 thread wins.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeret.data.timing import percentiles, time_calls
from edgeret.runtime.sessions import create_session

logger = logging.getLogger(__name__)


def latency_ms(path: str | Path, feeds: Mapping[str, np.ndarray], threads: int = 1, repeats: int = 30,
               warmup: int = 3) -> float:
    """Median wall time (ms) of one ``session.run`` on ``feeds`` with ``threads`` intra-op threads."""
    session = create_session(path, threads=threads)
    return percentiles(time_calls(lambda: session.run(None, dict(feeds)), repeats, warmup=warmup))["p50"]


def transformer_optimize(src: str | Path, dst: str | Path) -> Path:
    """onnxruntime.transformers' BERT fusions (heads and width detected from the graph; works per layer)."""
    # lazy: onnxruntime's tools reconfigure the root logger at import (see compress.bundle.preserve_root_logging)
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=0,
                               use_gpu=False, only_onnxruntime=False)
    optimized.save_model_to_file(str(dst))
    logger.info("transformer optimizer fused: %s", optimized.get_fused_operator_statistics())
    return Path(dst)


def ort_offline(src: str | Path, dst: str | Path, level: str = "extended") -> Path:
    """Save ORT's own optimised graph (``extended`` stays portable across CPUs; ``all`` may not)."""
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), sess_options=options, providers=["CPUExecutionProvider"])
    return Path(dst)


def choose_fastest(
    src: str | Path,
    dst: str | Path,
    feeds: Mapping[str, np.ndarray],
    candidates: Mapping[str, Callable[[Path, Path], Path]],
    verify: Callable[[Path], bool],
    repeats: int = 30,
) -> tuple[str, dict[str, float]]:
    """Write the fastest of ``src`` and each candidate's rewrite of it to ``dst``.

    ``verify(path)`` must accept a candidate (e.g. parity with torch) for it to compete.
    Returns (winner name, {name: 1-thread latency ms}).
    """
    src, dst = Path(src), Path(dst)
    work = dst.parent / f".{dst.stem}-candidates"
    work.mkdir(parents=True, exist_ok=True)
    paths = {"plain": src}
    for name, rewrite in candidates.items():
        try:
            path = rewrite(src, work / f"{name}.onnx")
        except Exception as exc:  # an optimiser that cannot handle the graph just does not compete
            logger.warning("optimiser %s failed: %s", name, exc)
            continue
        if verify(path):
            paths[name] = path
        else:
            logger.warning("optimiser %s broke parity; discarded", name)
    timings = {name: round(latency_ms(path, feeds, repeats=repeats), 3) for name, path in paths.items()}
    winner = min(timings, key=timings.get)
    if paths[winner] != dst:
        shutil.copyfile(paths[winner], dst)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("graph optimisation %s: 1-thread ms %s -> keep %s", dst.name, timings, winner)
    return winner, timings


TEXT_CANDIDATES: dict[str, Callable[[Path, Path], Path]] = {
    "transformers": transformer_optimize,
    "ort-extended": ort_offline,
}
IMAGE_CANDIDATES: dict[str, Callable[[Path, Path], Path]] = {"ort-extended": ort_offline}
