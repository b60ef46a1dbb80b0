"""ORT-format models (onnxruntime mobile): the ``.ort`` twins give the same embeddings as the ``.onnx`` files."""

import json

import numpy as np
import pytest

from edgeret.runtime.bundle import load_manifest, model_files
from edgeret.runtime.errors import BundleError
from edgeret.runtime.retriever import Retriever

from .conftest import FIXTURE_BUNDLE

pytestmark = pytest.mark.arm64  # also runs under emulation (`make arm64`): .ort and .onnx agree there too

TEXTS = ["red apple", "a small yellow fruit", "the national flag of France", "x " * 80]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((32, 32), (50, 20), (7, 90))]


def test_ort_and_onnx_give_the_same_embeddings():
    onnx = Retriever.open(FIXTURE_BUNDLE, threads=1, model_format="onnx")
    ort = Retriever.open(FIXTURE_BUNDLE, threads=1, model_format="ort")
    assert (onnx.text_encoder.model_file, onnx.image_encoder.model_file) == ("text_encoder.onnx", "image_encoder.onnx")
    assert (ort.text_encoder.model_file, ort.image_encoder.model_file) == ("text_encoder.ort", "image_encoder.ort")
    for a, b in ((onnx.embed_texts(TEXTS), ort.embed_texts(TEXTS)),
                 (onnx.embed_images(_images()), ort.embed_images(_images()))):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-5
        assert (a * b).sum(1).min() >= 0.9999


def test_ort_search_matches_onnx_search(bundle):
    results = []
    for fmt in ("onnx", "ort"):
        r = Retriever.open(bundle, threads=1, model_format=fmt)
        r.add_texts([f"t{i}" for i in range(len(TEXTS))], TEXTS)
        results.append([hit.id for hit in r.search(text="yellow fruit", k=4)])
    assert results[0] == results[1]


def test_model_files_picks_the_twin_and_explains_a_missing_one():
    spec = load_manifest(FIXTURE_BUNDLE).text
    assert model_files(spec, "onnx") == ["text_encoder.onnx"]
    assert model_files(spec, "ort") == ["text_encoder.ort"]
    assert model_files(spec) == ["text_encoder.ort", "text_encoder.onnx"]  # auto: the twin, then the fallback
    assert model_files(spec, auto_first="onnx") == ["text_encoder.onnx", "text_encoder.ort"]
    assert model_files(spec, "ort", auto_first="onnx") == ["text_encoder.ort"]
    without = {k: v for k, v in spec.items() if k != "ort_file"}
    assert model_files(without) == ["text_encoder.onnx"]
    with pytest.raises(BundleError, match="compress .*--ort"):
        model_files(without, "ort")
    assert model_files({**without, "file": "mobile.ort"}, "onnx") == ["mobile.ort"]  # a mobile-only bundle
    with pytest.raises(ValueError, match="model_format"):
        model_files(spec, "tflite")


def test_auto_uses_the_twin_and_falls_back_to_onnx_when_it_cannot_load(bundle, caplog):
    auto = Retriever.open(bundle, threads=1)
    # text: the twin (fast open); image: the .onnx (optimised at load for this CPU, opened on first use)
    assert (auto.text_encoder.model_file, auto.image_encoder.model_file) == ("text_encoder.ort", "image_encoder.onnx")
    path = bundle / "text_encoder.ort"
    path.write_bytes(b"\0" * path.stat().st_size)  # same size: passes verify="size", not onnxruntime
    r = Retriever.open(bundle, threads=1, verify="size")
    assert r.text_encoder.model_file == "text_encoder.onnx" and "falling back" in caplog.text
    assert r.embed_texts(["red apple"]).shape == (1, 32)
    with pytest.raises(BundleError, match="text_encoder.ort"):
        Retriever.open(bundle, threads=1, verify="size", model_format="ort")


def test_manifest_rejects_an_ort_file_that_is_not_ort(bundle):
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    data["text_encoder"]["ort_file"] = "text_encoder.onnx"
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="ort_file"):
        load_manifest(bundle)


def test_operator_config_lists_the_models_operators():
    lines = [ln for ln in (FIXTURE_BUNDLE / "required_operators.config").read_text().splitlines()
             if ln and not ln.startswith("#")]
    ops = {op for ln in lines for op in ln.split(";")[2].split(",")}
    assert "Gather" in ops and "ReduceL2" in ops  # token embeddings (text), L2 normalisation (both)
    assert ops & {"Conv", "FusedConv"}  # the image tower
    assert all(ln.split(";")[0] in ("ai.onnx", "com.microsoft") for ln in lines)
