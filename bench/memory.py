"""This process's memory: peak and current resident set size in MB (Linux ``/proc/self/status``).

Kept tiny and dependency-free: the fresh processes of :mod:`edgeret.bench.footprint` and the runtime-bench
cold starts import it (the latter from a base-install interpreter).
"""

from __future__ import annotations

import resource
import sys

__all__ = ["peak_rss_mb", "rss_mb"]


def _status_mb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in MB; None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def peak_rss_mb() -> float:
    """Peak RSS of this process image in MB: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``ru_maxrss`` survives ``exec``: a child started by a big process reports the parent's peak if it
    stays below it. ``VmHWM`` belongs to the process's current address space, so it starts afresh.
    """
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def rss_mb() -> float:
    """Current resident set size of this process in MB (``VmRSS``; 0 where /proc is missing)."""
    current = _status_mb("VmRSS")
    return 0.0 if current is None else current
