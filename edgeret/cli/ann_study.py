"""``edgeret ann-study``: see :mod:`edgeret.bench.ann_study`."""

from __future__ import annotations

from edgeret.bench.ann_study import main as run


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    run(argv)
    return 0
