"""A corpus kept on disk (torch-free): the SQLite item table that :func:`edgeret.data.sources.scan_sources` writes,
read back in slices as a :class:`FileCorpus`, and the :class:`ScanReport` of the scan that made it.

The file holds one table ``items`` (``pos`` 0..n-1 in corpus order, ``id`` unique, then kind, text, instruction,
split, group, role, path, origin) and one table ``info`` (JSON values: ``name``, ``meta``, ``report``, ``count``).
It is written once, in one pass, and read-only (immutable) afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, overload

from .items import Corpus, CorpusItem
from .records import BadRecord

logger = logging.getLogger(__name__)

KEPT_PROBLEMS = 1000  # bad records a report keeps (all are counted)
LISTED = 20  # bad records that are logged as warnings and that a BadRecordsError lists
_COMMIT_EVERY = 50_000


# ---- report ------------------------------------------------------------------------------------------------------


@dataclass
class ScanReport:
    """What a scan found: usable records and their items, bad records (counted per reason, the first
    :data:`KEPT_PROBLEMS` kept), files ignored in image folders (not images by suffix), per-source counts."""

    records: int = 0
    items: int = 0
    ignored: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    problems: list[BadRecord] = field(default_factory=list)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def bad_total(self) -> int:
        """Bad records, all reasons."""
        return sum(self.bad.values())

    @property
    def seen(self) -> int:
        """Records read, good and bad."""
        return self.records + self.bad_total

    def add_bad(self, source: str, problem: BadRecord) -> None:
        """Count (and keep, while fewer than KEPT_PROBLEMS are kept) one bad record."""
        self.bad[problem.reason] = self.bad.get(problem.reason, 0) + 1
        self.sources[source]["bad"] += 1
        if len(self.problems) < KEPT_PROBLEMS:
            self.problems.append(problem)
        log = logger.warning if self.bad_total <= LISTED else logger.debug
        log("skipped %s", problem)

    def summary(self) -> str:
        """One line: records, items, bad records per reason, ignored files, records per second."""
        bad = ", ".join(f"{reason} {n}" for reason, n in sorted(self.bad.items())) or "none"
        rate = self.seen / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.records} records -> {self.items} items from {len(self.sources)} source(s); "
                f"bad records: {bad}; {self.ignored} other file(s) ignored; {self.seconds:.1f} s ({rate:,.0f} "
                "records/s)")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanReport:
        """The inverse of :meth:`to_dict`."""
        return cls(**{**data, "problems": [BadRecord(**p) for p in data.get("problems", [])]})


# ---- the item table ----------------------------------------------------------------------------------------------

_COLUMNS = "id, kind, text, instruction, split, grp, role, path, origin"
_SCHEMA = (f"CREATE TABLE items (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, {_COLUMNS.split(', ', 1)[1]});"
           "CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);")


#: a row as the scan makes it: the table's columns (``_COLUMNS``), then the image's size and mtime (or None)
Row = tuple[Any, ...]


class TableWriter:
    """Appends rows to a new SQLite file in one pass (positions 0..n-1 in order; ids unique: see :meth:`origins`)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=MEMORY", "synchronous=OFF", "cache_size=-8192"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.executescript(_SCHEMA)
        self.conn.execute("BEGIN")
        self.count = self.committed = 0

    def origins(self, ids: Sequence[str]) -> dict[str, str]:
        """``{id: origin}`` of those of ``ids`` already in the table."""
        found: dict[str, str] = {}
        for lo in range(0, len(ids), 500):
            chunk = ids[lo:lo + 500]
            query = f"SELECT id, origin FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(self.conn.execute(query, chunk).fetchall())
        return found

    def add(self, rows: Sequence[Row]) -> None:
        """Append ``rows`` (their ids must be new: check with :meth:`origins`)."""
        start = self.count
        self.conn.executemany(f"INSERT INTO items (pos, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                              ((start + i, *row[:9]) for i, row in enumerate(rows)))
        self.count += len(rows)
        if self.count - self.committed >= _COMMIT_EVERY:
            self.conn.execute("COMMIT")
            self.conn.execute("BEGIN")
            self.committed = self.count

    def tally(self) -> dict[str, dict[str, int]]:
        """Items per kind (``query`` counted apart from other texts) and per split, from the table."""
        kinds = "SELECT COALESCE(role, kind), COUNT(*) FROM items GROUP BY 1 ORDER BY 1"
        splits = "SELECT split, COUNT(*) FROM items GROUP BY 1 ORDER BY 1"
        return {"kinds": dict(self.conn.execute(kinds).fetchall()),
                "splits": dict(self.conn.execute(splits).fetchall())}

    def finish(self, info: Mapping[str, Any]) -> None:
        """Store ``info`` (JSON values), commit and close."""
        self.conn.executemany("INSERT INTO info VALUES (?, ?)", [(k, json.dumps(v)) for k, v in info.items()])
        self.conn.execute("COMMIT")
        self.conn.close()

    def close(self) -> None:
        """Close without finishing (the file is then garbage)."""
        self.conn.close()


class ItemTable(Sequence[CorpusItem]):
    """The items of a :class:`FileCorpus`, read from its SQLite file on demand (a lazy, read-only sequence).

    The file is opened read-only and immutable; each process opens its own connection (fork-safe), and a
    pickled table reopens the file by path.
    """

    CHUNK = 4096

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"no corpus table at {self.path}")
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        try:
            rows = self.connection().execute("SELECT key, value FROM info").fetchall()
            self.info = {key: json.loads(value) for key, value in rows}
            self._count = int(self.info["count"])
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            self.close()
            raise ValueError(f"{self.path} is not a finished corpus table ({exc})") from None

    def connection(self) -> sqlite3.Connection:
        """This process's read-only connection."""
        if self._conn is None or self._pid != os.getpid():
            uri = f"{self.path.as_uri()}?mode=ro&immutable=1"
            self._conn, self._pid = sqlite3.connect(uri, uri=True, check_same_thread=False), os.getpid()
        return self._conn

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_conn": None, "_pid": -1}

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> CorpusItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[CorpusItem]: ...

    def __getitem__(self, index: int | slice) -> CorpusItem | list[CorpusItem]:
        if isinstance(index, slice):
            lo, hi, step = index.indices(self._count)
            return self.rows(lo, hi) if step == 1 else [self[i] for i in range(lo, hi, step)]
        position = index + self._count if index < 0 else index
        if not 0 <= position < self._count:
            raise IndexError(f"item {index} of {self._count}")
        return self.rows(position, position + 1)[0]

    def rows(self, lo: int, hi: int) -> list[CorpusItem]:
        """Items ``lo`` to ``hi`` (exclusive), in order."""
        cursor = self.connection().execute(f"SELECT {_COLUMNS} FROM items WHERE pos >= ? AND pos < ? ORDER BY pos",
                                           (lo, hi))
        return [CorpusItem(id=r[0], kind=r[1], text=r[2], instruction=r[3], split=r[4], group=r[5], role=r[6],
                           path=r[7], origin=r[8]) for r in cursor]

    def __iter__(self) -> Iterator[CorpusItem]:
        for lo in range(0, self._count, self.CHUNK):
            yield from self.rows(lo, min(lo + self.CHUNK, self._count))

    def iter_ids(self) -> Iterator[str]:
        """Every id in order, streamed from the table."""
        for (item_id,) in self.connection().execute("SELECT id FROM items ORDER BY pos"):
            yield item_id

    def instructions(self) -> dict[str, list[str]]:
        """The distinct instructions per kind (``""`` for none), as :meth:`Corpus.instructions`."""
        out: dict[str, list[str]] = {}
        query = "SELECT DISTINCT kind, COALESCE(instruction, '') FROM items ORDER BY kind, 2"
        for kind, instruction in self.connection().execute(query):
            out.setdefault(kind, []).append(instruction)
        return out

    def close(self) -> None:
        """Close this process's connection (reading again reopens it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _remove_owned(table: ItemTable, owner_pid: int) -> None:
    table.close()
    if os.getpid() == owner_pid:  # a forked child never deletes its parent's file
        table.path.unlink(missing_ok=True)


class FileCorpus(Corpus):
    """A :class:`Corpus` whose items live in an SQLite file made by :func:`scan_sources` (``items`` is a lazy
    :class:`ItemTable`); ``report`` is the scan's :class:`ScanReport`. Reopen a saved one with :meth:`open`."""

    def __init__(self, path: str | os.PathLike[str], *, owned: bool = False) -> None:
        table = ItemTable(path)
        self.items = table  # type: ignore[assignment]  # a lazy sequence, not a list
        self.name, self.meta = str(table.info["name"]), dict(table.info["meta"])
        self.report = ScanReport.from_dict(table.info["report"])
        self._finalizer = weakref.finalize(self, _remove_owned, table, os.getpid()) if owned else None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FileCorpus:
        """A corpus saved by an earlier scan (``<workdir>/<name>.items.sqlite``)."""
        return cls(path)

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self.items.path  # type: ignore[attr-defined]

    def iter_ids(self) -> Iterator[str]:
        """Every id, in order (streamed from the table)."""
        return self.items.iter_ids()  # type: ignore[attr-defined]

    def instructions(self) -> dict[str, list[str]]:
        """The distinct instructions used per kind, for cache metadata."""
        return self.items.instructions()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Close the table; a temporary one (``workdir=None``) is deleted."""
        if self._finalizer is not None:
            self._finalizer()
        else:
            self.items.close()  # type: ignore[attr-defined]

    def __enter__(self) -> FileCorpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_finalizer": None}  # a copy never deletes the file

    def __repr__(self) -> str:
        return f"FileCorpus(name={self.name!r}, items={len(self)}, path={str(self.path)!r})"
