"""Crash-safe, multi-process on-disk layout of an index: immutable generations behind an atomic pointer.

```
index/
  LOCK               writers' lock file (flock, held exclusively while a save runs)
  CURRENT            {"generation": "gen-000007"}   (replaced with os.replace, so always whole)
  gen-000007/
    LOCK             readers hold it shared while they use this generation's files
    hnsw.bin         hnswlib-f32: the graph + vectors (layout checked by :mod:`runtime.hnsw_file`), or
    index.faiss      faiss-hnsw-sq8: graph + 8-bit codes (:mod:`runtime.faiss_file`) and tombstones.npy
    meta.sqlite      string ids <-> labels, metadata, filterable attributes
    filters.npz      the filterable attributes as sorted numpy columns (:mod:`runtime.filters`; optional)
    index.json       index_format, space, dim, M, ef_construction, ef_search, count, next_label, engine, and
                     the sha256 + size of every other file (written at save time)
```

The index format (:mod:`runtime.index_formats`) decides the files and the ``index.json`` version: ``hnswlib-f32``
writes 1.1 (1.0 before formats existed; no ``index_format`` field means ``hnswlib-f32``), ``faiss-hnsw-sq8`` 2.0,
so a runtime that predates it refuses it by version. (``index.json``'s ``format`` is the file kind,
``edgeret-index``.)

**Save** (under ``index/LOCK``): write a complete generation into an exclusively created temporary
folder, fsync every file and the folder, rename it to ``gen-N`` (N = highest number present + 1), fsync
``index/``, and only then swap ``CURRENT``. A process killed at any moment leaves ``CURRENT`` naming a
complete, checksummed generation. The save then deletes every generation except the new one and the one
it replaced -- each only if its ``LOCK`` can be taken exclusively at once, i.e. no reader is opening it
(a busy one is left for a later save) -- and the temporaries of killed saves (``.tmp-*`` folders,
``.*.tmp`` files), never following a symlink.

**Open**: read ``CURRENT``, hold the generation's ``LOCK`` shared, check and verify it. If its files
vanished and ``CURRENT`` has moved on (a concurrent save removed it), read ``CURRENT`` again (up to three
times); if ``CURRENT`` still names it, the index is damaged and a :class:`BundleError` says so. The shared
hold lasts until :meth:`SavedIndex.release`: the index that opened the generation keeps it while it reads
``meta.sqlite`` in place or maps ``index.faiss``, and releases it once everything it uses is in memory.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._fs import (
    atomic_write_json,
    confined,
    file_entry,
    fsync_dir,
    fsync_file,
    is_regular_file,
    read_json,
    remove_entry,
    sha256_file,
)
from .errors import BundleError, shorten
from .index_formats import FORMATS, MAJORS, IndexFormat, index_format
from .locks import SharedLock, exclusive_lock, try_exclusive
from .schema import check_file_entries, require_int

logger = logging.getLogger(__name__)

INDEX_FORMAT = "edgeret-index"
#: the ``index.json`` version of the default format (``hnswlib-f32``); each format has its own (index_formats)
INDEX_VERSION = FORMATS["hnswlib-f32"].version
POINTER = "CURRENT"
LOCK_FILE = "LOCK"
HNSW_FILE = "hnsw.bin"
META_FILE = "meta.sqlite"
INDEX_META = "index.json"
SPACES = ("cosine", "ip", "l2")
_GEN = re.compile(r"^gen-(\d{6,})$")
_OPEN_ATTEMPTS = 3
#: default seconds a save waits for another process's save to finish
LOCK_TIMEOUT_S = 300.0

#: fields every ``index.json`` carries besides ``format``, ``version`` and ``files``
META_FIELDS = ("space", "dim", "M", "ef_construction", "ef_search", "count", "next_label")


class _Vanished(BundleError):
    """A file of a generation is not there (a concurrent save may have removed the generation)."""


@dataclass(frozen=True)
class SavedIndex:
    """One saved generation of an index: its folder, its parsed ``index.json`` and a reader's hold on it."""

    directory: Path
    meta: dict[str, Any]
    hold: SharedLock | None = field(default=None, compare=False, repr=False)

    @property
    def format(self) -> IndexFormat:
        """The generation's index format (checked when ``index.json`` was read)."""
        return index_format(self.meta.get("index_format"))

    @property
    def hnsw_path(self) -> Path:
        """The hnswlib graph file of this generation (format ``hnswlib-f32``)."""
        return self.directory / HNSW_FILE

    @property
    def meta_path(self) -> Path:
        """The metadata database of this generation."""
        return self.directory / META_FILE

    def path(self, name: str) -> Path:
        """A file of this generation."""
        return self.directory / name

    def has(self, name: str) -> bool:
        """Whether ``index.json`` lists file ``name`` (optional files such as ``filters.npz``)."""
        return name in self.meta["files"]

    def release(self) -> None:
        """Let writers delete this generation again (call once nothing reads its files in place; idempotent)."""
        if self.hold is not None:
            self.hold.release()


