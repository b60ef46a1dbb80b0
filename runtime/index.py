"""hnswlib index with string ids, metadata filters, exact search and crash-safe persistence.

* ids are strings; hnswlib labels are ints assigned here. Deleted labels are reused: a new item
  takes the smallest free label, and hnswlib updates that (marked-deleted) element in place, so the
  graph does not grow with churn. Re-adding an existing id replaces its vector and metadata.
* capacity grows automatically (doubling); ``ef_search`` is saved and restored.
* exact (brute-force numpy) search for collections of at most ``exact_threshold`` items, for
  selective filters, or on request; results are identical in form to HNSW results.
* thread-safe: searches share a readers-writer lock; add/delete/ef changes take it exclusively.
* multi-process safe: a save takes the index folder's writers' lock (:func:`runtime.persist.writer_lock`).
  If another process saved since this index was loaded (or last saved), the save **merges**: it loads
  the newest generation on disk and replays this index's own adds, replaces and deletes since then on top
  (last saver wins per id; items only the other process changed are kept), then writes the result. After
  the save this index holds the merged collection. Nothing saved by either process is silently lost.
* the graph file is validated structurally (:mod:`runtime.hnsw_file`) before hnswlib reads it.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from . import hnsw_file
from .errors import BundleError, UnknownIdError
from .items import SearchResult, check_ids, check_metadata_list
from .locks import RWLock
from .persist import (
    HNSW_FILE,
    META_FILE,
    SavedIndex,
    current_generation,
    read_saved_index,
    write_generation,
    writer_lock,
)
from .store import MetadataStore
from .vectors import as_matrix, l2_normalise

logger = logging.getLogger(__name__)

__all__ = ["SPACES", "SearchResult", "VectorIndex", "check_ids", "check_metadata_list"]

SPACES = ("cosine", "ip", "l2")
_MIN_CAPACITY = 1024


class VectorIndex:
    """A mutable, searchable, saveable set of ``(id, vector, metadata)``.

    ``capacity`` is the initial hnswlib allocation (it doubles as needed); ``threads`` the hnswlib
    insert threads (``None``: all cores); ``seed`` hnswlib's level generator seed.
    """

    def __init__(
        self, dim: int, *, space: str = "cosine", M: int = 16, ef_construction: int = 200, ef_search: int = 64,
        exact_threshold: int = 2048, threads: int | None = None, seed: int = 100, capacity: int = _MIN_CAPACITY,
    ) -> None:
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        self.dim, self.space, self.M, self.ef_construction = dim, space, M, ef_construction
        self.exact_threshold, self.threads = exact_threshold, threads or -1
        self._hnsw = hnswlib.Index(space=space, dim=dim)
        self._hnsw.init_index(max_elements=max(1, capacity), M=M, ef_construction=ef_construction, random_seed=seed)
        self._hnsw.set_ef(ef_search)
        self._store = MetadataStore.new()
        self._labels: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._free: list[int] = []  # heap of reusable labels
        self._next_label = 0
        self._lock = RWLock()
        self._save_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: tuple[np.ndarray, np.ndarray] | None = None  # (labels, vectors) for exact search
        self._base: str | None = None  # the generation this index was loaded from or last saved as
        self._changes: dict[str, bool] = {}  # id -> True (added/replaced) / False (deleted) since then

    @classmethod
    def load(cls, saved: SavedIndex, *, exact_threshold: int = 2048, threads: int | None = None) -> VectorIndex:
        """Open a saved generation (see :func:`runtime.persist.read_saved_index`).

        The graph file is validated first (:func:`runtime.hnsw_file.validate`); any inconsistency between
        ``hnsw.bin``, ``meta.sqlite`` and ``index.json`` raises :class:`BundleError`.
        """
        meta = saved.meta
        index = cls(meta["dim"], space=meta["space"], M=meta["M"], ef_construction=meta["ef_construction"],
                    ef_search=meta["ef_search"], exact_threshold=exact_threshold, threads=threads, capacity=1)
        header = hnsw_file.read_header(saved.hnsw_path)[0]
        if header.dim != meta["dim"]:
            raise BundleError(f"{saved.hnsw_path} holds {header.dim}-d vectors but index.json says dim {meta['dim']}")
        checked = hnsw_file.validate(saved.hnsw_path, dim=meta["dim"], M=meta["M"],
                                     ef_construction=meta["ef_construction"], next_label=meta["next_label"])
        hnsw = hnswlib.Index(space=meta["space"], dim=meta["dim"])
        try:
            # Allocate for what is stored, not the saved capacity (which doubling may have left at up to 2x);
            # capacity grows again on demand.
            hnsw.load_index(str(saved.hnsw_path), max_elements=max(1, int(meta["next_label"])))
        except (RuntimeError, MemoryError) as exc:
            raise BundleError(f"{saved.hnsw_path}: hnswlib cannot load it ({exc})") from exc
        hnsw.set_ef(meta["ef_search"])
        index._hnsw, index._store = hnsw, MetadataStore.load(saved.meta_path)
        index._labels = index._store.labels()
        index._ids = {label: item for item, label in index._labels.items()}
        index._next_label = int(meta["next_label"])
        if max(index._ids, default=-1) >= index._next_label:
            raise BundleError(f"index {saved.directory} is inconsistent: labels beyond next_label {index._next_label}")
        live = np.zeros(index._next_label, dtype=bool)
        live[np.fromiter(index._ids, dtype=np.int64, count=len(index._ids))] = True
        index._check_loaded(saved, checked.deleted_labels, live)
        index._free = np.flatnonzero(~live).tolist()  # sorted, hence a heap
        index._base = saved.directory.name
        return index

    def _check_loaded(self, saved: SavedIndex, deleted: np.ndarray, live: np.ndarray) -> None:
        problems = []
        if len(self._labels) != saved.meta["count"]:
            problems.append(f"{len(self._labels)} ids in {META_FILE} but count {saved.meta['count']}")
        if self._hnsw.element_count > self._next_label:
            problems.append(f"labels beyond next_label {self._next_label}")
        if not set(self._ids) <= set(self._hnsw.get_ids_list()):
            problems.append(f"ids in {META_FILE} without a vector in {HNSW_FILE}")
        elif deleted.size and live[deleted[deleted < len(live)]].any():
            problems.append(f"ids in {META_FILE} whose vector is marked deleted in {HNSW_FILE}")
        if problems:
            raise BundleError(f"index {saved.directory} is inconsistent: {'; '.join(problems)}")

    # ---- read side -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, item: object) -> bool:
        return item in self._labels

    def ids(self) -> list[str]:
        """All ids, in label order."""
        with self._lock.read():
            return [self._ids[label] for label in sorted(self._ids)]

    @property
    def capacity(self) -> int:
        """Vectors hnswlib has room for before it grows."""
        return self._hnsw.get_max_elements()

    @property
    def ef_search(self) -> int:
        """The HNSW search breadth (higher: better recall, slower)."""
        return int(self._hnsw.ef)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"ef_search must be a positive int, got {value!r}")
        with self._lock.write():
            self._hnsw.set_ef(value)

    def label_of(self, item: str) -> int:
        """The hnswlib label of an id (KeyError if unknown)."""
        return self._labels[item]

    def metadata(self, item: str) -> dict[str, Any] | None:
        """Metadata of one id (:class:`UnknownIdError` if unknown)."""
        with self._lock.read():
            if item not in self._labels:
                raise UnknownIdError([item], action="look up")
            return self._store.metadata([self._labels[item]]).get(self._labels[item])

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of ``ids`` (normalised for cosine/ip spaces)."""
        with self._lock.read():
            unknown = [i for i in ids if i not in self._labels]
            if unknown:
                raise UnknownIdError(unknown, action="look up")
            if not ids:
                return np.empty((0, self.dim), dtype=np.float32)
            return np.asarray(self._hnsw.get_items([self._labels[i] for i in ids]), dtype=np.float32)

    def _prepare(self, vectors: Any, what: str = "vectors") -> np.ndarray:
        matrix = as_matrix(vectors, self.dim, what)
        return l2_normalise(matrix, what) if self.space in ("cosine", "ip") else matrix

    def search(
        self, vector: Any, k: int = 10, filter: Mapping[str, Any] | None = None, exact: bool | None = None
    ) -> list[SearchResult]:
        """The ``k`` nearest items to one query vector, best first.

        ``exact=None`` searches exactly when the collection (or the filtered subset) has at most
        ``exact_threshold`` items, otherwise with HNSW; ``True``/``False`` force either.
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        query = self._prepare(vector, "query vector")
        if query.shape[0] != 1:
            raise ValueError(f"search takes one query vector, got {query.shape[0]}")
        with self._lock.read():
            allowed = None if filter is None else self._store.filter_labels(filter)
            live = len(self._labels) if allowed is None else len(allowed)
            if live == 0:
                return []
            use_exact = exact if exact is not None else live <= self.exact_threshold
            labels, scores = None, None
            if not use_exact:
                labels, scores = self._hnsw_search(query, min(k, live), allowed)
            if labels is None:
                labels, scores = self._exact_search(query[0], k, allowed)
            hits = [(lb, float(s)) for lb, s in zip(labels, scores, strict=True) if lb in self._ids]
            meta = self._store.metadata([lb for lb, _ in hits])
            return [SearchResult(self._ids[lb], s, meta.get(lb)) for lb, s in hits]

    def _score(self, distances: np.ndarray) -> np.ndarray:
        return -distances if self.space == "l2" else 1.0 - distances

    def _hnsw_search(
        self, query: np.ndarray, k: int, allowed: list[int] | None
    ) -> tuple[list[int] | None, np.ndarray | None]:
        allowed_set = None if allowed is None else set(allowed)
        try:
            found, dist = self._hnsw.knn_query(query, k=k, num_threads=1,
                                               filter=None if allowed_set is None else allowed_set.__contains__)
        except RuntimeError:  # fewer than k reachable (deletions / selective filter): fall back to exact
            logger.debug("hnswlib returned fewer than %d results; using exact search", k)
            return None, None
        return [int(x) for x in found[0]], self._score(dist[0])

    def _exact_search(self, query: np.ndarray, k: int, allowed: list[int] | None) -> tuple[list[int], np.ndarray]:
        if allowed is not None and len(allowed) * 2 < len(self._labels):
            labels = np.asarray(allowed, dtype=np.int64)
            matrix = np.asarray(self._hnsw.get_items(labels.tolist()), dtype=np.float32)
        else:
            labels, matrix = self._exact_cache()
            if allowed is not None:
                keep = np.isin(labels, np.asarray(allowed, dtype=np.int64))
                labels, matrix = labels[keep], matrix[keep]
        if self.space == "l2":
            scores = -((matrix - query) ** 2).sum(axis=1)
        else:
            scores = matrix @ query
        k = min(k, len(labels))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(labels) else np.arange(len(labels))
        top = top[np.lexsort((labels[top], -scores[top]))]  # by score, ties by label: deterministic
        return labels[top].tolist(), scores[top]

    def _exact_cache(self) -> tuple[np.ndarray, np.ndarray]:
        with self._cache_lock:
            if self._cache is None:
                labels = np.asarray(sorted(self._ids), dtype=np.int64)
                matrix = np.asarray(self._hnsw.get_items(labels.tolist()), dtype=np.float32).reshape(-1, self.dim)
                self._cache = (labels, matrix)
            return self._cache

    # ---- write side ------------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Any] | None = None) -> None:
        """Add (or replace) items. All inputs are checked first; on any error nothing changes."""
        ids = check_ids(ids)
        matrix = self._prepare(vectors)
        if matrix.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids but {matrix.shape[0]} vectors")
        metas = check_metadata_list(metadata, len(ids))
        if not ids:
            return
        with self._lock.write():
            labels, fresh = self._assign(ids)
            try:
                self._ensure_capacity(sum(1 for label in fresh if label >= self._hnsw.element_count))
                self._store.write(
                    list(zip(labels, ids, metas, strict=True)), deletes=[],
                    then=lambda: self._hnsw.add_items(matrix, labels, num_threads=self.threads),
                )
            except BaseException:
                self._release(fresh)
                raise
            for item, label in zip(ids, labels, strict=True):
                self._labels[item], self._ids[label] = label, item
                self._changes[item] = True
            self._cache = None

    def _assign(self, ids: list[str]) -> tuple[list[int], list[int]]:
        """Labels for ids: existing ones keep theirs, new ones take free labels, then fresh ones."""
        labels, fresh = [], []
        for item in ids:
            label = self._labels.get(item)
            if label is None:
                label = heapq.heappop(self._free) if self._free else self._next_label
                self._next_label = max(self._next_label, label + 1)
                fresh.append(label)
            labels.append(label)
        return labels, fresh

    def _release(self, labels: list[int]) -> None:
        """Return labels of a failed add to the free heap (marking any that reached hnswlib deleted)."""
        for label in labels:
            try:
                self._hnsw.mark_deleted(label)
            except RuntimeError:
                pass
            heapq.heappush(self._free, label)

    def _ensure_capacity(self, extra: int) -> None:
        needed = self._hnsw.element_count + extra
        if needed > self._hnsw.get_max_elements():
            new = max(needed, 2 * self._hnsw.get_max_elements())
            logger.debug("resizing index %d -> %d", self._hnsw.get_max_elements(), new)
            self._hnsw.resize_index(new)

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items; unknown ids raise :class:`UnknownIdError` and nothing is removed."""
        if isinstance(ids, str | bytes):
            raise TypeError("ids must be a list of strings, not a single string")
        ids = list(dict.fromkeys(ids))
        with self._lock.write():
            unknown = [item for item in ids if item not in self._labels]
            if unknown:
                raise UnknownIdError(unknown)
            labels = [self._labels[item] for item in ids]
            self._store.write([], deletes=labels)
            for item, label in zip(ids, labels, strict=True):
                self._hnsw.mark_deleted(label)
                del self._labels[item], self._ids[label]
                heapq.heappush(self._free, label)
                self._changes[item] = False
            self._cache = None

    # ---- persistence -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The fields written to ``index.json`` (and mirrored into the manifest)."""
        next_label = self._next_label
        if next_label - self._hnsw.element_count > hnsw_file.LABEL_GAP:  # free labels of failed adds at the top
            next_label = max(self._hnsw.get_ids_list(), default=-1) + 1
        return {"space": self.space, "dim": self.dim, "M": self.M, "ef_construction": self.ef_construction,
                "ef_search": self.ef_search, "count": len(self._labels), "next_label": next_label}

    def save(self, index_dir: str | Path) -> SavedIndex:
        """Atomically write a new generation under ``index_dir`` (searches continue meanwhile).

        Holds the folder's writers' lock; merges first if another process saved since this index was
        loaded or last saved (see the module docstring).

        Raises:
            IndexBusyError: another process kept the writers' lock for too long.
            BundleError: the index on disk changed to another dim or space.
        """
        with writer_lock(index_dir), self._save_lock:  # this order everywhere: the file lock first
            if current_generation(index_dir) != self._base:
                self._merge_from_disk(Path(index_dir))

            def writer(folder: Path) -> None:
                self._hnsw.save_index(str(folder / HNSW_FILE))
                self._store.save(folder / META_FILE)

            with self._lock.read():
                saved = write_generation(index_dir, writer, self.config())
                self._base, self._changes = saved.directory.name, {}
            return saved

    def _merge_from_disk(self, index_dir: Path) -> None:
        """Adopt the newest generation on disk with this index's own changes replayed on top."""
        saved = read_saved_index(index_dir, verify="size")
        if saved is None:  # the saved index was removed meanwhile: this index's content is all there is
            return
        try:
            disk = VectorIndex.load(saved, exact_threshold=self.exact_threshold, threads=self.threads)
        finally:
            saved.release()
        if (disk.dim, disk.space) != (self.dim, self.space):
            raise BundleError(f"{index_dir}: another process saved a {disk.dim}-d {disk.space} index since this one "
                              f"({self.dim}-d {self.space}) was opened; reopen the bundle")
        with self._lock.write():
            upserts = [item for item, added in self._changes.items() if added]
            gone = [item for item, added in self._changes.items() if not added and item in disk]
            if upserts:
                labels = [self._labels[item] for item in upserts]
                metas = self._store.metadata(labels)
                vectors = np.asarray(self._hnsw.get_items(labels), dtype=np.float32)
                disk.add(upserts, vectors, [metas.get(label) for label in labels])
            if gone:
                disk.delete(gone)
            logger.info("merged with another process's save in %s: %d item(s) replayed, %d deleted",
                        index_dir, len(upserts), len(gone))
            disk._hnsw.set_ef(self.ef_search)
            for name in ("_hnsw", "_store", "_labels", "_ids", "_free", "_next_label"):
                setattr(self, name, getattr(disk, name))
            self._cache, self._base = None, disk._base
