"""A text search starts without the image tower: no image session, no Pillow import, until an image comes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeret.runtime.errors import BundleError
from edgeret.runtime.retriever import Retriever

from .conftest import CHILD_CWD

TEXT_ONLY_START = r"""
import sys
from edgeret.runtime.retriever import Retriever

r = Retriever.open(sys.argv[1], threads=1)
r.add_texts(["a", "b"], ["red apple", "blue car"])
assert r.search(text="red apple", k=1)[0].id == "a"
print("PIL" if "PIL" in sys.modules or "edgeret.runtime.image" in sys.modules else "NO-PIL")
"""


def test_text_search_does_not_load_the_image_tower(bundle):
    env = dict(os.environ)  # the child imports the installed edgeret
    out = subprocess.run([sys.executable, "-c", TEXT_ONLY_START, str(bundle)], capture_output=True, text=True,
                         env=env, cwd=CHILD_CWD)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO-PIL")


def test_image_encoder_is_created_once_on_first_use(bundle):
    r = Retriever.open(bundle, threads=1)
    assert r.has_image_encoder and r._image is None
    first = r.image_encoder
    assert first is not None and r.image_encoder is first
    r.add_images(["x"], [np.zeros((12, 12, 3), dtype=np.uint8)])
    assert r.search(image=np.zeros((12, 12, 3), dtype=np.uint8), k=1)[0].id == "x"


def _break_image_model(bundle: Path) -> None:
    for name in ("image_encoder.onnx", "image_encoder.ort"):  # the model and its ORT-format twin
        path = bundle / name
        path.write_bytes(b"\0" * path.stat().st_size)  # same size: passes verify="size", not onnxruntime


def test_unloadable_image_model_fails_at_first_image_when_lazy(bundle):
    _break_image_model(bundle)
    r = Retriever.open(bundle, threads=1, verify="size")
    assert r.search(text="anything", k=1) == []  # text side works
    with pytest.raises(BundleError, match="image_encoder.onnx"):
        r.embed_images([np.zeros((8, 8, 3), dtype=np.uint8)])


def test_unloadable_image_model_fails_at_open_when_eager(bundle):
    _break_image_model(bundle)
    with pytest.raises(BundleError, match="image_encoder.onnx"):
        Retriever.open(bundle, threads=1, verify="size", lazy_image=False)
