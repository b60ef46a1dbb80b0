"""Shared fixtures: a private copy of the tiny committed bundle, and retrievers on it."""

import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURE_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "tiny_bundle"


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A writable copy of the fixture bundle (tests mutate it freely)."""
    target = tmp_path / "bundle"
    shutil.copytree(FIXTURE_BUNDLE, target)
    return target


@pytest.fixture
def retriever(bundle):
    from edgeret.runtime.retriever import Retriever

    return Retriever.open(bundle, threads=1)


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
