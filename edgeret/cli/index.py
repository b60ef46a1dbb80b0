"""``edgeret index BUNDLE --images DIR | --texts FILE``: embed and add items to a bundle's index, saving as it goes.

Texts: a plain file is one text per line (id = line number, metadata ``{"text": ...}``); a ``.jsonl`` file
(or one whose first line is a JSON object) has ``{"id", "text", "metadata"?}`` per line. Images: every
image file under DIR (recursively); id = path relative to DIR. Bad items (unreadable or oversized images,
malformed lines, empty texts) are reported and skipped; the index is saved every --save-every items or
--save-seconds seconds and at the end (see :mod:`edgeret.runtime.ingest`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from edgeret.runtime.index_formats import FORMATS
from edgeret.runtime.ingest import IngestReport, index_images, index_texts
from edgeret.runtime.retriever import Retriever


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--index-format", choices=sorted(FORMATS), default=None,
                        help="format of a new index: hnswlib-f32 (float32 vectors, the default) or faiss-hnsw-sq8 "
                             "(8-bit codes, memory-mapped; needs pip install 'edgeret[faiss]'); default: the "
                             "bundle's; a saved index must already be in the format named")
    parser.add_argument("--save-every", type=int, default=1000, metavar="N", help="save after every N added items")
    parser.add_argument("--save-seconds", type=float, default=60.0, metavar="T",
                        help="save at least every T seconds while adding")
    return parser


def _summary(report: IngestReport, before: int, after: int) -> str:
    saved = f"saved {report.saves} time(s), last {report.saved}" if report.saved else "nothing saved"
    return f"indexed {report.added} items, skipped {len(report.skipped)} ({before} -> {after}); {saved}"


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeret index``; errors propagate to the dispatcher (one line, exit 1)."""
    args = _parser().parse_args(argv)
    retriever = Retriever.open(args.bundle, threads=args.threads, dim=args.dim, model_format=args.model_format,
                               index_format=args.index_format)
    before = len(retriever)
    options = {"batch_size": args.batch_size, "save_every": args.save_every, "save_seconds": args.save_seconds}
    with tqdm(desc="indexing", unit="item", disable=None) as bar:
        def progress(done: int) -> None:
            bar.update(done - bar.n)

        if args.texts is not None:
            report = index_texts(retriever, args.texts, progress=progress, **options)
        else:
            report = index_images(retriever, args.images, progress=progress, **options)
    for skipped in report.skipped[:20]:
        print(f"skipped {skipped.item}: {skipped.reason}", file=sys.stderr)
    if len(report.skipped) > 20:
        print(f"... and {len(report.skipped) - 20} more skipped", file=sys.stderr)
    print(_summary(report, before, len(retriever)))
    return 0