def verify_files(root: Path, files: dict[str, Any], verify: bool | str, what: str) -> None:
    """Check that each ``{relpath: {sha256, bytes}}`` entry is a regular file inside ``root`` and matches.

    ``verify``: ``True``/``"full"`` checks size and sha256, ``"size"`` only sizes, ``False`` only existence.
    Paths are confined to ``root`` after resolving symlinks.
    """
    for rel, entry in check_file_entries(files, what).items():
        path = confined(root, rel, what)
        if not is_regular_file(path):
            raise _Vanished(f"{what}: file {shorten(rel)} is missing or not a regular file ({shorten(str(path))})")
        if not verify:
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise BundleError(
                f"{what}: file {shorten(rel)} has {size} bytes, {entry['bytes']} were recorded (altered or corrupt)"
            )
        if verify != "size" and sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{what}: file {shorten(rel)} does not match its recorded sha256 (altered or corrupt)")


def current_generation(index_dir: str | Path) -> str | None:
    """The generation ``index_dir/CURRENT`` names (checked), or ``None`` if nothing was ever saved there."""
    pointer = Path(index_dir) / POINTER
    if not os.path.lexists(pointer):
        return None
    if pointer.is_symlink() or not is_regular_file(pointer):
        raise BundleError(f"index pointer {pointer} is not a regular file")
    try:
        generation = read_json(pointer, limit=4096)["generation"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"index pointer {pointer} is unreadable: {exc}") from exc
    if not isinstance(generation, str) or not _GEN.match(generation):
        raise BundleError(f"index pointer {pointer} names an invalid generation {shorten(generation)}")
    return generation


def read_saved_index(index_dir: str | Path, verify: bool | str = True) -> SavedIndex | None:
    """The generation ``CURRENT`` points at, verified and held shared; ``None`` if nothing was ever saved.

    Survives a concurrent save (see the module docstring). Call :meth:`SavedIndex.release` after loading.
    """
    index_dir = Path(index_dir)
    for attempt in range(_OPEN_ATTEMPTS):
        name = current_generation(index_dir)
        if name is None:
            return None
        try:
            return _open_generation(index_dir, name, verify)
        except _Vanished:
            if attempt + 1 == _OPEN_ATTEMPTS or current_generation(index_dir) == name:
                raise
            logger.debug("generation %s was replaced while it was being opened; reading CURRENT again", name)
    raise AssertionError("unreachable")  # pragma: no cover


def _open_generation(index_dir: Path, name: str, verify: bool | str) -> SavedIndex:
    directory = index_dir / name
    if directory.is_symlink():
        raise BundleError(f"index generation {directory} is a symlink; refusing to follow it")
    if not directory.is_dir():
        raise _Vanished(f"index generation {directory} is missing")
    hold = SharedLock(directory / LOCK_FILE)
    try:
        meta_path = confined(directory, INDEX_META, f"index {directory}")
        if not is_regular_file(meta_path):
            raise _Vanished(f"index generation {directory} has no {INDEX_META}")
        try:
            meta = read_json(meta_path, limit=1 << 20)
        except ValueError as exc:
            raise (_Vanished if not meta_path.exists() else BundleError)(str(exc)) from exc
        check_index_meta(meta, meta_path)
        verify_files(directory, meta["files"], verify, what=f"index {directory}")
    except BaseException:
        hold.release()
        raise
    return SavedIndex(directory, meta, hold)


def check_index_meta(meta: Any, where: Path) -> None:
    """Format, version, field types and bounds of an ``index.json``."""
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        raise BundleError(f"{where}: not an {INDEX_FORMAT} file")
    major = str(meta.get("version", ""))[:20].split(".")[0]
    if major not in MAJORS:
        raise BundleError(
            f"{where}: index format version {shorten(meta.get('version'), 40)} is not supported "
            f"(this runtime reads {', '.join(m + '.x' for m in MAJORS)})"
        )
    fmt = index_format(meta.get("index_format"), str(where))
    if fmt.major != major:
        raise BundleError(f"{where}: index format {fmt.name!r} is written as version {fmt.major}.x, "
                          f"not {shorten(meta.get('version'), 40)}")
    missing = [key for key in (*META_FIELDS, "files") if key not in meta]
    if missing:
        raise BundleError(f"{where}: missing field(s) {', '.join(missing)}")
    if meta["space"] not in SPACES:
        raise BundleError(f"{where}: 'space' must be one of {SPACES}, got {shorten(meta['space'], 40)}")
    for key in META_FIELDS[1:]:
        require_int(meta, key, str(where))
    if meta["count"] > meta["next_label"]:
        raise BundleError(f"{where}: count {meta['count']} exceeds next_label {meta['next_label']}")
    files = check_file_entries(meta["files"], str(where))
    needed = set(fmt.files) - set(files)
    if needed:
        raise BundleError(f"{where}: 'files' lacks {', '.join(sorted(needed))}")


