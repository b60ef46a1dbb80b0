"""Ids, metadata and metadata filters in SQLite (standard library).

A new store is an in-memory database. A saved generation's ``meta.sqlite`` is immutable: :meth:`MetadataStore.open`
reads it **in place** (read-only, nothing copied, ids looked up per call), so opening a million-item index costs
milliseconds and no memory; the first write copies it into memory (:meth:`MetadataStore.materialise`). Saves write
a new file with SQLite's online backup. Filterable metadata values (:mod:`runtime.filter_spec`) sit in an indexed
``attrs`` table, so filters are SQL queries here (:meth:`MetadataStore.filter_labels`; each condition one small
indexed query, ``in`` lists in chunks of :data:`_CHUNK` values, label sets intersected in Python) and numpy
comparisons in :mod:`runtime.filters` when the saved columns are current.

Files are checked before use: the schema must be exactly ours; labels non-negative; ids (the ends of the id
index, and the empty id) text. Up to :data:`FULL_CHECK_ITEMS` items every row is checked at open; every row is
checked again as it is read, so a tampered row is a :class:`BundleError` when it is used, never a foreign error.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .errors import BundleError, shorten
from .filter_spec import RANGE, Step, attr_rows, check_metadata, plan_filter

__all__ = ["FULL_CHECK_ITEMS", "MetadataStore", "check_metadata"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (label INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, metadata TEXT);
CREATE TABLE IF NOT EXISTS attrs (label INTEGER NOT NULL, key TEXT NOT NULL, num REAL, txt TEXT);
CREATE INDEX IF NOT EXISTS attrs_num ON attrs (key, num);
CREATE INDEX IF NOT EXISTS attrs_txt ON attrs (key, txt);
CREATE INDEX IF NOT EXISTS attrs_label ON attrs (label);
"""
_MASTER = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
_BAD_METADATA = """SELECT COUNT(*) FROM items WHERE metadata IS NOT NULL
                   AND (typeof(metadata) != 'text' OR NOT json_valid(metadata) OR json_type(metadata) != 'object')"""
_BAD_IDS = "SELECT COUNT(*) FROM items WHERE typeof(id) != 'text' OR id = ''"
#: stores of at most this many items have every row checked at open (larger ones: each row as it is read)
FULL_CHECK_ITEMS = 50_000
_CHUNK = 500  # values per SQL statement: far below SQLite's variable limit
_EXPECTED_MASTER: list[tuple] | None = None


def _expected_master() -> list[tuple]:
    global _EXPECTED_MASTER
    if _EXPECTED_MASTER is None:
        conn = sqlite3.connect(":memory:")
        conn.executescript(_SCHEMA)
        _EXPECTED_MASTER = conn.execute(_MASTER).fetchall()
        conn.close()
    return _EXPECTED_MASTER


def _memory() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    conn.executescript(_SCHEMA)
    return conn


def _checked_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BundleError("metadata database: an id that is not a non-empty string")
    return value


def _parse_metadata(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"metadata database: unreadable metadata ({shorten(str(exc), 200)})") from exc
    if not isinstance(value, dict):
        raise BundleError("metadata database: metadata that is not a JSON object")
    return value


