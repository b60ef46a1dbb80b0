"""``edgeret runtime-bench``: see :mod:`edgeret.bench.runtime_bench`."""

from __future__ import annotations

from edgeret.bench.runtime_bench import main as run


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    run(argv)
    return 0