@contextmanager
def writer_lock(index_dir: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the index folder's writers' lock (creating the folder if needed); re-entrant in a process.

    ``timeout``: seconds to wait for another process's save (default :data:`LOCK_TIMEOUT_S`), then
    :class:`IndexBusyError`.
    """
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        index_dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(index_dir.parent)
    with exclusive_lock(index_dir / LOCK_FILE, timeout=timeout):
        yield


def _next_number(index_dir: Path) -> int:
    numbers = [int(m.group(1)) for child in index_dir.iterdir() if (m := _GEN.match(child.name))]
    return max(numbers, default=0) + 1


def write_generation(index_dir: str | Path, writer: Callable[[Path], None], meta: dict[str, Any]) -> SavedIndex:
    """Atomically publish a new generation (under the writers' lock).

    ``writer(folder)`` must write the files of ``meta["index_format"]`` (default ``hnswlib-f32``) into ``folder``,
    and may write more (every regular file it writes is checksummed); ``meta`` holds :data:`META_FIELDS` and may
    hold other fields (``index_format``, ``engine``), which are kept. Checksums, fsyncs, the rename, the pointer swap
    and the clean-up are done here.
    """
    fmt = index_format(meta.get("index_format"))
    index_dir = Path(index_dir)
    with writer_lock(index_dir):
        number = _next_number(index_dir)
        tmp = index_dir / f".tmp-{os.urandom(16).hex()}"
        tmp.mkdir()  # fails if anything has that name: never writes through a planted entry
        try:
            writer(tmp)
            _touch(tmp / LOCK_FILE)
            names = sorted(p.name for p in tmp.iterdir() if p.name != LOCK_FILE and is_regular_file(p))
            missing = set(fmt.files) - set(names)
            if missing:
                raise RuntimeError(f"the {fmt.name} writer did not write {', '.join(sorted(missing))}")
            files = {name: file_entry(tmp / name) for name in names}
            extra = {k: v for k, v in meta.items() if k not in (*META_FIELDS, "format", "version", "index_format",
                                                                 "files")}
            full = {"format": INDEX_FORMAT, "version": fmt.version, "index_format": fmt.name,
                    **{k: meta[k] for k in META_FIELDS}, **extra, "files": files}
            atomic_write_json(tmp / INDEX_META, full)
            for name in names:
                fsync_file(tmp / name)
            fsync_dir(tmp)
            final = index_dir / f"gen-{number:06d}"
            os.rename(tmp, final)
        except BaseException:
            remove_entry(tmp)
            raise
        fsync_dir(index_dir)
        try:
            previous = current_generation(index_dir)
        except BundleError:  # a damaged pointer is simply replaced
            previous = None
        atomic_write_json(index_dir / POINTER, {"generation": final.name})
        remove_stale(index_dir, keep={final.name, previous})
    logger.debug("saved index generation %s (%d items)", final, meta["count"])
    return SavedIndex(final, full)


def _touch(path: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(path, flags, 0o644))


def remove_stale(index_dir: Path, keep: set[str | None]) -> None:
    """Delete generations not in ``keep`` that no reader holds, and temporaries of killed saves.

    Call only under :func:`writer_lock`. Symlinks are unlinked, never followed.
    """
    for child in list(index_dir.iterdir()):
        name = child.name
        if _GEN.match(name):
            if name not in keep:
                _remove_generation(child)
        elif name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp")):
            remove_entry(child)  # e.g. '.CURRENT.<pid>.<random>.tmp' of a save killed while swapping


def _remove_generation(folder: Path) -> None:
    if folder.is_symlink() or not folder.is_dir():
        remove_entry(folder)
        return
    fd = try_exclusive(folder / LOCK_FILE)
    if fd is None:
        logger.debug("generation %s is being opened by a reader; a later save removes it", folder)
        return
    try:
        remove_entry(folder)
    finally:
        if fd >= 0:
            os.close(fd)
