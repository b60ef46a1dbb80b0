"""``edgeret teacher-quality``: see :mod:`edgeret.bench.teacher_quality`."""

from __future__ import annotations

from edgeret.bench.teacher_quality import main as run


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    run(argv)
    return 0
