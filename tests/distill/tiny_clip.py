"""Build tiny, randomly initialised CLIP, SigLIP and SigLIP 2 folders on disk (offline, about a second each).

Each folder looks like a real download: ``config.json`` + safetensors weights, a fast tokenizer
(``tokenizer.json``, built here with the ``tokenizers`` library; AutoTokenizer loads it) and the family's
image processor saved with ``save_pretrained``. Token ids in the config match the tokenizer:

* CLIP: ``<|startoftext|> text <|endoftext|>``, padded with ``<|endoftext|>`` (the text tower pools at
  the first end-of-text token);
* SigLIP: ``text </s>``, padded with ``</s>`` (pools at the last position, so padding is to max length);
* SigLIP 2: ``text <eos>``, padded with ``<pad>`` (Gemma's ids).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    PreTrainedTokenizerFast,
    Siglip2Config,
    Siglip2ImageProcessor,
    Siglip2Model,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
)

_CORPUS = [
    "a photo of a cat",
    "a red apple on a wooden table",
    "the quick brown fox jumps over the lazy dog",
    "a smiling face with heart eyes",
    "two cats sleeping in the sun",
    "Find an image that matches the given text.",
]

#: Output (projection) dim of the tiny CLIP; text and vision hidden sizes differ from it.
CLIP_DIM = 24
#: Output dim of the tiny SigLIP / SigLIP 2 (the vision hidden size = the text head's size).
SIGLIP_DIM = 32
#: Max text positions (the tokenizer truncates there).
CLIP_POSITIONS, SIGLIP_POSITIONS = 16, 12
IMAGE_SIZE, PATCH = 32, 8


def build_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str, max_length: int):
    """A byte-level BPE fast tokenizer (any text encodes, no UNK) that appends ``eos`` (and prepends ``bos``)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    single = (f"{bos} " if bos else "") + f"$A {eos}"
    used = [t for t in (bos, eos) if t]
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, tok.token_to_id(t)) for t in used]
    )
    names = {"eos_token": eos, "pad_token": pad, **({"bos_token": bos} if bos else {})}
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **names)


def _text_config(tokenizer, positions: int, **extra) -> dict:
    ids = {
        "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": positions,
        **ids,
        **extra,
    }


def _vision_config(hidden: int, **extra) -> dict:
    return {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "patch_size": PATCH,
        **extra,
    }


def _save(out_dir: str | Path, model, tokenizer, processor) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_clip(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random CLIPModel folder (32 px images, 16 text positions, projection dim 24)."""
    tokenizer = build_tokenizer(["<|startoftext|>", "<|endoftext|>"], "<|startoftext|>", "<|endoftext|>",
                                "<|endoftext|>", CLIP_POSITIONS)
    config = CLIPConfig(
        text_config=_text_config(tokenizer, CLIP_POSITIONS),
        vision_config=_vision_config(40, image_size=IMAGE_SIZE),
        projection_dim=CLIP_DIM,
    )
    torch.manual_seed(seed)
    processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE,
                                                                                 "width": IMAGE_SIZE})
    return _save(out_dir, CLIPModel(config), tokenizer, processor)


def build_tiny_siglip(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random SiglipModel folder (32 px images, 12 text positions, dim 32)."""
    tokenizer = build_tokenizer(["<unk>", "</s>"], None, "</s>", "</s>", SIGLIP_POSITIONS)
    config = SiglipConfig(
        text_config=_text_config(tokenizer, SIGLIP_POSITIONS, projection_size=SIGLIP_DIM),
        vision_config=_vision_config(SIGLIP_DIM, image_size=IMAGE_SIZE),
    )
    torch.manual_seed(seed)
    processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return _save(out_dir, SiglipModel(config), tokenizer, processor)


def build_tiny_siglip2(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random Siglip2Model folder (NaFlex: up to 16 patches of 8 px, 12 text positions, dim 32)."""
    tokenizer = build_tokenizer(["<pad>", "<eos>", "<bos>"], None, "<eos>", "<pad>", SIGLIP_POSITIONS)
    n_patches = (IMAGE_SIZE // PATCH) ** 2
    config = Siglip2Config(
        text_config=_text_config(tokenizer, SIGLIP_POSITIONS, projection_size=SIGLIP_DIM),
        vision_config=_vision_config(SIGLIP_DIM, num_patches=n_patches),
    )
    torch.manual_seed(seed)
    processor = Siglip2ImageProcessor(patch_size=PATCH, max_num_patches=n_patches)
    return _save(out_dir, Siglip2Model(config), tokenizer, processor)


#: family name -> builder
BUILDERS = {"clip": build_tiny_clip, "siglip": build_tiny_siglip, "siglip2": build_tiny_siglip2}
