"""Ids, metadata and metadata filters in SQLite (standard library).

The live store is an in-memory database: saved generations are immutable files, written with
SQLite's online backup. Each top-level metadata value that is a string, number or bool (or a list
of them) is also written to an ``attrs`` table, indexed, so filters are SQL queries.

Filters (all conditions must hold)::

    {"lang": "en"}                       equality (for a list value: the list contains "en")
    {"year": {"gte": 2000, "lt": 2010}}  ranges: gt, gte, lt, lte (numbers; strings compare as text)
    {"kind": {"in": ["cat", "dog"]}}     any of
    {"kind": {"ne": "cat"}}              not equal (items without the key match too)
    {"lang": {"eq": "en"}}               explicit equality

Bools are stored as 1/0, so ``{"flag": True}`` and ``{"flag": 1}`` are the same filter. Nested
objects and nulls are stored and returned, but are not filterable.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import BundleError

Scalar = str | int | float | bool
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (label INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, metadata TEXT);
CREATE TABLE IF NOT EXISTS attrs (label INTEGER NOT NULL, key TEXT NOT NULL, num REAL, txt TEXT);
CREATE INDEX IF NOT EXISTS attrs_num ON attrs (key, num);
CREATE INDEX IF NOT EXISTS attrs_txt ON attrs (key, txt);
CREATE INDEX IF NOT EXISTS attrs_label ON attrs (label);
"""
_RANGE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = ("eq", "ne", "in", *_RANGE)


def check_metadata(metadata: Any, where: str) -> str | None:
    """Validate one item's metadata (a dict with str keys, JSON-serialisable, no NaN); return its JSON."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise TypeError(f"{where} must be a dict with str keys or None, got {type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} is not JSON-serialisable without NaN/inf ({exc})") from exc


def _attr_rows(label: int, metadata: Mapping[str, Any]) -> Iterable[tuple[int, str, float | None, str | None]]:
    for key, value in metadata.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                yield label, key, None, item
            elif isinstance(item, bool | int | float) and math.isfinite(item):
                yield label, key, float(item), None


def _column(value: Any, key: str) -> tuple[str, Scalar]:
    if isinstance(value, str):
        return "txt", value
    if isinstance(value, bool | int | float) and math.isfinite(value):
        return "num", float(value)
    raise ValueError(f"filter on {key!r}: value {value!r} must be a string or a finite number")


def _condition(key: str, cond: Any) -> tuple[str, list[Any]]:
    """SQL (over ``items.label``) and parameters for one key's condition."""
    ops = cond if isinstance(cond, Mapping) else {"eq": cond}
    if not ops:
        raise ValueError(f"filter on {key!r}: empty condition")
    parts: list[str] = []
    params: list[Any] = []
    for op, value in ops.items():
        if op in ("eq", "ne"):
            column, scalar = _column(value, key)
            neg = "NOT " if op == "ne" else ""
            parts.append(f"label {neg}IN (SELECT label FROM attrs WHERE key = ? AND {column} = ?)")
            params += [key, scalar]
        elif op == "in":
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"filter on {key!r}: 'in' needs a non-empty list")
            pairs = [_column(v, key) for v in value]
            ors = " OR ".join(f"{column} = ?" for column, _ in pairs)
            parts.append(f"label IN (SELECT label FROM attrs WHERE key = ? AND ({ors}))")
            params += [key, *(scalar for _, scalar in pairs)]
        elif op in _RANGE:
            column, scalar = _column(value, key)
            parts.append(f"label IN (SELECT label FROM attrs WHERE key = ? AND {column} {_RANGE[op]} ?)")
            params += [key, scalar]
        else:
            raise ValueError(f"filter on {key!r}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    return " AND ".join(parts), params


class MetadataStore:
    """String id <-> int label map plus metadata, in an in-memory SQLite database (thread-safe)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._conn.executescript(_SCHEMA)
        self._any_metadata = self._count_metadata()

    def _count_metadata(self) -> bool:
        """Whether any item has metadata (a search then skips the lookup: most collections have none)."""
        return self._conn.execute("SELECT EXISTS(SELECT 1 FROM items WHERE metadata IS NOT NULL)").fetchone()[0] == 1

    @classmethod
    def new(cls) -> MetadataStore:
        return cls(sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None))

    @classmethod
    def load(cls, path: str | Path) -> MetadataStore:
        """Copy a saved database into memory (the file is not kept open)."""
        store = cls.new()
        try:
            source = sqlite3.connect(f"file:{Path(path).as_posix()}?mode=ro", uri=True)
            try:
                source.backup(store._conn)
            finally:
                source.close()
            store._conn.execute("SELECT label, id, metadata FROM items LIMIT 1").fetchall()
            store._any_metadata = store._count_metadata()
        except sqlite3.Error as exc:
            raise BundleError(f"{path}: unreadable metadata database ({exc})") from exc
        return store

    def save(self, path: str | Path) -> None:
        """Write a consistent copy to ``path`` (a new file)."""
        with self._lock:
            target = sqlite3.connect(str(path))
            try:
                self._conn.backup(target)
            finally:
                target.close()

    def labels(self) -> dict[str, int]:
        """All ``id -> label``."""
        with self._lock:
            return dict(self._conn.execute("SELECT id, label FROM items"))

    def write(
        self, upserts: list[tuple[int, str, str | None]], deletes: list[int], then: Callable[[], None] | None = None
    ) -> None:
        """In one transaction: delete labels, insert-or-replace ``(label, id, metadata_json)`` rows, then
        call ``then()`` (the vector update); if anything raises, the database is rolled back."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                gone = [(label,) for label in deletes] + [(label,) for label, _, _ in upserts]
                conn.executemany("DELETE FROM attrs WHERE label = ?", gone)
                conn.executemany("DELETE FROM items WHERE label = ?", [(label,) for label in deletes])
                conn.executemany("INSERT OR REPLACE INTO items (label, id, metadata) VALUES (?, ?, ?)", upserts)
                attrs = [
                    row for label, _, meta in upserts if meta is not None for row in _attr_rows(label, json.loads(meta))
                ]
                conn.executemany("INSERT INTO attrs (label, key, num, txt) VALUES (?, ?, ?, ?)", attrs)
                if then is not None:
                    then()
                conn.execute("COMMIT")
                if any(meta is not None for _, _, meta in upserts):
                    self._any_metadata = True
                elif self._any_metadata:  # deletes or replacements may have removed the last metadata
                    self._any_metadata = self._count_metadata()
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def metadata(self, labels: list[int]) -> dict[int, dict[str, Any] | None]:
        """``label -> metadata`` for the given labels."""
        if not labels or not self._any_metadata:
            return {}
        with self._lock:
            rows = self._conn.execute(
                f"SELECT label, metadata FROM items WHERE label IN ({','.join('?' * len(labels))})", labels
            ).fetchall()
        return {label: (json.loads(meta) if meta is not None else None) for label, meta in rows}

    def filter_labels(self, where: Mapping[str, Any]) -> list[int]:
        """Labels of the items matching a filter (see the module docstring)."""
        if not isinstance(where, Mapping) or not where:
            raise ValueError(f"filter must be a non-empty dict, got {where!r}")
        clauses, params = [], []
        for key, cond in where.items():
            sql, values = _condition(str(key), cond)
            clauses.append(sql)
            params += values
        sql = f"SELECT label FROM items WHERE {' AND '.join(clauses)}"
        with self._lock:
            return [row[0] for row in self._conn.execute(sql, params)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
