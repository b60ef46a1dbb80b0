"""``edgeret search BUNDLE "query" | --image PATH``: print the ranked results (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeret.runtime.retriever import Retriever


def _json_filter(text: str) -> Any:
    """``--filter``'s JSON (argparse reports a malformed or absurdly nested one as a usage error)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({str(exc)[:120]})") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret search", description=__doc__)
    parser.add_argument("bundle", type=Path, help="bundle folder with a saved index")
    parser.add_argument("query", nargs="?", help="text query")
    parser.add_argument("--image", type=Path, metavar="PATH", help="image query instead of text")
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--filter", type=_json_filter, default=None, metavar="JSON",
                        help='metadata filter, e.g. \'{"lang": "en", "year": {"gte": 2000}}\'')
    parser.add_argument("--exact", action="store_true", help="brute-force search instead of HNSW")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--model-format", choices=("auto", "onnx", "ort"), default="auto",
                        help="auto: a tower's .ort twin (compress --ort) when the bundle has one, else its .onnx")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {rank, id, score, metadata}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeret search``; errors propagate to the dispatcher (one line, exit 1)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.query is None) == (args.image is None):
        parser.error("give either a text query or --image PATH")
    retriever = Retriever.open(args.bundle, threads=args.threads, model_format=args.model_format)
    results = retriever.search(text=args.query, image=args.image, k=args.k, filter=args.filter,
                               exact=True if args.exact else None)
    if args.json:
        rows = [{"rank": rank, "id": r.id, "score": r.score, "metadata": r.metadata}
                for rank, r in enumerate(results, start=1)]
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not results:
        print("no results (is the index empty?)")
    for rank, r in enumerate(results, start=1):
        meta = "" if r.metadata is None else "  " + json.dumps(r.metadata, ensure_ascii=False)
        print(f"{rank:>3}. {r.score:+.4f}  {r.id}{meta}")
    return 0
