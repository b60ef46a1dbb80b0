"""``edgeret distill``: see :mod:`edgeret.distill.train`."""

from __future__ import annotations

from edgeret.distill.train import main as run


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    run(argv)
    return 0
