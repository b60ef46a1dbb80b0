"""GME (Alibaba-NLP/gme-Qwen2-VL-2B/7B-Instruct) as a teacher, loaded from a local folder.

Mirrors GME's own inference code (``gme_inference.py`` on the model card):

* every input is one chat turn (:func:`build_prompt`), documents with the default instruction
  "You are a helpful assistant.", queries with a task instruction;
* images are first snapped to multiples of 28 px (GME's ``fetch_image``), then Qwen2-VL's
  smart resize keeps them between ``min_image_tokens`` and ``max_image_tokens`` visual tokens
  (28x28 px each);
* the embedding is the final hidden state of the last non-pad token (the appended
  ``<|endoftext|>``, :func:`last_token_pool`), L2-normalised;
* GME calls the text decoder with plain 1-D positions (0, 1, 2, ... over the non-pad tokens, the
  same on all three M-RoPE axes) rather than Qwen2-VL's 3-D image positions, so that is the
  default here too (``mrope=True`` switches to transformers' ``get_rope_index``);
* a batch holds one kind of input: text-only, image-only or fused (image + text).

transformers' ``AutoProcessor`` for Qwen2-VL needs torchvision (for its video processor), so the
tokenizer and ``Qwen2VLImageProcessor`` are loaded separately and the ``<|image_pad|>``
expansion that ``Qwen2VLProcessor`` would do is done here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

from .base import ImageInput, Teacher, _finish, _progress, iter_batches, to_rgb
from .base import folder_revision as model_revision
from .base import hub_model_name as _model_name
from .base import resolve_device_dtype as _resolve_device_dtype

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
PIXELS_PER_TOKEN = 28 * 28
# GME's fetch_image() snaps every image to multiples of 28 px within these bounds first.
_FETCH_MIN_PIXELS = 4 * PIXELS_PER_TOKEN
_FETCH_MAX_PIXELS = 16384 * PIXELS_PER_TOKEN


def build_prompt(text: str | None, instruction: str, with_image: bool) -> str:
    """GME's chat-turn template for one input (text, image, or both)."""
    user = (IMAGE_PLACEHOLDER if with_image else "") + (text or "")
    return (
        f"<|im_start|>system\n{instruction}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    )


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last attended token, for left, right or no padding.

    ``hidden`` is (B, L, D), ``attention_mask`` (B, L) of 0/1; returns (B, D).
    """
    mask = attention_mask.to(torch.long)
    if (mask.sum(dim=1) == 0).any():
        raise ValueError("a row of the attention mask is all zeros")
    length = mask.shape[1]
    # Index of the last 1 in each row: first 1 in the flipped row, counted from the end.
    last = length - 1 - torch.argmax(mask.flip(dims=[1]), dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


def sequential_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """GME's positions: 0..n-1 over each row's non-pad tokens, repeated on the 3 M-RoPE axes.

    Returns (3, B, L); pad positions get 1 (as transformers does), they are masked anyway.
    """
    mask = attention_mask.to(torch.long)
    pos = mask.cumsum(dim=-1) - 1
    pos = pos.masked_fill(mask == 0, 1)
    return pos.unsqueeze(0).expand(3, -1, -1)


def fetch_resize(image: Image.Image, factor: int = 28) -> Image.Image:
    """GME's ``fetch_image`` resize: round each side to a multiple of ``factor`` (aspect kept)."""
    width, height = image.size
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > _FETCH_MAX_PIXELS:
        beta = math.sqrt(height * width / _FETCH_MAX_PIXELS)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < _FETCH_MIN_PIXELS:
        beta = math.sqrt(_FETCH_MIN_PIXELS / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if (w_bar, h_bar) == (width, height):
        return image
    return image.resize((w_bar, h_bar))


class GmeTeacher(Teacher):
    """GME embeddings from a local Qwen2-VL checkpoint (text, image and fused inputs, one space)."""

    default_instruction = DEFAULT_INSTRUCTION

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        min_image_tokens: int = 256,
        max_image_tokens: int = 1280,
        max_length: int = 1800,
        mrope: bool = False,
    ) -> None:
        """Load model, tokenizer and image processor from ``model_path`` (nothing is downloaded).

        ``dtype`` defaults to bf16 on GPU and fp32 on CPU. ``mrope=True`` uses Qwen2-VL's 3-D image
        positions instead of GME's 1-D ones.
        """
        if not 0 < min_image_tokens <= max_image_tokens:
            raise ValueError(
                f"need 0 < min_image_tokens <= max_image_tokens, got {min_image_tokens}, {max_image_tokens}"
            )
        self.model_path = Path(model_path)
        if not (self.model_path / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in {self.model_path} (GME must be on local disk)")
        self.device, self.dtype = _resolve_device_dtype(device, dtype)
        self.min_image_tokens, self.max_image_tokens = min_image_tokens, max_image_tokens
        self.max_length = max_length
        self.mrope = mrope
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        self.tokenizer.padding_side = "right"  # as GME; pooling works with either side
        self.image_processor = Qwen2VLImageProcessor.from_pretrained(self.model_path, local_files_only=True)
        self.model = Qwen2VLForConditionalGeneration.from_pretrained(
            self.model_path, dtype=self.dtype, local_files_only=True
        ).to(self.device)
        self.model.eval()
        config = self.model.config
        self.image_token_id = int(config.image_token_id)
        if self.tokenizer.convert_tokens_to_ids(IMAGE_PAD) != self.image_token_id:
            raise ValueError(f"tokenizer's {IMAGE_PAD} id differs from config.image_token_id")
        self.merge_size = int(config.vision_config.spatial_merge_size)
        self.id = "gme:" + _model_name(self.model_path)
        self.dim = int(config.text_config.hidden_size)
        self._revision = model_revision(self.model_path)
        logger.info("loaded %s (dim %d) on %s as %s", self.id, self.dim, self.device, self.dtype)

    @classmethod
    def from_options(cls, **options: Any) -> GmeTeacher:
        """Needs ``model_path``: a local folder with the GME weights."""
        if not options.get("model_path"):
            raise ValueError("the GME teacher needs --model-path, a local folder with the GME weights")
        return super().from_options(**options)

    @property
    def min_pixels(self) -> int:
        """Smallest image area (pixels) after Qwen2-VL's smart resize."""
        return self.min_image_tokens * PIXELS_PER_TOKEN

    @property
    def max_pixels(self) -> int:
        """Largest image area (pixels) after Qwen2-VL's smart resize."""
        return self.max_image_tokens * PIXELS_PER_TOKEN

    def describe(self) -> dict[str, Any]:
        """Base description plus revision, instructions, image resolution and numerics."""
        out = super().describe()
        out.update(
            self._revision,
            family="gme",
            template=build_prompt("{text}", "{instruction}", with_image=True),
            pooling="last_token",
            positions="mrope" if self.mrope else "sequential",
            min_image_tokens=self.min_image_tokens,
            max_image_tokens=self.max_image_tokens,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            max_length=self.max_length,
            dtype=str(self.dtype).replace("torch.", ""),
        )
        return out

    def _instruction(self, instruction: str | None) -> str:
        return DEFAULT_INSTRUCTION if instruction is None else instruction

    def _encode_text_batch(self, texts: list[str], instruction: str | None) -> np.ndarray:
        prompts = [build_prompt(t, self._instruction(instruction), with_image=False) for t in texts]
        return self._encode(prompts, None)

    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        prompts = [build_prompt(None, DEFAULT_INSTRUCTION, with_image=True) for _ in images]
        return self._encode(prompts, images)

    def embed_fused(
        self,
        texts: Sequence[str],
        images: Sequence[ImageInput],
        instruction: str | None = None,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed (image, text) pairs as one input each; L2-normalised float32 (N, dim).

        ``instruction`` None means the document side (default instruction).
        """
        texts, images = list(texts), list(images)
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts but {len(images)} images")
        inst = self._instruction(instruction)
        pairs = list(zip(texts, images, strict=True))
        chunks = []
        for batch in _progress(iter_batches(pairs, batch_size), len(pairs), batch_size, progress, "pairs"):
            prompts = [build_prompt(t, inst, with_image=True) for t, _ in batch]
            chunks.append(self._encode(prompts, [to_rgb(im) for _, im in batch]))
        return _finish(chunks, self.dim)

    def _prepare(self, prompts: list[str], images: list[Image.Image] | None) -> dict[str, torch.Tensor]:
        """Tokenise prompts, preprocess images and expand each ``<|image_pad|>`` to its token count."""
        inputs: dict[str, torch.Tensor] = {}
        if images is not None:
            if len(images) != len(prompts):
                raise ValueError("one image per prompt expected")
            vision = self.image_processor(
                images=[fetch_resize(im) for im in images],
                min_pixels=self.min_pixels,
                max_pixels=self.max_pixels,
                return_tensors="pt",
            )
            grid = vision["image_grid_thw"]
            counts = (grid.prod(dim=-1) // self.merge_size**2).tolist()
            prompts = [p.replace(IMAGE_PAD, IMAGE_PAD * n, 1) for p, n in zip(prompts, counts, strict=True)]
            inputs["pixel_values"] = vision["pixel_values"]
            inputs["image_grid_thw"] = grid
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        if int(tokens["attention_mask"].sum(dim=1).max()) >= self.max_length:
            logger.warning("an input reached max_length=%d and may have been truncated", self.max_length)
        inputs["input_ids"] = tokens["input_ids"]
        inputs["attention_mask"] = tokens["attention_mask"]
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.inference_mode()
    def _encode(self, prompts: list[str], images: list[Image.Image] | None) -> np.ndarray:
        """Run one single-kind batch through GME; returns un-normalised float32 (B, dim)."""
        inputs = self._prepare(prompts, images)
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
        embeds = self.model.get_input_embeddings()(input_ids)
        grid = inputs.get("image_grid_thw")
        if grid is not None:
            visual = self.model.visual
            pixels = inputs["pixel_values"].to(next(visual.parameters()).dtype)
            image_embeds = visual(pixels, grid_thw=grid).to(embeds.dtype)
            image_mask = input_ids == self.image_token_id
            if int(image_mask.sum()) != image_embeds.shape[0]:
                raise ValueError(
                    f"{int(image_mask.sum())} image tokens for {image_embeds.shape[0]} image features "
                    f"(was an image truncated by max_length={self.max_length}?)"
                )
            embeds = embeds.masked_scatter(image_mask.unsqueeze(-1), image_embeds)
        if self.mrope:
            owner = self.model.model if hasattr(self.model.model, "get_rope_index") else self.model
            positions, _ = owner.get_rope_index(input_ids, grid, None, mask)
        else:
            positions = sequential_positions(mask)
        out = self.model.get_decoder()(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        )
        pooled = last_token_pool(out.last_hidden_state, mask)
        return pooled.float().cpu().numpy()
