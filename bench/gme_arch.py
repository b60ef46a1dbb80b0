"""GME-2B's cost on this CPU: its exact Qwen2-VL architecture with random weights, timed like GME runs.

GME's weights cannot be downloaded here, so ``gme2b-arch`` builds Qwen2-VL-2B's architecture from its
config (2.21B parameters), skips the (slow) weight initialisation, fills the weights with small random
values, and times one embedding the way :class:`edgeret.distill.teachers.gme.GmeTeacher` computes it (input
embeddings, vision tower + ``masked_scatter`` for images, the decoder with GME's sequential positions,
last-token pooling): a text query in GME's query template and one image at GME's default minimum
resolution (256 visual tokens = 448x448 px). Accuracy is meaningless with random weights.

Without Qwen2's tokenizer the token ids are random, except the template's vision tokens; the
lengths are Qwen2's for GME's template: 14 system tokens for the query instruction + 3 + query + 2
+ 4 assistant tokens (39 for a 16-token query); 11 + 3 + (1 + visual tokens + 1) + 2 + 4 for an
image document (278 at 256 visual tokens).

``python -m edgeret.bench.gme_arch`` runs it in its own process (so its memory stays out of the other rows)
and prints a JSON line; :func:`edgeret.bench.costs.measure_gme_arch` starts that process. This module is
torch and transformers through and through: only that process and the tests import it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor
from transformers.modeling_utils import no_init_weights

from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.timing import Stopwatch, percentiles, time_calls
from edgeret.distill.teachers.gme import PIXELS_PER_TOKEN, fetch_resize, last_token_pool, sequential_positions

from .memory import peak_rss_mb
from .rows import DTYPE_BYTES

logger = logging.getLogger(__name__)

#: Qwen2-VL-2B-Instruct's config (GME-2B = gme-Qwen2-VL-2B-Instruct keeps the architecture).
GME2B_TEXT = {
    "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
    "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1e6,
    "rms_norm_eps": 1e-6, "hidden_act": "silu", "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": 151645,
}
GME2B_VISION = {
    "depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4, "patch_size": 14,
    "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3, "hidden_act": "quick_gelu",
}
GME2B_TOKENS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
                "vision_end_token_id": 151653}
GME2B_PARAMS = 2_208_985_600
QUERY_INSTRUCTION_TOKENS = 9  # "Find an image that matches the given text." in Qwen2's tokenizer
DEFAULT_INSTRUCTION_TOKENS = 6  # "You are a helpful assistant."


def gme2b_config() -> Any:
    """``Qwen2VLConfig`` of GME-2B (Qwen2-VL-2B-Instruct)."""
    return Qwen2VLConfig(text_config=GME2B_TEXT, vision_config=GME2B_VISION, tie_word_embeddings=True,
                         **GME2B_TOKENS)


def build_random(config: Any, dtype: str = "float32", seed: int = 0, std: float = 0.02) -> Any:
    """``Qwen2VLForConditionalGeneration(config)`` without its weight init, filled with N(0, std) weights.

    Norm weights are 1 and biases 0; non-persistent buffers (rotary frequencies) are computed as usual.
    """
    torch_dtype = getattr(torch, dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        with no_init_weights():
            model = Qwen2VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(old)
    model.tie_weights()  # skipped with the init: GME-2B ties lm_head to the input embeddings
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.fill_(1.0 if "norm" in name or name.endswith("ln_q.weight") else 0.0)
            else:
                param.normal_(0.0, std, generator=generator)
    return model.eval()


def _ordinary(config: Any, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` random non-special token ids."""
    special = {int(getattr(config, k)) for k in GME2B_TOKENS}
    limit = min(int(config.text_config.vocab_size), int(config.text_config.bos_token_id or 10**9))
    ids = rng.integers(0, limit, size=n * 2).tolist()
    return [i for i in ids if i not in special][:n]


def text_inputs(config: Any, query_tokens: int = 16, seed: int = 0) -> dict[str, Any]:
    """A text query in GME's query template (random ids, Qwen2's lengths); batch of one."""
    n = 3 + QUERY_INSTRUCTION_TOKENS + 2 + 3 + query_tokens + 2 + 4
    ids = torch.tensor([_ordinary(config, n, np.random.default_rng(seed))])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def image_inputs(config: Any, image: Any, min_tokens: int = 256, max_tokens: int = 1280, seed: int = 0) -> dict:
    """One image document as GME prepares it: fetch resize, Qwen2-VL smart resize and patches, template ids."""
    merge = int(config.vision_config.spatial_merge_size)
    patch = int(config.vision_config.patch_size)
    processor = Qwen2VLImageProcessor(min_pixels=min_tokens * PIXELS_PER_TOKEN, max_pixels=max_tokens *
                                      PIXELS_PER_TOKEN, patch_size=patch, merge_size=merge,
                                      temporal_patch_size=int(config.vision_config.temporal_patch_size))
    vision = processor(images=[fetch_resize(image)], return_tensors="pt")
    visual = int(vision["image_grid_thw"].prod()) // merge**2
    words = _ordinary(config, 3 + DEFAULT_INSTRUCTION_TOKENS + 2 + 3 + 2 + 4, np.random.default_rng(seed))
    head, tail = words[: 3 + DEFAULT_INSTRUCTION_TOKENS + 2 + 3], words[3 + DEFAULT_INSTRUCTION_TOKENS + 2 + 3:]
    ids = head + [config.vision_start_token_id] + [config.image_token_id] * visual + [config.vision_end_token_id]
    ids = torch.tensor([ids + tail])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": vision["pixel_values"],
            "image_grid_thw": vision["image_grid_thw"]}


