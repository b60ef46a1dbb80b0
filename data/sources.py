"""Corpora from files on disk (torch-free): image folders, JSONL/CSV/TSV records and text files, mixed in one build.

::

    corpus = scan_sources([ImageFolderSource("photos"), RecordsSource("pairs/captions.jsonl")], workdir="work")
    print(corpus.report.summary())           # records, items, bad records per reason
    build_cache(teacher, corpus, "cache")    # a FileCorpus is a Corpus

Ids, pairs and splits (``docs/data.md`` documents the formats):

* every record has a record id: its ``id`` field, else its path relative to the folder (images) or
  ``L<line number>`` (records and text files); its *key* is ``<source name>:<record id>``;
* a record that gives one item: the item's id is the key and its group is None (unpaired); a record that gives
  several: ids ``<key>:image``, ``<key>:text``, ``<key>:query``, ``<key>:document``, all in group ``<key>``;
* ``text`` is a document (beside an image: its caption), ``document`` a document, ``query`` has role ``query``
  and an instruction: the record's, else the source's, else :data:`DEFAULT_QUERY_INSTRUCTION`;
* the split is the record's ``split``, else ``split_of(key, fractions, seed)``: every item of a record shares
  it, and adding or removing other records never moves it.

A bad record is skipped and reported (:class:`ScanReport`); more than :func:`allowed_bad` of them fail the scan
with :class:`BadRecordsError`. The records stream into an SQLite item table (in ``workdir``, else a temporary
file); the :class:`FileCorpus` returned reads it in slices, so no corpus sits in memory whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from .filecorpus import LISTED, FileCorpus, ItemTable, Row, ScanReport, TableWriter
from .items import CorpusItem
from .records import (
    DUPLICATE_ID,
    RECORD_FORMATS,
    BadRecord,
    Record,
    read_delimited,
    read_image_folder,
    read_jsonl,
    read_text_file,
)
from .splits import SPLITS, split_of

__all__ = [
    "BAD_FLOOR", "DEFAULT_FRACTIONS", "DEFAULT_MAX_BAD", "DEFAULT_QUERY_INSTRUCTION", "DEFAULT_SEED", "BadRecord",
    "BadRecordsError", "FileCorpus", "ImageFolderSource", "ItemTable", "RecordsSource", "ScanReport", "Source",
    "TextsSource", "allowed_bad", "record_items", "record_rows", "rescan", "scan_sources", "source_from_dict",
]

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SEED = 0
DEFAULT_MAX_BAD = 0.01
#: this many bad records are always tolerated (unless ``max_bad=0``): 1 bad record in 20 is not fatal
BAD_FLOOR = 5
#: the instruction of a ``query`` that neither its record nor its source gives one
DEFAULT_QUERY_INSTRUCTION = "Find the document that matches the query."
#: version of the id/pair/split rules, recorded in ``meta`` (a change of rules is a new corpus identity)
RULES_VERSION = 1


# ---- source specs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileSource:
    """A file or folder to read; ``name`` defaults to the file or folder name. ``split`` puts every record
    without a ``split`` of its own into that split (``train`` for data that only feeds distillation)."""

    path: str | os.PathLike[str]
    name: str | None = None
    split: str | None = field(default=None, kw_only=True)  # keyword-only: subclasses' positional order stays
    kind: ClassVar[str] = ""

    @property
    def source_name(self) -> str:
        """The name that prefixes this source's ids."""
        if self.name is not None:
            return self.name
        return Path(os.path.abspath(os.path.expanduser(self.path))).name or "root"  # the name as given, not resolved

    def resolved(self) -> Path:
        """The absolute path, symlinks resolved."""
        return Path(self.path).expanduser().resolve()

    def describe(self) -> dict[str, Any]:
        """What identifies the source in corpus metadata."""
        described = {"kind": self.kind, "path": str(self.resolved()), "name": self.source_name}
        return described if self.split is None else {**described, "split": self.split}

    def check(self) -> None:
        """Raise FileNotFoundError/ValueError for a missing path or a bad name (before anything is read)."""
        name = self.source_name
        if not isinstance(name, str) or not name.strip() or ":" in name:
            raise ValueError(f"source {os.fspath(self.path)!r}: name {name!r} must be a non-empty string without ':'")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"source {os.fspath(self.path)!r}: split {self.split!r} is not one of {', '.join(SPLITS)}")
        want_dir = self.kind == "images"
        path = self.resolved()
        if not (path.is_dir() if want_dir else path.is_file()):
            raise FileNotFoundError(f"{self.kind} source {os.fspath(self.path)!r}: no such "
                                    f"{'folder' if want_dir else 'file'} ({path})")

    def records(self) -> Iterator[Record | BadRecord | None]:
        """The source's records in order (None: a file that is no record, e.g. not an image)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ImageFolderSource(_FileSource):
    """Every image under a folder, recursively, unlabeled (jpg, jpeg, png, webp, gif, bmp, tif, tiff)."""

    kind: ClassVar[str] = "images"

    def records(self) -> Iterator[Record | BadRecord | None]:
        """One record per image file, in sorted path order."""
        return read_image_folder(self.resolved(), os.fspath(self.path).rstrip("/") or "/")


@dataclass(frozen=True)
class RecordsSource(_FileSource):
    """A JSONL, CSV or TSV file of records (``image``, ``text``, ``query``, ``document``, ``instruction``, ``id``,
    ``split``). ``format`` defaults from the suffix; image paths are relative to ``image_root`` (default: the
    file's folder) and must stay inside it; ``instruction`` is the default instruction of its queries."""

    instruction: str | None = None
    image_root: str | os.PathLike[str] | None = None
    format: str | None = None
    kind: ClassVar[str] = "records"

    @property
    def record_format(self) -> str:
        """``jsonl``, ``csv`` or ``tsv``."""
        by_suffix = RECORD_FORMATS.get(Path(self.path).suffix.lower())
        fmt = str(self.format).lower() if self.format is not None else by_suffix
        if fmt not in set(RECORD_FORMATS.values()):
            raise ValueError(f"records source {os.fspath(self.path)!r}: format {fmt!r} is not one of jsonl, csv, tsv "
                             f"(name the file .jsonl/.csv/.tsv or pass format=)")
        return fmt

    def root(self) -> Path:
        """The folder image paths are relative to."""
        return Path(self.image_root).expanduser().resolve() if self.image_root is not None else self.resolved().parent

    def query_instruction(self) -> str:
        """The instruction of queries whose record gives none."""
        return self.instruction if self.instruction is not None else DEFAULT_QUERY_INSTRUCTION

    def describe(self) -> dict[str, Any]:
        """Kind, path and name, plus format, image root and query instruction."""
        return {**super().describe(), "format": self.record_format, "image_root": str(self.root()),
                "instruction": self.query_instruction()}

    def check(self) -> None:
        """As for every source, plus the format, the instruction and the image root."""
        super().check()
        self.record_format  # noqa: B018 - raises for an unknown format
        if not isinstance(self.query_instruction(), str) or not self.query_instruction().strip():
            raise ValueError(f"records source {os.fspath(self.path)!r}: instruction must be a non-empty string")
        if not self.root().is_dir():
            raise FileNotFoundError(f"records source {os.fspath(self.path)!r}: no image root folder {self.root()}")

    def records(self) -> Iterator[Record | BadRecord | None]:
        """One record per non-blank line (CSV/TSV: per row after the header)."""
        fmt, display = self.record_format, os.fspath(self.path)
        if fmt == "jsonl":
            return read_jsonl(self.resolved(), display, self.root())
        return read_delimited(self.resolved(), display, self.root(), fmt)


@dataclass(frozen=True)
class TextsSource(_FileSource):
    """A plain UTF-8 text file: one document per line, blank lines skipped."""

    kind: ClassVar[str] = "texts"

    def records(self) -> Iterator[Record | BadRecord | None]:
        """One text record per non-blank line."""
        return read_text_file(self.resolved(), os.fspath(self.path))


Source = ImageFolderSource | RecordsSource | TextsSource
SOURCE_TYPES: dict[str, type[_FileSource]] = {"images": ImageFolderSource, "records": RecordsSource,
                                              "texts": TextsSource}


def source_from_dict(entry: Mapping[str, Any], base_dir: str | os.PathLike[str] = ".") -> Source:
    """A source spec from a recipe entry ``{"type": "images"|"records"|"texts", "path": ..., "name": ...}``
    (records also take ``instruction``, ``image_root``, ``format``); relative paths are relative to ``base_dir``."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"a source must be an object with 'type' and 'path', got {type(entry).__name__}")
    cls = SOURCE_TYPES.get(entry.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"source type {entry.get('type')!r} is not one of {', '.join(SOURCE_TYPES)}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(entry) - known - {"type"})
    if unknown:
        raise ValueError(f"{entry['type']} source: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    options = {key: value for key, value in entry.items() if key != "type"}
    for key in ("path", "image_root"):
        value = options.get(key)
        if key == "path" and (not isinstance(value, str) or not value):
            raise ValueError(f"{entry['type']} source: 'path' must be a non-empty string, got {value!r}")
        if value is not None:
            options[key] = str(Path(base_dir) / Path(value).expanduser())
    return cls(**options)  # type: ignore[return-value]


def allowed_bad(seen: int, max_bad: float) -> int:
    """How many bad records a scan of ``seen`` records tolerates: none if ``max_bad`` is 0, else the larger of
    :data:`BAD_FLOOR` and ``floor(max_bad * seen)``."""
    return 0 if max_bad == 0 else max(BAD_FLOOR, math.floor(max_bad * seen))


class BadRecordsError(ValueError):
    """More bad records than allowed; ``report`` has them all (counts) and the first ones (``problems``)."""

    def __init__(self, report: ScanReport, allowed: int, max_bad: float) -> None:
        self.report, self.allowed = report, allowed
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(report.bad.items()))
        listed = "".join(f"\n  {problem}" for problem in report.problems[:LISTED])
        more = f"\n  ... and {report.bad_total - LISTED} more" if report.bad_total > LISTED else ""
        rule = f"max_bad={max_bad:g} of {report.seen}, at least {BAD_FLOOR}" if max_bad else "max_bad=0"
        super().__init__(f"{report.bad_total} of {report.seen} records are bad, more than the {allowed} allowed "
                         f"({rule}): {counts}{listed}{more}")


# ---- items of a record -------------------------------------------------------------------------------------------


def record_rows(source: str, record: Record, *, instruction: str, fractions: tuple[float, float, float],
                seed: int) -> list[Row]:
    """The table rows of one record's items (see the module docstring for ids, groups, roles and splits)."""
    key = f"{source}:{record.key}"
    parts = [(kind, value) for kind in ("image", "text", "query", "document")
             if (value := getattr(record, kind)) is not None]
    paired = len(parts) > 1
    split, group = record.split or split_of(key, fractions, seed), key if paired else None
    rows: list[Row] = []
    for kind, value in parts:
        item_id = f"{key}:{kind}" if paired else key
        if kind == "image":
            rows.append((item_id, "image", None, None, split, group, None, value.path, record.origin, value.size,
                         value.mtime_ns))
        elif kind == "query":
            rows.append((item_id, "text", value, record.instruction or instruction, split, group, "query", None,
                         record.origin, None, None))
        else:
            rows.append((item_id, "text", value, None, split, group, None, None, record.origin, None, None))
    return rows


def record_items(source: str, record: Record, *, instruction: str = DEFAULT_QUERY_INSTRUCTION,
                 fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = DEFAULT_SEED
                 ) -> list[CorpusItem]:
    """The items of one record of source ``source`` (see the module docstring for ids, groups, roles, splits)."""
    rows = record_rows(source, record, instruction=instruction, fractions=fractions, seed=seed)
    return [CorpusItem(id=r[0], kind=r[1], text=r[2], instruction=r[3], split=r[4], group=r[5], role=r[6],
                       path=r[7], origin=r[8]) for r in rows]


# ---- scanning ----------------------------------------------------------------------------------------------------


class _Scan:
    """The state of one scan: the table being written, the report, counters and the content fingerprint.

    Records are handled in batches of :attr:`BATCH` (one id look-up and one insert per batch); the fingerprint
    is the sha256 of the JSON list of every item's (id, kind, text, instruction, split, group, role, image size,
    image mtime), streamed.
    """

    BATCH = 512

    def __init__(self, writer: TableWriter, fractions: tuple[float, float, float], seed: int) -> None:
        self.writer, self.fractions, self.seed = writer, fractions, seed
        self.report, self.digest = ScanReport(), hashlib.sha256(b"[")
        self.pending: list[tuple[str, BadRecord | tuple[Record, list[Row]]]] = []

    def source(self, spec: _FileSource, bar: Any) -> None:
        """Read every record of one source into the table."""
        name = spec.source_name
        counts = self.report.sources.setdefault(name, {"records": 0, "items": 0, "bad": 0, "ignored": 0})
        instruction = spec.query_instruction() if isinstance(spec, RecordsSource) else DEFAULT_QUERY_INSTRUCTION
        for found in spec.records():
            if found is None:
                self.report.ignored += 1
                counts["ignored"] += 1
                continue
            bar.update()
            if isinstance(found, Record):
                if spec.split is not None and found.split is None:
                    found = found._replace(split=spec.split)
                rows = record_rows(name, found, instruction=instruction, fractions=self.fractions, seed=self.seed)
                self.pending.append((name, (found, rows)))
            else:
                self.pending.append((name, found))
            if len(self.pending) >= self.BATCH:
                self.flush()
        self.flush()

    def flush(self) -> None:
        """Check the pending records' ids, count and store the good ones, report the bad ones (in order)."""
        ids = [row[0] for _, entry in self.pending if not isinstance(entry, BadRecord) for row in entry[1]]
        seen, accepted = self.writer.origins(ids), []
        for name, entry in self.pending:
            if isinstance(entry, BadRecord):
                self.report.add_bad(name, entry)
                continue
            record, rows = entry
            clash = next((row[0] for row in rows if row[0] in seen), None)
            if clash is not None:
                message = f"duplicate id {clash!r} (first at {seen[clash]})"
                self.report.add_bad(name, BadRecord(record.origin, DUPLICATE_ID, message))
                continue
            seen.update((row[0], record.origin) for row in rows)
            accepted += rows
            self._count(name, rows)
        self.writer.add(accepted)
        if accepted:
            prints = json.dumps([row[:7] + row[9:] for row in accepted], ensure_ascii=False)[1:-1]
            self.digest.update(((", " if self.writer.count > len(accepted) else "") + prints).encode("utf-8"))
        self.pending.clear()

    def _count(self, source: str, rows: list[Row]) -> None:
        counts = self.report.sources[source]
        counts["records"] += 1
        counts["items"] += len(rows)
        self.report.records += 1
        self.report.items += len(rows)

    def fingerprint(self) -> str:
        """The content fingerprint (call once, at the end)."""
        self.digest.update(b"]")
        return self.digest.hexdigest()

    def meta(self, specs: Sequence[_FileSource], name: str) -> dict[str, Any]:
        """The corpus identity: sources, split settings, counts and the content fingerprint."""
        described = [{**spec.describe(), **{k: v for k, v in self.report.sources[spec.source_name].items()
                                            if k in ("records", "items")}} for spec in specs]
        return {"source": "files", "name": name, "rules_version": RULES_VERSION, "sources": described,
                "split_fractions": list(self.fractions), "split_seed": self.seed,
                "counts": {"records": self.report.records, "items": self.report.items, **self.writer.tally()},
                "fingerprint": self.fingerprint()}


def _checked_settings(specs: Sequence[Any], fractions: Sequence[float], max_bad: float) -> tuple[float, float, float]:
    if not specs:
        raise ValueError("scan_sources needs at least one source")
    for spec in specs:
        if not isinstance(spec, tuple(SOURCE_TYPES.values())):
            raise TypeError(f"a source must be an ImageFolderSource, RecordsSource or TextsSource, got {spec!r}")
        spec.check()
    names = Counter(spec.source_name for spec in specs)
    clashes = sorted(name for name, n in names.items() if n > 1)
    if clashes:
        raise ValueError(f"source names must be unique in a build; {', '.join(map(repr, clashes))} is used more "
                         "than once (give the sources a name)")
    split = tuple(float(f) for f in fractions)
    if len(split) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {tuple(fractions)}")
    split_of("check", split)  # type: ignore[arg-type]  # raises for fractions that do not sum to 1
    if not 0 <= max_bad <= 1:
        raise ValueError(f"max_bad must be a fraction in [0, 1], got {max_bad}")
    return split  # type: ignore[return-value]


def _table_paths(workdir: str | os.PathLike[str] | None, name: str) -> tuple[Path, Path]:
    """(final path, temporary path being written); the same path twice for a temporary corpus."""
    folder = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".edgeret-corpus-", suffix=".sqlite.tmp", dir=folder)
    os.close(handle)
    if workdir is None:
        return Path(tmp), Path(tmp)
    return folder / (re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:120] + ".items.sqlite"), Path(tmp)


