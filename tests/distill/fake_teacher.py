"""A cheap deterministic teacher for distillation tests (hashed bag of words / pooled pixels)."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from edgeret.distill.teachers.base import Teacher


class FakeTeacher(Teacher):
    """Texts: sum of per-word random vectors. Images: 8x8 thumbnail through a fixed random matrix."""

    id = "fake-teacher"

    def __init__(self, dim: int = 64):
        self.dim = dim
        self._image_proj = np.random.default_rng(0).standard_normal((8 * 8 * 3, dim)).astype(np.float32)

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def _encode_text_batch(self, texts, instruction):
        return np.stack([sum((self._word(w) for w in t.lower().split()), np.full(self.dim, 1e-3, np.float32))
                         for t in texts])

    def _encode_image_batch(self, images):
        thumbs = np.stack([np.asarray(im.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR), np.float32)
                           for im in images]).reshape(len(images), -1) / 255.0 - 0.5
        return thumbs @ self._image_proj
