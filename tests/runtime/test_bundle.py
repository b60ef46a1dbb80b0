"""Manifest writing and verification: every rejection names the file or field."""

import json
import shutil

import numpy as np
import pytest

from edgeret.runtime.bundle import BUNDLE_FORMAT, FORMAT_VERSION, load_manifest, write_manifest
from edgeret.runtime.errors import BundleError
from edgeret.runtime.retriever import Retriever

from .conftest import FIXTURE_BUNDLE


def _edit_manifest(bundle, fn):
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _flip_byte(path, offset=-10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.arm64
def test_fixture_manifest_loads_and_describes_the_bundle():
    manifest = load_manifest(FIXTURE_BUNDLE)
    assert manifest.data["format"] == BUNDLE_FORMAT and manifest.data["version"] == FORMAT_VERSION
    assert manifest.dim == 32 and manifest.matryoshka_dims == [8, 16, 32]
    assert manifest.text["inputs"] == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    assert manifest.image["image_size"] == 32 and manifest.index["space"] == "cosine"
    assert set(manifest.data["files"]) == {"text_encoder.onnx", "image_encoder.onnx", "tokenizer.json",
                                           "preprocessor.json", "text_encoder.ort", "image_encoder.ort",
                                           "required_operators.config"}
    assert manifest.saved_index is None
    assert sum(p.stat().st_size for p in FIXTURE_BUNDLE.rglob("*")) < 1_000_000


def test_write_manifest_reproduces_the_committed_one(tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(FIXTURE_BUNDLE, copy)
    original = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").unlink()
    written = write_manifest(
        copy, embedding=original["embedding"], teacher=original["teacher"]["id"],
        text_encoder={"file": "text_encoder.onnx", "ort_file": "text_encoder.ort", "max_length": 16},
        image_encoder={"file": "image_encoder.onnx", "ort_file": "image_encoder.ort"},
        index={"M": 16, "ef_construction": 100, "ef_search": 32}, producer=original["producer"],
    )
    for key in ("files", "embedding", "text_encoder", "image_encoder", "index", "teacher"):
        assert written[key] == original[key], key
    assert load_manifest(copy).data == written


@pytest.mark.arm64
def test_missing_file_is_named(bundle):
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json.*missing"):
        load_manifest(bundle)


@pytest.mark.arm64
def test_altered_file_same_size_fails_the_checksum(bundle):
    _flip_byte(bundle / "text_encoder.onnx")
    with pytest.raises(BundleError, match="text_encoder.onnx.*sha256"):
        Retriever.open(bundle)
    load_manifest(bundle, verify="size")  # a size-only check cannot see it: documented trade-off


def test_truncated_file_fails_the_size_check(bundle):
    path = bundle / "image_encoder.onnx"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BundleError, match="image_encoder.onnx.*bytes"):
        load_manifest(bundle, verify="size")


@pytest.mark.arm64
def test_newer_major_format_is_refused_and_newer_minor_accepted(bundle):
    _edit_manifest(bundle, lambda d: d.update(version="2.0"))
    with pytest.raises(BundleError, match="newer than this runtime"):
        load_manifest(bundle)
    _edit_manifest(bundle, lambda d: d.update(version="1.7"))
    assert load_manifest(bundle).data["version"] == "1.7"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="something-else"), "not an edgeret bundle"),
        (lambda d: d.update(version="one"), "MAJOR.MINOR"),
        (lambda d: d["index"].update(dim=24), "dim 24 does not match the encoders"),
        (lambda d: d["index"].update(space="hamming"), "space"),
        (lambda d: d["embedding"].update(matryoshka_dims=[8, 64]), "matryoshka_dims"),
        (lambda d: d["text_encoder"].pop("max_length"), "max_length"),
        (lambda d: d["files"].pop("tokenizer.json"), "tokenizer.json"),
        (lambda d: d["files"].update({"../escape.bin": {"sha256": "0", "bytes": 1}}), "relative path"),
        (lambda d: d["image_encoder"].update(image_size=64), "image_size 64"),
    ],
    ids=["format", "version", "index-dim", "space", "mrl-dims", "max-length", "unlisted", "escape", "image-size"],
)
def test_inconsistent_manifests_are_refused(bundle, edit, message):
    _edit_manifest(bundle, edit)
    with pytest.raises(BundleError, match=message):
        load_manifest(bundle)


