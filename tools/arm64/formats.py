"""Every index format the runtime knows, saved on x86 and searched on both machines.

The bundle check's index (built by the Retriever, in the bundle's default format) supplies the ids and stored
vectors; here they go, with a ``kind`` field (``text`` / ``image``) as metadata, into a fresh
:class:`~edgeret.runtime.index.VectorIndex` of each format of :data:`edgeret.runtime.index_formats.FORMATS` (same
``M``, ``ef_construction`` and ``ef_search``), saved on x86 under ``work/BUNDLE/formats/FORMAT``. The worker
(:mod:`tools.arm64.guest_worker`) opens each one on both machines and answers the query sets of
:data:`~tools.arm64.guest_worker.SHARED_INPUT_MODES` (x86-made vectors: bit-identical inputs, so the lists must be
identical and the scores within :data:`~tools.arm64.compare.SCORE_TOLERANCE`) and of
:data:`~tools.arm64.guest_worker.OWN_INPUT_MODES` (each machine's own embeddings: near ties may swap).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edgeret.runtime.errors import BundleError
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.index_formats import FORMATS
from edgeret.runtime.retriever import Retriever

from .compare import topk_agreement
from .guest_worker import FILTER_FIELD
from .shell import Arm64Error
from .workload import Workload

logger = logging.getLogger(__name__)

#: the filtered query set keeps the images (half of the items): a graph search under a filter
FILTER = {FILTER_FIELD: "image"}


def kinds(items: Workload) -> tuple[list[str], list[dict[str, str]]]:
    """The ids of every indexed item (texts, then images) and their metadata (``{"kind": "text" | "image"}``)."""
    ids = items.text_ids + items.image_ids
    metadata = [{FILTER_FIELD: "text"}] * len(items.text_ids) + [{FILTER_FIELD: "image"}] * len(items.image_ids)
    return ids, metadata


def _save_one(name: str, source: VectorIndex, items: Workload, path: Path, threads: int) -> dict[str, Any]:
    """Save ``source``'s vectors of ``items`` in format ``name`` at ``path``; returns what was built."""
    ids, metadata = kinds(items)
    start = time.perf_counter()
    try:
        index = VectorIndex(source.dim, space=source.space, M=source.M, ef_construction=source.ef_construction,
                            ef_search=source.ef_search, threads=threads, format=name)
    except BundleError as exc:
        raise Arm64Error(f"cannot build a {name} index on x86: {exc}") from exc
    try:
        index.add(ids, source.vectors(ids), metadata)
        saved = index.save(path)
    finally:
        index.close()
    files = [p for p in saved.directory.iterdir() if p.is_file()]
    return {"format": name, "items": len(ids), "dim": source.dim, "path": str(path),
            "build_and_save_s": round(time.perf_counter() - start, 3),
            "generation_bytes": sum(p.stat().st_size for p in files)}


def save_formats(bundle: Path, items: Workload, folder: Path, threads: int) -> dict[str, dict[str, Any]]:
    """Save the bundle index's vectors in every format under ``folder/FORMAT``; returns, per format, what was built.

    Raises:
        Arm64Error: a format cannot be built here (its library is not installed on the host).
    """
    retriever = Retriever.open(bundle, threads=threads)
    try:
        built = {name: _save_one(name, retriever.index, items, folder / name, threads) for name in FORMATS}
    finally:
        retriever.close()
    for name, info in built.items():
        logger.info("%s: %d items saved as %s on x86 (%.0f bytes/item)", folder.parent.name, info["items"], name,
                    info["generation_bytes"] / max(info["items"], 1))
    return built


def job_entries(built: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The worker job's ``formats``: which saved index to open for each format, and the filter to apply."""
    return [{"format": name, "index": info["path"], "filter": FILTER} for name, info in built.items()]


def compare_formats(built: dict[str, dict[str, Any]], x86: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    """Per format: what was built on x86, and the top-k agreement of each query set (x86 vs ARM64 answers)."""
    out = {}
    for name, info in built.items():
        host, guest = x86["formats"][name], arm["formats"][name]
        out[name] = {"index": info, "topk": {mode: topk_agreement(host[mode], guest[mode]) for mode in host}}
    return out
