"""The one interface every teacher implements, and helpers they share."""

from __future__ import annotations

import abc
import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from edgeret.runtime.vectors import l2_normalise

logger = logging.getLogger(__name__)

ImageInput = Image.Image | str | Path | np.ndarray
#: Files whose names and sizes (not contents) go into :func:`folder_revision`.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SNAPSHOT = re.compile(r"[0-9a-f]{40}")


class UnsupportedModalityError(ValueError):
    """A teacher was asked to embed a kind of input it does not take (see :attr:`Teacher.modalities`)."""


class Teacher(abc.ABC):
    """An embedding model whose outputs a student learns to reproduce.

    Subclasses set ``id`` (a stable name that goes into cache metadata), ``dim`` and implement
    the two ``_encode_*`` methods on one batch; batching, progress and normalisation live here.
    """

    id: str
    dim: int
    #: Instruction applied to texts when the caller passes none (document side).
    default_instruction: str | None = None
    #: The kinds of input this teacher embeds; callers check it before embedding (a text-only teacher
    #: sets ``("text",)`` and :meth:`embed_images` raises :class:`UnsupportedModalityError`).
    modalities: tuple[str, ...] = ("text", "image")

    @abc.abstractmethod
    def _encode_text_batch(self, texts: list[str], instruction: str | None) -> np.ndarray:
        """Embed one batch of texts; returns (len(texts), dim), not necessarily normalised."""

    @abc.abstractmethod
    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        """Embed one batch of RGB PIL images; returns (len(images), dim)."""

    @classmethod
    def from_options(cls, **options: Any) -> Teacher:
        """An instance from command-line style options (``model_path``, ``head_path``, ``device``, ...); options
        that are None are left at the class's defaults, one the class does not take is an error."""
        given = {k: v for k, v in options.items() if v is not None}
        try:
            return cls(**given)
        except TypeError as exc:
            if "unexpected keyword" not in str(exc):
                raise
            raise ValueError(f"teacher {cls.__name__} does not take these options: {sorted(given)} ({exc})") from exc

    def describe(self) -> dict[str, Any]:
        """Everything that determines this teacher's embeddings (written into cache metadata)."""
        return {"id": self.id, "dim": self.dim, "default_instruction": self.default_instruction}

    def embed_texts(
        self,
        texts: Sequence[str],
        instruction: str | None = None,
        batch_size: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed texts; returns an L2-normalised float32 array of shape (len(texts), dim).

        ``instruction`` is the task instruction for queries; None means the document side
        (``default_instruction``). Teachers without instructions ignore it.
        """
        self.require_modality("text")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is {type(text).__name__}, expected str")
        # Batch texts of similar length together (less padding), then restore the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        chunks = [
            self._encode_text_batch(batch, instruction)
            for batch in _progress(iter_batches(ordered, batch_size), len(texts), batch_size, progress, "texts")
        ]
        embeddings = _finish(chunks, self.dim)
        restored = np.empty_like(embeddings)
        restored[order] = embeddings
        return restored

    def embed_images(self, images: Sequence[ImageInput], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Embed images (PIL images, paths or HxWx3 uint8 arrays); L2-normalised float32 (N, dim)."""
        self.require_modality("image")
        images = list(images)
        chunks = [
            self._encode_image_batch([to_rgb(im) for im in batch])
            for batch in _progress(iter_batches(images, batch_size), len(images), batch_size, progress, "images")
        ]
        return _finish(chunks, self.dim)


    def require_modality(self, kind: str) -> None:
        """Raise :class:`UnsupportedModalityError` unless ``kind`` ("text" or "image") is in :attr:`modalities`."""
        if kind not in self.modalities:
            raise UnsupportedModalityError(
                f"teacher {getattr(self, 'id', type(self).__name__)} embeds {', '.join(self.modalities)} only, "
                f"not {kind}s; choose a teacher whose modalities include {kind!r}"
            )


def folder_revision(
    model_path: str | Path, config_files: Sequence[str] = ("config.json",), recursive: bool = False
) -> dict[str, str | None]:
    """Fingerprint of a local checkpoint: sha256 of its config files and the weight files' names/sizes.

    The first of ``config_files`` must exist, the others are hashed when present (paths relative to
    the folder); ``recursive`` also lists weights in sub-folders. ``commit`` is the Hugging Face
    snapshot hash when the folder is a hub-cache snapshot.
    """
    path = Path(model_path)
    digest = hashlib.sha256((path / config_files[0]).read_bytes())
    for name in config_files[1:]:
        if (path / name).is_file():
            digest.update(f"\n{name}:".encode() + (path / name).read_bytes())
    found = path.rglob("*") if recursive else path.iterdir()
    for weight in sorted(p for p in found if p.suffix in WEIGHT_SUFFIXES and p.is_file()):
        digest.update(f"\n{weight.relative_to(path).as_posix()}:{weight.stat().st_size}".encode())
    commit = path.name if _SNAPSHOT.fullmatch(path.name) else None
    return {"revision": digest.hexdigest()[:16], "commit": commit}


def hub_model_name(path: str | Path) -> str:
    """Folder name, or ``org/name`` for a hub-cache snapshot (``models--org--name/snapshots/<hash>``)."""
    path = Path(path)
    if _SNAPSHOT.fullmatch(path.name) and path.parent.name == "snapshots":
        repo = path.parent.parent.name
        if repo.startswith("models--"):
            return repo[len("models--") :].replace("--", "/")
    return path.name


def resolve_device_dtype(device: Any, dtype: Any, gpu_dtype: str = "bfloat16") -> tuple[Any, Any]:
    """(torch.device, torch.dtype): ``device`` or cuda when available else cpu; ``dtype`` (a torch dtype or
    its name) or ``gpu_dtype`` on GPU and float32 on CPU."""
    import torch  # lazy: base stays importable without torch (teachers that need a device import it anyway)

    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = gpu_dtype if dev.type == "cuda" else "float32"
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return dev, dtype


def iter_batches(items: Sequence[Any], batch_size: int) -> Iterator[list[Any]]:
    """Yield consecutive slices of ``items`` of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield list(items[start : start + batch_size])


def to_rgb(image: ImageInput) -> Image.Image:
    """Convert a path, array or PIL image of any mode to an RGB PIL image (alpha over white)."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            opened.load()
            image = opened.copy()
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image arrays must be uint8, got {image.dtype}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"unsupported image type {type(image).__name__}")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _progress(batches: Iterator[list[Any]], n_items: int, batch_size: int, enabled: bool, unit: str):
    total = (n_items + batch_size - 1) // batch_size
    return tqdm(batches, total=total, disable=not enabled, desc=f"embedding {n_items} {unit}", unit="batch")


def _finish(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)
    out = l2_normalise(np.concatenate([np.asarray(c, dtype=np.float32) for c in chunks], axis=0))
    if out.shape[1] != dim:
        raise RuntimeError(f"teacher returned dim {out.shape[1]}, expected {dim}")
    if not np.isfinite(out).all():
        raise FloatingPointError("teacher produced non-finite embeddings")
    return out
