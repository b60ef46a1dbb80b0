"""The ``faiss-hnsw-sq8`` index format: a faiss ``IndexHNSWSQ`` over 8-bit per-dimension codes (``index.faiss``).

* Vectors are L2-normalised (spaces ``cosine`` and ``ip``; ``l2`` is refused) and searched by inner product;
  each dimension is quantised to 8 bits between ranges trained on the data (faiss ``QT_8bit``, ``RS_minmax``):
  ``dim`` bytes per vector plus the graph (``M`` links per node, ``2M`` on level 0).
* Ranges are trained once, on the first :data:`TRAIN_MIN` vectors (until then vectors are kept in float32 and
  searched exactly), or at the first save if fewer were added -- then widened by :data:`SMALL_MARGIN` of the
  range on each side, since later vectors outside the ranges are clipped. Compaction keeps the ranges.
* A saved generation is validated (:mod:`runtime.faiss_file`), then memory-mapped read-only: the codes and the
  neighbour lists stay in the page cache (RSS follows the pages queries touch; ~12 bytes per vector are copied).
  The first write reads the file into memory (``dim`` + ~140 bytes per vector of anonymous memory).
* faiss HNSW cannot delete: a deleted (or replaced) label is a tombstone (``tombstones.npy``), filtered out of
  every search, and labels are not reused (:attr:`FaissSQ8Backend.reuses_labels` is ``False``) until
  :meth:`FaissSQ8Backend.compacted` rebuilds the graph. Labels are faiss ids: a new item's label is ``ntotal``.
* Exact search runs faiss's SIMD kernel over the codes: of every live vector (the storage, tombstones excluded by
  a selector), or of a small subset gathered into a temporary flat index (memoised until the next write).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from . import faiss_file
from ._fs import NPY_HEADER_LOCK
from .errors import BundleError
from .hnsw_backend import top_k
from .persist import SavedIndex

logger = logging.getLogger(__name__)

FAISS_FILE = "index.faiss"
TOMBSTONES_FILE = "tombstones.npy"
#: vectors kept in float32 before the quantiser's ranges are trained on them
TRAIN_MIN = 10_000
#: share of the range added on each side of ranges trained on fewer than TRAIN_MIN vectors
SMALL_MARGIN = 0.25
#: subsets up to this many labels are searched exactly over gathered codes; larger ones through a selector
_GATHER_MAX = 200_000
#: a graph search over a filter raises ef by 1/share of the labels kept, at most this factor
_EF_BOOST_MAX = 8
_BUILD_CHUNK = 65_536
_FLAGS_MMAP = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


@contextmanager
def _omp_threads(threads: int) -> Iterator[None]:
    """faiss's OpenMP threads for a build (``threads`` <= 0: leave faiss's default)."""
    before = faiss.omp_get_max_threads()
    if threads > 0:
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _bitmap(labels: np.ndarray, size: int) -> tuple[Any, np.ndarray]:
    """A faiss selector of ``labels`` (< ``size``) and the bit array it reads (keep both alive together)."""
    bits = np.zeros(size, dtype=bool)
    bits[labels] = True
    packed = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(size, faiss.swig_ptr(packed)), packed


class FaissSQ8Backend:
    """Graph and 8-bit codes of one index in faiss (see the module docstring)."""

    format = "faiss-hnsw-sq8"
    reuses_labels = False

    def __init__(self, dim: int, *, space: str, M: int, ef_construction: int, ef_search: int, seed: int = 100,
                 capacity: int = 1024, threads: int = -1) -> None:
        """An empty index (``seed`` and ``capacity`` are hnswlib's: faiss levels are seeded by faiss)."""
        if space not in ("cosine", "ip"):
            raise ValueError(f"index format {self.format!r} searches normalised vectors by inner product: space "
                             f"'cosine' or 'ip', not {space!r} (use index format 'hnswlib-f32' for 'l2')")
        self.dim, self.space, self.M, self.ef_construction, self.threads = dim, space, M, ef_construction, threads
        self._ef = ef_search
        self._index: Any = None  # faiss.IndexHNSWSQ once trained
        self._pending = np.empty((0, dim), dtype=np.float32)  # vectors before training
        self._trained_on = 0
        self._dead = np.zeros(0, dtype=bool)
        self._n_dead = 0  # self._dead.sum(), kept so that a query costs nothing per element
        self._mapped: Path | None = None  # the file a read-only mapped index reads
        self._cache_lock = threading.Lock()
        self._changed()

    @classmethod
    def open(cls, saved: SavedIndex, threads: int = -1) -> FaissSQ8Backend:
        """Validate ``index.faiss`` and ``tombstones.npy`` against ``index.json``, then map the index read-only."""
        meta, path = saved.meta, saved.path(FAISS_FILE)
        if meta["space"] not in ("cosine", "ip"):
            raise BundleError(f"{saved.directory}: a {meta['space']} index cannot be in format {cls.format!r}")
        ntotal = int(meta["next_label"])
        header = faiss_file.validate(path, dim=meta["dim"], M=meta["M"], ef_construction=meta["ef_construction"],
                                     ntotal=ntotal)
        dead = _read_tombstones(saved.path(TOMBSTONES_FILE), ntotal)
        if ntotal - len(dead) != meta["count"]:
            raise BundleError(f"{saved.directory}: {ntotal} vectors and {len(dead)} tombstones, but count "
                              f"{meta['count']}")
        backend = cls(meta["dim"], space=meta["space"], M=meta["M"], ef_construction=meta["ef_construction"],
                      ef_search=meta["ef_search"], threads=threads)
        if header.trained:
            backend._index = _read_index(path, _FLAGS_MMAP)
            backend._mapped = path
        backend._dead = np.zeros(ntotal, dtype=bool)
        backend._dead[dead] = True
        backend._n_dead = int(backend._dead.sum())
        trained_on = meta["sq"].get("trained_on") if isinstance(meta.get("sq"), dict) else None
        backend._trained_on = trained_on if isinstance(trained_on, int) else ntotal  # informational only
        return backend

    # ---- state -------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Vectors in faiss (live and tombstoned)."""
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def element_count(self) -> int:
        """Labels used (live and tombstoned, trained or not)."""
        return self.ntotal + len(self._pending)

    @property
    def capacity(self) -> int:
        """Slots allocated (faiss grows per add: the labels used)."""
        return self.element_count

    @property
    def writable(self) -> bool:
        """Whether the index is in memory (not a read-only map of a saved file)."""
        return self._mapped is None

    @property
    def ef_search(self) -> int:
        """The search beam width."""
        return self._ef

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef = int(value)

    def config(self, next_label: int) -> dict[str, Any]:
        """Fields of ``index.json`` this backend decides: ``next_label`` (= faiss's ``ntotal`` after a save),
        the faiss version that wrote the file and the quantiser."""
        return {"next_label": self.element_count, "engine": {"faiss": faiss.__version__},
                "sq": {"qtype": "QT_8bit", "rangestat": "RS_minmax", "trained_on": self._trained_on}}

    def dead_labels(self, next_label: int) -> dict[str, np.ndarray]:
        """Labels no stored id may have, by reason (what :meth:`runtime.index.VectorIndex.load` checks)."""
        return {f"tombstoned in {TOMBSTONES_FILE}": np.flatnonzero(self._dead)}

    def _changed(self) -> None:
        """Forget everything derived from the codes (after a write: faiss may have moved them)."""
        self._codes: np.ndarray | None = None
        self._not_dead: tuple[Any, np.ndarray] | None = None
        self._subset: tuple[bytes, np.ndarray, Any] | None = None
        self._allowed_sel: tuple[bytes, Any, np.ndarray] | None = None

    def prepare_save(self) -> None:
        """Train the quantiser on the vectors so far (if it is not yet) so that they can be saved as codes."""
        if self._index is None and len(self._pending):
            self._train()

    def make_writable(self) -> None:
        """Read the mapped file into memory (faiss cannot add to a read-only map)."""
        if self._mapped is not None:
            self._index = _read_index(self._mapped, 0)
            self._mapped = None
            self._changed()

    # ---- writes ------------------------------------------------------------------------------
    def _new_index(self, like: Any = None) -> Any:
        index = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit, self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = max(1, self._ef)
        if like is not None:  # share trained ranges
            storage = faiss.downcast_index(index.storage)
            storage.sq = faiss.downcast_index(like.storage).sq
            storage.is_trained = index.is_trained = True
        return index

    def _train(self) -> None:
        rows, n = self._pending, len(self._pending)
        index = self._new_index()
        storage = faiss.downcast_index(index.storage)
        storage.sq.rangestat_arg = SMALL_MARGIN if n < TRAIN_MIN else 0.0
        with _omp_threads(self.threads):
            index.train(rows)
        logger.debug("trained 8-bit ranges on %d vectors", n)
        self._index, self._pending, self._trained_on = index, np.empty((0, self.dim), dtype=np.float32), n
        self._append(rows)

    def _append(self, rows: np.ndarray) -> None:
        with _omp_threads(self.threads):
            for start in range(0, len(rows), _BUILD_CHUNK):
                self._index.add(np.ascontiguousarray(rows[start : start + _BUILD_CHUNK], dtype=np.float32))

    def add(self, labels: list[int], vectors: np.ndarray) -> None:
        """Append vectors under new labels ``element_count, element_count + 1, ...`` (the index assigns them)."""
        first = self.element_count
        if labels != list(range(first, first + len(labels))):
            raise RuntimeError(f"{self.format} appends: labels must run from {first}")
        if self._mapped is not None:  # faiss aborts the process when adding to a mapped index
            raise RuntimeError("make_writable() must be called before the first write")
        rows = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self._changed()
        if self._index is None:
            self._pending = np.concatenate([self._pending, rows])
        else:
            self._append(rows)
        self._dead = np.concatenate([self._dead, np.zeros(len(rows), dtype=bool)])
        if self._index is None and len(self._pending) >= TRAIN_MIN:
            self._train()

    def remove(self, labels: list[int]) -> None:
        """Tombstone labels (never returned again; labels that never reached the index are ignored)."""
        chosen = np.asarray(labels, dtype=np.int64)
        self._dead[chosen[(chosen >= 0) & (chosen < len(self._dead))]] = True
        self._n_dead = int(self._dead.sum())
        self._changed()

    def compacted(self, live: np.ndarray) -> FaissSQ8Backend:
        """A new backend holding the vectors of ``live`` (sorted labels) as labels ``0..n-1``, graph rebuilt and
        ranges kept (codes decode to their bucket's value, which re-encodes to the same code)."""
        fresh = type(self)(self.dim, space=self.space, M=self.M, ef_construction=self.ef_construction,
                           ef_search=self._ef, threads=self.threads)
        fresh._trained_on, fresh._dead = self._trained_on, np.zeros(len(live), dtype=bool)
        if self._index is None:
            fresh._pending = self._pending[live]
            return fresh
        fresh._index = self._new_index(like=self._index)
        for start in range(0, len(live), _BUILD_CHUNK):
            fresh._append(self.vectors(live[start : start + _BUILD_CHUNK].tolist()))
        return fresh

    # ---- reads -------------------------------------------------------------------------------
    def _code_rows(self) -> np.ndarray:
        """A zero-copy ``(ntotal, dim)`` view of the codes (valid until the next write)."""
        with self._cache_lock:
            if self._codes is None:
                storage = faiss.downcast_index(self._index.storage)
                self._codes = faiss.rev_swig_ptr(storage.codes.data(), self.ntotal * self.dim).reshape(
                    self.ntotal, self.dim)
            return self._codes

    def vectors(self, labels: list[int]) -> np.ndarray:
        """Stored vectors (decoded from their 8-bit codes once trained; float32 before)."""
        chosen = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(chosen) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if chosen.min() < 0 or chosen.max() >= self.element_count or self._dead[chosen].any():
            raise BundleError("the index has no vector for a stored id (a label beyond the index or tombstoned)")
        if self._index is None:
            return self._pending[chosen].copy()
        storage = faiss.downcast_index(self._index.storage)
        return storage.sa_decode(np.ascontiguousarray(self._code_rows()[chosen]))

    def _live_selector(self) -> tuple[Any, np.ndarray] | None:
        """A selector excluding the tombstones, or ``None`` when there are none."""
        if not self._n_dead:
            return None
        with self._cache_lock:
            if self._not_dead is None:
                sel, bits = _bitmap(np.flatnonzero(self._dead), self.ntotal)
                self._not_dead = (faiss.IDSelectorNot(sel), (sel, bits))
            return self._not_dead

    def _allowed_selector(self, allowed: np.ndarray) -> Any:
        key = allowed.tobytes()
        with self._cache_lock:
            if self._allowed_sel is None or self._allowed_sel[0] != key:
                keep = allowed[~self._dead[allowed]]
                sel, bits = _bitmap(keep, self.ntotal)
                self._allowed_sel = (key, sel, bits)
            return self._allowed_sel[1]

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Graph search (``allowed``: sorted labels to keep); ``None`` when fewer than ``k`` are found."""
        if self._index is None:
            return None  # not trained yet: the vectors are searched exactly
        ef, live = self._ef, self.ntotal - self._n_dead
        if allowed is None:
            chosen = self._live_selector()
            selector = None if chosen is None else chosen[0]
            ef = int(ef * self.ntotal / max(1, live))
        else:
            selector = self._allowed_selector(allowed)
            ef = int(ef * min(_EF_BOOST_MAX, self.ntotal / max(1, len(allowed))))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef, k))
        scores, found = self._index.search(np.ascontiguousarray(query, dtype=np.float32), k, params=params)
        if (found[0] < 0).any():
            logger.debug("faiss found fewer than %d results; using exact search", k)
            return None
        return found[0].astype(np.int64), scores[0]

    def exact(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top ``k`` over ``allowed`` (sorted labels) or every live element; ties by label."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        if self._index is None:
            labels = np.flatnonzero(~self._dead) if allowed is None else allowed[~self._dead[allowed]]
            return top_k(labels, self._pending[labels] @ query[0], k)
        if allowed is not None and len(allowed) <= _GATHER_MAX:
            labels, flat = self._gathered(allowed)
            if not len(labels):
                return labels, np.empty(0, dtype=np.float32)
            scores, rows = flat.search(query, min(k, len(labels)))
            keep = rows[0] >= 0
            return top_k(labels[rows[0][keep]], scores[0][keep], k)
        chosen = self._live_selector() if allowed is None else (self._allowed_selector(allowed),)
        params = None if chosen is None else faiss.SearchParameters(sel=chosen[0])
        scores, found = self._index.storage.search(query, k, params=params)
        keep = found[0] >= 0
        return top_k(found[0][keep].astype(np.int64), scores[0][keep], k)

    def _gathered(self, allowed: np.ndarray) -> tuple[np.ndarray, Any]:
        """``(labels, flat index of their codes)`` for a subset (the last one memoised until a write)."""
        key = allowed.tobytes()
        with self._cache_lock:
            if self._subset is not None and self._subset[0] == key:
                return self._subset[1], self._subset[2]
        labels = allowed[~self._dead[allowed]]
        flat = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        flat.sq = faiss.downcast_index(self._index.storage).sq
        flat.is_trained = True
        flat.add_sa_codes(np.ascontiguousarray(self._code_rows()[labels]))
        with self._cache_lock:
            self._subset = (key, labels, flat)
        return labels, flat

    # ---- persistence -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``index.faiss`` and ``tombstones.npy`` into ``folder`` (after :meth:`prepare_save`)."""
        index = self._index if self._index is not None else self._new_index()
        try:
            faiss.write_index(index, str(folder / FAISS_FILE))
        except RuntimeError as exc:
            raise OSError(f"faiss cannot write {folder / FAISS_FILE}: {exc}") from exc
        np.save(folder / TOMBSTONES_FILE, np.flatnonzero(self._dead).astype(np.int64), allow_pickle=False)

    def close(self) -> None:
        """Drop the index (and the map of a saved file)."""
        with self._cache_lock:
            self._changed()
            self._index, self._mapped = None, None


def _read_index(path: Path, flags: int) -> Any:
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise BundleError(f"{path}: faiss cannot read it ({str(exc)[:300]})") from exc
    if not isinstance(index, faiss.IndexHNSWSQ):
        raise BundleError(f"{path}: not a faiss IndexHNSWSQ ({type(index).__name__})")
    return index


def _read_tombstones(path: Path, ntotal: int) -> np.ndarray:
    """Sorted, unique int64 labels below ``ntotal`` (BundleError otherwise)."""
    try:
        with NPY_HEADER_LOCK:
            dead = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BundleError(f"{path}: unreadable tombstones ({exc})") from exc
    if dead.dtype != np.int64 or dead.ndim != 1:
        raise BundleError(f"{path}: tombstones must be a 1-d int64 array, not {dead.dtype} {dead.shape}")
    if len(dead) and (dead[0] < 0 or dead[-1] >= ntotal or (np.diff(dead) <= 0).any()):
        raise BundleError(f"{path}: tombstones must be sorted unique labels below {ntotal}")
    return dead
