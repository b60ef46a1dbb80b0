"""Build a tiny, randomly initialised Qwen2-VL checkpoint on disk (offline, a few seconds on CPU).

The folder looks like a real GME / Qwen2-VL download: ``config.json`` + safetensors weights,
a fast tokenizer with the Qwen2-VL special tokens, and ``preprocessor_config.json`` for
``Qwen2VLImageProcessor``. Token ids in the config match the tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Qwen2TokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

_CORPUS = [
    "You are a helpful assistant.",
    "Find an image that matches the given text.",
    "system user assistant",
    "a red apple on a wooden table",
    "the quick brown fox jumps over the lazy dog",
    "a smiling face with heart eyes",
    "two cats sleeping in the sun",
    "Represent this sentence for searching relevant passages.",
]

#: Hidden size of the tiny language model (= embedding dim of a GME teacher built on it).
TINY_HIDDEN = 64


def build_tiny_tokenizer(vocab_size: int = 400) -> Qwen2TokenizerFast:
    """A byte-level BPE tokenizer (any text encodes, no UNK) with Qwen2-VL's special tokens.

    Like Qwen2's tokenizer it adds no BOS/EOS and pads with ``<|endoftext|>``.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=tok)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.add_special_tokens({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
    vocab = tokenizer.get_vocab()
    for token in SPECIAL_TOKENS:
        if token not in vocab:
            raise RuntimeError(f"special token {token} missing from tiny tokenizer")
    return tokenizer


def tiny_config(tokenizer: Qwen2TokenizerFast, hidden: int = TINY_HIDDEN) -> Qwen2VLConfig:
    """A 2-layer Qwen2-VL config whose special token ids match ``tokenizer``."""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    heads = 4
    head_dim = hidden // heads
    half = head_dim // 2
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [half - 2 * (half // 4), half // 4, half // 4]},
        "initializer_range": 0.2,
        "tie_word_embeddings": True,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": 1,
        "embed_dim": 32,
        "hidden_size": hidden,
        "num_heads": 2,
        "mlp_ratio": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "initializer_range": 0.2,
    }
    return Qwen2VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_qwen2vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2-VL (model, tokenizer, image processor) into ``out_dir``; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28).save_pretrained(out)
    return out
