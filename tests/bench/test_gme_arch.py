"""gme2b-arch: GME-2B's config, the random-weight build and the timing path on a tiny Qwen2-VL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgeret.bench.gme_arch import (
    GME2B_PARAMS,
    build_random,
    embed,
    gme2b_config,
    image_inputs,
    measure,
    text_inputs,
)
from tests.distill.tiny_qwen2vl import build_tiny_qwen2vl, build_tiny_tokenizer, tiny_config


@pytest.fixture(scope="module")
def config():
    return tiny_config(build_tiny_tokenizer())


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))


def test_gme2b_config_has_gme2b_size():
    from transformers import Qwen2VLForConditionalGeneration

    config = gme2b_config()
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == GME2B_PARAMS  # 2.21B, as GME-2B's model card
    assert config.text_config.hidden_size == 1536  # GME-2B's embedding dim
    assert config.vision_config.depth == 32 and config.text_config.num_hidden_layers == 28


def test_random_build_is_initialised(config):
    from transformers import Qwen2VLForConditionalGeneration

    model = build_random(config)
    reference = Qwen2VLForConditionalGeneration(config)
    for (name, param), (_, ref) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert param.shape == ref.shape and torch.isfinite(param).all(), name
        if param.ndim == 1 and "norm" in name:
            assert torch.all(param == 1), name
    buffers = dict(reference.named_buffers())
    for name, buffer in model.named_buffers():  # rotary frequencies are computed, not left empty
        torch.testing.assert_close(buffer, buffers[name])


def test_tiny_timing_path(config):
    result = measure(config, _image(), threads=(1,), text_repeats=2, image_repeats=1, image_tokens=4)
    assert result["finite"] and result["dtype"] == "float32"
    assert result["params"] == sum(p.numel() for p in build_random(config).parameters())
    assert result["text_sequence"] == 39  # GME's query template around a 16-token query
    visual = result["image_px"][0] * result["image_px"][1] // (14 * 14 * 4)
    assert visual >= 4 and result["image_sequence"] == 22 + visual
    for key in ("text_query_ms_p50_1t", "text_query_ms_p95_1t", "image_query_ms_p50_1t", "image_query_ms_p95_1t"):
        assert result[key] > 0
    assert "text_query_ms_p50_all" not in result and result["peak_rss_mb"] > 0


def test_embed_matches_gme_teacher(tmp_path):
    """``embed`` is GmeTeacher's computation: same model and inputs -> same embedding."""
    from edgeret.distill.teachers.gme import DEFAULT_INSTRUCTION, GmeTeacher, build_prompt

    teacher = GmeTeacher(build_tiny_qwen2vl(tmp_path / "tiny"), device="cpu", min_image_tokens=4, max_image_tokens=16)
    prompts = [build_prompt("a red apple", "Find an image that matches the given text.", with_image=False)]
    inputs = teacher._prepare(prompts, None)
    torch.testing.assert_close(embed(teacher.model, inputs).numpy(), teacher._encode(prompts, None))
    image_prompts = [build_prompt(None, DEFAULT_INSTRUCTION, with_image=True)]
    inputs = teacher._prepare(image_prompts, [_image()])
    torch.testing.assert_close(embed(teacher.model, inputs).numpy(), teacher._encode(image_prompts, [_image()]))


def test_inputs_follow_the_template(config):
    text = text_inputs(config, query_tokens=16)
    assert text["input_ids"].shape == (1, 39) and int(text["attention_mask"].sum()) == 39
    assert not (text["input_ids"] == config.image_token_id).any()
    image = image_inputs(config, _image(), min_tokens=4, max_tokens=16)
    ids = image["input_ids"][0]
    n_visual = int((ids == config.image_token_id).sum())
    assert n_visual == int(image["image_grid_thw"].prod()) // 4
    assert int((ids == config.vision_start_token_id).sum()) == 1 and len(ids) == 22 + n_visual