def embed(model: Any, inputs: dict[str, Any]) -> Any:
    """GME's embedding of one prepared batch (as ``GmeTeacher._encode``): un-normalised (B, hidden)."""
    with torch.inference_mode():
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
        embeds = model.get_input_embeddings()(input_ids)
        grid = inputs.get("image_grid_thw")
        if grid is not None:
            visual = model.visual
            pixels = inputs["pixel_values"].to(next(visual.parameters()).dtype)
            image_embeds = visual(pixels, grid_thw=grid).to(embeds.dtype)
            image_mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(image_mask, image_embeds)
        out = model.get_decoder()(inputs_embeds=embeds, attention_mask=mask,
                                  position_ids=sequential_positions(mask), use_cache=False)
        return last_token_pool(out.last_hidden_state, mask)


def time_ms(fn: Callable[[], Any], threads: int, repeats: int, warmup: int = 1) -> list[float]:
    """Wall times (ms) of ``fn()`` at ``threads`` torch threads after ``warmup`` calls."""
    torch.set_num_threads(threads)
    return time_calls(fn, repeats, warmup=warmup)


def _stats(samples: list[float]) -> dict[str, float]:
    return {**percentiles(samples), "n": len(samples)}


def measure(config: Any, image: Any, dtype: str = "float32", threads: tuple[int, ...] = (1,), text_repeats: int = 5,
            image_repeats: int = 2, image_tokens: int = 256, query_tokens: int = 16) -> dict[str, Any]:
    """Build the random model from ``config`` and time a text query and an image; returns the numbers."""
    watch = Stopwatch()
    model = build_random(config, dtype)
    result: dict[str, Any] = {
        "params": int(sum(p.numel() for p in model.parameters())), "dtype": dtype,
        "build_s": watch.seconds, "query_tokens": query_tokens, "image_tokens": image_tokens,
        "embedding_dim": int(config.text_config.hidden_size),
    }
    text = text_inputs(config, query_tokens)
    result["text_sequence"] = int(text["input_ids"].shape[1])
    probe = image_inputs(config, image, image_tokens)
    result["image_sequence"], result["image_px"] = int(probe["input_ids"].shape[1]), _image_px(probe, config)
    result["finite"] = bool(embed(model, text).isfinite().all() and embed(model, probe).isfinite().all())
    for n in threads:
        suffix = "1t" if n == 1 else "all"
        text_ms = _stats(time_ms(lambda: embed(model, text), n, text_repeats))
        image_ms = _stats(time_ms(lambda: embed(model, image_inputs(config, image, image_tokens)), n, image_repeats))
        result[f"threads_{suffix}"] = n
        for key in ("p50", "p95"):
            result[f"text_query_ms_{key}_{suffix}"] = text_ms[key]
            result[f"image_query_ms_{key}_{suffix}"] = image_ms[key]
        logger.info("gme arch at %d thread(s): text %.0f ms, image %.0f ms", n, text_ms["p50"], image_ms["p50"])
    result["text_repeats"], result["image_repeats"] = text_repeats, image_repeats
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _image_px(inputs: dict[str, Any], config: Any) -> list[int]:
    """(height, width) in pixels that the vision tower sees."""
    _, h, w = (int(v) for v in inputs["image_grid_thw"][0])
    patch = int(config.vision_config.patch_size)
    return [h * patch, w * patch]


def sample_image() -> Any:
    """A real rendered emoji (224 px; GME's smart resize scales it up to its minimum resolution)."""
    return render_emoji(emojis("val")[0].text)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time GME-2B's architecture at 1 thread and all cores; print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m edgeret.bench.gme_arch", description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=tuple(DTYPE_BYTES))
    parser.add_argument("--text-repeats", type=int, default=5)
    parser.add_argument("--image-repeats", type=int, default=2)
    args = parser.parse_args(argv)
    threads = tuple(sorted({1, os.cpu_count() or 1}))
    result = measure(gme2b_config(), sample_image(), args.dtype, threads, args.text_repeats, args.image_repeats)
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    main()
