import json

import numpy as np
import pytest

from edgeret.cli.compress import run as main
from edgeret.compress.bundle import CompressOptions, build_bundle
from edgeret.runtime.bundle import load_manifest
from edgeret.runtime.retriever import Retriever

TEXTS = ["red apple", "flag: France", "a dog running on the beach", "to breathe in", "grinning face with big eyes"]


def test_fp32_bundle_opens_in_retriever_and_matches_torch(tiny_student_dir, tiny_student, real_images, tmp_path):
    options = CompressOptions(quant="fp32", parity_texts=16, parity_images=6)
    report = build_bundle(tiny_student_dir, tmp_path / "bundle", options)
    manifest = load_manifest(tmp_path / "bundle").data
    assert manifest["teacher"]["id"] == "fake-teacher"
    assert manifest["text_encoder"]["file"] == "text_encoder.onnx"
    assert manifest["text_encoder"]["quantization"] == "fp32"
    assert manifest["text_encoder"]["max_length"] == 32 and manifest["image_encoder"]["image_size"] == 64
    assert manifest["embedding"] == {"dim": 64, "normalised": True, "matryoshka_dims": [32, 64]}
    assert manifest["index"]["count"] == 0 and manifest["index"]["space"] == "cosine"
    assert {"tokenizer.json", "preprocessor.json", "compress_report.json"} <= set(manifest["files"])
    assert report["parity"]["text"]["max_abs_diff"] <= 1e-4
    retriever = Retriever.open(tmp_path / "bundle", threads=1)
    assert np.abs(retriever.embed_texts(TEXTS) - tiny_student.embed_texts(TEXTS)).max() <= 1e-4
    assert np.abs(retriever.embed_images(real_images) - tiny_student.embed_images(real_images)).max() <= 1e-4
    retriever.add_texts(["a", "b"], ["red apple", "blue car"])
    assert retriever.search(text="apple", k=1)[0].id == "a"


def test_cli_int8_with_pruning_and_recovery_end_to_end(tiny_student_dir, caches, tmp_path):
    fp32 = main([str(tiny_student_dir), "--quant", "fp32", "--out", str(tmp_path / "fp32"), "--no-optimize"])
    report = main([
        str(tiny_student_dir), "--prune", "0.25", "--quant", "int8", "--out", str(tmp_path / "int8"),
        "--openmoji-cache", str(caches / "om"), "--wordnet-cache", str(caches / "wn"), "--recovery-steps", "2",
        "--recovery-epochs", "3",
        "--agreement-sets", "wordnet-val-t2t", "--agreement-sample", "40", "--no-optimize", "--ort",
        "--embedding-cold-share", "0.5", "--embedding-cold-block", "16",
    ])
    manifest = load_manifest(tmp_path / "int8").data
    assert manifest["text_encoder"]["file"] == "text_encoder_int8.onnx"
    assert manifest["image_encoder"]["quantization"] == "int8"
    prune = report["prune"]
    assert prune["pruned"]["cost"]["text"]["params"] < prune["before"]["cost"]["text"]["params"]
    assert prune["pruned"]["cost"]["image"]["flops"] < prune["before"]["cost"]["image"]["flops"]
    assert prune["recovered"]["steps"] == 2
    (row,) = report["agreement"]
    assert row["mean_cosine"] > 0.98 and row["top10_overlap"] > 0.7
    saved = json.loads((tmp_path / "int8" / "compress_report.json").read_text())
    assert saved["agreement"][0]["set"] == "wordnet-val-t2t"
    split = saved["embedding_split"]
    assert split["cold_block"] == 16 and abs(split["cold_rows"] - split["hot_rows"]) <= 1
    assert report["bundle_bytes"] < 0.4 * fp32["bundle_bytes"]
    retriever = Retriever.open(tmp_path / "int8")
    emb = retriever.embed_texts(TEXTS)
    assert emb.shape == (5, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # --ort: ORT-format twins of the quantised towers, the operator config, and the same embeddings
    assert manifest["text_encoder"]["ort_file"] == "text_encoder_int8.ort"
    assert {"text_encoder_int8.ort", "image_encoder_int8.ort", "required_operators.config"} <= set(manifest["files"])
    assert all(p["min_cosine"] >= 0.9999 and p["rows"] > 5 for p in report["ort_parity"].values())
    # against the .onnx optimised as the twin was made, the same kernels run: the conversion changes nothing
    assert all(p["max_abs_diff"] <= 1e-5 and p["desktop_min_cosine"] > 0.99 for p in report["ort_parity"].values())
    mobile = Retriever.open(tmp_path / "int8", model_format="ort")
    assert float((mobile.embed_texts(TEXTS) * emb).sum(1).min()) >= 0.9999


def test_int4_bundle_splits_the_embedding_and_gets_ort_twins(tiny_student_dir, tmp_path):
    fp32 = main([str(tiny_student_dir), "--quant", "fp32", "--out", str(tmp_path / "fp32"), "--no-optimize"])
    report = main([str(tiny_student_dir), "--quant", "int4", "--out", str(tmp_path / "int4"), "--no-optimize", "--ort",
                   "--embedding-cold-share", "0.5", "--embedding-cold-block", "16", "--agreement-sets",
                   "wordnet-val-t2t", "--agreement-sample", "40"])
    manifest = load_manifest(tmp_path / "int4").data
    assert manifest["text_encoder"]["quantization"] == "int4" and report["embedding_split"]["cold_block"] == 16
    assert manifest["text_encoder"]["ort_file"] == "text_encoder_int4.ort"  # no uint4 table left to refuse it
    assert all(p["min_cosine"] >= 0.9999 for p in report["ort_parity"].values())
    (row,) = report["agreement"]
    assert row["mean_cosine"] > 0.95 and row["top10_overlap"] > 0.6
    plain = main([str(tiny_student_dir), "--quant", "int4", "--out", str(tmp_path / "plain"), "--no-optimize",
                  "--embedding-cold-share", "0", "--agreement-sets", "wordnet-val-t2t", "--agreement-sample", "40"])
    assert "embedding_split" not in plain and report["bundle_bytes"] < fp32["bundle_bytes"]
    reference = Retriever.open(tmp_path / "fp32").embed_texts(TEXTS)
    assert float((Retriever.open(tmp_path / "int4").embed_texts(TEXTS) * reference).sum(1).min()) > 0.9


@pytest.mark.parametrize("bad", [{"embedding_cold_share": 1.0}, {"embedding_cold_share": -0.1},
                                 {"embedding_cold_block": 48}, {"embedding_cold_block": 8}])
def test_options_reject_an_impossible_embedding_split(bad):
    with pytest.raises(ValueError, match="embedding_cold"):
        CompressOptions(quant="int8", **bad)


def test_cli_rejects_unknown_quant(tiny_student_dir, tmp_path):
    with pytest.raises(SystemExit):
        main([str(tiny_student_dir), "--quant", "int3", "--out", str(tmp_path / "x")])
