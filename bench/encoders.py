"""How each kind of bench variant is opened as an encoder (``embed_texts`` / ``embed_images``).

* ``bundle``: a bundle through the torch-free runtime (``Retriever``), optionally at a Matryoshka dim;
* ``teacher-torch``: the stand-in teacher in torch, as users run it (path = its fitted image head);
* ``peer-st``: sentence-transformers on torch with all-MiniLM-L6-v2 (text only).

Imports happen inside :func:`open_encoder`, so a process opening a bundle never imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

KINDS = ("bundle", "teacher-torch", "peer-st")


class PeerSentenceTransformer:
    """all-MiniLM-L6-v2 through sentence-transformers on torch (what a user would reach for); text only."""

    has_images = False

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from edgeret.distill.teachers.standin import minilm_path

        self.model = SentenceTransformer(str(minilm_path()), device="cpu")

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """L2-normalised float32 (n, 384)."""
        return np.asarray(self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=progress), dtype=np.float32)

    def embed_images(self, images: Sequence[Any], **_: Any) -> np.ndarray:
        raise ValueError("peer-st-minilm is a text-only model")


def has_images(encoder: Any) -> bool:
    """Whether ``encoder`` embeds images (a bundle with an image tower, the teacher)."""
    if hasattr(encoder, "has_image_encoder"):  # a Retriever: do not create a lazy image session
        return bool(encoder.has_image_encoder)
    if hasattr(encoder, "image_encoder"):
        return encoder.image_encoder is not None
    return getattr(encoder, "has_images", True)


def open_encoder(kind: str, path: str | None, threads: int | None = None, dim: int | None = None,
                 cached: Any = None) -> Any:
    """Open a variant at ``threads`` (None: all cores). Torch kinds reuse ``cached`` with new thread settings."""
    if kind not in KINDS:
        raise ValueError(f"unknown variant kind {kind!r}; known: {KINDS}")
    if kind == "bundle":
        from edgeret.runtime.retriever import Retriever

        return Retriever.open(path, threads=threads, dim=dim, verify="size")
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    if cached is not None:
        return cached
    if kind == "teacher-torch":
        from edgeret.distill.teachers.standin import StandinTeacher

        return StandinTeacher(head_path=path, fit_if_missing=False)
    return PeerSentenceTransformer()
