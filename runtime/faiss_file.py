"""Structural validation of a faiss ``IndexHNSWSQ`` file (``index.faiss``) with numpy, before faiss reads it.

faiss (>= 1.14) checks much of its file itself, but some of its failures are assertions that abort the process,
and a link to a node that lacks the link's level is read past that node's neighbour list. So every field faiss
uses is checked here first, over a read-only memory map (nothing is copied; about one pass over the graph). The
layout faiss 1.14-1.15 writes (little-endian; ``vec<T>`` = uint64 count, then the items):

```
"IHNs"  int32 d, int64 ntotal, int64 1<<20, int64 1<<20, bool is_trained, int32 metric (0: inner product)
        vec<float64> assign_probas, vec<int32> cum_nneighbor_per_level ([0, 2M, 3M, ...]),
        vec<int32> levels (per node: levels + 1), vec<uint64> offsets (ntotal + 1), vec<int32> neighbors,
        int32 entry_point, int32 max_level, int32 efConstruction, int32 efSearch, int32 (unused)
"IxSQ"  the same index header, then int32 qtype (0: QT_8bit), int32 rangestat, float32 rangestat_arg,
        uint64 d, uint64 code_size, vec<float32> trained (2d: per-dimension min and range),
        vec<uint8> codes (ntotal x d)
```

Node ``i``'s links on level ``l`` are ``neighbors[offsets[i] + cum[l] : offsets[i] + cum[l + 1]]``, ``-1`` ending a
list early. Checks: the fourccs, dims, metric, quantiser and ``M`` as ``index.json`` records them, every array's
length consistent with ``ntotal`` and the file ending where the last array does, levels within
``cum_nneighbor_per_level``, offsets the running sum of the nodes' list sizes, every link in ``[-1, ntotal)`` and
pointing at a node that has the link's level, the entry point a node on ``max_level`` (the highest level), and the
quantiser's ranges finite.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError

_INDEX_HEADER = struct.Struct("<iqqq?i")
_HNSW_TAIL = struct.Struct("<5i")
_SQ_FIELDS = struct.Struct("<iifQQ")
_DUMMY = 1 << 20
_MAX_LEVELS = 64
QT_8BIT = 0
METRIC_INNER_PRODUCT = 0


@dataclass(frozen=True)
class FaissHeader:
    """What the runtime needs to know of a validated ``index.faiss``."""

    dim: int
    ntotal: int
    M: int
    ef_construction: int
    trained: bool
    max_level: int


class _Reader:
    """Sequential little-endian reads over a memory map; any read past the end is a BundleError."""

    def __init__(self, path: Path, data: mmap.mmap | bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def bad(self, what: str) -> BundleError:
        return BundleError(f"{self.path}: malformed faiss index ({what})")

    def take(self, fmt: struct.Struct) -> tuple:
        if self.pos + fmt.size > len(self.data):
            raise self.bad(f"the file ends at byte {len(self.data)}, inside a header")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def fourcc(self, expected: bytes) -> None:
        found = bytes(self.data[self.pos : self.pos + 4])
        if found != expected:
            raise self.bad(f"expected {expected.decode()} at byte {self.pos}, found {found!r}")
        self.pos += 4

    def vector(self, dtype: str, name: str, expected: int | None = None) -> np.ndarray:
        (count,) = self.take(struct.Struct("<Q"))
        itemsize = np.dtype(dtype).itemsize
        if expected is not None and count != expected:
            raise self.bad(f"{name} holds {count} items, expected {expected}")
        if count > (len(self.data) - self.pos) // itemsize:
            raise self.bad(f"{name} claims {count} items, more than the file holds")
        array = np.frombuffer(self.data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=self.pos)
        self.pos += count * itemsize
        return array


def validate(path: str | Path, *, dim: int, M: int, ef_construction: int, ntotal: int) -> FaissHeader:
    """Check ``path`` against the recorded index config (see the module docstring).

    Raises:
        BundleError: naming the first inconsistency found.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            raise BundleError(f"{path}: malformed faiss index (an empty file)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            problem: BundleError | None = None
            try:
                header = _validate(_Reader(path, mapped), dim=dim, M=M, ef_construction=ef_construction,
                                   ntotal=ntotal)
            except BundleError as exc:  # raised once every numpy view of the map is gone: the map must close
                problem = BundleError(str(exc))
            if problem is not None:
                raise problem
    return header


def _check_index_header(reader: _Reader, what: str, dim: int, ntotal: int) -> bool:
    d, n, dummy1, dummy2, trained, metric = reader.take(_INDEX_HEADER)
    if d != dim:
        raise reader.bad(f"{what} holds {d}-d vectors but index.json says dim {dim}")
    if n != ntotal:
        raise reader.bad(f"{what} holds {n} vectors but index.json says next_label {ntotal}")
    if (dummy1, dummy2) != (_DUMMY, _DUMMY) or metric != METRIC_INNER_PRODUCT:
        raise reader.bad(f"{what} header fields {dummy1}, {dummy2}, metric {metric}")
    return bool(trained)


def _validate(reader: _Reader, *, dim: int, M: int, ef_construction: int, ntotal: int) -> FaissHeader:
    reader.fourcc(b"IHNs")
    trained = _check_index_header(reader, "the HNSW index", dim, ntotal)
    probas = reader.vector("f8", "assign_probas")
    if not 1 <= len(probas) <= _MAX_LEVELS or not np.all(np.isfinite(probas)):
        raise reader.bad(f"{len(probas)} level probabilities")
    cum = reader.vector("i4", "cum_nneighbor_per_level", len(probas) + 1).astype(np.int64)
    expected_cum = np.concatenate([[0], 2 * M + M * np.arange(len(probas))])
    if not np.array_equal(cum, expected_cum):
        raise reader.bad(f"neighbours per level {cum[:4].tolist()}..., expected M={M}")
    levels = reader.vector("i4", "levels", ntotal)
    offsets = reader.vector("u8", "offsets", ntotal + 1)
    _check_levels(reader, levels, offsets, cum)
    neighbors = reader.vector("i4", "neighbors", int(offsets[-1]))
    entry, max_level, efc, efs, _ = reader.take(_HNSW_TAIL)
    if efc != ef_construction or efs < 1:
        raise reader.bad(f"efConstruction {efc} (index.json: {ef_construction}), efSearch {efs}")
    _check_entry(reader, levels, entry, max_level)
    _check_links(reader, levels, offsets, cum, neighbors)
    reader.fourcc(b"IxSQ")
    if _check_index_header(reader, "the vector storage", dim, ntotal) != trained:
        raise reader.bad("the storage and the HNSW index disagree on is_trained")
    _check_quantiser(reader, dim, ntotal, trained)
    if reader.pos != len(reader.data):
        raise reader.bad(f"{len(reader.data) - reader.pos} bytes after the codes")
    return FaissHeader(dim, ntotal, M, efc, trained, max_level)


def _check_levels(reader: _Reader, levels: np.ndarray, offsets: np.ndarray, cum: np.ndarray) -> None:
    if len(levels) and (int(levels.min()) < 1 or int(levels.max()) >= len(cum)):
        raise reader.bad(f"node levels outside 1..{len(cum) - 1}")
    if int(offsets[0]) != 0:
        raise reader.bad("offsets do not start at 0")
    sizes = np.diff(offsets.astype(np.int64))  # a wrapped uint64 shows as negative: still unequal
    if len(levels) and not np.array_equal(sizes, cum[levels]):
        raise reader.bad("offsets are not the running sum of the nodes' neighbour lists")


def _check_entry(reader: _Reader, levels: np.ndarray, entry: int, max_level: int) -> None:
    if not len(levels):
        if (entry, max_level) != (-1, -1):
            raise reader.bad(f"an empty graph with entry point {entry} on level {max_level}")
        return
    top = int(levels.max()) - 1
    if not 0 <= entry < len(levels) or max_level != top or int(levels[entry]) - 1 != top:
        raise reader.bad(f"entry point {entry} on level {max_level}; the highest level is {top}")


def _check_links(reader: _Reader, levels: np.ndarray, offsets: np.ndarray, cum: np.ndarray,
                 neighbors: np.ndarray) -> None:
    """Every link id in ``[-1, ntotal)``; every upper-level link to a node that has that level."""
    ntotal = len(levels)
    if len(neighbors) and (int(neighbors.min()) < -1 or int(neighbors.max()) >= ntotal):
        raise reader.bad(f"a link points outside the {ntotal} nodes")
    starts = offsets[:-1].astype(np.int64)
    for level in range(1, int(levels.max(initial=1))):
        nodes = np.flatnonzero(levels > level)
        slots = (starts[nodes] + cum[level])[:, None] + np.arange(int(cum[level + 1] - cum[level]))
        targets = neighbors[slots]
        targets = targets[targets >= 0]
        if (levels[targets] <= level).any():
            raise reader.bad(f"a level-{level} link points at a node without level {level}")


def _check_quantiser(reader: _Reader, dim: int, ntotal: int, trained: bool) -> None:
    qtype, rangestat, _, sq_dim, code_size = reader.take(_SQ_FIELDS)
    if qtype != QT_8BIT or not 0 <= rangestat <= 3 or (sq_dim, code_size) != (dim, dim):
        raise reader.bad(f"quantiser type {qtype}, range statistic {rangestat}, d {sq_dim}, code size {code_size}")
    ranges = reader.vector("f4", "trained ranges", 2 * dim if trained else 0)
    if not np.all(np.isfinite(ranges)):
        raise reader.bad("quantiser ranges that are not finite")
    if ntotal and not trained:
        raise reader.bad("vectors stored without trained quantiser ranges")
    reader.vector("u1", "codes", ntotal * dim)
