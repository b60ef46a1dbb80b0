"""Typed, bounded field access for the runtime's JSON files (manifest, ``index.json``, ``preprocessor.json``).

Every number a bundle supplies is range-checked here before it reaches hnswlib, tokenizers, onnxruntime
or an allocation, so a hostile file gets a :class:`BundleError` naming the field instead of an
OverflowError, a TypeError or an absurd allocation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import BundleError, shorten

#: bounds of the numbers a bundle may carry (inclusive)
LIMITS = {
    "dim": (1, 65536),
    "M": (2, 1024),
    "ef_construction": (1, 100_000),
    "ef_search": (1, 100_000),
    "count": (0, 2**32 - 2),  # hnswlib's internal ids are 32-bit
    "next_label": (0, 2**32 - 2),
    "max_length": (1, 65536),
    "image_size": (1, 2048),
    "size": (1, 2048),
    "bytes": (0, 2**50),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``mapping[key]`` if it is a ``kind`` (bools are never ints), else a BundleError naming the field."""
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    is_bool = isinstance(value, bool) and kind in (int, (int,))
    if value is None or not isinstance(value, kind) or is_bool:
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BundleError(f"{where}: field {key!r} is missing or not a {name}")
    return value


def require_int(mapping: Any, key: str, where: str, bounds: tuple[int, int] | None = None) -> int:
    """An int field within ``bounds`` (default: :data:`LIMITS` for ``key``)."""
    value = require(mapping, key, int, where)
    low, high = bounds or LIMITS.get(key, (-(2**63), 2**63 - 1))
    if not low <= value <= high:
        raise BundleError(f"{where}: {key!r} is {shorten(value, 40)}; it must be in {low}..{high}")
    return value


def require_str(mapping: Any, key: str, where: str, max_len: int = 4096) -> str:
    """A non-empty str field of at most ``max_len`` characters."""
    value = require(mapping, key, str, where)
    if not value or len(value) > max_len:
        raise BundleError(f"{where}: {key!r} must be a non-empty string of at most {max_len} characters")
    return value


def optional_mapping(mapping: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    """``mapping[key]`` if it is an object, ``None`` if absent or null; anything else is refused."""
    value = mapping.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise BundleError(f"{where}: {key!r} must be an object or null, got {type(value).__name__}")
    return value


def check_file_entries(files: Any, where: str, max_entries: int = 100_000) -> dict[str, dict[str, Any]]:
    """A ``{relpath: {"sha256": hex, "bytes": int}}`` table, each entry checked."""
    if not isinstance(files, Mapping):
        raise BundleError(f"{where}: 'files' must be an object")
    if len(files) > max_entries:
        raise BundleError(f"{where}: 'files' lists {len(files)} entries (at most {max_entries})")
    for rel, entry in files.items():
        label = f"{where} files[{shorten(rel, 80)}]"
        if not isinstance(entry, Mapping):
            raise BundleError(f"{label}: must be an object with 'sha256' and 'bytes', got {type(entry).__name__}")
        require_int(entry, "bytes", label)
        sha = require(entry, "sha256", str, label)
        if not _SHA256.match(sha):
            raise BundleError(f"{label}: 'sha256' must be 64 lowercase hex digits")
    return dict(files)
