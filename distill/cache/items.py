"""The item table of a teacher cache (``items.sqlite``): what every row is, without the corpus.

One row per cache row: ``id``, ``kind`` (text/image), ``split``, ``grp`` (pair group), ``role``
(query/document), ``instruction``, ``text``, ``path`` (image files), ``origin`` (file:line) and ``bad``
(1 when the item could not be embedded: its embedding row is zeros and nothing trains on it). Training
reads its pairs and texts from here, so a cache of files on disk never needs its sources again, and
nothing holds the whole corpus in memory: queries return numpy row arrays or small batches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.items import Corpus

from .files import ITEMS

__all__ = ["ITEMS", "ItemTable", "write_item_table"]

_SCHEMA = """
CREATE TABLE items (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, split TEXT, grp TEXT,
                    role TEXT, instruction TEXT, text TEXT, path TEXT, origin TEXT, bad INTEGER NOT NULL DEFAULT 0);
CREATE INDEX items_kind_split ON items (kind, split);
CREATE INDEX items_grp ON items (grp);
"""
_COLUMNS = ("id", "kind", "split", "grp", "role", "instruction", "text", "path", "origin")


def write_item_table(path: Path, corpus: Corpus, bad_rows: Iterable[int] = (), chunk: int = 4096) -> None:
    """Write ``path`` (replaced) from ``corpus``, streamed; ``bad_rows`` are marked bad."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(str(path))
    try:
        conn.executescript(_SCHEMA)
        for lo in range(0, len(corpus), chunk):
            rows = [(lo + i, it.id, it.kind, it.split, it.group, it.role, it.instruction,
                     it.text, it.path, it.origin) for i, it in enumerate(corpus.slice(lo, lo + chunk))]
            conn.executemany(f"INSERT INTO items (row, {', '.join(_COLUMNS)}) VALUES ({', '.join('?' * 10)})", rows)
        conn.executemany("UPDATE items SET bad = 1 WHERE row = ?", [(int(r),) for r in bad_rows])
        conn.commit()
    finally:
        conn.close()


class ItemTable:
    """Read access to a cache's ``items.sqlite`` (read-only; opened per call, so it is safe across threads)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.path.as_posix()}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM items")[0][0])

    def iter_ids(self, chunk: int = 65536) -> Iterator[str]:
        """Every id in row order (streamed)."""
        last = -1
        while True:
            rows = self._query("SELECT row, id FROM items WHERE row > ? ORDER BY row LIMIT ?", (last, chunk))
            if not rows:
                return
            yield from (item for _, item in rows)
            last = rows[-1][0]

    def select(self, columns: str, where: str = "1", params: Sequence[Any] = ()) -> list[tuple]:
        """``SELECT columns FROM items WHERE where ORDER BY row`` (good rows only)."""
        return self._query(f"SELECT {columns} FROM items WHERE bad = 0 AND ({where}) ORDER BY row", params)

    def int_rows(self, sql: str, columns: int, chunk: int = 65536) -> np.ndarray:
        """An integer query's result as an int64 ``(n, columns)`` array, fetched ``chunk`` rows at a time."""
        conn = sqlite3.connect(f"file:{self.path.as_posix()}?mode=ro", uri=True)
        parts = []
        try:
            cursor = conn.execute(sql)
            while rows := cursor.fetchmany(chunk):
                parts.append(np.asarray(rows, dtype=np.int64).reshape(-1, columns))
        finally:
            conn.close()
        return np.concatenate(parts) if parts else np.zeros((0, columns), np.int64)

    def train_rows(self) -> np.ndarray:
        """``(row, group, is_query, is_image)`` of every good train item, in row order; ``group`` is a dense int
        per distinct group (-1: none)."""
        return self.int_rows(
            "SELECT row, CASE WHEN grp IS NULL THEN -1 ELSE DENSE_RANK() OVER (PARTITION BY grp IS NULL ORDER BY grp)"
            " - 1 END, COALESCE(role = 'query', 0), kind = 'image' FROM items"
            " WHERE bad = 0 AND split = 'train' ORDER BY row", 4)

    def rows_of(self, ids: Sequence[str], chunk: int = 900) -> np.ndarray:
        """Cache rows of ``ids`` (in that order); KeyError names the first unknown id."""
        found: dict[str, int] = {}
        for lo in range(0, len(ids), chunk):
            part = list(ids[lo : lo + chunk])
            found.update(self._query(f"SELECT id, row FROM items WHERE id IN ({','.join('?' * len(part))})", part))
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"id {missing[0]!r} is not in the teacher cache at {self.path.parent}")
        return np.fromiter((found[i] for i in ids), dtype=np.int64, count=len(ids))

    def bad(self) -> list[tuple[str, str | None]]:
        """``(id, origin)`` of every item that could not be embedded."""
        return self._query("SELECT id, origin FROM items WHERE bad = 1 ORDER BY row")
