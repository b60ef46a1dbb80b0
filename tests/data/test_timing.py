"""The one timing helper: which calls are timed, warm-ups, outputs, percentiles and the stopwatch."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgeret.data.timing import Stopwatch, percentiles, time_calls


def test_items_are_timed_per_pass_after_a_warm_up_on_the_first_items():
    seen = []
    samples = time_calls(seen.append, ["a", "b", "c"], repeats=2, warmup=2)
    assert seen == ["a", "b", "a", "b", "c", "a", "b", "c"]
    assert len(samples) == 6 and all(s >= 0 for s in samples)


def test_a_count_calls_without_arguments():
    calls = []
    samples = time_calls(lambda: calls.append(1), 3, repeats=2, warmup=1)
    assert len(calls) == 7 and len(samples) == 6


def test_outputs_collect_the_timed_calls_only():
    outputs: list[int] = []
    time_calls(lambda x: x * 10, [1, 2, 3], warmup=2, outputs=outputs)
    assert outputs == [10, 20, 30]


def test_samples_are_milliseconds():
    (sample,) = time_calls(lambda: time.sleep(0.02), 1)
    assert 15 < sample < 1000


def test_percentiles_match_numpy_and_the_median():
    samples = [5.0, 1.0, 3.0, 2.0]
    assert percentiles(samples) == {"p50": 2.5, "p95": pytest.approx(float(np.percentile(samples, 95)))}
    assert percentiles([4.0, 1.0, 9.0], points=(50,)) == {"p50": 4.0}
    with pytest.raises(ValueError):
        percentiles([])


def test_stopwatch():
    watch = Stopwatch()
    time.sleep(0.01)
    assert watch.seconds >= 0.009 and watch.ms >= 9
    watch.restart()
    assert watch.seconds < 0.009
