"""Structural validation of an hnswlib index file (``hnsw.bin``) with numpy, before hnswlib reads it.

hnswlib trusts its file: a neighbour id beyond the element count, a list count beyond ``maxM0``, an
entry point on a level it does not have, or a link to an element missing the link's level makes the
first search read outside its buffers (a segfault). This module parses the layout that hnswlib 0.8's
``saveIndex`` writes (native byte order, ``size_t`` = 8 bytes) and checks every field hnswlib uses:

```
header (96 bytes): size_t offsetLevel0, max_elements, cur_element_count, size_data_per_element,
                   label_offset, offsetData; int maxlevel; uint32 enterpoint_node;
                   size_t maxM, maxM0, M; double mult; size_t ef_construction
level 0:           cur_element_count records of size_data_per_element bytes:
                   uint32 header (low 16 bits: link count; byte 2: deleted flag), maxM0 uint32 ids,
                   dim float32, size_t label
upper levels:      per element: uint32 n_bytes, then n_bytes / (4 + 4 maxM) blocks of
                   (uint32 header, maxM uint32 ids), one per level 1..L
```

(hnswlib zeroes a level-0 record when it adds the element, so every one of its ``maxM0`` slots, used or not,
holds an element id; upper-level blocks are checked up to their link counts.)

Checks: sizes and offsets consistent with ``dim`` and ``M`` (``maxM = M``, ``maxM0 = 2M``,
``mult = 1/ln M``), ``ef_construction`` as recorded, the file size exactly what the element count and link
lists add up to, every link count within bounds, every link id < element count and pointing at an element
that has the link's level, levels <= ``maxlevel``, the entry point on ``maxlevel``, labels unique and below
``next_label``. Level-0 records are read in chunks (bounded memory); vector values are not inspected.
Cost: about one sequential read of the file (see ``bench/results/hardening.md``).
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError

_HEADER = struct.Struct("=6Q i I 3Q d Q")
HEADER_BYTES = _HEADER.size  # 96
#: labels may run ahead of the element count by at most this many (free labels of failed adds)
LABEL_GAP = 1 << 20
_CHUNK_BYTES = 16 << 20
_MAX_LEVEL = 255


@dataclass(frozen=True)
class HnswHeader:
    """The fields of an hnswlib file header that the runtime uses."""

    max_elements: int
    count: int
    dim: int
    M: int
    maxlevel: int
    entry_point: int
    ef_construction: int


@dataclass(frozen=True, eq=False)
class HnswFile:
    """A validated hnswlib file: its header and the labels of the elements marked deleted."""

    header: HnswHeader
    deleted_labels: np.ndarray


def read_header(path: str | Path) -> tuple[HnswHeader, tuple[int, ...], int]:
    """``(header, raw fields, file size)``; a BundleError if the file is too short to hold a header."""
    with open(path, "rb") as handle:
        raw = handle.read(HEADER_BYTES)
        size = handle.seek(0, 2)
    if len(raw) < HEADER_BYTES:
        raise BundleError(f"{path}: {size} bytes, too short to be an hnswlib index")
    fields = _HEADER.unpack(raw)
    off0, max_el, count, per_el, label_off, data_off, maxlevel, entry, max_m, max_m0, m, mult, efc = fields
    header = HnswHeader(max_el, count, (label_off - data_off) // 4 if label_off > data_off else 0, m, maxlevel,
                        entry, efc)
    return header, fields, size


def validate(path: str | Path, *, dim: int, M: int, ef_construction: int, next_label: int) -> HnswFile:
    """Check ``path`` against the recorded index config (see the module docstring).

    Raises:
        BundleError: naming the first inconsistency found.
    """
    header, fields, size = read_header(path)
    _check_header(path, fields, size, dim=dim, M=M, ef_construction=ef_construction, next_label=next_label)
    count, per_el = fields[2], fields[3]
    links_start = HEADER_BYTES + count * per_el
    tail = _read_tail(path, links_start, size)
    levels, blocks = _walk_link_lists(path, tail, count, M, header.maxlevel)
    if count:
        if header.entry_point >= count or levels[header.entry_point] != header.maxlevel:
            raise _bad(path, f"entry point {header.entry_point} is not an element on level {header.maxlevel}")
        _check_upper_links(path, tail, blocks, levels, count, M)
    deleted = _check_level0(path, count, per_el, 2 * M, dim, next_label)
    return HnswFile(header, deleted)


def _bad(path: str | Path, what: str) -> BundleError:
    return BundleError(f"{path}: malformed hnswlib index ({what})")


def _check_header(path: str | Path, fields: tuple, size: int, *, dim: int, M: int, ef_construction: int,
                  next_label: int) -> None:
    off0, max_el, count, per_el, label_off, data_off, maxlevel, entry, max_m, max_m0, m, mult, efc = fields
    links0 = 4 + 4 * max_m0
    expected = {"offsetLevel0": (off0, 0), "M": (m, M), "maxM": (max_m, M), "maxM0": (max_m0, 2 * M),
                "offsetData": (data_off, links0), "label_offset": (label_off, links0 + 4 * dim),
                "size_data_per_element": (per_el, links0 + 4 * dim + 8), "ef_construction": (efc, ef_construction)}
    for name, (found, want) in expected.items():
        if found != want:
            raise _bad(path, f"{name} is {found}, expected {want} for dim {dim}, M {M}")
    if not math.isfinite(mult) or abs(mult - 1.0 / math.log(M)) > 1e-9:
        raise _bad(path, f"level multiplier {mult!r} is not 1/ln(M)")
    if count > max_el or count > next_label or next_label > count + LABEL_GAP:
        raise _bad(path, f"{count} elements, capacity {max_el}, next_label {next_label}")
    if HEADER_BYTES + count * per_el + 4 * count > size:
        raise _bad(path, f"{size} bytes cannot hold {count} elements")
    if count == 0 and size != HEADER_BYTES:
        raise _bad(path, "an empty index with trailing data")
    if count and not 0 <= maxlevel <= _MAX_LEVEL:
        raise _bad(path, f"maxlevel {maxlevel}")


def _read_tail(path: str | Path, start: int, size: int) -> np.ndarray:
    """The link-list section as uint32 words (its length must be a multiple of 4)."""
    if (size - start) % 4:
        raise _bad(path, "the link lists do not end on a 4-byte boundary")
    with open(path, "rb") as handle:
        handle.seek(start)
        return np.frombuffer(handle.read(size - start), dtype=np.uint32)


def _walk_link_lists(path: str | Path, tail: np.ndarray, count: int, M: int, maxlevel: int
                     ) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Per-element levels and ``(element, first word, levels)`` of each upper-level list.

    hnswlib reads the section as a chain ``n_bytes, [n_bytes / 4 words]`` per element, an empty list being a
    single zero word. So, from any position, the next non-empty list starts at the first non-zero word: with
    ``nxt[k]`` = the first non-zero word at or after the end of the list that non-zero word ``k`` would start
    (one vectorised search), the chain is followed once per element that has upper levels, and the element
    numbers follow from prefix sums. The parse is hnswlib's, so it must cover the section exactly with
    ``count`` elements.
    """
    block = 4 + 4 * M
    nonzero = np.flatnonzero(tail)
    sizes = tail[nonzero].astype(np.int64)
    candidates = np.flatnonzero((sizes % block == 0) & (sizes <= maxlevel * block))  # what a list size can be
    ends = nonzero[candidates] + 1 + sizes[candidates] // 4
    following = dict(zip(candidates.tolist(), np.searchsorted(nonzero, ends).tolist(), strict=True))
    chain, k = [], 0
    while k < len(nonzero):
        chain.append(k)
        k = following.get(k, -1)
        if k < 0:  # the chain reached a word that cannot be a list size
            raise _bad(path, f"a link list of {int(sizes[chain[-1]])} bytes at word {int(nonzero[chain[-1]])}")
    heads, n_bytes = nonzero[chain], sizes[chain]
    levels_of, rest = np.divmod(n_bytes, block)
    words = n_bytes // 4
    if rest.any() or (levels_of < 1).any() or (levels_of > maxlevel).any() or (heads + 1 + words > len(tail)).any():
        bad = int(np.flatnonzero(rest | (levels_of < 1) | (levels_of > maxlevel) | (heads + 1 + words > len(tail)))[0])
        raise _bad(path, f"a link list of {int(n_bytes[bad])} bytes at word {int(heads[bad])}")
    elements = heads - (np.cumsum(words) - words)  # every earlier list's words shift the element numbers
    if len(tail) - int(words.sum()) != count:
        raise _bad(path, f"the link lists hold {len(tail) - int(words.sum())} elements, not {count}")
    levels = np.zeros(count, dtype=np.int16)
    levels[elements] = levels_of
    return levels, list(zip(elements.tolist(), (heads + 1).tolist(), levels_of.tolist(), strict=True))


