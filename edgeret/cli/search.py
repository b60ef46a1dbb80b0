"""``edgeret search BUNDLE "query" | --image PATH``: print the ranked results (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeret.runtime.errors import BundleError
from edgeret.runtime.retriever import Retriever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="edgeret search", description=__doc__)
    parser.add_argument("bundle", type=Path, help="bundle folder with a saved index")
    parser.add_argument("query", nargs="?", help="text query")
    parser.add_argument("--image", type=Path, metavar="PATH", help="image query instead of text")
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--filter", type=json.loads, default=None, metavar="JSON",
                        help='metadata filter, e.g. \'{"lang": "en", "year": {"gte": 2000}}\'')
    parser.add_argument("--exact", action="store_true", help="brute-force search instead of HNSW")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--model-format", choices=("auto", "onnx", "ort"), default="auto",
                        help="auto: a tower's .ort twin (compress --ort) when the bundle has one, else its .onnx")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {rank, id, score, metadata}")
    args = parser.parse_args(argv)
    if (args.query is None) == (args.image is None):
        parser.error("give either a text query or --image PATH")
    try:
        retriever = Retriever.open(args.bundle, threads=args.threads, model_format=args.model_format)
        results = retriever.search(text=args.query, image=args.image, k=args.k, filter=args.filter,
                                   exact=True if args.exact else None)
    except (BundleError, ValueError, TypeError, OSError) as exc:
        print(f"edgeret search: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    if args.json:
        rows = [{"rank": rank, "id": r.id, "score": r.score, "metadata": r.metadata}
                for rank, r in enumerate(results, start=1)]
        print(json.dumps(rows, ensure_ascii=False))
        return
    if not results:
        print("no results (is the index empty?)")
    for rank, r in enumerate(results, start=1):
        meta = "" if r.metadata is None else "  " + json.dumps(r.metadata, ensure_ascii=False)
        print(f"{rank:>3}. {r.score:+.4f}  {r.id}{meta}")
