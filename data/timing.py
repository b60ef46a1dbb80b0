"""Wall-clock timing, one way everywhere: per-call samples in milliseconds and their percentiles.

:func:`time_calls` times each call of a function on its own (``time.perf_counter``) after a warm-up;
:func:`percentiles` summarises the samples (numpy's linear interpolation, so ``p50`` is the median);
:class:`Stopwatch` measures one longer span (a build, a stage) in seconds. Thread settings (torch,
onnxruntime, BLAS) stay with the caller: set them before timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["Stopwatch", "percentiles", "time_calls"]


def time_calls(fn: Callable[..., Any], calls: Iterable[Any] | int, repeats: int = 1, warmup: int = 0,
               outputs: list[Any] | None = None) -> list[float]:
    """Milliseconds of each timed call of ``fn``, in call order.

    ``calls`` is either the inputs (``fn(item)`` for each, ``repeats`` passes over them, after a warm-up of
    ``fn(item)`` on the first ``warmup`` items) or a count ``n`` (``fn()`` ``n`` times per pass, after
    ``warmup`` untimed calls). ``outputs``, when given, receives every timed call's return value (appended
    outside the timed span).
    """
    if isinstance(calls, int):
        args: list[tuple[Any, ...]] = [()] * calls
        warm: list[tuple[Any, ...]] = [()] * warmup
    else:
        args = [(item,) for item in calls]
        warm = args[:warmup]
    for arg in warm:
        fn(*arg)
    samples = []
    for _ in range(repeats):
        for arg in args:
            start = time.perf_counter()
            out = fn(*arg)
            samples.append((time.perf_counter() - start) * 1e3)
            if outputs is not None:
                outputs.append(out)
    return samples


def percentiles(samples: Sequence[float], points: Sequence[int] = (50, 95)) -> dict[str, float]:
    """``{"p50": ..., "p95": ...}`` (one key per point) of ``samples``; ``p50`` is the median."""
    if not len(samples):
        raise ValueError("no samples to summarise")
    arr = np.asarray(samples, dtype=np.float64)
    return {f"p{p}": float(np.percentile(arr, p)) for p in points}


class Stopwatch:
    """Time since it was created (or last :meth:`restart`), from ``time.perf_counter``."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def restart(self) -> None:
        """Start counting again from now."""
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds elapsed."""
        return time.perf_counter() - self.start

    @property
    def ms(self) -> float:
        """Milliseconds elapsed."""
        return self.seconds * 1e3
