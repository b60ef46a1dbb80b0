"""The teacher's ONNX export: parity with torch through the runtime, caching, and the footprint process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgeret.bench.teacher_onnx import INFO_FILE, build_teacher_bundle, cached_info, cosine_parity
from tests.bench.tiny_standin import TINY_DIM, tiny_standin

TEXTS = ["a red apple", "the quick brown fox jumps over the lazy dog", "cat", "a smiling face with heart eyes",
         " ".join(["long"] * 80)]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 3 * i, 36, 3), dtype=np.uint8)) for i in range(4)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher-onnx")
    teacher = tiny_standin(tmp)
    info = build_teacher_bundle(teacher, tmp / "bundle", TEXTS, _images())
    return teacher, tmp / "bundle", info


def test_parity_through_the_runtime(exported):
    teacher, bundle, info = exported
    from edgeret.runtime.retriever import Retriever

    retriever = Retriever.open(bundle, threads=1)
    assert retriever.dim == TINY_DIM
    for tower in ("text", "image"):
        assert info["parity"][tower]["min_cosine"] >= 0.9999
    # independent of the recorded numbers: padded batches of both towers agree with torch
    text = cosine_parity(teacher.embed_texts(TEXTS), retriever.embed_texts(TEXTS))
    image = cosine_parity(teacher.embed_images(_images()), retriever.embed_images(_images()))
    assert text["min_cosine"] >= 0.9999 and image["min_cosine"] >= 0.9999
    assert text["rows"] == len(TEXTS) and image["rows"] == 4


def test_bundle_is_reused_for_the_same_head(exported, tmp_path):
    teacher, bundle, info = exported
    assert cached_info(bundle, teacher.head_sha256) == info
    assert cached_info(bundle, "another-head") is None
    stamp = (bundle / "text_encoder.onnx").stat().st_mtime_ns
    assert build_teacher_bundle(teacher, bundle, TEXTS, _images()) == info
    assert (bundle / "text_encoder.onnx").stat().st_mtime_ns == stamp
    assert json.loads((bundle / INFO_FILE).read_text())["head_sha256"] == teacher.head_sha256


def test_cosine_parity_hand_case():
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    b = np.array([[1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    result = cosine_parity(a, b)
    assert result["min_cosine"] == pytest.approx(np.sqrt(0.5))
    assert result["max_abs_diff"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cosine_parity(a, b[:1])


def test_footprint_process_on_the_exported_bundle(exported, tmp_path):
    """Cold start, throughput, peak RSS and index build of a bundle, from a fresh process without torch."""
    from edgeret.bench.costs import footprint

    _, bundle, _ = exported

    class Inputs:  # what FootprintInputs writes, at toy size
        root = tmp_path
        def spec(self, kind, path, dim=None):
            paths = []
            for i, im in enumerate(_images()):
                paths.append(str(tmp_path / f"{i}.png"))
                im.save(paths[-1])
            (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
            return {"kind": kind, "path": path, "dim": dim, "first_query": "an apple",
                    "texts": str(tmp_path / "texts.json"), "images": paths,
                    "corpora": {"t2i": {"kind": "image", "items": paths}, "t2t": {"kind": "text", "items": TEXTS}}}

    result = footprint(Inputs(), "bundle", str(bundle), timeout=120)
    assert result["torch_imported"] is False
    assert result["cold_start_ms"] > 0 and result["peak_rss_mb"] > 10
    assert result["text_batch64_items_per_s"] > 0 and result["image_batch64_items_per_s"] > 0
    assert result["index_build"]["t2i"]["items"] == 4 and result["index_build"]["t2t"]["items"] == len(TEXTS)


def test_the_int8_peer_is_quantised_with_the_student_tools_and_reused(exported, tmp_path):
    from edgeret.bench.teacher_onnx import build_teacher_int8_bundle
    from edgeret.runtime.retriever import Retriever

    teacher, bundle, _ = exported
    out = tmp_path / "teacher-onnx-int8"
    info = build_teacher_int8_bundle(bundle, out, calibration_images=_images())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["text_encoder"]["quantization"] == "int8" and manifest["image_encoder"]["quantization"] == "int8"
    assert manifest["text_encoder"]["ort_file"] == "text_encoder_int8.ort"
    retriever = Retriever.open(out, threads=1)
    text = cosine_parity(teacher.embed_texts(TEXTS), retriever.embed_texts(TEXTS))
    image = cosine_parity(teacher.embed_images(_images()), retriever.embed_images(_images()))
    assert text["mean_cosine"] > 0.9 and image["mean_cosine"] > 0.9
    stamp = (out / "image_encoder_int8.onnx").stat().st_mtime_ns
    assert build_teacher_int8_bundle(bundle, out, calibration_images=_images()) == info
    assert (out / "image_encoder_int8.onnx").stat().st_mtime_ns == stamp
