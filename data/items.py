"""Items to embed: an ordered collection of text and image items with stable ids (torch-free).

Besides its payload, an item says where it belongs, which is all training and evaluation need:

* ``split``: ``train``, ``val`` or ``test`` (None: never trained on);
* ``group``: items sharing a group are pairs: an image and its captions, a query and its documents;
* ``role``: for texts, ``query`` (searches for the other members of its group) or ``document``
  (the default, None); captions are documents paired with images;
* ``path``: an image read from a file (None: rendered by ``image_fn``);
* ``origin``: where it came from, for messages (``captions.jsonl:12``).

A :class:`Corpus` is read in slices (``corpus.slice(lo, hi)``) and its ids are streamed
(:meth:`Corpus.iter_ids`), so a corpus kept on disk (:mod:`edgeret.data.sources`) never sits in memory
whole; :class:`Corpus` itself holds a list (the built-in corpora).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

KINDS = ("text", "image")
ROLES = (None, "query", "document")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CorpusItem:
    """One thing to embed. Exactly one of ``text`` and an image (``image_fn`` or ``path``) is set.

    ``image_fn`` renders the image lazily (corpora of augmented images never sit in memory).
    ``instruction`` is the teacher's task instruction for query-side texts; None = document side.
    """

    id: str
    kind: str  # "text" or "image"
    text: str | None = None
    image_fn: Callable[[], Image.Image] | None = None
    instruction: str | None = None
    split: str | None = None
    group: str | None = None
    role: str | None = None
    path: str | None = None
    origin: str | None = None

    def load(self) -> str | Image.Image:
        """The item's payload: its text, or its image (rendered, or decoded from ``path``)."""
        if self.kind == "text":
            assert self.text is not None
            return self.text
        if self.image_fn is not None:
            return self.image_fn()
        assert self.path is not None
        from edgeret.runtime.image import load_image  # lazy: only file-backed images need the runtime's decoder

        return load_image(self.path, self.origin or self.id)


@dataclass
class Corpus:
    """An ordered, named collection of items; ``meta`` records what determines its contents."""

    name: str
    items: list[CorpusItem]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_items(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def slice(self, lo: int, hi: int) -> list[CorpusItem]:
        """Items ``lo`` to ``hi`` (exclusive), in order."""
        return self.items[lo:hi]

    def iter_ids(self) -> Iterator[str]:
        """Every id, in order (streamed)."""
        return (item.id for item in self.items)

    @property
    def ids(self) -> list[str]:
        """Every id, in order (a list: prefer :meth:`iter_ids` for big corpora)."""
        return list(self.iter_ids())

    def iter_items(self, chunk: int = 4096) -> Iterator[CorpusItem]:
        """Every item, in order, read ``chunk`` at a time."""
        for lo in range(0, len(self), chunk):
            yield from self.slice(lo, min(lo + chunk, len(self)))

    def ids_sha256(self) -> str:
        """sha256 of the id order: two corpora with the same ids in the same order share it."""
        return ids_sha256(self.iter_ids())

    def instructions(self) -> dict[str, list[str]]:
        """The distinct instructions used per kind, for cache metadata."""
        out: dict[str, set[str]] = {}
        for item in self.iter_items():
            out.setdefault(item.kind, set()).add(item.instruction or "")
        return {kind: sorted(values) for kind, values in out.items()}


def check_items(items: Iterable[CorpusItem]) -> None:
    """Kinds, roles and splits are known values and ids are unique (ValueError names the first offender)."""
    seen: set[str] = set()
    for item in items:
        if item.kind not in KINDS:
            raise ValueError(f"item {item.id!r}: kind must be 'text' or 'image', got {item.kind!r}")
        if item.role not in ROLES or (item.role is not None and item.kind != "text"):
            raise ValueError(f"item {item.id!r}: role must be 'query' or 'document' on a text, got {item.role!r}")
        if item.split is not None and item.split not in SPLITS:
            raise ValueError(f"item {item.id!r}: split must be one of {SPLITS}, got {item.split!r}")
        if item.id in seen:
            raise ValueError(f"duplicate corpus id {item.id!r}")
        seen.add(item.id)


def ids_sha256(ids: Iterable[str]) -> str:
    """sha256 of an id order (the identity of a corpus's row order in cache metadata), streamed; equal to the
    sha256 of ``json.dumps(list(ids))``."""
    digest = hashlib.sha256(b"[")
    for i, item in enumerate(ids):
        digest.update((", " if i else "").encode() + json.dumps(item).encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()
