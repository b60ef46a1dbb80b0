"""The ``edgeret`` command: dispatch ``edgeret COMMAND ...`` to ``edgeret.cli.<command>.main(argv)``.

A command module is an argparse adapter: it parses its arguments, calls its stage's function and prints the
outcome; ``main(argv)`` returns the exit status (0). A stage that fails raises; the dispatcher prints one line
(``edgeret COMMAND: error: ...``) and exits with status 1 (``-v`` shows the traceback), 130 on Ctrl-C, 2 for
usage errors (argparse) or a missing extra.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one line of help, and the extra it needs (None: the base install)."""

    name: str
    help: str
    extra: str | None = None

    @property
    def module(self) -> str:
        """The adapter module: ``edgeret <name>`` is ``edgeret.cli.<name with - as _>``."""
        return f"edgeret.cli.{self.name.replace('-', '_')}"


COMMANDS = (
    Command("teacher-cache", "embed a corpus with a teacher into a resumable cache", "distill"),
    Command("teacher-quality", "held-out quality table of a teacher", "distill"),
    Command("distill", "train the student dual encoder from teacher caches", "distill"),
    Command("compress", "prune, export and quantise a student into an on-device bundle", "compress"),
    Command("index", "embed images or texts into a bundle's index"),
    Command("search", "search a bundle's index with a text or an image"),
    Command("bench", "teacher and student variants side by side: accuracy vs latency", "bench"),
    Command("runtime-bench", "query latency, cold start, RSS and soak of a bundle", "bench"),
    Command("ann-study", "ANN recall vs latency, build time and memory at scale", "bench"),
    Command("build", "a recipe end to end: teacher cache, distil, compress, index, report", "bench"),
    Command("demo", "the embedded default pipeline, end to end (the demo recipe)", "bench"),
)
BY_NAME = {command.name: command for command in COMMANDS}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeret",
        description="Distil GME into a tiny dual encoder, compress it, and search on-device without torch.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        suffix = f" [needs edgeret[{command.extra}]]" if command.extra else ""
        sub.add_parser(command.name, help=command.help + suffix, add_help=False)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeret COMMAND ...``; returns 0, or raises :class:`SystemExit` with the failing status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose = True
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BY_NAME:
        parser.error(f"unknown command {name!r}; choose from {', '.join(BY_NAME)}")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    command = BY_NAME[name]
    try:
        module = importlib.import_module(command.module)  # lazy: a command imports its stage only when it runs
    except ImportError as exc:
        print(f"edgeret {name}: {_one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from exc
    try:
        status = module.main(rest)
    except KeyboardInterrupt:
        print(f"edgeret {name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit:  # argparse usage errors (2), --help (0), an adapter's own status
        raise
    except Exception as exc:
        if verbose:
            raise
        print(f"edgeret {name}: error: {_one_line(exc)}", file=sys.stderr)
        raise SystemExit(1) from exc
    if isinstance(status, int) and status:
        raise SystemExit(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
