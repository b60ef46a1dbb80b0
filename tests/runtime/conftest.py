"""Shared fixtures: a private copy of the tiny committed bundle, and retrievers on it."""

import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest


def _import_installed_edgeret() -> None:
    """Import ``edgeret`` as installed, not the checkout's ``edgeret/`` folder that pytest's rootdir entry on
    ``sys.path`` would find first: a plain (non-editable) install, as ``make test-runtime-base`` makes, has
    ``edgeret.runtime`` only inside site-packages."""
    if "edgeret" in sys.modules:
        return
    repo = Path(__file__).resolve().parents[2]
    saved = sys.path[:]
    sys.path[:] = [entry for entry in saved if Path(entry or ".").resolve() != repo]
    try:
        importlib.import_module("edgeret.runtime")
    finally:
        sys.path[:] = saved


_import_installed_edgeret()
#: where child processes run: outside the checkout, so that their ``import edgeret`` finds the installed package
CHILD_CWD = tempfile.gettempdir()

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