def scan_sources(
    specs: Iterable[Source],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
    max_bad: float = DEFAULT_MAX_BAD,
    progress: bool = True,
    workdir: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> FileCorpus:
    """Scan ``specs`` into an item table and return it as a :class:`FileCorpus` (its ``report`` says what was
    found). ``name`` defaults to the source names joined by ``+``. With ``workdir`` the table is
    ``<workdir>/<name>.items.sqlite`` (replaced atomically); without, a temporary file deleted with the corpus.

    Raises:
        BadRecordsError: more bad records than :func:`allowed_bad` (``fractions`` and ``seed``: see
            :func:`edgeret.data.splits.split_of`).
        FileNotFoundError, ValueError, TypeError: a missing source, clashing names, bad settings, an unreadable
            CSV/TSV header, or no usable record at all.
    """
    specs = [specs] if isinstance(specs, _FileSource) else list(specs)
    split = _checked_settings(specs, fractions, max_bad)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    corpus_name = name or "+".join(spec.source_name for spec in specs)
    final, tmp = _table_paths(workdir, corpus_name)
    writer, start = TableWriter(tmp), time.perf_counter()
    try:
        scan = _Scan(writer, split, seed)
        with tqdm(desc=f"scan {corpus_name}", unit="record", disable=not progress) as bar:
            for spec in specs:
                scan.source(spec, bar)
        scan.report.seconds = round(time.perf_counter() - start, 3)
        allowed = allowed_bad(scan.report.seen, max_bad)
        if scan.report.bad_total > allowed:
            raise BadRecordsError(scan.report, allowed, max_bad)
        if scan.report.items == 0:
            raise ValueError(f"corpus {corpus_name!r}: the sources hold no usable record ({scan.report.summary()})")
        writer.finish({"name": corpus_name, "meta": scan.meta(specs, corpus_name), "report": scan.report.to_dict(),
                       "count": scan.report.items})
        corpus = FileCorpus(tmp, owned=workdir is None)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if final != tmp:
        corpus.items.connection()  # type: ignore[attr-defined]  # opened on the file before it is renamed
        os.replace(tmp, final)
        corpus.items.path = final.resolve()  # type: ignore[attr-defined]
    logger.info("corpus %s: %s", corpus_name, scan.report.summary())
    return corpus


def rescan(meta: Mapping[str, Any], *, workdir: str | os.PathLike[str] | None = None,
           progress: bool = False) -> FileCorpus:
    """The corpus that ``meta`` (a :class:`FileCorpus`'s ``meta``, e.g. from a cache) describes, scanned again;
    ValueError if its files changed since (the new ``meta`` differs)."""
    specs = []
    for described in meta["sources"]:
        entry = {key: described[key] for key in ("path", "name", "instruction", "image_root", "format")
                 if key in described}
        specs.append(source_from_dict({"type": described["kind"], **entry}, "/"))
    corpus = scan_sources(specs, fractions=meta["split_fractions"], seed=meta["split_seed"], max_bad=1.0,
                          progress=progress, workdir=workdir, name=meta["name"])
    changed = sorted(key for key in set(meta) | set(corpus.meta) if meta.get(key) != corpus.meta.get(key))
    if changed:
        corpus.close()
        raise ValueError(f"corpus {meta['name']!r} changed since it was recorded: {', '.join(changed)} differ")
    return corpus
