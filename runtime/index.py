"""A vector index with string ids, metadata filters, exact search and crash-safe persistence, in any index format.

* ids are strings; labels are ints assigned here, stored with the ids and metadata in SQLite
  (:mod:`runtime.store`). The vectors and graph live in a backend of the index's format
  (:mod:`runtime.index_formats`): ``hnswlib-f32`` (the default; :mod:`runtime.hnsw_backend`) or the compact
  ``faiss-hnsw-sq8`` (:mod:`runtime.faiss_backend`; ``pip install 'edgeret[faiss]'``).
* deletes: ``hnswlib-f32`` reuses a deleted label for the next new item (the graph does not grow with churn);
  ``faiss-hnsw-sq8`` keeps deleted labels as tombstones (never returned) and a replaced item gets a new label,
  until :meth:`VectorIndex.compact` (run by :meth:`VectorIndex.save` once a quarter of the labels are tombstones)
  renumbers the live items ``0..n-1``. :meth:`VectorIndex.label_of` is therefore not stable across those.
* exact (brute-force) search for collections of at most ``exact_threshold`` items, for filters that keep at most
  :data:`SUBSET_SHARE` of the items (or ``exact_threshold``), or on request; otherwise graph search.
* opening a saved generation reads ``meta.sqlite`` in place and (faiss) maps ``index.faiss``: nothing is copied
  and ids are looked up per call, so a million items open in milliseconds; the first write copies what it needs
  into memory. Filters use the generation's numpy columns (:mod:`runtime.filters`) until the first write, SQL after.
* thread-safe: searches share a readers-writer lock; add/delete/ef changes take it exclusively.
* multi-process safe: a save takes the index folder's writers' lock (:func:`runtime.persist.writer_lock`); if
  another process saved since this index was loaded (or last saved), the save **merges** (:mod:`runtime.merge`).
* every file is validated structurally before its library reads it.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, UnknownIdError
from .filter_spec import filter_key, plan_filter
from .filters import FILTERS_FILE, FilterColumns, write_filters
from .index_formats import DEFAULT_FORMAT, backend_class
from .items import SearchResult, check_ids, check_metadata_list
from .locks import RWLock, SharedLock
from .merge import merge_from_disk
from .persist import META_FILE, SPACES, SavedIndex, current_generation, write_generation, writer_lock
from .store import MetadataStore
from .vectors import as_matrix, l2_normalise

__all__ = ["SPACES", "SUBSET_SHARE", "SearchResult", "VectorIndex", "check_ids", "check_metadata_list"]

_MIN_CAPACITY = 1024
#: filters keeping at most this share of the items are answered by exact search over the kept items
SUBSET_SHARE = 0.05
#: save compacts a tombstoning index once this share of its labels are tombstones
COMPACT_SHARE = 0.25
_FILTER_CACHE = 16


class VectorIndex:
    """A mutable, searchable, saveable set of ``(id, vector, metadata)`` (see the module docstring).

    ``format``: ``"hnswlib-f32"`` (default) or ``"faiss-hnsw-sq8"``; ``capacity`` the initial allocation (it
    doubles as needed); ``threads`` the insert threads (``None``: all cores); ``seed`` the level generator seed.
    """

    def __init__(
        self, dim: int, *, space: str = "cosine", M: int = 16, ef_construction: int = 200, ef_search: int = 64,
        exact_threshold: int = 2048, threads: int | None = None, seed: int = 100, capacity: int = _MIN_CAPACITY,
        format: str = DEFAULT_FORMAT,
    ) -> None:
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        backend = backend_class(format, "VectorIndex")(dim, space=space, M=M, ef_construction=ef_construction,
                                                       ef_search=ef_search, seed=seed, capacity=capacity,
                                                       threads=threads or -1)
        self._setup(backend, MetadataStore.new(), exact_threshold, threads)
        self._free: list[int] | None = []

    def _setup(self, backend: Any, store: MetadataStore, exact_threshold: int, threads: int | None) -> None:
        self._backend, self._store = backend, store
        self.exact_threshold, self.threads = exact_threshold, threads or -1
        self._count, self._next_label = 0, 0
        self._free = None  # heap of reusable labels (formats that reuse them); None: computed at the first write
        self._filters: FilterColumns | None = None  # the saved columns, while nothing was written since
        self._filter_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._hold: SharedLock | None = None  # the generation whose files this index reads in place
        self._lock, self._save_lock, self._cache_lock = RWLock(), threading.Lock(), threading.Lock()
        self._base: str | None = None  # the generation this index was loaded from or last saved as
        self._changes: dict[str, bool] = {}  # id -> True (added/replaced) / False (deleted) since then

    @classmethod
    def load(cls, saved: SavedIndex, *, exact_threshold: int = 2048, threads: int | None = None) -> VectorIndex:
        """Open a saved generation (see :func:`runtime.persist.read_saved_index`), taking over its reader's hold.

        Every file is validated before its library reads it; any inconsistency between the files and
        ``index.json`` raises :class:`BundleError`. The hold is released once nothing is read in place any more
        (after the first write, or :meth:`close`).
        """
        meta = saved.meta
        try:
            backend = backend_class(saved.format.name, f"index {saved.directory}").open(saved, threads=threads or -1)
            store = MetadataStore.open(saved.meta_path)
        except BaseException:
            saved.release()
            raise
        index = cls.__new__(cls)
        index._setup(backend, store, exact_threshold, threads)
        index._hold, index._base = saved.hold, saved.directory.name
        try:
            index._count, index._next_label = int(meta["count"]), int(meta["next_label"])
            index._check_loaded(saved)
            if saved.has(FILTERS_FILE):
                index._filters = FilterColumns(saved.path(FILTERS_FILE), index._next_label, index._count)
        except BaseException:
            index.close()
            raise
        return index

    def _check_loaded(self, saved: SavedIndex) -> None:
        problems = []
        if self._store.count() != self._count:
            problems.append(f"{self._store.count()} ids in {META_FILE} but count {self._count}")
        if self._store.max_label() >= self._next_label:
            problems.append(f"labels beyond next_label {self._next_label}")
        dead = self._backend.dead_labels(self._next_label)
        for what, labels in dead.items():
            if len(labels) and self._store.count_labels(labels.tolist()):
                problems.append(f"ids in {META_FILE} {what}")
        if problems:
            raise BundleError(f"index {saved.directory} is inconsistent: {'; '.join(problems)}")

    def close(self) -> None:
        """Release the files this index reads in place (it must not be used afterwards)."""
        for part in (self._filters, self._store, self._backend):
            if part is not None:
                part.close()
        self._filters = None
        self._release_hold()

    def _release_hold(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    # ---- read side -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._backend.dim

    @property
    def space(self) -> str:
        """``cosine``, ``ip`` or ``l2``."""
        return self._backend.space

    @property
    def M(self) -> int:
        """Graph degree parameter."""
        return self._backend.M

    @property
    def ef_construction(self) -> int:
        """Build beam width."""
        return self._backend.ef_construction

    @property
    def format(self) -> str:
        """The index format (:mod:`runtime.index_formats`)."""
        return self._backend.format

    def __len__(self) -> int:
        return self._count

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and self._store.label_of(item) is not None

    def ids(self) -> list[str]:
        """All ids, in label order."""
        with self._lock.read():
            return self._store.ids()

    @property
    def capacity(self) -> int:
        """Vector slots allocated."""
        return self._backend.capacity

    @property
    def ef_search(self) -> int:
        """The search beam width (saved and restored)."""
        return self._backend.ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"ef_search must be a positive int, got {value!r}")
        with self._lock.write():
            self._backend.ef_search = value

    def label_of(self, item: str) -> int:
        """The label of an id (KeyError if unknown); see the module docstring on when labels change."""
        label = self._store.label_of(item) if isinstance(item, str) else None
        if label is None:
            raise KeyError(item)
        return label

    def metadata(self, item: str) -> dict[str, Any] | None:
        """Metadata of one id (:class:`UnknownIdError` if unknown)."""
        with self._lock.read():
            label = self._store.label_of(item) if isinstance(item, str) else None
            if label is None:
                raise UnknownIdError([item], action="look up")
            return self._store.metadata([label]).get(label)

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of ``ids`` (normalised for cosine/ip spaces; ``faiss-hnsw-sq8``: decoded from 8 bits)."""
        with self._lock.read():
            labels = self._labels_of(ids)
            return self._backend.vectors(labels)

    def _labels_of(self, ids: Sequence[str]) -> list[int]:
        ids = list(ids)
        found = self._store.labels_of([i for i in ids if isinstance(i, str)])
        unknown = [i for i in ids if not isinstance(i, str) or i not in found]
        if unknown:
            raise UnknownIdError(unknown, action="look up")
        return [found[i] for i in ids]

    def _prepare(self, vectors: Any, what: str = "vectors") -> np.ndarray:
        matrix = as_matrix(vectors, self.dim, what)
        return l2_normalise(matrix, what) if self.space in ("cosine", "ip") else matrix

    def search(
        self, vector: Any, k: int = 10, filter: Mapping[str, Any] | None = None, exact: bool | None = None
    ) -> list[SearchResult]:
        """The ``k`` nearest items to one query vector, best first.

        ``exact=None`` searches exactly when the collection has at most ``exact_threshold`` items, or the filter
        keeps at most ``max(exact_threshold, SUBSET_SHARE * len(self))``; otherwise through the graph;
        ``True``/``False`` force either.
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        query = self._prepare(vector, "query vector")
        if query.shape[0] != 1:
            raise ValueError(f"search takes one query vector, got {query.shape[0]}")
        plans = None if filter is None else plan_filter(filter)
        with self._lock.read():
            allowed = None if plans is None else self._allowed(plans)
            live = self._count if allowed is None else len(allowed)
            if live == 0:
                return []
            limit = self.exact_threshold if allowed is None else max(self.exact_threshold,
                                                                     int(SUBSET_SHARE * self._count))
            found = None
            if not (exact if exact is not None else live <= limit):
                found = self._backend.search(query, min(k, live), allowed)
            if found is None:
                found = self._backend.exact(query, k, allowed)
            labels, scores = found
            hits = self._store.hits(labels.tolist())
            return [SearchResult(hits[lb][0], float(s), hits[lb][1])
                    for lb, s in zip(labels.tolist(), scores.tolist(), strict=True) if lb in hits]

    def _allowed(self, plans: list) -> np.ndarray:
        """Sorted labels the filter keeps (memoised per filter until the next write)."""
        key = filter_key(plans)
        with self._cache_lock:
            if key in self._filter_cache:
                self._filter_cache.move_to_end(key)
                return self._filter_cache[key]
        if self._filters is not None:
            labels = self._filters.filter_labels(plans)
        else:
            labels = np.asarray(self._store.filter_planned(plans), dtype=np.int64)
        with self._cache_lock:
            self._filter_cache[key] = labels
            while len(self._filter_cache) > _FILTER_CACHE:
                self._filter_cache.popitem(last=False)
        return labels

    # ---- write side ------------------------------------------------------------------------
    def _writable(self) -> None:
        """Copy what is read in place into memory before the first write (write lock held)."""
        if self._free is None and self._backend.reuses_labels:
            live = self._filters.labels if self._filters is not None else self._store.live_labels()
            free = np.ones(self._next_label, dtype=bool)
            free[live] = False
            self._free = np.flatnonzero(free).tolist()  # sorted, hence a heap
        self._store.materialise()
        self._backend.make_writable()
        self._written()
        self._release_hold()

    def _written(self) -> None:
        if self._filters is not None:
            self._filters.close()
            self._filters = None
        with self._cache_lock:
            self._filter_cache.clear()

    def add(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Any] | None = None) -> None:
        """Add (or replace) items. All inputs are checked first; on any error nothing changes."""
        ids = check_ids(ids)
        matrix = self._prepare(vectors)
        if matrix.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids but {matrix.shape[0]} vectors")
        metas = check_metadata_list(metadata, len(ids))
        if ids:
            self._add_checked(ids, matrix, metas)

    def _add_checked(self, ids: list[str], matrix: np.ndarray, metas: list[str | None]) -> None:
        with self._lock.write():
            self._writable()
            existing = self._store.labels_of(ids)
            labels, fresh, replaced = self._assign(ids, existing)
            try:
                self._store.write(list(zip(labels, ids, metas, strict=True)), deletes=replaced,
                                  then=lambda: self._backend.add(labels, matrix))
            except BaseException:
                self._release(fresh)
                raise
            if replaced:
                self._backend.remove(replaced)
            self._count += len(ids) - len(existing)
            self._changes.update(dict.fromkeys(ids, True))
            self._written()

    def _assign(self, ids: list[str], existing: dict[str, int]) -> tuple[list[int], list[int], list[int]]:
        """``(labels, fresh labels, replaced labels)``: existing ids keep their label where the format reuses
        labels (else get a new one, the old becoming a tombstone); new ids take free labels, then fresh ones."""
        labels, fresh, replaced = [], [], []
        reuse = self._backend.reuses_labels
        for item in ids:
            label = existing.get(item) if reuse else None
            if label is None:
                label = heapq.heappop(self._free) if reuse and self._free else self._next_label
                self._next_label = max(self._next_label, label + 1)
                fresh.append(label)
                if item in existing:
                    replaced.append(existing[item])
            labels.append(label)
        return labels, fresh, replaced

    def _release(self, labels: list[int]) -> None:
        """Undo the labels of a failed add (any that reached the backend become deleted)."""
        self._backend.remove(labels)
        if self._backend.reuses_labels:
            for label in labels:
                heapq.heappush(self._free, label)
        else:
            self._next_label = self._backend.element_count

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items; unknown ids raise :class:`UnknownIdError` and nothing is removed."""
        if isinstance(ids, str | bytes):
            raise TypeError("ids must be a list of strings, not a single string")
        ids = list(dict.fromkeys(ids))
        with self._lock.write():
            found = self._store.labels_of([i for i in ids if isinstance(i, str)])
            unknown = [item for item in ids if not isinstance(item, str) or item not in found]
            if unknown:
                raise UnknownIdError(unknown)
            if not ids:
                return
            self._writable()
            labels = [found[item] for item in ids]
            self._store.write([], deletes=labels)
            self._backend.remove(labels)
            if self._backend.reuses_labels:
                for label in labels:
                    heapq.heappush(self._free, label)
            self._count -= len(ids)
            self._changes.update(dict.fromkeys(ids, False))
            self._written()

    def compact(self) -> int:
        """Renumber the live items ``0..n-1`` and rebuild the graph without tombstones (``faiss-hnsw-sq8``; other
        formats reuse labels and have nothing to compact). Returns the number of labels freed."""
        with self._lock.write():
            if self._backend.reuses_labels or self._next_label == self._count:
                return 0
            self._writable()
            old = self._store.live_labels()
            rebuilt = self._backend.compacted(old)
            self._store.relabel(old, np.arange(len(old)))
            self._backend.close()
            self._backend, freed, self._next_label = rebuilt, self._next_label - len(old), len(old)
            self._written()
            return freed

    # ---- persistence -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The fields written to ``index.json`` (and mirrored into the manifest)."""
        return {"index_format": self.format, "space": self.space, "dim": self.dim, "M": self.M,
                "ef_construction": self.ef_construction, "ef_search": self.ef_search, "count": self._count,
                **self._backend.config(self._next_label)}

    def save(self, index_dir: str | Path) -> SavedIndex:
        """Atomically write a new generation under ``index_dir`` (searches continue meanwhile).

        Holds the folder's writers' lock; merges first if another process saved since this index was
        loaded or last saved (:mod:`runtime.merge`); compacts first once :data:`COMPACT_SHARE` of the labels are
        tombstones.

        Raises:
            IndexBusyError: another process kept the writers' lock for too long.
            BundleError: the index on disk changed to another dim, space or format.
        """
        with writer_lock(index_dir), self._save_lock:  # this order everywhere: the file lock first
            if current_generation(index_dir) != self._base:
                merge_from_disk(self, Path(index_dir))
            if self._next_label and (self._next_label - self._count) / self._next_label > COMPACT_SHARE:
                self.compact()
            with self._lock.write():
                self._backend.prepare_save()
            arrays: dict[str, np.ndarray] = {}

            def writer(folder: Path) -> None:
                self._backend.save(folder)
                self._store.save(folder / META_FILE)
                arrays.update(write_filters(folder / FILTERS_FILE, self._store.live_labels(), self._store.attrs()))

            with self._lock.read():
                saved = write_generation(index_dir, writer, self.config())
                self._base, self._changes = saved.directory.name, {}
                if self._filters is None and self._store.writable:
                    self._filters = FilterColumns.from_arrays(arrays, saved.meta["next_label"], self._count)
            return saved
