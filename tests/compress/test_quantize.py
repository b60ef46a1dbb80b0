"""Quantised variants are judged by agreement with fp32 (mean cosine, top-10 overlap), not elementwise."""

import onnx
import pytest

from edgeret.compress.agreement import OnnxEncoder, agreement
from edgeret.compress.optimize import latency_ms
from edgeret.compress.quantize import convert_fp16, quantize_image_int8, quantize_int4, quantize_text_int8


@pytest.fixture(scope="module")
def small_sets():
    from edgeret.data.openmoji import openmoji_eval
    from edgeret.data.wordnet import wordnet_eval

    return [wordnet_eval("val", sample=60), openmoji_eval("i2t", "val", sample=24, size=96)]


@pytest.fixture(scope="module")
def reference(fp32_onnx, tiny_student, tiny_student_dir):
    c = tiny_student.config
    return OnnxEncoder(fp32_onnx["text"], fp32_onnx["image"], tiny_student_dir / "tokenizer.json",
                       tiny_student.preprocessor, c.text.max_length, c.dim)


def _encoder(student, student_dir, text, image):
    c = student.config
    return OnnxEncoder(text, image, student_dir / "tokenizer.json", student.preprocessor, c.text.max_length, c.dim)


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_int8_agrees_with_fp32(fp32_onnx, tiny_student, tiny_student_dir, reference, small_sets, real_images):
    root = fp32_onnx["root"]
    text = quantize_text_int8(fp32_onnx["text"], root / "text_int8.onnx")
    calibration = tiny_student.preprocessor(real_images)
    image = quantize_image_int8(fp32_onnx["image"], root / "image_int8.onnx", calibration,
                                exclude=("_conv_stem/", "_blocks.0/_depthwise_conv/"))
    assert "MatMulInteger" in _ops(text) or "DynamicQuantizeMatMul" in _ops(text)
    assert "QuantizeLinear" in _ops(image)
    assert text.stat().st_size < 0.3 * fp32_onnx["text"].stat().st_size  # embedding table quantised too
    rows = agreement(reference, _encoder(tiny_student, tiny_student_dir, text, image), small_sets)
    for row in rows:
        assert row["mean_cosine"] > 0.99, row
        assert row["top10_overlap"] >= 0.8, row


def test_depthwise_weights_keep_all_8_bits(fp32_onnx, tiny_student, real_images):
    from onnx import numpy_helper

    from edgeret.compress.quantize import depthwise_weights

    root, calibration = fp32_onnx["root"], tiny_student.preprocessor(real_images)
    depthwise = set(depthwise_weights(onnx.load(str(fp32_onnx["image"]))))
    assert depthwise

    def widest(path) -> dict[str, int]:
        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
        return {w: int(abs(inits[f"{w}_quantized"].astype(int)).max()) for w in depthwise}

    full = widest(quantize_image_int8(fp32_onnx["image"], root / "dw8.onnx", calibration))
    reduced = widest(quantize_image_int8(fp32_onnx["image"], root / "dw7.onnx", calibration,
                                         depthwise_full_range=False))
    assert all(v > 64 for v in full.values()) and all(v <= 64 for v in reduced.values()), (full, reduced)


def test_int4_and_fp16_agree_with_fp32(fp32_onnx, tiny_student, tiny_student_dir, reference, small_sets):
    root = fp32_onnx["root"]
    int4 = quantize_int4(fp32_onnx["text"], root / "text_int4.onnx", block_size=32)
    assert "MatMulNBits" in _ops(int4)
    assert int4.stat().st_size < 0.25 * fp32_onnx["text"].stat().st_size
    fp16_text = convert_fp16(fp32_onnx["text"], root / "text_fp16.onnx")
    fp16_image = convert_fp16(fp32_onnx["image"], root / "image_fp16.onnx")
    wordnet = small_sets[:1]
    (row4,) = agreement(reference, _encoder(tiny_student, tiny_student_dir, int4, None), wordnet)
    assert row4["mean_cosine"] > 0.95 and row4["top10_overlap"] >= 0.6
    rows16 = agreement(reference, _encoder(tiny_student, tiny_student_dir, fp16_text, fp16_image), small_sets)
    for row in rows16:
        assert row["mean_cosine"] > 0.9999 and row["top10_overlap"] >= 0.95, row


def test_agreement_detects_a_broken_variant(fp32_onnx, tiny_student, tiny_student_dir, reference, small_sets):
    """Scrambling the word embedding rows must show up in both metrics: the agreement check can fail."""
    import numpy as np
    from onnx import numpy_helper

    model = onnx.load(str(fp32_onnx["text"]))
    for init in model.graph.initializer:
        if "word_embeddings" in init.name:
            array = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(np.random.default_rng(0).permutation(array), init.name))
    broken = fp32_onnx["root"] / "broken.onnx"
    onnx.save(model, str(broken))
    (row,) = agreement(reference, _encoder(tiny_student, tiny_student_dir, broken, None), small_sets[:1])
    assert row["mean_cosine"] < 0.9 and row["top10_overlap"] < 0.6


def test_latency_is_measured(fp32_onnx, tiny_student):
    ids, mask = tiny_student.tokenize(["red apple"])
    assert latency_ms(fp32_onnx["text"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}, repeats=3) > 0
