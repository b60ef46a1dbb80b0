"""Property-based fuzzing of the runtime's input surfaces (tests/runtime/fuzz_cases.py).

A short run of every surface is part of ``make test`` (a few seconds each); the long run (10,000 cases per
surface, ``-m slow``) is what ``python -m edgeret.bench.hardening`` records in ``bench/results/hardening.md``.
"""

import os

import pytest

pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (the dev extra)")

from .fuzz_cases import SURFACES, Workspace, run_surface  # noqa: E402 - after the skip

SHORT = {"image-bytes": 150, "image-arrays": 100, "texts": 150, "ids-metadata-filters": 60, "manifests": 40}
LONG = int(os.environ.get("EDGERET_FUZZ_CASES", "10000"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("surface", list(SURFACES))
def test_fuzz_short(workspace, surface):
    counts = run_surface(workspace, surface, SHORT[surface])
    assert sum(counts.values()) >= SHORT[surface] // 2, counts


@pytest.mark.slow
@pytest.mark.parametrize("surface", list(SURFACES))
def test_fuzz_long(workspace, surface):
    counts = run_surface(workspace, surface, LONG, seed=14)
    assert sum(counts.values()) >= LONG * 0.9, counts