def _check_upper_links(path: str | Path, tail: np.ndarray, blocks: list[tuple[int, int, int]],
                       levels: np.ndarray, count: int, M: int) -> None:
    if not blocks:
        return
    stride = 1 + M
    starts = np.asarray([s for _, s, _ in blocks], dtype=np.int64)
    depth = np.asarray([lv for _, _, lv in blocks], dtype=np.int64)
    first = np.repeat(starts, depth)
    within = np.arange(int(depth.sum())) - np.repeat(np.cumsum(depth) - depth, depth)
    heads = first + within * stride
    link_level = within + 1
    counts = tail[heads] & 0xFFFF
    if (counts > M).any():
        raise _bad(path, f"an upper-level link list holds more than maxM={M} links")
    ids = tail[heads[:, None] + 1 + np.arange(M)]
    used = np.arange(M) < counts[:, None]
    targets = ids[used].astype(np.int64)
    if (targets >= count).any():
        raise _bad(path, f"an upper-level link points beyond the {count} elements")
    if (levels[targets] < np.broadcast_to(link_level[:, None], used.shape)[used]).any():
        raise _bad(path, "a link points at an element that lacks the link's level")


def _check_level0(path: str | Path, count: int, per_el: int, max_m0: int, dim: int, next_label: int
                  ) -> np.ndarray:
    """Link counts and ids of every level-0 record, labels unique and in range; the deleted elements' labels.

    The records are memory-mapped and checked in chunks (the pages of a chunk are dropped from this process
    once checked, where ``madvise`` is available), so the vectors are never copied.
    """
    labels = np.empty(count, dtype=np.uint64)
    deleted = np.zeros(count, dtype=bool)
    if count:
        layout = np.dtype({"names": ["head", "links", "label"], "formats": ["=u4", ("=u4", (max_m0,)), "=u8"],
                           "offsets": [0, 4, 4 + 4 * max_m0 + 4 * dim], "itemsize": per_el})
        problem = None
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            rows = max(1, _CHUNK_BYTES // per_el)
            for start in range(0, count, rows):
                n = min(rows, count - start)
                offset = HEADER_BYTES + start * per_el
                try:
                    _check_records(path, np.frombuffer(mapped, dtype=layout, count=n, offset=offset), count,
                                   max_m0, labels[start : start + n], deleted[start : start + n])
                except BundleError as exc:  # keep no view of the map alive: it must close
                    problem = str(exc)
                    break
                if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                    page = offset - offset % mmap.PAGESIZE
                    mapped.madvise(mmap.MADV_DONTNEED, page, offset + n * per_el - page)
        if problem is not None:
            raise BundleError(problem)
        if int(labels.max()) >= next_label:
            raise _bad(path, f"a label is not below next_label {next_label}")
        marks = np.zeros(next_label, dtype=bool)
        marks[labels] = True
        if int(marks.sum()) != count:
            raise _bad(path, "labels are not unique")
    return labels[deleted].astype(np.int64)


def _check_records(path: str | Path, records: np.ndarray, count: int, max_m0: int, labels: np.ndarray,
                   deleted: np.ndarray) -> None:
    """One chunk of level-0 records. Every link slot, used or not, must hold an element id: hnswlib zeroes a
    record when it adds the element and only ever writes ids into it, so a slot beyond the count that holds
    anything else is not a file hnswlib wrote (cheaper than masking the unused slots, and stricter)."""
    head = records["head"].copy()
    if int((head & 0xFFFF).max()) > max_m0:
        raise _bad(path, f"a level-0 link list holds more than maxM0={max_m0} links")
    if int(records["links"].max()) >= count:
        raise _bad(path, f"a level-0 link points beyond the {count} elements")
    labels[:] = records["label"]
    deleted[:] = (head >> 16) & 1
