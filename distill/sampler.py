"""Deterministic batches for distillation: each batch is a pure function of (seed, epoch, step).

That makes an interrupted run resume exactly where it stopped. A batch holds ``image_batch`` train
images (an epoch is one pass over them), each with one of its captions when it has any; ``text_batch``
query-document pairs (cycled through the pairs independently of the image epochs); and ``text_batch``
unpaired texts (cycled likewise). Without images, an epoch is one pass over the pairs (or, without
pairs, over the unpaired texts).

Groups of a batch: ``image``, ``caption`` (``partner["caption"]`` gives each caption's image row in the
batch), ``query`` and ``document`` (row i of each pair up), ``text`` (unpaired).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inputs import PixelStore, TokenTable, corpus_identity, find_prepared, normalise_pixels
from .pairs import TrainData

#: seed streams of the text cycles (the image order uses [seed, epoch])
PAIR_STREAM, TEXT_STREAM = 7, 11


@dataclass
class Batch:
    """Student inputs and teacher targets for one step (teacher rows L2-normalised float32)."""

    pixels: torch.Tensor | None
    features: dict[str, torch.Tensor]  # teacher embeddings per group
    tokens: dict[str, tuple[torch.Tensor, torch.Tensor]]  # (ids, mask) per text group
    labels: dict[str, torch.Tensor]
    prefixed: bool = False  # ``pixels`` are frozen-prefix features, not images
    partner: dict[str, torch.Tensor] = field(default_factory=dict)  # caption -> its image's row in the batch

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``."""
        move = {k: v.to(device) for k, v in self.features.items()}
        return Batch(None if self.pixels is None else self.pixels.to(device), move,
                     {k: (i.to(device), m.to(device)) for k, (i, m) in self.tokens.items()},
                     {k: v.to(device) for k, v in self.labels.items()}, self.prefixed,
                     {k: v.to(device) for k, v in self.partner.items()})


def _cycle_rows(n: int, size: int, position: int, seed: int, stream: int) -> np.ndarray:
    """``size`` distinct indices of ``range(n)`` at ``position`` of an endless sequence of seeded permutations."""
    cycle, offset = divmod(position, n)
    rows = np.random.default_rng([seed, stream, cycle]).permutation(n)[offset : offset + size]
    if len(rows) < size:  # wrap into the next cycle
        nxt = np.random.default_rng([seed, stream, cycle + 1]).permutation(n)
        rows = np.concatenate([rows, nxt[: size - len(rows)]])
    return np.unique(rows)


