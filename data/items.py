"""Items to embed: an ordered list of text and image items with stable ids (torch-free)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class CorpusItem:
    """One thing to embed. Exactly one of ``text`` and ``image_fn`` is set.

    ``image_fn`` renders the image lazily (corpora of augmented images never sit in memory).
    ``instruction`` is the teacher's task instruction for query-side texts; None = document side.
    """

    id: str
    kind: str  # "text" or "image"
    text: str | None = None
    image_fn: Callable[[], Image.Image] | None = None
    instruction: str | None = None

    def load(self) -> str | Image.Image:
        """The item's payload: its text, or its rendered image."""
        if self.kind == "text":
            assert self.text is not None
            return self.text
        assert self.image_fn is not None
        return self.image_fn()


@dataclass
class Corpus:
    """An ordered, named collection of items; ``meta`` records what determines its contents."""

    name: str
    items: list[CorpusItem]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for item in self.items:
            if item.kind not in ("text", "image"):
                raise ValueError(f"item {item.id!r}: kind must be 'text' or 'image', got {item.kind!r}")
            if item.id in seen:
                raise ValueError(f"duplicate corpus id {item.id!r}")
            seen.add(item.id)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def ids_sha256(self) -> str:
        """sha256 of the id order: two corpora with the same ids in the same order share it."""
        return ids_sha256(self.ids)

    def instructions(self) -> dict[str, str | None]:
        """The distinct instructions used per kind, for cache metadata."""
        out: dict[str, set[str]] = {}
        for item in self.items:
            out.setdefault(item.kind, set()).add(item.instruction or "")
        return {kind: sorted(values) for kind, values in out.items()}  # type: ignore[misc]


def ids_sha256(ids: list[str]) -> str:
    """sha256 of an id order (the identity of a corpus's row order in cache metadata)."""
    return hashlib.sha256(json.dumps(ids).encode("utf-8")).hexdigest()
