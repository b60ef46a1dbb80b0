"""What an index holds per item: string ids, metadata, and the :class:`SearchResult` a search returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .errors import shorten
from .store import check_metadata


class SearchResult(NamedTuple):
    """One hit: the item's id, its similarity (higher is better) and its metadata."""

    id: str
    score: float
    metadata: dict[str, Any] | None


def check_ids(ids: Sequence[str], what: str = "ids") -> list[str]:
    """Non-empty, unique strings (a single str is refused: pass a list)."""
    if isinstance(ids, str | bytes):
        raise TypeError(f"{what} must be a list of strings, not a single {type(ids).__name__}")
    ids = list(ids)
    for i, item in enumerate(ids):
        if not isinstance(item, str) or not item:
            raise ValueError(f"{what}[{i}] must be a non-empty str, got {shorten(item, 60)}")
        if not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"{what}[{i}] contains a lone surrogate, not text: {shorten(item, 60)}") from exc
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})
        raise ValueError(f"duplicate ids in one call: [{', '.join(shorten(d, 60) for d in dupes[:10])}]; "
                         "nothing was changed")
    return ids


def check_metadata_list(metadata: Sequence[Any] | None, n: int) -> list[str | None]:
    """Per-item metadata JSON (``None`` for all when ``metadata`` is None)."""
    if metadata is None:
        return [None] * n
    if isinstance(metadata, Mapping) or len(metadata) != n:
        raise ValueError(f"metadata must be a list with one dict (or None) per id ({n}), got {type(metadata).__name__}")
    return [check_metadata(meta, f"metadata[{i}]") for i, meta in enumerate(metadata)]