class BatchSampler:
    """Builds :class:`Batch` objects from :class:`TrainData` (see the module docstring)."""

    def __init__(self, data: TrainData, tokens: TokenTable | None, image_batch: int, text_batch: int, seed: int,
                 pixels: PixelStore | None = None, preprocessor: Any = None,
                 image_inputs: np.ndarray | None = None) -> None:
        """``image_inputs`` (frozen-prefix features, float) replace the normalised pixels when given."""
        self.data, self.tokens, self.seed = data, tokens, seed
        self.image_batch, self.text_batch = image_batch, text_batch
        self.pixels, self.preprocessor, self.image_inputs = pixels, preprocessor, image_inputs

    @classmethod
    def for_model(cls, model: Any, data: TrainData, settings: Any, workdir: Path, prefix: bool = False,
                  progress: bool = False, reuse: Sequence[Path] = ()) -> BatchSampler:
        """The sampler a training run of ``model`` uses: its tokens and pixels prepared in ``workdir``, the
        ``settings`` batch sizes and seed; with ``prefix``, the frozen image prefix runs once here and batches
        carry its features (kept in ``workdir`` for resumption). Files an earlier run prepared in a ``reuse``
        folder are read from there when they hold the same inputs (same texts, images, tokenizer, prefix)."""
        tokens = pixels = features = None
        if model.text is not None and len(data.texts):
            tokens = TokenTable.build(data.iter_texts(), len(data.texts), model.tokenizer,
                                      model.config.text.max_length, workdir, progress, reuse,
                                      identity=corpus_identity(data.texts.caches))
        if model.image is not None and data.n_images:
            pixels = PixelStore.build(data, model.preprocessor, workdir, progress, reuse=reuse)
            if prefix and model.config.image.frozen_blocks and pixels.stored:
                name = f"prefix-{prefix_key(model, pixels.path)}.npy"
                features = prefix_features(model, pixels.array, model.preprocessor,
                                           find_prepared(name, workdir, reuse) or workdir / name)
        return cls(data, tokens, settings.image_batch, settings.text_batch, settings.seed, pixels,
                   getattr(model, "preprocessor", None), features)

    @property
    def n_images(self) -> int:
        """Training images (0 without an image tower)."""
        return self.data.n_images if self.pixels is not None else 0

    @property
    def n_pairs(self) -> int:
        """Query-document pairs (0 without a text tower)."""
        return len(self.data.query_texts) if self.tokens is not None else 0

    @property
    def n_unpaired(self) -> int:
        """Unpaired texts (0 without a text tower)."""
        return len(self.data.unpaired_texts) if self.tokens is not None else 0

    def steps_per_epoch(self) -> int:
        """Optimisation steps in one epoch."""
        if self.n_images:
            return max(1, self.n_images // self.image_batch)
        return max(1, math.ceil(max(self.n_pairs, self.n_unpaired) / self.text_batch))

    def batch(self, epoch: int, step: int) -> Batch:
        """The batch of ``(epoch, step)``."""
        rng = np.random.default_rng([self.seed, epoch, step])
        out = Batch(None, {}, {}, {})
        if self.n_images:
            self._images(out, epoch, step, rng)
        position = (epoch * self.steps_per_epoch() + step) * self.text_batch
        if self.n_pairs:
            self._pairs(out, position)
        if self.n_unpaired:
            rows = self.data.unpaired_texts[_cycle_rows(self.n_unpaired, self.text_batch, position, self.seed,
                                                        TEXT_STREAM)]
            out.features["text"] = torch.from_numpy(self.data.texts.gather(rows))
            out.tokens["text"] = self.tokens.batch(rows)
        return out

    def image_input(self, rows: np.ndarray) -> tuple[torch.Tensor, bool]:
        """Inputs of images ``rows``: prefix features when the sampler has them, else normalised pixels."""
        if self.image_inputs is not None:
            return torch.from_numpy(np.asarray(self.image_inputs[rows], dtype=np.float32)), True
        return torch.from_numpy(normalise_pixels(self.pixels.get(rows), self.preprocessor)), False

    def _images(self, out: Batch, epoch: int, step: int, rng: np.random.Generator) -> None:
        d = self.data
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_images)
        rows = np.sort(order[step * self.image_batch : (step + 1) * self.image_batch])
        out.pixels, out.prefixed = self.image_input(rows)
        out.features["image"] = torch.from_numpy(d.images.gather(rows))
        labels = d.image_labels[rows]
        out.labels["image"] = torch.from_numpy(labels)
        if self.tokens is None:
            return
        counts = d.caption_count[rows]
        with_caption = np.flatnonzero(counts > 0)
        if not len(with_caption):
            return
        picks = np.array([int(rng.integers(counts[i])) for i in with_caption], dtype=np.int64)
        captions = d.caption_texts[d.caption_start[rows[with_caption]] + picks]
        out.features["caption"] = torch.from_numpy(d.texts.gather(captions))
        out.tokens["caption"] = self.tokens.batch(captions)
        out.labels["caption"] = torch.from_numpy(labels[with_caption])
        out.partner["caption"] = torch.from_numpy(with_caption)

    def _pairs(self, out: Batch, position: int) -> None:
        d = self.data
        rows = _cycle_rows(self.n_pairs, self.text_batch, position, self.seed, PAIR_STREAM)
        queries, documents = d.query_texts[rows], d.document_texts[rows]
        out.features["query"] = torch.from_numpy(d.texts.gather(queries))
        out.features["document"] = torch.from_numpy(d.texts.gather(documents))
        out.tokens["query"], out.tokens["document"] = self.tokens.batch(queries), self.tokens.batch(documents)
        out.labels["query"] = out.labels["document"] = torch.from_numpy(rows.astype(np.int64))


def prefix_key(model: Any, pixels: Path) -> str:
    """What frozen-prefix features depend on: the pixel file (named by its images and preprocessing) and the
    prefix's weights and batch-norm statistics."""
    digest = hashlib.sha256(pixels.name.encode())
    for module in model.image.frozen_modules():
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def prefix_features(model: Any, pixels: np.ndarray, preprocessor: Any, path: Path, batch: int = 128) -> np.ndarray:
    """Frozen-prefix outputs of every train image, float16, memory-mapped at ``path`` (computed once per run:
    the prefix never changes)."""
    if path.is_file():
        return np.load(path, mmap_mode="r")
    with model.image.channels_last():
        return _prefix_features(model, pixels, preprocessor, path, batch)


def _prefix_features(model: Any, pixels: np.ndarray, preprocessor: Any, path: Path, batch: int) -> np.ndarray:
    model.image.eval()
    first = model.image.prefix(torch.from_numpy(normalise_pixels(pixels[:1], preprocessor)))
    tmp = path.with_name(path.stem + ".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(pixels), *first.shape[1:]))
    for i in range(0, len(pixels), batch):
        chunk = torch.from_numpy(normalise_pixels(np.asarray(pixels[i : i + batch]), preprocessor))
        out[i : i + len(chunk)] = model.image.prefix(chunk).to(torch.float16).numpy()
    out.flush()
    del out
    tmp.replace(path)
    return np.load(path, mmap_mode="r")
