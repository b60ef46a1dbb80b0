"""GmeTeacher on a tiny random Qwen2-VL: template, pooling, shapes and invariances (CPU, fp32)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeret.distill.teachers.gme import (
    DEFAULT_INSTRUCTION,
    GmeTeacher,
    _model_name,
    build_prompt,
    fetch_resize,
    last_token_pool,
    sequential_positions,
)
from tests.distill.tiny_qwen2vl import TINY_HIDDEN, build_tiny_qwen2vl

TOL = 1e-5
QUERY_INSTRUCTION = "Find an image that matches the given text."
SHORT = "a red apple"
LONG = "the quick brown fox jumps over the lazy dog while two cats sleep in the sun all day long"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> GmeTeacher:
    path = build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "tiny-gme")
    return GmeTeacher(path, device="cpu", min_image_tokens=4, max_image_tokens=64)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(56, 56), (84, 56), (56, 112)]  # (h, w): 4, 6 and 8 visual tokens
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


@contextmanager
def padding_side(teacher: GmeTeacher, side: str) -> Iterator[None]:
    old = teacher.tokenizer.padding_side
    teacher.tokenizer.padding_side = side
    try:
        yield
    finally:
        teacher.tokenizer.padding_side = old


def assert_unit_rows(x: np.ndarray, n: int) -> None:
    assert x.shape == (n, TINY_HIDDEN)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# --- pure helpers -------------------------------------------------------------------------------


def test_prompt_templates_exact() -> None:
    head = "<|im_start|>system\nInst.<|im_end|>\n<|im_start|>user\n"
    tail = "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
    vision = "<|vision_start|><|image_pad|><|vision_end|>"
    assert build_prompt("hi there", "Inst.", with_image=False) == head + "hi there" + tail
    assert build_prompt(None, "Inst.", with_image=True) == head + vision + tail
    assert build_prompt("hi there", "Inst.", with_image=True) == head + vision + "hi there" + tail


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pool_picks_last_attended(side: str) -> None:
    lengths = [2, 5, 3]
    width = 5
    hidden = torch.arange(len(lengths) * width, dtype=torch.float32).reshape(len(lengths), width, 1)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        if side == "right":
            mask[row, :n] = 1
        else:
            mask[row, width - n :] = 1
    expected = [row * width + (n - 1 if side == "right" else width - 1) for row, n in enumerate(lengths)]
    assert last_token_pool(hidden, mask)[:, 0].tolist() == expected


def test_last_token_pool_rejects_empty_row() -> None:
    with pytest.raises(ValueError):
        last_token_pool(torch.zeros(1, 3, 2), torch.zeros(1, 3, dtype=torch.long))


def test_sequential_positions_ignore_padding() -> None:
    right = torch.tensor([[1, 1, 1, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1]])
    pos_right, pos_left = sequential_positions(right), sequential_positions(left)
    assert pos_right.shape == (3, 1, 5)
    assert pos_right[0, 0, :3].tolist() == [0, 1, 2]
    assert pos_left[2, 0, 2:].tolist() == [0, 1, 2]


def test_fetch_resize_snaps_to_28() -> None:
    assert fetch_resize(Image.new("RGB", (56, 84))).size == (56, 84)
    assert fetch_resize(Image.new("RGB", (100, 60))).size == (112, 56)  # rounded to multiples of 28
    assert fetch_resize(Image.new("RGB", (72, 40))).size == (84, 56)  # 84x28 is under 4 tokens: scaled up
    assert fetch_resize(Image.new("RGB", (10, 10))).size == (56, 56)


def test_model_name_from_hub_snapshot(tmp_path: Path) -> None:
    snap = tmp_path / "models--Alibaba-NLP--gme-Qwen2-VL-2B-Instruct" / "snapshots" / ("a" * 40)
    assert _model_name(snap) == "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct"
    assert _model_name(tmp_path / "gme-2b") == "gme-2b"


# --- the teacher on a tiny model ----------------------------------------------------------------


def test_identity_and_describe(teacher: GmeTeacher) -> None:
    assert teacher.id == "gme:tiny-gme"
    assert teacher.dim == TINY_HIDDEN
    assert teacher.default_instruction == DEFAULT_INSTRUCTION == "You are a helpful assistant."
    info = teacher.describe()
    assert info["id"] == teacher.id and info["dim"] == TINY_HIDDEN
    assert len(info["revision"]) == 16
    assert info["min_pixels"] == 4 * 28 * 28 and info["max_pixels"] == 64 * 28 * 28
    assert info["positions"] == "sequential" and info["dtype"] == "float32"


def test_outputs_are_unit_float32(teacher: GmeTeacher, images: list[Image.Image]) -> None:
    text = teacher.embed_texts([SHORT, LONG], instruction=QUERY_INSTRUCTION)
    image = teacher.embed_images(images)
    fused = teacher.embed_fused([SHORT, LONG, ""], images)
    for out, n in ((text, 2), (image, 3), (fused, 3)):
        assert_unit_rows(out, n)
    # Different kinds of input give different embeddings.
    assert np.abs(image - fused).max() > 1e-3
    assert np.abs(text[0] - teacher.embed_texts([SHORT])[0]).max() > 1e-3


def test_image_tokens_follow_smart_resize(teacher: GmeTeacher, images: list[Image.Image]) -> None:
    prompts = [build_prompt(None, DEFAULT_INSTRUCTION, with_image=True)] * len(images)
    inputs = teacher._prepare(prompts, images)
    counts = (inputs["input_ids"] == teacher.image_token_id).sum(dim=1).tolist()
    assert counts == [4, 6, 8]
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 6, 4], [1, 4, 8]]


def test_text_invariant_to_batch_and_padding_side(teacher: GmeTeacher) -> None:
    alone = teacher.embed_texts([SHORT], instruction=QUERY_INSTRUCTION)[0]
    results = []
    for side in ("left", "right"):
        with padding_side(teacher, side):
            ids = teacher._prepare([build_prompt(t, "x", False) for t in (SHORT, LONG)], None)["input_ids"]
            pad_col = 0 if side == "left" else -1
            assert ids[0, pad_col] == teacher.tokenizer.pad_token_id  # really padded on that side
            batch = teacher.embed_texts([LONG, SHORT, "hi"], instruction=QUERY_INSTRUCTION, batch_size=3)
        np.testing.assert_allclose(batch[1], alone, atol=TOL)
        results.append(batch)
    np.testing.assert_allclose(results[0], results[1], atol=TOL)


def test_image_and_fused_invariant_to_batch_and_padding_side(
    teacher: GmeTeacher, images: list[Image.Image]
) -> None:
    image_alone = teacher.embed_images(images[:1])[0]
    fused_alone = teacher.embed_fused([SHORT], images[:1])[0]
    for side in ("left", "right"):
        with padding_side(teacher, side):
            image_batch = teacher.embed_images(images[::-1], batch_size=3)
            fused_batch = teacher.embed_fused([LONG, "hi", SHORT], images[::-1], batch_size=3)
        np.testing.assert_allclose(image_batch[2], image_alone, atol=TOL)
        np.testing.assert_allclose(fused_batch[2], fused_alone, atol=TOL)


def test_instruction_changes_queries_and_default_is_document_side(
    teacher: GmeTeacher, images: list[Image.Image]
) -> None:
    texts = [SHORT, LONG]
    doc = teacher.embed_texts(texts)
    explicit = teacher.embed_texts(texts, instruction=DEFAULT_INSTRUCTION)
    query = teacher.embed_texts(texts, instruction=QUERY_INSTRUCTION)
    np.testing.assert_allclose(doc, explicit, atol=TOL)
    assert np.abs(doc - query).max() > 1e-3
    fused_doc = teacher.embed_fused(texts, images[:2])
    fused_explicit = teacher.embed_fused(texts, images[:2], instruction=DEFAULT_INSTRUCTION)
    fused_query = teacher.embed_fused(texts, images[:2], instruction=QUERY_INSTRUCTION)
    np.testing.assert_allclose(fused_doc, fused_explicit, atol=TOL)
    assert np.abs(fused_doc - fused_query).max() > 1e-3


def test_mrope_positions_are_an_option(teacher: GmeTeacher, images: list[Image.Image]) -> None:
    image_seq, text_seq = teacher.embed_images(images[:1]), teacher.embed_texts([SHORT])
    teacher.mrope = True
    try:
        image_mrope, text_mrope = teacher.embed_images(images[:1]), teacher.embed_texts([SHORT])
    finally:
        teacher.mrope = False
    assert_unit_rows(image_mrope, 1)
    assert np.abs(image_seq - image_mrope).max() > 1e-4  # image tokens get 3-D positions
    np.testing.assert_allclose(text_seq, text_mrope, atol=TOL)  # text-only positions are the same


def test_fused_length_mismatch_and_empty(teacher: GmeTeacher, images: list[Image.Image]) -> None:
    with pytest.raises(ValueError):
        teacher.embed_fused([SHORT], images[:2])
    assert teacher.embed_fused([], []).shape == (0, TINY_HIDDEN)
    assert teacher.embed_texts([]).shape == (0, TINY_HIDDEN)


def test_legacy_flat_config_loads_identically(
    teacher: GmeTeacher, images: list[Image.Image], tmp_path: Path
) -> None:
    """GME's own config.json is the pre-4.52 flat layout (text settings at top level)."""
    legacy = tmp_path / "gme-legacy"
    shutil.copytree(teacher.model_path, legacy)
    nested = json.loads((legacy / "config.json").read_text())
    text = {k: v for k, v in nested.pop("text_config").items() if k not in ("model_type", "architectures")}
    (legacy / "config.json").write_text(json.dumps({**nested, **text}))
    other = GmeTeacher(legacy, device="cpu", min_image_tokens=4, max_image_tokens=64)
    assert other.dim == teacher.dim
    assert other.describe()["revision"] != teacher.describe()["revision"]  # config is fingerprinted
    np.testing.assert_allclose(other.embed_texts([SHORT]), teacher.embed_texts([SHORT]), atol=TOL)
    fused = teacher.embed_fused([SHORT], images[:1])
    np.testing.assert_allclose(other.embed_fused([SHORT], images[:1]), fused, atol=TOL)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GmeTeacher(tmp_path)
