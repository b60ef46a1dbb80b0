"""Batch ingestion (``edgeret index``): image folders and text files into a :class:`Retriever`, saving as it goes.

* A bad item -- an unreadable, truncated, hostile or oversized image, a malformed JSONL line, a text with
  nothing to embed -- is reported as :class:`Skipped` (item + reason) and skipped; the good ones are kept.
* The index is saved every ``save_every`` added items or ``save_seconds`` seconds, at the end, and when the
  run fails with an unexpected error (before it is re-raised), so a failure late in a run loses nothing that
  was already embedded; a process killed outright loses at most the items since the last save.
* Images are decoded and preprocessed one at a time (only the ``size x size`` pixels of a batch are held),
  so a folder of large photos needs the memory of one photo, not of a batch.

Texts: a plain file is one text per line (id = line number, metadata ``{"text": ...}``); a ``.jsonl`` file
(or one whose first non-empty line is a JSON object) has ``{"id", "text", "metadata"?}`` per line, where
``id`` is a non-empty string or an integer and ``metadata`` an object or null. A later line with the same
id replaces the earlier one. Images: every regular file under the folder with an image suffix (symlinked
folders are not followed; a symlinked file must stay inside the folder); id = path relative to the folder.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._fs import is_regular_file
from .errors import shorten

if TYPE_CHECKING:  # the retriever imports this module's callers, not the reverse
    from .retriever import Retriever

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
Record = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class Skipped:
    """An item that was not indexed: where it came from (a relative path or ``FILE:LINE``) and why."""

    item: str
    reason: str


@dataclass
class IngestReport:
    """What a run did: items added, items skipped (with reasons), saves made and the last generation saved."""

    added: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    saves: int = 0
    saved: Path | None = None


class _Saver:
    """Saves the retriever every ``every`` added items or ``seconds`` seconds (and on demand)."""

    def __init__(self, retriever: Retriever, report: IngestReport, every: int, seconds: float) -> None:
        if every < 1 or seconds <= 0:
            raise ValueError(f"save_every must be >= 1 and save_seconds > 0, got {every}, {seconds}")
        self.retriever, self.report, self.every, self.seconds = retriever, report, every, seconds
        self.unsaved, self.last = 0, time.monotonic()

    def added(self, n: int) -> None:
        self.report.added += n
        self.unsaved += n
        if self.unsaved >= self.every or time.monotonic() - self.last >= self.seconds:
            self.save()

    def save(self) -> None:
        self.report.saved = self.retriever.save()
        self.report.saves += 1
        self.unsaved, self.last = 0, time.monotonic()


def _guarded(saver: _Saver, run: Callable[[], None]) -> None:
    """``run()``, then a final save; on an unexpected error, save what was added, then re-raise."""
    try:
        run()
    except BaseException:
        if saver.unsaved:
            try:
                saver.save()
                logger.warning("the run failed; what it had added was saved first (%d item(s))", saver.report.added)
            except Exception:  # the original error matters more; this one is logged
                logger.exception("could not save after the failure")
        raise
    saver.save()


# ---- images --------------------------------------------------------------------------------------------
def iter_image_files(folder: Path) -> Iterator[Path]:
    """Image files under ``folder`` (by suffix), sorted, without following symlinked folders."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(top) / name


def _image_pixels(path: Path, rel: str, folder: Path, preprocessor: Any) -> np.ndarray:
    from .image import load_image  # lazy: Pillow only for image runs

    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{rel}: a symlink that leads outside the folder")
    if not is_regular_file(path):
        raise ValueError(f"{rel}: not a regular file")
    image = load_image(path, rel)
    try:
        return preprocessor([image])[0]
    except (ValueError, OSError, MemoryError) as exc:
        raise ValueError(f"{rel}: cannot convert this {image.mode} image ({shorten(str(exc), 200)})") from exc


