"""File-level helpers for the teacher cache: atomic writes, shard files and metadata diffs.

Everything here is torch-free; :mod:`distill.cache` builds the public API on top of it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgeret.data.items import ids_sha256  # noqa: F401  (re-exported)
from edgeret.data.results import now_iso  # noqa: F401  (re-exported)
from edgeret.runtime.versions import package_versions as versions

logger = logging.getLogger(__name__)

EMBEDDINGS = "embeddings.f16.npy"
IDS = "ids.json"
META = "cache_meta.json"
PLAN = "plan.json"
SHARDS = "shards"
#: Files this module writes in a cache directory (the only ones ``force`` removes).
ITEMS = "items.sqlite"
OWN_FILES = (META, PLAN, EMBEDDINGS, IDS, ITEMS)
_TMP = ".tmp-"


def jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, unknown types strings)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def read_json(path: Path) -> Any:
    """Parse a JSON file, naming the file in the error if it is corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt JSON in {path}: {exc}") from exc


def tmp_path(path: Path) -> Path:
    """The temporary name a file is written under before its atomic rename."""
    return path.with_name(f"{path.name}{_TMP}{os.getpid()}")


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it is durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None],
                 after: Callable[[Path], None] | None = None) -> None:
    """Write ``path`` via ``write(file)`` to a temp name, fsync, then rename over ``path``; ``after(tmp)``, when
    given, fills the temp file by name instead (e.g. a database) before the fsync.

    Readers see either the old file, nothing, or the complete new file; never a partial one.
    """
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        if after is not None:
            after(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    data = (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def write_json_lines_list(handle: IO[bytes], values: Iterable[Any]) -> None:
    """A JSON list, one value per line, written as the values stream in."""
    handle.write(b"[")
    for i, value in enumerate(values):
        handle.write((",\n" if i else "\n").encode() + json.dumps(value).encode("utf-8"))
    handle.write(b"\n]\n")


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Atomically write ``array`` as a .npy file."""
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def fsync_file(path: Path) -> None:
    """fsync an existing file's contents."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def shard_path(shards_dir: Path, index: int) -> Path:
    """Final name of shard ``index``."""
    return shards_dir / f"shard-{index:05d}.f16.npy"


def bad_path(shards_dir: Path, index: int) -> Path:
    """The list of items shard ``index`` could not embed (written just before the shard)."""
    return shards_dir / f"shard-{index:05d}.bad.json"


def shard_bounds(index: int, shard_size: int, count: int) -> tuple[int, int]:
    """Row range [lo, hi) of shard ``index`` in a corpus of ``count`` items."""
    lo = index * shard_size
    return lo, min(lo + shard_size, count)


def num_shards(count: int, shard_size: int) -> int:
    """How many shards a corpus of ``count`` items is split into."""
    return (count + shard_size - 1) // shard_size


def is_finished_shard(path: Path, rows: int, dim: int) -> bool:
    """True if ``path`` is a complete float16 shard of shape (rows, dim).

    Only the final name counts (temp files never do); a file there with the wrong shape,
    dtype or a truncated body is logged and treated as unfinished, so it is recomputed.
    """
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        ok = arr.shape == (rows, dim) and arr.dtype == np.float16
        del arr
    except (ValueError, OSError) as exc:
        logger.warning("ignoring unreadable shard %s: %s", path, exc)
        return False
    if not ok:
        logger.warning("ignoring shard %s: expected float16 (%d, %d)", path, rows, dim)
    return ok


def remove_stale_tmp(directory: Path) -> int:
    """Delete leftover temp files from interrupted writes of this module's files; returns the count."""
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.iterdir():
        base = path.name.split(_TMP, 1)[0]
        if _TMP in path.name and (base in OWN_FILES or base.startswith("shard-")) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        logger.info("removed %d leftover temp file(s) in %s", removed, directory)
    return removed


def diff_fields(expected: Any, found: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ, each with both values, recursing into dicts."""
    if isinstance(expected, dict) and isinstance(found, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(found), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            out += diff_fields(expected.get(key, _MISSING), found.get(key, _MISSING), name)
        return out
    if expected == found:
        return []
    return [f"{prefix}: cache has {_show(found)}, requested {_show(expected)}"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that determine a cache's contents (None if not installed)."""
    return versions(("edgeret", "torch", "numpy", "transformers", "pillow"), python=True)


def chunks(seq: list[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of ``seq`` of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
