"""Deterministic batches for distillation: each batch is a pure function of (seed, epoch, step).

That makes an interrupted run resume exactly where it stopped. A batch holds ``image_batch`` train
images (an epoch is one pass over them) each with one of its emoji's captions, and ``text_batch``
gloss/lemma pairs (cycled through the synsets independently of the image epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from .pairs import TrainData, normalise_pixels


@dataclass
class Batch:
    """Student inputs and teacher targets for one step (teacher rows L2-normalised float32)."""

    pixels: torch.Tensor | None
    features: dict[str, torch.Tensor]  # teacher embeddings per group
    tokens: dict[str, tuple[torch.Tensor, torch.Tensor]]  # (ids, mask) per text group
    labels: dict[str, torch.Tensor]
    prefixed: bool = False  # ``pixels`` are frozen-prefix features, not images


def pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists with 0; returns (ids, mask) int64."""
    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def tokenize_all(tokenizer: Tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of every text (truncated to ``max_length``, no padding)."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length)
    return [e.ids for e in tok.encode_batch(texts)] if texts else []


class BatchSampler:
    """Builds :class:`Batch` objects from :class:`TrainData` (see the module docstring)."""

    def __init__(
        self, data: TrainData, tokenizer: Tokenizer, max_length: int, image_batch: int, text_batch: int, seed: int,
        preprocessor=None, image_inputs: np.ndarray | None = None,
    ):
        """``image_inputs`` (e.g. frozen-prefix features, float) replace the normalised pixels when given."""
        self.data, self.seed = data, seed
        self.image_batch, self.text_batch = image_batch, text_batch
        self.preprocessor, self.image_inputs = preprocessor, image_inputs
        self.caption_tokens = [tokenize_all(tokenizer, caps, max_length) for caps in data.captions]
        self.gloss_tokens = tokenize_all(tokenizer, data.glosses, max_length)
        self.lemma_tokens = tokenize_all(tokenizer, data.lemmas, max_length)

    @classmethod
    def for_model(cls, model: Any, data: TrainData, settings: Any, prefix: bool = False,
                  prefix_cache: Path | None = None) -> BatchSampler:
        """The sampler a training run of ``model`` uses: its tokenizer, max length, preprocessor and the
        ``settings`` batch sizes and seed; with ``prefix``, the frozen image prefix runs once here and batches
        carry its features (memoised in ``prefix_cache`` when given, for resumption)."""
        features = None
        if prefix and model.config.image.frozen_blocks and data.pixels is not None:
            features = _prefix_inputs(model, data, prefix_cache)
        return cls(data, model.tokenizer, model.config.text.max_length, settings.image_batch, settings.text_batch,
                   settings.seed, model.preprocessor, features)

    @property
    def n_images(self) -> int:
        return len(self.data.image_ids)

    def steps_per_epoch(self) -> int:
        if self.n_images:
            return max(1, self.n_images // self.image_batch)
        return max(1, math.ceil(len(self.gloss_tokens) / self.text_batch))

    def batch(self, epoch: int, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, epoch, step])
        out = Batch(None, {}, {}, {})
        if self.n_images:
            self._images(out, epoch, step, rng)
        if self.gloss_tokens:
            self._wordnet(out, epoch, step)
        return out

    def _images(self, out: Batch, epoch: int, step: int, rng: np.random.Generator) -> None:
        d = self.data
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_images)
        rows = np.sort(order[step * self.image_batch : (step + 1) * self.image_batch])
        if self.image_inputs is not None:
            out.pixels = torch.from_numpy(np.asarray(self.image_inputs[rows], dtype=np.float32))
            out.prefixed = True
        else:
            out.pixels = torch.from_numpy(normalise_pixels(d.pixels[rows], self.preprocessor))
        labels = d.image_labels[rows]
        picks = [int(rng.integers(len(d.captions[e]))) for e in labels]
        out.features["image"] = torch.from_numpy(d.image_teacher[rows])
        chosen = list(zip(labels, picks, strict=True))
        out.features["caption"] = torch.from_numpy(np.stack([d.caption_teacher[e][n] for e, n in chosen]))
        out.tokens["caption"] = pad([self.caption_tokens[e][n] for e, n in chosen])
        out.labels["image"] = out.labels["caption"] = torch.from_numpy(labels)

    def _wordnet(self, out: Batch, epoch: int, step: int) -> None:
        n = len(self.gloss_tokens)
        start = (epoch * self.steps_per_epoch() + step) * self.text_batch
        cycle, offset = divmod(start, n)
        order = np.random.default_rng([self.seed, 7, cycle]).permutation(n)
        rows = order[offset : offset + self.text_batch]
        if len(rows) < self.text_batch:  # wrap into the next cycle
            nxt = np.random.default_rng([self.seed, 7, cycle + 1]).permutation(n)
            rows = np.concatenate([rows, nxt[: self.text_batch - len(rows)]])
        rows = np.unique(rows)
        out.features["gloss"] = torch.from_numpy(self.data.gloss_teacher[rows])
        out.features["lemma"] = torch.from_numpy(self.data.lemma_teacher[rows])
        out.tokens["gloss"] = pad([self.gloss_tokens[r] for r in rows])
        out.tokens["lemma"] = pad([self.lemma_tokens[r] for r in rows])
        out.labels["gloss"] = out.labels["lemma"] = torch.from_numpy(rows.astype(np.int64))


@torch.no_grad()
def prefix_features(model: Any, pixels: np.ndarray, preprocessor: Any, batch: int = 128) -> np.ndarray:
    """Frozen-prefix outputs of every train image, float16 (computed once; the prefix never changes)."""
    model.image.eval()
    chunks = [model.image.prefix(torch.from_numpy(normalise_pixels(pixels[i : i + batch], preprocessor)))
              .to(torch.float16).numpy() for i in range(0, len(pixels), batch)]
    return np.concatenate(chunks)


def _prefix_inputs(model: Any, data: TrainData, path: Path | None) -> np.ndarray:
    if path is not None and path.is_file():
        return np.load(path, mmap_mode="r")
    features = prefix_features(model, data.pixels, model.preprocessor)
    if path is not None:
        tmp = path.with_name(path.stem + ".tmp.npy")
        np.save(tmp, features)
        tmp.replace(path)
    return features
