"""Reading corpus sources on disk into records (torch-free): image folders, JSONL/CSV/TSV records, text files.

A :class:`Record` is what one image of a folder, one line of a text file or one record of a records file
gives: a record id, where it came from (``origin``, ``captions.jsonl:12``) and its payload -- an image file
(checked), a text/caption, a query, a document. A record that cannot be used is a :class:`BadRecord` with one
of :data:`REASONS` and a message; readers yield it in the record's place and go on. Everything streams: lines
are read one at a time (at most :data:`MAX_LINE_BYTES` each), folders are walked one directory at a time.

Images are checked from their header only (nothing is decoded): Pillow must identify the file, and its size
must be within the runtime loader's limits (``edgeret.runtime.image.MAX_DECODE_BYTES``, with the same JPEG
draft reduction, Pillow's decompression-bomb limit, and an aspect ratio of at most
``edgeret.runtime.preprocess.MAX_ASPECT``). The format documentation is ``docs/data.md``.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from PIL import Image

from edgeret.runtime.ingest import IMAGE_SUFFIXES
from edgeret.runtime.preprocess import MAX_ASPECT

from .splits import SPLITS

MISSING_FILE = "missing-file"
UNDECODABLE_IMAGE = "undecodable-image"
OVERSIZED_IMAGE = "oversized-image"
EMPTY_TEXT = "empty-text"
MALFORMED = "malformed"
DUPLICATE_ID = "duplicate-id"
UNKNOWN_SPLIT = "unknown-split"
ESCAPES_FOLDER = "escapes-folder"
#: why a record is skipped
REASONS = (MISSING_FILE, UNDECODABLE_IMAGE, OVERSIZED_IMAGE, EMPTY_TEXT, MALFORMED, DUPLICATE_ID, UNKNOWN_SPLIT,
           ESCAPES_FOLDER)

#: longest line of a records or text file (bytes, line end excluded); a longer line is a malformed record
MAX_LINE_BYTES = 1 << 20
#: the fields of a record that become items, in item order
PAYLOAD_FIELDS = ("image", "text", "query", "document")
#: optional fields: an empty CSV/TSV cell of these columns means "not given"
OPTIONAL_FIELDS = ("id", "split", "instruction")
#: records file suffix -> format
RECORD_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}
_BOM = b"\xef\xbb\xbf"


class RecordError(ValueError):
    """A record that cannot be used, with its ``reason`` (one of :data:`REASONS`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class BadRecord:
    """A skipped record: where it is (``file:line`` or ``folder/relative path``), why, and what is wrong."""

    origin: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.message} [{self.reason}]"


