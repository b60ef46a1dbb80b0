import numpy as np
import onnx
import pytest
import torch

from edgeret.compress.export import ParityError, compare, export_text, image_parity, text_parity


def test_graph_contract(fp32_onnx, tiny_student):
    text = onnx.load(str(fp32_onnx["text"]))
    assert text.opset_import[0].version >= 17
    assert [i.name for i in text.graph.input] == ["input_ids", "attention_mask"]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in text.graph.input)
    ids_dims = [d.dim_param or d.dim_value for d in text.graph.input[0].type.tensor_type.shape.dim]
    assert ids_dims == ["batch", "sequence"]
    image = onnx.load(str(fp32_onnx["image"]))
    assert [i.name for i in image.graph.input] == ["pixel_values"]
    assert [d.dim_param or d.dim_value for d in image.graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 64, 64]
    for model in (text, image):
        (out,) = model.graph.output
        assert out.name == "embeddings" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert dims == ["batch", tiny_student.config.dim]


def test_text_parity_on_real_sentences_with_odd_batches_and_padding(fp32_onnx, tiny_student, real_texts):
    result = text_parity(tiny_student, fp32_onnx["text"], real_texts, batch_sizes=(1, 3, 7, 5))
    assert result.ok() and result.rows == len(real_texts)
    assert result.max_abs_diff <= 1e-4 and result.min_cosine >= 0.9999


def test_image_parity_on_rendered_emoji(fp32_onnx, tiny_student, real_images):
    result = image_parity(tiny_student, fp32_onnx["image"], real_images, batch_sizes=(1, 3, 5))
    assert result.ok() and result.rows == len(real_images)


def test_padding_does_not_change_a_text_embedding(fp32_onnx, tiny_student):
    from edgeret.runtime.sessions import create_session

    session = create_session(fp32_onnx["text"], threads=1)
    ids, mask = tiny_student.tokenize(["red apple"])
    padded_ids = torch.nn.functional.pad(ids, (0, 9))
    padded_mask = torch.nn.functional.pad(mask, (0, 9))
    alone = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    padded = session.run(None, {"input_ids": padded_ids.numpy(), "attention_mask": padded_mask.numpy()})[0]
    assert np.abs(alone - padded).max() < 1e-5
    assert np.allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)


def test_parity_check_fails_on_a_different_model(tiny_student, real_texts, tmp_path):
    import copy

    other = copy.deepcopy(tiny_student)
    with torch.no_grad():
        other.text.proj.weight.mul_(-1.0).add_(0.01)
    path = export_text(other, tmp_path / "other.onnx")
    with pytest.raises(ParityError, match="differs from torch"):
        text_parity(tiny_student, path, real_texts[:8])


def test_compare_metrics():
    a = np.eye(3, dtype=np.float32)
    result = compare(a, a + np.array([0, 0, 2e-4], np.float32))
    assert result.max_abs_diff == pytest.approx(2e-4, rel=1e-3) and not result.ok()
    with pytest.raises(ParityError, match="shape"):
        compare(a, a[:2])
