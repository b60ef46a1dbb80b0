"""``edgeret index BUNDLE --images DIR | --texts FILE``: embed and add items to a bundle's index, then save.

Texts: a plain file is one text per line (id = line number, metadata ``{"text": ...}``); a
``.jsonl`` file (or one whose first line is a JSON object) has ``{"id", "text", "metadata"?}`` per
line. Images: every image file under DIR (recursively); id = path relative to DIR. Unreadable
images are skipped with a warning; everything else that is wrong stops the command before saving.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edgeret.runtime.errors import BundleError
from edgeret.runtime.image import load_image
from edgeret.runtime.retriever import Retriever

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def read_texts(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(id, text, metadata)`` per non-empty line of a text or JSONL file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    first = next((line for line in lines if line.strip()), "")
    jsonl = path.suffix == ".jsonl" or first.lstrip().startswith("{")
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not jsonl:
            items.append((str(number), line, {"text": line}))
            continue
        try:
            record = json.loads(line)
            item_id, text = str(record["id"]), record["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: expected a JSON object with 'id' and 'text' ({exc})") from exc
        items.append((item_id, text, {"text": text, **(record.get("metadata") or {})}))
    return items


def iter_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder`` (by suffix), sorted."""
    return iter(sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))


def index_texts(retriever: Retriever, path: Path, batch_size: int) -> int:
    items = read_texts(path)
    with tqdm(total=len(items), desc="indexing texts", unit="text", disable=None) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            retriever.add_texts([c[0] for c in chunk], [c[1] for c in chunk], [c[2] for c in chunk])
            bar.update(len(chunk))
    return len(items)


def index_images(retriever: Retriever, folder: Path, batch_size: int) -> int:
    paths = list(iter_images(folder))
    added = 0
    with tqdm(total=len(paths), desc="indexing images", unit="img", disable=None) as bar:
        for start in range(0, len(paths), batch_size):
            ids, images, metas = [], [], []
            for path in paths[start : start + batch_size]:
                rel = path.relative_to(folder).as_posix()
                try:
                    images.append(load_image(path, rel))
                except (ValueError, OSError) as exc:
                    logger.warning("skipping %s", exc)
                    continue
                ids.append(rel)
                metas.append({"path": rel})
            if ids:
                retriever.add_images(ids, images, metas)
                added += len(ids)
            bar.update(min(batch_size, len(paths) - start))
    return added


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="edgeret index", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder (manifest.json, encoders, index/)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR", help="index every image file under DIR")
    source.add_argument("--texts", type=Path, metavar="FILE", help="one text per line, or JSONL {id, text, metadata}")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--model-format", choices=("auto", "onnx", "ort"), default="auto",
                        help="auto: a tower's .ort twin (compress --ort) when the bundle has one, else its .onnx")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=None, help="Matryoshka dim for a new index")
    args = parser.parse_args(argv)
    try:
        retriever = Retriever.open(args.bundle, threads=args.threads, dim=args.dim, model_format=args.model_format)
        before = len(retriever)
        if args.texts is not None:
            count = index_texts(retriever, args.texts, args.batch_size)
        else:
            if not args.images.is_dir():
                raise ValueError(f"--images {args.images} is not a folder")
            count = index_images(retriever, args.images, args.batch_size)
        folder = retriever.save()
    except (BundleError, ValueError, TypeError, OSError, KeyError) as exc:
        print(f"edgeret index: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"indexed {count} items ({before} -> {len(retriever)}); saved {folder}")
