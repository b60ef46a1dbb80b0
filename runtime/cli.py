"""The ``edgeret`` command. Each subcommand imports its stage only when it runs, so the base
(runtime-only) install can run ``edgeret --help`` and the runtime commands without torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module with ``main(argv)``, help, extra needed)
SUBCOMMANDS: dict[str, tuple[str, str, str | None]] = {
    "teacher-cache": ("distill.cli", "embed a corpus with a teacher into a resumable cache", "distill"),
    "teacher-quality": ("bench.teacher_quality", "held-out quality table of a teacher", "distill"),
    "distill": ("distill.train", "train the student dual encoder from teacher caches", "distill"),
    "compress": ("compress.cli", "prune, export and quantise a student into an on-device bundle", "compress"),
    "demo": ("bench.demo", "the embedded default pipeline, end to end", "distill"),
    "index": ("runtime.cli_index", "embed images or texts into a bundle's index", None),
    "search": ("runtime.cli_search", "search a bundle's index with a text or an image", None),
    "bench": ("bench.compare", "teacher and student variants side by side: accuracy vs latency", "bench"),
    "runtime-bench": ("bench.runtime_bench", "query latency, cold start, RSS and soak of a bundle", "bench"),
    "ann-study": ("bench.ann_study", "hnswlib recall vs ef_search, latency, build time and memory at scale", "bench"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeret",
        description="Distil GME into a tiny dual encoder, compress it, and search on-device without torch.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text, extra) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text + (f" [needs edgeret[{extra}]]" if extra else ""), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``edgeret COMMAND ...`` to the stage's ``main(argv)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose = True
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        parser.error(f"unknown command {command!r}; choose from {', '.join(SUBCOMMANDS)}")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    module_name = SUBCOMMANDS[command][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"edgeret {command}: {exc}", file=sys.stderr)
        return 2
    module.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
