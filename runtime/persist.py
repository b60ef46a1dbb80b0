"""Crash-safe on-disk layout of an index: immutable generations and an atomically replaced pointer.

```
index/
  CURRENT            {"generation": "gen-000007"}   (replaced with os.replace, so always whole)
  gen-000007/
    hnsw.bin         the hnswlib graph + vectors
    meta.sqlite      string ids <-> labels, metadata, filterable attributes
    index.json       space, dim, M, ef_construction, ef_search, count, next_label, and the
                     sha256 + size of hnsw.bin and meta.sqlite (written at save time)
```

A save writes a complete new generation into a temporary folder, fsyncs every file and the folder,
renames it to ``gen-N``, fsyncs ``index/``, and only then swaps ``CURRENT``. A process killed at
any moment therefore leaves ``CURRENT`` naming a complete, checksummed generation. Stale temporary
folders and old generations are removed by the next successful save.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._fs import atomic_write_json, file_entry, fsync_dir, fsync_file, read_json, sha256_file
from .errors import BundleError

logger = logging.getLogger(__name__)

INDEX_FORMAT = "edgeret-index"
INDEX_VERSION = "1.0"
POINTER = "CURRENT"
HNSW_FILE = "hnsw.bin"
META_FILE = "meta.sqlite"
INDEX_META = "index.json"
_GEN = re.compile(r"^gen-(\d{6,})$")

#: fields every ``index.json`` carries besides ``format``, ``version`` and ``files``
META_FIELDS = ("space", "dim", "M", "ef_construction", "ef_search", "count", "next_label")


@dataclass(frozen=True)
class SavedIndex:
    """One saved generation of an index: its folder and its parsed ``index.json``."""

    directory: Path
    meta: dict[str, Any]

    @property
    def hnsw_path(self) -> Path:
        return self.directory / HNSW_FILE

    @property
    def meta_path(self) -> Path:
        return self.directory / META_FILE


def verify_files(root: Path, files: dict[str, Any], verify: bool | str, what: str) -> None:
    """Check that each ``{relpath: {sha256, bytes}}`` entry exists under ``root`` and matches.

    ``verify``: ``True``/``"full"`` checks size and sha256, ``"size"`` only sizes, ``False`` only existence.
    """
    for rel, entry in files.items():
        path = root / rel
        if not path.is_file():
            raise BundleError(f"{what}: file {rel!r} is missing ({path})")
        if not verify:
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise BundleError(
                f"{what}: file {rel!r} has {size} bytes, {entry.get('bytes')} were recorded (altered or corrupt)"
            )
        if verify != "size" and sha256_file(path) != entry.get("sha256"):
            raise BundleError(f"{what}: file {rel!r} does not match its recorded sha256 (altered or corrupt)")


def read_saved_index(index_dir: str | Path, verify: bool | str = True) -> SavedIndex | None:
    """The generation ``CURRENT`` points at, verified; ``None`` if nothing was ever saved there."""
    index_dir = Path(index_dir)
    pointer = index_dir / POINTER
    if not pointer.is_file():
        return None
    try:
        generation = read_json(pointer)["generation"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"index pointer {pointer} is unreadable: {exc}") from exc
    if not isinstance(generation, str) or not _GEN.match(generation):
        raise BundleError(f"index pointer {pointer} names an invalid generation {generation!r}")
    directory = index_dir / generation
    meta_path = directory / INDEX_META
    if not meta_path.is_file():
        raise BundleError(f"index generation {directory} has no {INDEX_META}")
    try:
        meta = read_json(meta_path)
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    _check_meta(meta, meta_path)
    verify_files(directory, meta["files"], verify, what=f"index {directory}")
    return SavedIndex(directory, meta)


def _check_meta(meta: Any, where: Path) -> None:
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        raise BundleError(f"{where}: not an {INDEX_FORMAT} file")
    major = str(meta.get("version", "")).split(".")[0]
    if major != INDEX_VERSION.split(".")[0]:
        raise BundleError(
            f"{where}: index format version {meta.get('version')!r} is not supported "
            f"(this runtime reads {INDEX_VERSION.split('.')[0]}.x)"
        )
    missing = [key for key in (*META_FIELDS, "files") if key not in meta]
    if missing:
        raise BundleError(f"{where}: missing field(s) {', '.join(missing)}")
    needed = {HNSW_FILE, META_FILE} - set(meta["files"])
    if needed:
        raise BundleError(f"{where}: 'files' lacks {', '.join(sorted(needed))}")


def _generations(index_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for child in index_dir.iterdir() if index_dir.is_dir() else ():
        match = _GEN.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def write_generation(index_dir: str | Path, writer: Callable[[Path], None], meta: dict[str, Any]) -> SavedIndex:
    """Atomically publish a new generation.

    ``writer(folder)`` must write ``hnsw.bin`` and ``meta.sqlite`` into ``folder``; ``meta`` holds
    :data:`META_FIELDS`. Checksums, fsyncs, the rename and the pointer swap are done here.
    """
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        index_dir.mkdir(parents=True)
        fsync_dir(index_dir.parent)
    generations = _generations(index_dir)
    number = generations[-1][0] + 1 if generations else 1
    tmp = index_dir / f".tmp-{os.urandom(16).hex()}"
    tmp.mkdir()
    try:
        writer(tmp)
        files = {name: file_entry(tmp / name) for name in (HNSW_FILE, META_FILE)}
        full = {"format": INDEX_FORMAT, "version": INDEX_VERSION, **{k: meta[k] for k in META_FIELDS}, "files": files}
        atomic_write_json(tmp / INDEX_META, full)
        for name in (HNSW_FILE, META_FILE):
            fsync_file(tmp / name)
        fsync_dir(tmp)
        final = index_dir / f"gen-{number:06d}"
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(index_dir)
    atomic_write_json(index_dir / POINTER, {"generation": final.name})
    _remove_stale(index_dir, keep=final)
    logger.debug("saved index generation %s (%d items)", final, meta["count"])
    return SavedIndex(final, full)


def _remove_stale(index_dir: Path, keep: Path) -> None:
    """Delete old generations and abandoned temporary folders (leftovers of killed saves)."""
    for child in index_dir.iterdir():
        stale_gen = _GEN.match(child.name) and child != keep
        if child.is_dir() and (stale_gen or child.name.startswith(".tmp-")):
            shutil.rmtree(child, ignore_errors=True)
        elif child.is_file() and child.name.startswith(".") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)  # e.g. '.CURRENT.<pid>.tmp' of a save killed while swapping
