"""How each kind of bench variant is opened as an encoder (``embed_texts`` / ``embed_images``).

One class per kind, registered in :data:`KINDS` by its name:

* ``bundle``: a bundle through the torch-free runtime (``Retriever``), optionally at a Matryoshka dim;
* ``teacher-torch``: the stand-in teacher in torch, as users run it (path = its fitted image head);
* ``peer-st``: sentence-transformers on torch with all-MiniLM-L6-v2 (text only).

A new kind is one :class:`VariantKind` subclass decorated with :func:`register`. Each kind imports its
libraries when it opens, so a process opening a bundle never imports torch and a torch variant's
fresh process (:mod:`edgeret.bench.footprint`) times its cold start without onnxruntime.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

__all__ = ["KINDS", "PeerSentenceTransformer", "VariantKind", "has_images", "open_encoder", "register"]


class VariantKind(abc.ABC):
    """One kind of variant: how to open it at a thread count."""

    name: ClassVar[str]

    @abc.abstractmethod
    def open(self, path: str | None, threads: int | None, dim: int | None = None, cached: Any = None) -> Any:
        """The encoder at ``threads`` (None: all cores); ``cached`` is an encoder of this kind opened before."""


#: kind name -> its opener
KINDS: dict[str, VariantKind] = {}


def register(cls: type[VariantKind]) -> type[VariantKind]:
    """Class decorator: register an instance of ``cls`` under ``cls.name``."""
    KINDS[cls.name] = cls()
    return cls


@register
class BundleKind(VariantKind):
    """A bundle through the torch-free runtime; a new session per thread count."""

    name = "bundle"

    def open(self, path: str | None, threads: int | None, dim: int | None = None, cached: Any = None) -> Any:
        """``Retriever.open`` (size-checked files) at ``threads`` and the Matryoshka ``dim``."""
        # lazy: onnxruntime stays out of a torch variant's cold start
        from edgeret.runtime.retriever import Retriever

        return Retriever.open(path, threads=threads, dim=dim, verify="size")


class TorchKind(VariantKind):
    """A torch model: loaded once, then reused with torch's thread count changed."""

    def open(self, path: str | None, threads: int | None, dim: int | None = None, cached: Any = None) -> Any:
        """Set torch's threads, then ``cached`` or a freshly loaded model (``dim`` does not apply)."""
        import torch  # lazy: only torch variants need torch

        torch.set_num_threads(threads or os.cpu_count() or 1)
        return cached if cached is not None else self.load(path)

    @abc.abstractmethod
    def load(self, path: str | None) -> Any:
        """Load the model (``path``: the kind's own meaning)."""


@register
class TeacherTorchKind(TorchKind):
    """The stand-in teacher in torch; ``path`` is its fitted image head (never fitted here)."""

    name = "teacher-torch"

    def load(self, path: str | None) -> Any:
        """``StandinTeacher(head_path=path)``."""
        from edgeret.distill.teachers.standin import StandinTeacher  # lazy: imports torch

        return StandinTeacher(head_path=path, fit_if_missing=False)


@register
class PeerSentenceTransformerKind(TorchKind):
    """sentence-transformers all-MiniLM-L6-v2 (``path`` unused)."""

    name = "peer-st"

    def load(self, path: str | None) -> Any:
        """A :class:`PeerSentenceTransformer`."""
        return PeerSentenceTransformer()


class PeerSentenceTransformer:
    """all-MiniLM-L6-v2 through sentence-transformers on torch (what a user would reach for); text only."""

    has_images = False

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer  # lazy: imports torch; the peer variant only

        from edgeret.distill.teachers.standin import minilm_path  # lazy: imports torch

        self.model = SentenceTransformer(str(minilm_path()), device="cpu")

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """L2-normalised float32 (n, 384)."""
        return np.asarray(self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=progress), dtype=np.float32)

    def embed_images(self, images: Sequence[Any], **_: Any) -> np.ndarray:
        """Always fails: the peer has no image tower."""
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
    opener = KINDS.get(kind)
    if opener is None:
        raise ValueError(f"unknown variant kind {kind!r}; known: {tuple(KINDS)}")
    return opener.open(path, threads, dim, cached)
