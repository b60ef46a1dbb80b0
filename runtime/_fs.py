"""Small filesystem helpers: checksums, fsync, exclusive temporaries, atomic replacement, confined paths.

Temporaries are created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``, random name, same folder), so a
file or symlink planted under a predictable name can never be written through. :func:`confined` resolves
symlinks and refuses any path that leaves its root folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import threading
from pathlib import Path
from typing import Any

from .errors import BundleError, shorten

#: numpy parses ``.npy`` headers with ``ast.literal_eval``, and CPython's AST constructor is not safe to run in two
#: threads at once (python/cpython#106905: a spurious ``SystemError: AST constructor recursion depth mismatch``):
#: every ``.npy`` header this runtime reads is parsed under this lock
NPY_HEADER_LOCK = threading.Lock()

_CHUNK = 1 << 20
#: largest JSON file the runtime parses (manifest, index.json, CURRENT, preprocessor.json)
MAX_JSON_BYTES = 16 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: str | Path) -> dict[str, Any]:
    """``{"sha256": ..., "bytes": ...}`` for one file, as stored in manifests."""
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def fsync_file(path: str | Path) -> None:
    """Flush one file's data to stable storage."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: str | Path) -> None:
    """Flush a directory entry table (renames, creations). A no-op where directories can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def create_exclusive(folder: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new file ``folder/<prefix><random><suffix>`` opened for writing; never an existing file or symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    for _ in range(16):
        path = folder / f"{prefix}{os.urandom(8).hex()}{suffix}"
        try:
            return os.open(path, flags, 0o644), path
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", str(folder))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never a mix.

    The temporary (``.<name>.<pid>.<random>.tmp`` beside ``path``) is created exclusively; ``os.replace``
    then swaps the directory entry, so a symlink at ``path`` is replaced, never followed.
    """
    path = Path(path)
    fd, tmp = create_exclusive(path.parent, f".{path.name}.{os.getpid()}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON (UTF-8, trailing newline)."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file (at most ``limit`` bytes, no NaN/Infinity); every failure is a ValueError naming it.

    Raises:
        ValueError: malformed, too large, nested too deeply, not UTF-8, or unreadable (the path is shortened).
    """
    where = shorten(os.fspath(path))
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read ({exc.strerror or type(exc).__name__})") from exc
    if len(raw) > limit:
        raise ValueError(f"{where}: larger than {limit} bytes; not a plausible edgeret JSON file")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except RecursionError as exc:
        raise ValueError(f"{where}: JSON nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except ValueError as exc:  # JSONDecodeError, the int digit limit, NaN/Infinity
        raise ValueError(f"{where}: not valid JSON ({shorten(str(exc), 200)})") from exc


def confined(root: Path, relative: Any, what: str, base: Path | None = None) -> Path:
    """``root / relative`` after resolving symlinks, refused unless it stays inside ``root`` (resolved).

    ``base``: ``root`` already resolved (saves the lookups when many paths are checked).

    Raises:
        BundleError: ``relative`` is not a non-empty relative path string, or it (or a symlink on the way)
            leads outside ``root``.
    """
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise BundleError(f"{what}: path {shorten(relative)} must be a non-empty relative path string")
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise BundleError(f"{what}: path {shorten(relative)} must be a relative path inside the bundle")
    base = base or Path(root).resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise BundleError(f"{what}: path {shorten(relative)} cannot be resolved ({exc})") from exc
    if target != base and not target.is_relative_to(base):
        raise BundleError(f"{what}: path {shorten(relative)} leads outside the bundle (to {shorten(str(target))})")
    return target


def is_regular_file(path: Path) -> bool:
    """Whether ``path`` (after symlinks) is a regular file: FIFOs, devices and folders are not."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def remove_entry(path: Path) -> None:
    """Delete one directory entry without following symlinks: a link is unlinked, a real folder removed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)  # rmtree never follows symlinks inside the folder
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