@dataclass(frozen=True)
class ImageFile:
    """A checked image file: absolute resolved path, size in bytes and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int


class Record(NamedTuple):
    """One usable record: ``key`` is its record id (explicit ``id``, relative path or ``L<line>``). A named tuple:
    a scan makes one per line or image, and tuples are cheap to make."""

    key: str
    origin: str
    image: ImageFile | None = None
    text: str | None = None
    query: str | None = None
    document: str | None = None
    instruction: str | None = None
    split: str | None = None


# ---- images ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(name for name in Image.OPEN if name != "EPS")  # as the runtime's loader: EPS runs Ghostscript


def _check_decode_size(image: Image.Image) -> None:
    """Size limits of the runtime's loader, from the header (``image.draft`` only configures the decoder)."""
    from edgeret.runtime.image import MAX_DECODE_BYTES, decoded_bytes  # lazy: loads onnxruntime; images only

    width, height = image.size
    if width == 0 or height == 0:
        raise RecordError(UNDECODABLE_IMAGE, f"zero-size image ({width}x{height})")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise RecordError(OVERSIZED_IMAGE, f"a {width}x{height} image is more elongated than {MAX_ASPECT}:1, "
                                           "the runtime's aspect limit")
    need = decoded_bytes(image)
    if need <= MAX_DECODE_BYTES:
        return
    scale = next((s for s in (2, 4, 8) if need <= MAX_DECODE_BYTES * s * s), None)
    if scale is not None:  # a JPEG decodes at 1/scale; other formats ignore draft()
        image.draft(None, (max(1, width // scale), max(1, height // scale)))
    if scale is None or decoded_bytes(image) > MAX_DECODE_BYTES:
        raise RecordError(OVERSIZED_IMAGE, f"a {width}x{height} {image.mode} image needs about {need >> 20} MiB "
                                           f"to decode, more than the runtime's {MAX_DECODE_BYTES >> 20} MiB limit")


def probe_image(path: str, shown: str | None = None) -> ImageFile:
    """Check an image file from its header (see the module docstring); RecordError says what is wrong, naming
    the image as ``shown`` (e.g. the path a record gives) when that is set."""
    try:
        return _probe(path)
    except RecordError as exc:
        if shown is None:
            raise
        raise RecordError(exc.reason, f"image {shown!r}: {exc}") from None


def _probe(path: str) -> ImageFile:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise RecordError(MISSING_FILE, f"no such file ({path})") from None
    except OSError as exc:
        raise RecordError(MISSING_FILE, f"cannot read {path} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise RecordError(MISSING_FILE, f"not a regular file ({path})")
    try:
        handle = open(path, "rb")  # closed by the with below
    except OSError as exc:
        raise RecordError(MISSING_FILE, f"cannot read {path} ({exc.strerror or exc})") from None
    with handle:
        try:
            with Image.open(handle, formats=_formats()) as image:
                _check_decode_size(image)
        except RecordError:
            raise
        except Image.DecompressionBombError as exc:
            raise RecordError(OVERSIZED_IMAGE, f"too many pixels to decode safely ({exc})") from None
        except Image.UnidentifiedImageError:
            raise RecordError(UNDECODABLE_IMAGE, "not an image (Pillow cannot identify it)") from None
        except Exception as exc:  # a Pillow plugin fed a hostile header can raise almost anything
            raise RecordError(UNDECODABLE_IMAGE, f"corrupt image header ({type(exc).__name__}: "
                                                 f"{str(exc)[:160]})") from None
    return ImageFile(path, info.st_size, info.st_mtime_ns)


def confined_path(root: Path, relative: str) -> str:
    """``root / relative`` resolved (symlinks followed); RecordError unless it stays inside ``root`` (resolved)."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError(MALFORMED, f"image path {relative[:80]!r} is not valid Unicode text") from None
    if not relative.strip() or "\0" in relative:
        raise RecordError(MALFORMED, f"image path {relative[:80]!r} is empty or invalid")
    try:
        target = (root / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise RecordError(MALFORMED, f"image path {relative[:80]!r} cannot be resolved ({exc})") from None
    if not target.is_relative_to(root):
        raise RecordError(ESCAPES_FOLDER, f"image path {relative[:80]!r} leads outside {root}")
    return str(target)


def _sorted_names(folder: str) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if not entry.name.startswith("."))


def _folder_entry(root: Path, rel: str, display: str) -> Record | BadRecord | str | None:
    """A record for one folder entry, a relative folder path to walk into, or None (not an image)."""
    path, origin = os.path.join(root, rel), f"{display}/{rel}"
    try:
        rel.encode("utf-8")
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            return rel
        if stat.S_ISLNK(mode):
            target = Path(path).resolve()
            if target.is_dir():
                if target.is_relative_to(root):
                    return None  # a folder inside is walked anyway
                raise RecordError(ESCAPES_FOLDER, f"a symlinked folder that leads outside {root} (not followed)")
            if Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
                return None
            path = confined_path(root, rel)
        elif Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
            return None
        return Record(key=rel, origin=origin, image=probe_image(path))
    except UnicodeEncodeError:
        return BadRecord(origin, MALFORMED, "the file name is not valid UTF-8")
    except RecordError as exc:
        return BadRecord(origin, exc.reason, str(exc))
    except (OSError, RuntimeError) as exc:
        return BadRecord(origin, MISSING_FILE, f"cannot read ({exc})")


def read_image_folder(root: Path, display: str) -> Iterator[Record | BadRecord | None]:
    """Every image under ``root`` (resolved), walked in sorted order; None for each other file (ignored).

    Hidden entries (names starting with ``.``) are skipped; symlinked folders are not followed; a symlinked
    image must resolve inside ``root``.
    """
    stack: list[tuple[str, Iterator[str]]] = [("", iter(_sorted_names(str(root))))]
    while stack:
        prefix, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        found = _folder_entry(root, prefix + name, display)
        if isinstance(found, str):
            try:
                stack.append((found + "/", iter(_sorted_names(os.path.join(root, found)))))
            except OSError as exc:
                yield BadRecord(f"{display}/{found}", MISSING_FILE, f"cannot list this folder ({exc.strerror})")
        else:
            yield found


# ---- lines ---------------------------------------------------------------------------------------------------


def _skip_rest_of_line(handle: BinaryIO) -> None:
    while (chunk := handle.readline(1 << 16)) and not chunk.endswith(b"\n"):
        pass


def read_lines(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, raw line with its end)`` per line, or ``None`` for a line over :data:`MAX_LINE_BYTES`."""
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 2):
            number += 1
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                if not raw.endswith(b"\n"):
                    _skip_rest_of_line(handle)
                yield number, None
                continue
            yield number, raw


def _decoded(raw: bytes | None) -> str:
    if raw is None:
        raise RecordError(MALFORMED, f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise RecordError(MALFORMED, f"not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                          ) from None


def read_text_file(path: Path, display: str) -> Iterator[Record | BadRecord]:
    """One text record per non-blank line (surrounding whitespace stripped), id ``L<line number>``."""
    for number, raw in read_lines(path):
        origin = f"{display}:{number}"
        try:
            text = _decoded(raw).strip()
        except RecordError as exc:
            yield BadRecord(origin, exc.reason, str(exc))
            continue
        if text:
            yield Record(key=f"L{number}", origin=origin, text=text)


# ---- records files -------------------------------------------------------------------------------------------


def _text_field(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(MALFORMED, f"{name!r} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise RecordError(EMPTY_TEXT, f"{name!r} is empty: there is nothing to embed")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError(MALFORMED, f"{name!r} is not valid Unicode text (a lone surrogate)") from None
    return text


def _record_key(value: Any, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise RecordError(MALFORMED, f"'id' must be a non-empty string or an integer, got {str(value)[:60]!r}")
    return str(value).strip()


def _split_field(value: Any) -> str | None:
    if value is None:
        return None
    split = str(value).strip().lower()
    if split not in SPLITS:
        raise RecordError(UNKNOWN_SPLIT, f"split {str(value)[:40]!r} is not one of {', '.join(SPLITS)}")
    return split


def make_record(fields: Mapping[str, Any], default_key: str, origin: str, image_root: Path) -> Record:
    """Check one record's fields (None = not given) and its image; RecordError says what is wrong."""
    if all(fields.get(name) is None for name in PAYLOAD_FIELDS):
        raise RecordError(MALFORMED, "the record has none of " + ", ".join(PAYLOAD_FIELDS))
    texts = {name: _text_field(fields, name) for name in ("text", "query", "document", "instruction")}
    if texts["instruction"] is not None and texts["query"] is None:
        raise RecordError(MALFORMED, "'instruction' is given but there is no 'query' for it")
    key, split = _record_key(fields.get("id"), default_key), _split_field(fields.get("split"))
    image = fields.get("image")
    if image is not None and not isinstance(image, str):
        raise RecordError(MALFORMED, f"'image' must be a path string, got {type(image).__name__}")
    checked = probe_image(confined_path(image_root, image), image) if image is not None else None
    return Record(key=key, origin=origin, image=checked, split=split, **texts)


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise RecordError(MALFORMED, f"not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(value, dict):
        raise RecordError(MALFORMED, f"expected a JSON object, got {type(value).__name__}")
    return value


def read_jsonl(path: Path, display: str, image_root: Path) -> Iterator[Record | BadRecord]:
    """One record per non-blank line, each a JSON object; default id ``L<line number>``."""
    for number, raw in read_lines(path):
        origin = f"{display}:{number}"
        try:
            line = _decoded(raw)
            if line.strip():
                yield make_record(_json_object(line), f"L{number}", origin, image_root)
        except RecordError as exc:
            yield BadRecord(origin, exc.reason, str(exc))


class _CsvLines:
    """Decoded lines for :mod:`csv` (undecodable bytes kept as surrogates, checked per row); a line over
    :data:`MAX_LINE_BYTES` is replaced by a blank one and its number kept in ``too_long``."""

    def __init__(self, path: Path) -> None:
        self.lines, self.too_long = read_lines(path), []

    def __iter__(self) -> Iterator[str]:
        for number, raw in self.lines:
            if raw is None:
                self.too_long.append(number)
                yield "\n"
            else:
                yield raw.decode("utf-8", "surrogateescape")


def _header(reader: Any, display: str) -> list[str]:
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), [])
    except csv.Error as exc:
        raise ValueError(f"{display}: cannot read the header line ({exc})") from None
    names = [cell.strip().lower() for cell in header]
    if header and not set(names) & set(PAYLOAD_FIELDS):
        raise ValueError(f"{display}: the header {header[:8]} names none of the columns {', '.join(PAYLOAD_FIELDS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{display}: the header {header[:8]} repeats a column name")
    return names


def _row_fields(row: list[str], names: list[str]) -> dict[str, str | None]:
    if len(row) != len(names):
        raise RecordError(MALFORMED, f"{len(row)} columns where the header has {len(names)}")
    for cell in row:
        if not cell.isascii():
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                raise RecordError(MALFORMED, "not UTF-8 text") from None
    pairs = zip(names, row, strict=True)
    return {name: (None if name in OPTIONAL_FIELDS and not cell.strip() else cell) for name, cell in pairs}


def read_delimited(path: Path, display: str, image_root: Path, fmt: str) -> Iterator[Record | BadRecord]:
    """Records of a CSV (RFC 4180 quoting) or TSV (tabs, no quoting) file with a header line of column names."""
    lines = _CsvLines(path)
    reader = (csv.reader(lines, strict=True) if fmt == "csv"
              else csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True))
    names = _header(reader, display)
    while True:
        number = reader.line_num + 1
        origin = f"{display}:{number}"
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield BadRecord(origin, MALFORMED, f"malformed {fmt.upper()} ({exc})")
            continue
        for long_line in lines.too_long:
            yield BadRecord(f"{display}:{long_line}", MALFORMED, f"line longer than {MAX_LINE_BYTES} bytes")
        lines.too_long.clear()
        if not any(cell.strip() for cell in row):
            continue
        try:
            yield make_record(_row_fields(row, names), f"L{number}", origin, image_root)
        except RecordError as exc:
            yield BadRecord(origin, exc.reason, str(exc))
