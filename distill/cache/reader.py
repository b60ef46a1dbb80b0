"""Open a finished teacher cache read-only (memmap) and check it: :func:`load_cache`, :class:`TeacherCache`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import files as cio
from .items import ITEMS, ItemTable

if TYPE_CHECKING:
    from edgeret.data.items import Corpus
    from edgeret.distill.teachers.base import Teacher

logger = logging.getLogger(__name__)

FORMAT = "edgeret-teacher-cache"
VERSION = 1
#: Meta fields that must agree between a cache and a request (shard_size only for unfinished builds).
IDENTITY_KEYS = ("format", "version", "teacher", "corpus", "instructions")


class CacheMismatchError(ValueError):
    """An existing cache (or unfinished build) was made from a different teacher, corpus or layout."""

    def __init__(self, path: Path, diffs: list[str], hint: str = "") -> None:
        self.path = Path(path)
        self.fields = [d.split(":", 1)[0] for d in diffs]
        message = f"teacher cache at {path} does not match the request: " + "; ".join(diffs)
        super().__init__(message + (f". {hint}" if hint else ""))


@dataclass
class TeacherCache:
    """An opened teacher cache: ``embeddings`` is a read-only float16 memmap, row i is item ``i``.

    ``ids`` (the whole id list, read from ``ids.json`` on first use) suits small caches; big ones are read
    through :attr:`items` (the item table, :mod:`.items`), which never loads all ids.
    """

    embeddings: np.ndarray
    meta: dict[str, Any]
    dim: int
    path: Path | None = None
    _ids: list[str] | None = field(default=None, repr=False, compare=False)
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def ids(self) -> list[str]:
        """Every id in row order (loaded once)."""
        if self._ids is None:
            self._ids = cio.read_json(Path(self.path) / cio.IDS)
        return self._ids

    @property
    def items(self) -> ItemTable | None:
        """The item table (None for a cache built before it existed)."""
        path = Path(self.path) / ITEMS if self.path is not None else None
        return ItemTable(path) if path is not None and path.is_file() else None

    @property
    def bad_count(self) -> int:
        """Items that could not be embedded (their rows are zeros; training skips them)."""
        return int((self.meta.get("bad") or {}).get("count", 0))

    def __repr__(self) -> str:
        teacher = self.meta.get("teacher", {}).get("id")
        return f"TeacherCache(path={str(self.path)!r}, n={len(self)}, dim={self.dim}, teacher={teacher!r})"

    @property
    def corpus_name(self) -> str:
        """The name of the corpus the cache holds (``openmoji``, ``wordnet``, ...)."""
        return str(self.meta["corpus"]["name"])

    def index_of(self, item_id: str) -> int:
        """Row of ``item_id``; KeyError if the cache does not hold it."""
        if self._index is None:
            self._index = {item: row for row, item in enumerate(self.ids)}
        try:
            return self._index[item_id]
        except KeyError:
            raise KeyError(f"id {item_id!r} is not in the teacher cache at {self.path}") from None

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """The embeddings of ``ids`` (in that order) as a float32 array of shape (len(ids), dim); KeyError names
        an id the cache does not hold."""
        table = self.items
        if table is not None and self._ids is None:  # a big cache: look the rows up instead of loading every id
            index = table.rows_of(list(ids))
        else:
            index = np.fromiter((self.index_of(i) for i in ids), dtype=np.int64, count=len(ids))
        return np.asarray(self.embeddings[index], dtype=np.float32).reshape(len(ids), self.dim)


def corpus_identity(corpus: Corpus) -> dict[str, Any]:
    """What identifies a corpus in cache metadata: name, meta, count and id-order hash."""
    return cio.jsonable(
        {"name": corpus.name, "meta": corpus.meta, "count": len(corpus), "ids_sha256": corpus.ids_sha256()}
    )


def cache_identity(teacher: Teacher, corpus: Corpus, shard_size: int) -> dict[str, Any]:
    """The fields an existing cache or plan must share with a request to be reused."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "teacher": cio.jsonable(teacher.describe()),
        "corpus": corpus_identity(corpus),
        "instructions": cio.jsonable(corpus.instructions()),
        "shard_size": shard_size,
    }


def load_cache(
    out_dir: str | Path,
    expect_teacher: dict[str, Any] | Teacher | None = None,
    expect_corpus: Corpus | None = None,
) -> TeacherCache:
    """Open a finished cache read-only (memmap), checking it against what the caller expects.

    ``expect_teacher`` is a ``Teacher.describe()`` dict (or a teacher); ``expect_corpus`` the corpus
    the cache should hold. A difference raises :class:`CacheMismatchError`; a cache whose files
    disagree with each other (shape vs ids, id hash) raises ValueError.
    """
    out = Path(out_dir)
    meta_path = out / cio.META
    if not meta_path.is_file():
        unfinished = " (an unfinished build left plan.json)" if (out / cio.PLAN).exists() else ""
        raise FileNotFoundError(f"no finished teacher cache at {out}: {cio.META} is missing{unfinished}")
    meta = cio.read_json(meta_path)
    expected: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if expect_teacher is not None:
        described = expect_teacher.describe() if hasattr(expect_teacher, "describe") else expect_teacher
        expected["teacher"] = cio.jsonable(described)
    if expect_corpus is not None:
        expected["corpus"] = corpus_identity(expect_corpus)
        expected["instructions"] = cio.jsonable(expect_corpus.instructions())
    diffs = cio.diff_fields(expected, {key: meta.get(key) for key in expected})
    if diffs:
        raise CacheMismatchError(out, diffs, "Rebuild it (build_cache(..., force=True) / --force)")
    embeddings = np.load(out / cio.EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    dim, count = int(meta["dim"]), int(meta["corpus"]["count"])
    ids = None if (out / ITEMS).is_file() else cio.read_json(out / cio.IDS)
    # with an item table, the ids are streamed from it (a big cache never holds them all)
    n_ids, sha = (len(ids), cio.ids_sha256(ids)) if ids is not None else _table_ids(ItemTable(out / ITEMS))
    problems = []
    if embeddings.dtype != np.float16 or embeddings.shape != (count, dim):
        problems.append(f"embeddings are {embeddings.dtype} {embeddings.shape}, expected float16 ({count}, {dim})")
    if n_ids != count or sha != meta["corpus"]["ids_sha256"]:
        problems.append(f"the ids do not match the id count/sha256 in {cio.META}")
    if problems:
        raise ValueError(f"corrupt teacher cache at {out}: " + "; ".join(problems))
    return TeacherCache(embeddings=embeddings, meta=meta, dim=dim, path=out, _ids=ids)


def _table_ids(table: ItemTable) -> tuple[int, str]:
    """Count and sha256 of the ids, streamed from the item table."""
    counted = [0]

    def ids():
        for item in table.iter_ids():
            counted[0] += 1
            yield item

    sha = cio.ids_sha256(ids())
    return counted[0], sha


def load_caches(paths: Sequence[str | Path | None]) -> list[TeacherCache]:
    """Open every finished cache in ``paths`` (``None`` and ``"none"`` entries are skipped)."""
    return [load_cache(path) for path in paths if path is not None and str(path).lower() != "none"]
