"""``edgeret bench``: see :mod:`edgeret.bench.compare`."""

from __future__ import annotations

from edgeret.bench.compare import main as run


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    run(argv)
    return 0
