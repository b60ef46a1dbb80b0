"""Frequency-split embeddings: the rewritten graph returns exactly the dequantised rows, frequent tokens at 8 bits."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeret.compress.agreement import OnnxEncoder, agreement
from edgeret.compress.calibration import builtin_training_texts
from edgeret.compress.embedding_split import (
    NoBlockFits,
    dequantize_blocks,
    fit_block,
    hot_and_cold,
    quantize_blocks,
    split_embedding,
    token_counts,
)
from edgeret.compress.quantize import quantize_text_int8

VOCAB, DIM = 40, 64


@pytest.mark.parametrize("bits, block", [(8, 32), (8, 64), (4, 16), (4, 32), (4, 64)])
def test_block_quantisation_round_trip_is_within_half_a_step(bits, block):
    table = np.random.default_rng(bits + block).normal(size=(7, DIM)).astype(np.float32)
    data, scales, zero = quantize_blocks(table, bits, block)
    assert data.dtype == np.uint8 and data.shape == (7, DIM * bits // 8)
    back = dequantize_blocks(data, scales, zero, bits, block)
    step = np.repeat(scales, block, axis=1)
    assert np.all(np.abs(back - table) <= step / 2 + 1e-6)


def test_float16_scales_dequantise_exactly_to_the_stored_scales():
    table = np.random.default_rng(3).normal(size=(9, DIM)).astype(np.float32)
    data, scales, zero = quantize_blocks(table, 4, 32, scale_dtype=np.float16)
    assert scales.dtype == np.float16
    back = dequantize_blocks(data, scales, zero, 4, 32)
    step = np.repeat(scales.astype(np.float32), 32, axis=1)
    assert np.all(np.abs(back - table) <= step / 2 + 1e-6)
    zeros = quantize_blocks(np.zeros((2, DIM), np.float32), 4, 32, scale_dtype=np.float16)
    assert np.all(zeros[1] > 0) and not np.any(dequantize_blocks(*zeros, 4, 32))
    with pytest.raises(ValueError, match="overflow float16"):
        quantize_blocks(np.full((1, DIM), 1e6, np.float32), 4, 32, scale_dtype=np.float16)


@pytest.mark.parametrize("block", [32, 64])
def test_clip_search_never_raises_the_error_and_lowers_it_on_gaussian_rows(block):
    table = np.random.default_rng(block).normal(size=(200, DIM)).astype(np.float32)
    plain = dequantize_blocks(*quantize_blocks(table, 4, block), 4, block)
    clipped = dequantize_blocks(*quantize_blocks(table, 4, block, clip_search=True), 4, block)
    per_block = lambda r: ((r - table) ** 2).reshape(200, -1, block).sum(-1)  # noqa: E731
    assert np.all(per_block(clipped) <= per_block(plain) + 1e-9)
    assert ((clipped - table) ** 2).mean() < 0.97 * ((plain - table) ** 2).mean()


def test_hot_rows_are_the_most_frequent_tokens():
    counts = np.array([5, 0, 9, 1, 0, 3, 7, 2])
    hot, cold = hot_and_cold(counts, cold_share=0.5)
    assert hot.tolist() == [0, 2, 5, 6] and cold.tolist() == [1, 3, 4, 7]
    with pytest.raises(ValueError, match="cold_share"):
        hot_and_cold(counts, 1.0)


def test_fit_block_takes_the_nearest_block_that_divides_the_width():
    assert fit_block(128, 384) == 128 and fit_block(128, 96) == 32 and fit_block(64, 312 * 2) == 16
    assert fit_block(16, 96) == 16 and fit_block(8, 96) == 16  # nothing smaller divides: the smallest that does
    with pytest.raises(NoBlockFits, match="embedding width 40"):
        fit_block(32, 40)


def test_split_of_a_width_no_block_divides_refuses_and_an_odd_width_adapts(tmp_path):
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 100, VOCAB)
    odd = _gather_model(tmp_path / "w40.onnx", rng.normal(size=(VOCAB, 40)).astype(np.float32))
    with pytest.raises(NoBlockFits):
        split_embedding(odd, tmp_path / "w40_split.onnx", counts, cold_share=0.5)
    table = rng.normal(size=(VOCAB, 96)).astype(np.float32)
    report = split_embedding(_gather_model(tmp_path / "w96.onnx", table), tmp_path / "w96_split.onnx", counts,
                             cold_share=0.5, hot_block=128, cold_block=128)
    assert (report.hot_block, report.cold_block) == (32, 32)
    session = ort.InferenceSession(str(tmp_path / "w96_split.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"ids": np.arange(VOCAB, dtype=np.int64)[None]})
    hot, cold = hot_and_cold(counts, 0.5)
    expected = np.empty_like(table)
    expected[hot] = dequantize_blocks(*quantize_blocks(table[hot], 8, 32), 8, 32)
    expected[cold] = dequantize_blocks(*quantize_blocks(table[cold], 4, 32, np.float16, clip_search=True), 4, 32)
    np.testing.assert_allclose(out[0] / 2, expected, rtol=2e-3, atol=1e-3)  # 3 blocks a row: odd zero-point packing


def test_a_table_past_float16_keeps_float32_scales_and_a_large_vocabulary_an_int32_remap(tmp_path):
    rng = np.random.default_rng(2)
    vocab = 2**15 + 64
    table = rng.normal(size=(vocab, 16)).astype(np.float32)
    table[-1] *= 1e7  # its 4-bit scales overflow float16
    counts = np.arange(vocab)[::-1].copy()  # the last rows are the rarest: cold
    split = split_embedding(_gather_model(tmp_path / "big.onnx", table), tmp_path / "big_split.onnx", counts,
                            cold_share=0.999, hot_block=16, cold_block=16)  # 32,799 cold rows: past int16
    graph = onnx.load(str(tmp_path / "big_split.onnx")).graph
    inits = {i.name.rsplit("/", 1)[-1]: numpy_helper.to_array(i) for i in graph.initializer}
    assert inits["remap"].dtype == np.int32 and inits["cold_table_scales"].dtype == np.float32
    assert split.cold_rows >= 2**15 and not any(n.op_type == "Cast" for n in graph.node)
    session = ort.InferenceSession(str(tmp_path / "big_split.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 1, vocab // 2, vocab - 2, vocab - 1]], dtype=np.int64)
    (out,) = session.run(None, {"ids": ids})
    assert np.all(np.abs(out[0] / 2 - table[ids[0]]) <= 0.13 * np.abs(table[ids[0]]).max(axis=1, keepdims=True))


def _gather_model(path, table):
    """ids -> Gather(table) -> Mul(2): the table feeds a Gather like a text tower's word embeddings."""
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["rows"], name="/embeddings/word_embeddings/Gather"),
             helper.make_node("Mul", ["rows", "two"], ["out"], name="double")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [None, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, None, table.shape[1]])],
        [numpy_helper.from_array(table, "emb"), numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_split_graph_returns_the_dequantised_rows_and_converts_to_ort(tmp_path):
    from edgeret.compress.ort_format import convert_to_ort

    rng = np.random.default_rng(0)
    table = rng.normal(size=(VOCAB, DIM)).astype(np.float32)
    counts = rng.integers(0, 100, VOCAB)
    src = _gather_model(tmp_path / "plain.onnx", table)
    report = split_embedding(src, tmp_path / "split.onnx", counts, cold_share=0.25, hot_block=32, cold_block=16)
    assert (report.hot_rows, report.cold_rows) == (30, 10)
    assert report.bytes_after < 0.35 * report.bytes_before
    hot, cold = hot_and_cold(counts, 0.25)
    expected = np.empty_like(table)
    expected[hot] = dequantize_blocks(*quantize_blocks(table[hot], 8, 32), 8, 32)
    expected[cold] = dequantize_blocks(*quantize_blocks(table[cold], 4, 16, np.float16, clip_search=True), 4, 16)
    ids = np.array([np.arange(VOCAB), np.arange(VOCAB)[::-1]], dtype=np.int64)
    session = ort.InferenceSession(str(tmp_path / "split.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"ids": ids})
    is_hot = np.isin(ids, hot)[..., None]
    np.testing.assert_allclose(np.where(is_hot, out, 0), np.where(is_hot, 2 * expected[ids], 0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out, 2 * expected[ids], rtol=2e-3, atol=1e-3)  # cold rows come out in float16
    graph = onnx.load(str(tmp_path / "split.onnx")).graph
    split = {i.name.rsplit("/", 1)[-1]: numpy_helper.to_array(i) for i in graph.initializer}
    assert split["remap"].dtype == np.int16 and split["cold_table_scales"].dtype == np.float16
    assert split["hot_table_scales"].dtype == np.float32
    error = np.abs(expected - table).mean(axis=1)
    assert error[hot].mean() < error[cold].mean() / 8  # 8-bit rows are ~16x finer than 4-bit ones
    assert "emb" not in {i.name for i in onnx.load(str(tmp_path / "split.onnx")).graph.initializer}
    mobile = ort.InferenceSession(str(convert_to_ort(tmp_path / "split.onnx")), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(mobile.run(None, {"ids": ids})[0], out)


def test_split_int8_text_tower_agrees_with_fp32_and_is_smaller(fp32_onnx, tiny_student, tiny_student_dir):
    from edgeret.data.wordnet import wordnet_eval

    root = fp32_onnx["root"]
    counts = token_counts(tiny_student_dir / "tokenizer.json", builtin_training_texts())
    assert counts.shape == (tiny_student.tokenizer.get_vocab_size(),) and counts.sum() > 100_000
    split = root / "text_split.onnx"
    report = split_embedding(fp32_onnx["text"], split, counts, cold_share=0.4)
    plain = quantize_text_int8(fp32_onnx["text"], root / "text_int8_plain.onnx")
    mixed = quantize_text_int8(split, root / "text_int8_split.onnx", exclude=[report.remap_node])
    assert mixed.stat().st_size < plain.stat().st_size
    c = tiny_student.config
    args = (tiny_student_dir / "tokenizer.json", tiny_student.preprocessor, c.text.max_length, c.dim)
    sets = [wordnet_eval("val", sample=60)]
    (row,) = agreement(OnnxEncoder(fp32_onnx["text"], None, *args), OnnxEncoder(mixed, None, *args), sets)
    assert row["mean_cosine"] > 0.99 and row["top10_overlap"] >= 0.8, row
