"""The operator list for onnxruntime minimal builds is generated from the models, and docs are updated in place."""

from pathlib import Path

import pytest

from edgeret.compress.ort_format import MARKERS, main, operator_markdown, read_operator_config

FIXTURE = Path(__file__).resolve().parents[1] / "runtime" / "fixtures" / "tiny_bundle"


def test_operator_table_lists_every_config_line():
    rows = read_operator_config(FIXTURE / "required_operators.config")
    table = operator_markdown(FIXTURE / "required_operators.config", ["text_encoder.ort"])
    assert rows and all(op in table for _, _, ops in rows for op in ops)
    assert table.count("\n| ") == len(rows) + 1  # header separator + one line per (domain, opset)


def test_update_replaces_only_the_marked_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{MARKERS[0]}\nstale table\n{MARKERS[1]}\noutro\n")
    main([str(FIXTURE), "--update", str(doc)])
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{MARKERS[1]}\noutro\n") and "stale" not in text
    assert "| ai.onnx |" in text and "`image_encoder.ort`, `text_encoder.ort`" in text
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(SystemExit, match="no <!-- operators:start -->"):
        main([str(FIXTURE), "--update", str(tmp_path / "plain.md")])


def test_towers_storing_4_bit_tensors_get_no_ort_twin(fp32_onnx, tmp_path):
    from edgeret.compress.bundle import ort_towers
    from edgeret.compress.quantize import has_4bit_tensors, quantize_int4

    gathered = quantize_int4(fp32_onnx["text"], tmp_path / "gathered.onnx")  # GatherBlockQuantized: uint4 table
    packed = quantize_int4(fp32_onnx["text"], tmp_path / "packed.onnx", gather=False)  # MatMulNBits packs in uint8
    assert has_4bit_tensors(gathered) and not has_4bit_tensors(packed) and not has_4bit_tensors(fp32_onnx["image"])
    assert ort_towers({"text": gathered, "image": fp32_onnx["image"]}) == ("image",)
    assert ort_towers({"text": packed, "image": fp32_onnx["image"]}) == ("text", "image")
    assert ort_towers({"text": packed}) == ("text",)