def index_images(retriever: Retriever, folder: str | Path, *, batch_size: int = 32, save_every: int = 1000,
                 save_seconds: float = 60.0, progress: Callable[[int], None] | None = None) -> IngestReport:
    """Embed every image under ``folder`` into ``retriever`` (id = relative path, metadata ``{"path": id}``).

    ``progress(n)`` is called with the number of files handled after each one.

    Raises:
        ValueError: ``folder`` is not a folder, or the bundle has no image encoder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{shorten(str(folder))} is not a folder")
    encoder = retriever.image_encoder
    if encoder is None:
        raise ValueError("this bundle has no image encoder")
    report = IngestReport()
    saver = _Saver(retriever, report, save_every, save_seconds)
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if batch:
            embeddings = encoder.encode_pixels(np.stack([pixels for _, pixels in batch]))
            ids = [rel for rel, _ in batch]
            retriever.add_embeddings(ids, embeddings, [{"path": rel} for rel in ids])
            batch.clear()
            saver.added(len(ids))

    def run() -> None:
        for done, path in enumerate(iter_image_files(folder), start=1):
            rel = path.relative_to(folder).as_posix()
            try:
                batch.append((rel, _image_pixels(path, rel, folder, encoder.preprocessor)))
            except (ValueError, OSError) as exc:
                report.skipped.append(Skipped(rel, str(exc)))
                logger.warning("skipped %s", exc)
            if len(batch) >= batch_size:
                flush()
            if progress is not None:
                progress(done)
        flush()

    _guarded(saver, run)
    return report


# ---- texts ---------------------------------------------------------------------------------------------
def _record(line: str) -> Record:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not a JSON object ({shorten(str(exc), 120)})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with 'id' and 'text', got {type(record).__name__}")
    item, text, meta = record.get("id"), record.get("text"), record.get("metadata")
    if isinstance(item, bool) or not (isinstance(item, int) or (isinstance(item, str) and item)):
        raise ValueError(f"'id' must be a non-empty string or an integer, got {shorten(item, 60)}")
    if not isinstance(text, str):
        raise ValueError(f"'text' must be a string, got {type(text).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"'metadata' must be an object or null, got {type(meta).__name__}")
    return str(item), text, {"text": text, **(meta or {})}


def read_text_records(path: str | Path) -> Iterator[Record | Skipped]:
    """``(id, text, metadata)`` per non-empty line of a text or JSONL file, or a :class:`Skipped` per bad line."""
    path = Path(path)
    jsonl, first = path.suffix == ".jsonl", True
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path.name}:{number}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield Skipped(where, "not UTF-8 text")
                continue
            if not line.strip():
                continue
            jsonl, first = jsonl or (first and line.lstrip().startswith("{")), False
            if not jsonl:
                yield str(number), line, {"text": line}
                continue
            try:
                yield _record(line)
            except ValueError as exc:
                yield Skipped(where, str(exc))


def index_texts(retriever: Retriever, path: str | Path, *, batch_size: int = 64, save_every: int = 1000,
                save_seconds: float = 60.0, progress: Callable[[int], None] | None = None) -> IngestReport:
    """Embed every record of a text/JSONL file into ``retriever`` (see the module docstring)."""
    report = IngestReport()
    saver = _Saver(retriever, report, save_every, save_seconds)
    batch: dict[str, Record] = {}

    def flush() -> None:
        records = list(batch.values())
        batch.clear()
        if not records:
            return
        try:
            retriever.add_texts([r[0] for r in records], [r[1] for r in records], [r[2] for r in records])
            saver.added(len(records))
            return
        except (ValueError, TypeError):  # find the bad record(s); the others go in one by one
            pass
        for item, text, meta in records:
            try:
                retriever.add_texts([item], [text], [meta])
                saver.added(1)
            except (ValueError, TypeError) as exc:
                report.skipped.append(Skipped(f"id {shorten(item, 60)}", str(exc)))
                logger.warning("skipped id %s: %s", shorten(item, 60), exc)

    def run() -> None:
        for done, record in enumerate(read_text_records(path), start=1):
            if isinstance(record, Skipped):
                report.skipped.append(record)
                logger.warning("skipped %s: %s", record.item, record.reason)
            else:
                if record[0] in batch or len(batch) >= batch_size:
                    flush()
                batch[record[0]] = record
            if progress is not None:
                progress(done)
        if batch:
            flush()

    _guarded(saver, run)
    return report
