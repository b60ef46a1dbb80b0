"""Ids, metadata and metadata filters in SQLite (standard library).

The live store is an in-memory database: saved generations are immutable files, written with
SQLite's online backup. Each top-level metadata value that is a string, number or bool (or a list
of them) is also written to an ``attrs`` table, indexed, so filters are SQL queries.

Filters (all conditions must hold)::

    {"lang": "en"}                       equality (for a list value: the list contains "en")
    {"year": {"gte": 2000, "lt": 2010}}  ranges: gt, gte, lt, lte (numbers; strings compare as text)
    {"kind": {"in": ["cat", "dog"]}}     any of (any number of values)
    {"kind": {"ne": "cat"}}              not equal (items without the key match too)
    {"lang": {"eq": "en"}}               explicit equality

Bools are stored as 1/0, so ``{"flag": True}`` and ``{"flag": 1}`` are the same filter. Nested
objects, nulls and integers beyond the float range are stored and returned, but are not filterable.
Each condition is one small indexed query (``in`` lists in chunks of :data:`_CHUNK` values) and the
label sets are intersected in Python, so filters of any size neither hit SQLite's expression-depth or
variable limits nor build deep SQL.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import BundleError, shorten

Scalar = str | int | float | bool
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
_RANGE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = ("eq", "ne", "in", *_RANGE)
#: deepest metadata nesting accepted (objects and lists)
MAX_METADATA_DEPTH = 64
_CHUNK = 500  # values per SQL statement: far below SQLite's variable limit


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > limit:
                return False
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, Mapping) else item))
    return True


def check_metadata(metadata: Any, where: str) -> str | None:
    """Validate one item's metadata (a dict with str keys, JSON-serialisable, no NaN); return its JSON."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise TypeError(f"{where} must be a dict with str keys or None, got {type(metadata).__name__}")
    if not _depth_ok(metadata, MAX_METADATA_DEPTH):
        raise ValueError(f"{where} is nested more than {MAX_METADATA_DEPTH} levels deep")
    try:
        text = json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} contains a lone surrogate (U+{ord(exc.object[exc.start]):04X}), not text") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{where} is not JSON-serialisable without NaN/inf ({shorten(str(exc), 200)})") from exc
    return text


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (not a number, NaN/inf, or an int beyond the float range)."""
    if not isinstance(value, bool | int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _attr_rows(label: int, metadata: Mapping[str, Any]) -> Iterable[tuple[int, str, float | None, str | None]]:
    for key, value in metadata.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                yield label, key, None, item
            elif (number := _number(item)) is not None:
                yield label, key, number, None


def _text(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} contains a lone surrogate, not text") from exc
    return value


def _column(value: Any, key: str) -> tuple[str, Scalar]:
    if isinstance(value, str):
        return "txt", _text(value, f"filter on {shorten(key, 60)}: value")
    number = _number(value)
    if number is None:
        raise ValueError(f"filter on {shorten(key, 60)}: value {shorten(value, 60)} must be a string or a finite "
                         "number within the float range")
    return "num", number


def _plan(key: str, cond: Any) -> list[tuple[str, Any]]:
    """Checked ``(op, operand)`` steps of one key's condition (``in``: a list of ``(column, value)``)."""
    ops = cond if isinstance(cond, Mapping) else {"eq": cond}
    if not ops:
        raise ValueError(f"filter on {shorten(key, 60)}: empty condition")
    steps: list[tuple[str, Any]] = []
    for op, value in ops.items():
        if op == "in":
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"filter on {shorten(key, 60)}: 'in' needs a non-empty list")
            steps.append((op, [_column(v, key) for v in value]))
        elif op in ("eq", "ne") or op in _RANGE:
            steps.append((op, _column(value, key)))
        else:
            raise ValueError(f"filter on {shorten(key, 60)}: unknown operator {shorten(op, 40)}; "
                             f"use one of {', '.join(OPERATORS)}")
    return steps


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
        """An empty in-memory store."""
        return cls(sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None))

    @classmethod
    def load(cls, path: str | Path) -> MetadataStore:
        """Copy a saved database into memory (the file is not kept open); its schema must be exactly ours."""
        store = cls.new()
        expected = store._conn.execute(_MASTER).fetchall()
        try:
            source = sqlite3.connect(f"file:{Path(path).as_posix()}?mode=ro", uri=True)
            try:
                source.backup(store._conn)
            finally:
                source.close()
            if store._conn.execute(_MASTER).fetchall() != expected:
                raise BundleError(f"{path}: unexpected tables, indexes or triggers (not written by edgeret)")
            if (store._conn.execute("SELECT MIN(label) FROM items").fetchone()[0] or 0) < 0:
                raise BundleError(f"{path}: a negative label")
            store._any_metadata = store._count_metadata()
            if store._any_metadata and store._conn.execute(_BAD_METADATA).fetchone()[0]:
                raise BundleError(f"{path}: metadata that is not a JSON object")
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
        """All ``id -> label`` (a BundleError if a tampered file holds an id that is not a non-empty string)."""
        with self._lock:
            try:
                out = dict(self._conn.execute("SELECT id, label FROM items"))
            except sqlite3.Error as exc:  # e.g. text that is not UTF-8 in a tampered file
                raise BundleError(f"metadata database: unreadable ids ({exc})") from exc
        if "" in out or set(map(type, out)) - {str}:
            raise BundleError("metadata database: an id that is not a non-empty string")
        return out

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
        out: dict[int, dict[str, Any] | None] = {}
        with self._lock:
            for start in range(0, len(labels), _CHUNK):
                chunk = labels[start : start + _CHUNK]
                sql = f"SELECT label, metadata FROM items WHERE label IN ({','.join('?' * len(chunk))})"
                try:
                    for label, meta in self._conn.execute(sql, chunk):
                        out[label] = json.loads(meta) if meta is not None else None
                except (sqlite3.Error, ValueError, RecursionError) as exc:
                    raise BundleError(f"metadata database: unreadable metadata ({shorten(str(exc), 200)})") from exc
        return out

    def filter_labels(self, where: Mapping[str, Any]) -> list[int]:
        """Labels of the items matching a filter (see the module docstring), sorted."""
        if not isinstance(where, Mapping) or not where:
            raise ValueError(f"filter must be a non-empty dict, got {shorten(where, 80)}")
        plans = [(_text(str(key), "filter key"), _plan(str(key), cond)) for key, cond in where.items()]
        result: set[int] | None = None
        with self._lock:
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
        return self._labels_where(f"{column} {_RANGE[op]} ?", [key, value])

    def _labels_where(self, condition: str, params: list[Any]) -> set[int]:
        return {row[0] for row in self._conn.execute(f"SELECT label FROM attrs WHERE key = ? AND {condition}", params)}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()
