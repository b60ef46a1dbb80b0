"""The ``hnswlib-f32`` index format: hnswlib's graph with float32 vectors (``hnsw.bin``), the default.

Labels are hnswlib labels. A deleted label is marked deleted and reused by the next new item, which hnswlib
updates in place, so the graph does not grow with churn (:attr:`HnswBackend.reuses_labels`). The file is
validated structurally (:mod:`runtime.hnsw_file`) before hnswlib reads it, then read whole into memory
(hnswlib has no memory-mapped mode).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from . import hnsw_file
from .errors import BundleError
from .persist import HNSW_FILE, SavedIndex

logger = logging.getLogger(__name__)

#: what is cached for exact search over a subset (bytes of gathered vectors)
_SUBSET_CACHE_BYTES = 64 << 20


class HnswBackend:
    """Vectors and graph of one index in hnswlib (see the module docstring)."""

    format = "hnswlib-f32"
    reuses_labels = True
    writable = True

    def __init__(self, dim: int, *, space: str, M: int, ef_construction: int, ef_search: int, seed: int = 100,
                 capacity: int = 1024, threads: int = -1) -> None:
        """An empty index of ``capacity`` slots (it doubles as needed)."""
        self.dim, self.space, self.M, self.ef_construction, self.threads = dim, space, M, ef_construction, threads
        self._hnsw = hnswlib.Index(space=space, dim=dim)
        self._hnsw.init_index(max_elements=max(1, capacity), M=M, ef_construction=ef_construction, random_seed=seed)
        self._hnsw.set_ef(ef_search)
        self._deleted: set[int] = set()
        self._cache_lock = threading.Lock()
        self._all: tuple[np.ndarray, np.ndarray] | None = None  # (labels, vectors) of every live element
        self._subsets: dict[bytes, np.ndarray] = {}

    @classmethod
    def open(cls, saved: SavedIndex, threads: int = -1) -> HnswBackend:
        """Validate and read a generation's ``hnsw.bin`` (BundleError on any inconsistency with ``index.json``)."""
        meta, path = saved.meta, saved.directory / HNSW_FILE
        backend = cls(meta["dim"], space=meta["space"], M=meta["M"], ef_construction=meta["ef_construction"],
                      ef_search=meta["ef_search"], capacity=1, threads=threads)
        header = hnsw_file.read_header(path)[0]
        if header.dim != meta["dim"]:
            raise BundleError(f"{path} holds {header.dim}-d vectors but index.json says dim {meta['dim']}")
        checked = hnsw_file.validate(path, dim=meta["dim"], M=meta["M"], ef_construction=meta["ef_construction"],
                                     next_label=meta["next_label"])
        hnsw = hnswlib.Index(space=meta["space"], dim=meta["dim"])
        try:
            # Allocate for what is stored, not the saved capacity (which doubling may have left at up to 2x);
            # capacity grows again on demand.
            hnsw.load_index(str(path), max_elements=max(1, int(meta["next_label"])))
        except (RuntimeError, MemoryError) as exc:
            raise BundleError(f"{path}: hnswlib cannot load it ({exc})") from exc
        hnsw.set_ef(meta["ef_search"])
        backend._hnsw = hnsw
        backend._deleted = set(checked.deleted_labels.tolist())
        return backend

    # ---- state -------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Slots allocated."""
        return self._hnsw.get_max_elements()

    @property
    def element_count(self) -> int:
        """Slots used (live and deleted elements)."""
        return self._hnsw.element_count

    @property
    def ef_search(self) -> int:
        """The search beam width."""
        return int(self._hnsw.ef)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._hnsw.set_ef(value)

    def labels(self) -> np.ndarray:
        """Labels of the live elements, sorted."""
        ids = np.asarray(sorted(set(self._hnsw.get_ids_list()) - self._deleted), dtype=np.int64)
        return ids

    def config(self, next_label: int) -> dict[str, Any]:
        """Fields of ``index.json`` this backend decides: ``next_label`` (free labels above the last element are
        dropped when many failed adds left them)."""
        if next_label - self._hnsw.element_count > hnsw_file.LABEL_GAP:
            next_label = max(self._hnsw.get_ids_list(), default=-1) + 1
        return {"next_label": next_label}

    def dead_labels(self, next_label: int) -> dict[str, np.ndarray]:
        """Labels no stored id may have, by reason (what :meth:`runtime.index.VectorIndex.load` checks)."""
        dead = {"whose vector is marked deleted in hnsw.bin": np.asarray(sorted(self._deleted), dtype=np.int64)}
        if self._hnsw.element_count < next_label:  # labels are unique and below next_label: only then can some lack
            present = np.zeros(next_label, dtype=bool)
            present[np.asarray(self._hnsw.get_ids_list(), dtype=np.int64)] = True
            dead["without a vector in hnsw.bin"] = np.flatnonzero(~present)
        return dead

    def prepare_save(self) -> None:
        """Nothing to do before a save."""

    def make_writable(self) -> None:
        """Nothing to do: hnswlib holds the index in memory."""

    def _changed(self) -> None:
        self._all, self._subsets = None, {}

    # ---- writes ------------------------------------------------------------------------------
    def add(self, labels: list[int], vectors: np.ndarray) -> None:
        """Insert (new labels) or update (existing or deleted labels) vectors; capacity grows as needed."""
        fresh = sum(1 for label in labels if label >= self._hnsw.element_count)
        needed = self._hnsw.element_count + fresh
        if needed > self._hnsw.get_max_elements():
            new = max(needed, 2 * self._hnsw.get_max_elements())
            logger.debug("resizing index %d -> %d", self._hnsw.get_max_elements(), new)
            self._hnsw.resize_index(new)
        self._hnsw.add_items(vectors, labels, num_threads=self.threads)
        self._deleted.difference_update(labels)
        self._changed()

    def remove(self, labels: list[int]) -> None:
        """Mark labels deleted (they are never returned; a new item reuses them)."""
        for label in labels:
            try:
                self._hnsw.mark_deleted(label)
            except RuntimeError:  # never reached hnswlib (a failed add) or already deleted
                pass
            self._deleted.add(label)
        self._changed()

    # ---- reads -------------------------------------------------------------------------------
    def vectors(self, labels: list[int]) -> np.ndarray:
        """Stored vectors (normalised for cosine/ip spaces)."""
        if not labels:
            return np.empty((0, self.dim), dtype=np.float32)
        try:
            return np.asarray(self._hnsw.get_items(labels), dtype=np.float32).reshape(-1, self.dim)
        except RuntimeError as exc:  # a label without a vector: only a tampered metadata database has those
            raise BundleError(f"the index has no vector for a stored id ({exc})") from exc

    def _score(self, distances: np.ndarray) -> np.ndarray:
        return -distances if self.space == "l2" else 1.0 - distances

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Graph search (``allowed``: sorted labels to keep); ``None`` when fewer than ``k`` are reachable."""
        allowed_set = None if allowed is None else set(allowed.tolist())
        try:
            found, dist = self._hnsw.knn_query(query, k=k, num_threads=1,
                                               filter=None if allowed_set is None else allowed_set.__contains__)
        except RuntimeError:  # fewer than k reachable (deletions / selective filter): fall back to exact
            logger.debug("hnswlib returned fewer than %d results; using exact search", k)
            return None
        return found[0].astype(np.int64), self._score(dist[0])

    def exact(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top ``k`` over ``allowed`` (sorted labels) or every live element; ties by label."""
        labels, matrix = self._exact_rows(allowed)
        if self.space == "l2":
            scores = -((matrix - query[0]) ** 2).sum(axis=1)
        else:
            scores = matrix @ query[0]
        return top_k(labels, scores, k)

    def _exact_rows(self, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        with self._cache_lock:
            if allowed is None or len(allowed) * 2 >= self._hnsw.element_count:
                if self._all is None:
                    labels = self.labels()
                    self._all = (labels, self.vectors(labels.tolist()))
                if allowed is None:
                    return self._all
                keep = np.isin(self._all[0], allowed)
                return self._all[0][keep], self._all[1][keep]
            key = allowed.tobytes()
            if key not in self._subsets:
                rows = self.vectors(allowed.tolist())
                if rows.nbytes > _SUBSET_CACHE_BYTES:
                    return allowed, rows
                self._subsets = {key: rows}  # one subset: the last filter, memoised until a write
            return allowed, self._subsets[key]

    # ---- persistence -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``hnsw.bin`` into ``folder``."""
        self._hnsw.save_index(str(folder / HNSW_FILE))

    def close(self) -> None:
        """Nothing to release (the graph is in memory)."""


def top_k(labels: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(labels, scores)``, by score then label (deterministic)."""
    k = min(k, len(labels))
    if k == 0:
        return labels[:0], scores[:0]
    top = np.argpartition(-scores, k - 1)[:k] if k < len(labels) else np.arange(len(labels))
    top = top[np.lexsort((labels[top], -scores[top]))]
    return labels[top], scores[top]