class MetadataStore:
    """String id <-> int label map plus metadata, in SQLite (thread-safe).

    ``path``: the saved file a read-only store reads in place (``None``: an in-memory, writable store).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self._conn = conn
        self._path = path
        self._lock = threading.Lock()

    @classmethod
    def new(cls) -> MetadataStore:
        """An empty in-memory store."""
        return cls(_memory())

    @classmethod
    def open(cls, path: str | Path, full_check: bool | None = None) -> MetadataStore:
        """Read a saved database in place (read-only; the file must not change while open), checked first.

        ``full_check``: check every row now (default: when the store holds at most :data:`FULL_CHECK_ITEMS`).
        """
        path = Path(path)
        uri = f"file:{quote(path.resolve().as_posix())}?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise BundleError(f"{path}: unreadable metadata database ({exc})") from exc
        store = cls(conn, path)
        try:
            store._check(full_check)
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def load(cls, path: str | Path) -> MetadataStore:
        """Open a saved database and copy it into memory (the file is not kept open)."""
        store = cls.open(path)
        store.materialise()
        return store

    def _check(self, full_check: bool | None) -> None:
        where = self._path
        with self._query(f"{where}: unreadable metadata database"):
            if self._conn.execute(_MASTER).fetchall() != _expected_master():
                raise BundleError(f"{where}: unexpected tables, indexes or triggers (not written by edgeret)")
            if (self._conn.execute("SELECT MIN(label) FROM items").fetchone()[0] or 0) < 0:
                raise BundleError(f"{where}: a negative label")
            ends = [self._conn.execute(f"SELECT id FROM items ORDER BY id {order} LIMIT 1").fetchone()
                    for order in ("ASC", "DESC")]  # NULL/numbers sort before text, blobs after: both ends show them
            empty = self._conn.execute("SELECT EXISTS(SELECT 1 FROM items WHERE id = '')").fetchone()[0]
            if empty or any(row is not None and (not isinstance(row[0], str) or not row[0]) for row in ends):
                raise BundleError(f"{where}: an id that is not a non-empty string")
            full = self.count() <= FULL_CHECK_ITEMS if full_check is None else full_check
            if full and self._conn.execute(_BAD_IDS).fetchone()[0]:
                raise BundleError(f"{where}: an id that is not a non-empty string")
            if full and self._conn.execute(_BAD_METADATA).fetchone()[0]:
                raise BundleError(f"{where}: metadata that is not a JSON object")

    @contextmanager
    def _query(self, what: str = "metadata database") -> Iterator[None]:
        """Turn SQLite's errors (a tampered file: malformed pages, text that is not UTF-8) into BundleError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise BundleError(f"{what} ({shorten(str(exc), 200)})") from exc

    # ---- state -------------------------------------------------------------------------------
    @property
    def writable(self) -> bool:
        """Whether writes go straight in (an in-memory store) rather than needing :meth:`materialise` first."""
        return self._path is None

    @property
    def path(self) -> Path | None:
        """The saved file this store reads in place, or ``None``."""
        return self._path

    def materialise(self) -> None:
        """Copy a read-only store into memory (idempotent); the file is closed afterwards."""
        with self._lock:
            if self._path is None:
                return
            target = _memory()
            with self._query(f"{self._path}: unreadable metadata database"):
                self._conn.backup(target)
            self._conn.close()
            self._conn, self._path = target, None

    def save(self, path: str | Path) -> None:
        """Write a consistent copy to ``path`` (a new file)."""
        with self._lock:
            target = sqlite3.connect(str(path))
            try:
                with self._query():
                    self._conn.backup(target)
            finally:
                target.close()

    def close(self) -> None:
        """Close the database (a read-only store releases its file)."""
        with self._lock:
            self._conn.close()

    # ---- lookups -----------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock, self._query():
            return self._conn.execute(sql, params).fetchall()

    def _chunked(self, sql: str, values: Sequence[Any]) -> list[tuple]:
        """``sql`` (with ``{marks}`` for an IN list) run over ``values`` in chunks."""
        out: list[tuple] = []
        with self._lock, self._query():
            for start in range(0, len(values), _CHUNK):
                chunk = list(values[start : start + _CHUNK])
                out += self._conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk).fetchall()
        return out

    def count(self) -> int:
        """Number of items."""
        return int(self._rows("SELECT COUNT(*) FROM items")[0][0])

    def max_label(self) -> int:
        """The largest label, -1 when empty."""
        found = self._rows("SELECT MAX(label) FROM items")[0][0]
        return -1 if found is None else int(found)

    def label_of(self, item: str) -> int | None:
        """The label of one id, or ``None``."""
        rows = self._rows("SELECT label FROM items WHERE id = ?", [item])
        return int(rows[0][0]) if rows else None

    def labels_of(self, ids: Sequence[str]) -> dict[str, int]:
        """``id -> label`` for those of ``ids`` that are stored."""
        return {_checked_id(i): int(label) for i, label in self._chunked(
            "SELECT id, label FROM items WHERE id IN ({marks})", ids)}

    def hits(self, labels: Sequence[int]) -> dict[int, tuple[str, dict[str, Any] | None]]:
        """``label -> (id, metadata)`` for those of ``labels`` that are stored."""
        rows = self._chunked("SELECT label, id, metadata FROM items WHERE label IN ({marks})", labels)
        return {int(label): (_checked_id(item), _parse_metadata(meta)) for label, item, meta in rows}

    def metadata(self, labels: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        """``label -> metadata`` for the given labels (those stored)."""
        return {label: meta for label, (_, meta) in self.hits(labels).items()}

    def count_labels(self, labels: Sequence[int]) -> int:
        """How many of ``labels`` are stored."""
        rows = self._chunked("SELECT COUNT(*) FROM items WHERE label IN ({marks})", list(labels))
        return sum(int(row[0]) for row in rows)

    def ids(self) -> list[str]:
        """All ids, in label order."""
        return [_checked_id(row[0]) for row in self._rows("SELECT id FROM items ORDER BY label")]

    def live_labels(self) -> np.ndarray:
        """All labels, sorted (int64)."""
        rows = self._rows("SELECT label FROM items ORDER BY label")
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def attrs(self) -> list[tuple[str, int, float | None, str | None]]:
        """Every filterable ``(key, label, number, text)`` row (what :mod:`runtime.filters` builds columns of)."""
        return self._rows("SELECT key, label, num, txt FROM attrs")

    # ---- writes ------------------------------------------------------------------------------
    def write(
        self, upserts: list[tuple[int, str, str | None]], deletes: list[int], then: Callable[[], None] | None = None
    ) -> None:
        """In one transaction: delete labels, insert-or-replace ``(label, id, metadata_json)`` rows, then
        call ``then()`` (the vector update); if anything raises, the database is rolled back."""
        if not self.writable:
            raise RuntimeError("a read-only metadata store must be materialised before writing")
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                gone = [(label,) for label in deletes] + [(label,) for label, _, _ in upserts]
                conn.executemany("DELETE FROM attrs WHERE label = ?", gone)
                conn.executemany("DELETE FROM items WHERE label = ?", [(label,) for label in deletes])
                conn.executemany("INSERT OR REPLACE INTO items (label, id, metadata) VALUES (?, ?, ?)", upserts)
                attrs = [
                    row for label, _, meta in upserts if meta is not None for row in attr_rows(label, json.loads(meta))
                ]
                conn.executemany("INSERT INTO attrs (label, key, num, txt) VALUES (?, ?, ?, ?)", attrs)
                if then is not None:
                    then()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def relabel(self, old: np.ndarray, new: np.ndarray) -> None:
        """Move items from labels ``old`` to ``new`` (ascending, ``new <= old``: no collisions) in one transaction."""
        if not self.writable:
            raise RuntimeError("a read-only metadata store must be materialised before writing")
        pairs = [(int(n), int(o)) for o, n in zip(old, new, strict=True) if o != n]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("UPDATE items SET label = ? WHERE label = ?", pairs)
                self._conn.executemany("UPDATE attrs SET label = ? WHERE label = ?", pairs)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # ---- filters (SQL) -----------------------------------------------------------------------
    def filter_labels(self, where: Mapping[str, Any]) -> list[int]:
        """Labels of the items matching a filter (see :mod:`runtime.filter_spec`), sorted."""
        return self.filter_planned(plan_filter(where))

    def filter_planned(self, plans: list[tuple[str, list[Step]]]) -> list[int]:
        """Labels of the items matching checked ``plans`` (:func:`runtime.filter_spec.plan_filter`), sorted."""
        result: set[int] | None = None
        with self._lock, self._query():
            for key, steps in plans:
                for op, operand in steps:
                    if op == "ne" and result is not None:  # narrow what is already there
                        result -= self._step(key, "eq", operand)
                    else:
                        labels = self._step(key, op, operand)
                        result = labels if result is None else result & labels
                    if not result:
                        return []
        return sorted(result or ())

    def _step(self, key: str, op: str, operand: Any) -> set[int]:
        """Labels satisfying one ``(op, operand)`` of ``key`` (the store lock is held)."""
        if op == "in":
            found: set[int] = set()
            for column in ("txt", "num"):
                values = [value for col, value in operand if col == column]
                for start in range(0, len(values), _CHUNK):
                    chunk = values[start : start + _CHUNK]
                    found |= self._labels_where(f"{column} IN ({','.join('?' * len(chunk))})", [key, *chunk])
            return found
        column, value = operand
        if op in ("eq", "ne"):
            equal = self._labels_where(f"{column} = ?", [key, value])
            return equal if op == "eq" else {row[0] for row in self._conn.execute("SELECT label FROM items")} - equal
        return self._labels_where(f"{column} {RANGE[op]} ?", [key, value])

    def _labels_where(self, condition: str, params: list[Any]) -> set[int]:
        return {row[0] for row in self._conn.execute(f"SELECT label FROM attrs WHERE key = ? AND {condition}", params)}