@pytest.mark.arm64
def test_encoder_output_dim_must_match_manifest(bundle):
    _edit_manifest(bundle, lambda d: (d["embedding"].update(dim=64), d["index"].update(dim=64)))
    with pytest.raises(BundleError, match="32-d but the manifest embedding dim is 64"):
        Retriever.open(bundle)


def test_encoder_input_names_come_from_the_manifest(bundle):
    _edit_manifest(bundle, lambda d: d["text_encoder"]["inputs"].update(input_ids="ids"))
    with pytest.raises(BundleError, match="no input.*ids"):
        Retriever.open(bundle)


def _saved(bundle):
    r = Retriever.open(bundle, threads=1)
    r.add_texts(["a", "b"], ["red apple", "blue car"])
    return r.save()


@pytest.mark.arm64
def test_saved_index_dim_must_match_manifest(bundle):
    _saved(bundle)
    _edit_manifest(bundle, lambda d: d["index"].update(dim=16))
    with pytest.raises(BundleError, match="index dim 32 does not match manifest.json index dim 16"):
        load_manifest(bundle)


@pytest.mark.parametrize("name", ["hnsw.bin", "meta.sqlite"])
@pytest.mark.arm64
def test_altered_index_file_is_detected(bundle, name):
    generation = _saved(bundle)
    _flip_byte(generation / name, offset=200)
    with pytest.raises(BundleError, match=f"{name}.*sha256"):
        Retriever.open(bundle)


def test_missing_index_when_manifest_counts_items(bundle):
    _saved(bundle)
    shutil.rmtree(bundle / "index")
    with pytest.raises(BundleError, match="count 2 but .*index is missing"):
        load_manifest(bundle)


def test_corrupt_index_pointer_is_reported(bundle):
    _saved(bundle)
    (bundle / "index" / "CURRENT").write_text("{not json")
    with pytest.raises(BundleError, match="CURRENT"):
        load_manifest(bundle)


def test_write_manifest_rejects_a_preprocessor_size_mismatch(bundle):
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="image_size 64"):
        write_manifest(bundle, embedding={"dim": 32}, teacher="t", image_encoder={"file": "image_encoder.onnx",
                                                                                 "image_size": 64})
    assert not (bundle / "manifest.json").exists()


@pytest.mark.arm64
def test_manifest_count_mirrors_the_saved_index(bundle):
    _saved(bundle)
    manifest = load_manifest(bundle)
    assert manifest.index["count"] == 2 == manifest.saved_index.meta["count"]
    assert np.isfinite(manifest.saved_index.meta["ef_search"])


def test_text_only_bundle(tmp_path):
    copy = tmp_path / "text-only"
    shutil.copytree(FIXTURE_BUNDLE, copy)
    for name in ("manifest.json", "image_encoder.onnx", "preprocessor.json", "image_encoder.ort",
                 "text_encoder.ort", "required_operators.config"):
        (copy / name).unlink()
    data = write_manifest(copy, embedding={"dim": 32, "matryoshka_dims": [16]}, teacher={"id": "t", "revision": "r"},
                          text_encoder={"file": "text_encoder.onnx", "max_length": 16, "quantization": "int8"})
    assert data["image_encoder"] is None and set(data["files"]) == {"text_encoder.onnx", "tokenizer.json"}
    r = Retriever.open(copy, dim=16)
    assert r.embed_texts(["red apple"]).shape == (1, 16)
    with pytest.raises(ValueError, match="no image encoder"):
        r.embed_images([np.zeros((4, 4, 3), dtype=np.uint8)])
