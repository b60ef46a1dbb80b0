"""Image tower: load anything image-like, :class:`ImagePreprocessor` it, run the ONNX encoder."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from ._progress import progress_bar
from .bundle import model_files
from .preprocess import ImagePreprocessor
from .sessions import check_io, create_first_session, input_dtype
from .text import _checked

logger = logging.getLogger(__name__)

#: ``model_format="auto"`` runs the image tower's ``.onnx`` first: onnxruntime optimises it at load for
#: this CPU (on x86, NCHWc layouts for the float convolutions: INT8 student 4.8 vs 6.2 ms per image from
#: the portable ``.ort``); the image session opens on the first image, so its ~0.1 s load is off the
#: start-up path. The text tower starts from its ``.ort`` (opens ~3x faster, runs as fast).
AUTO_FIRST = "onnx"

#: what ``embed_images``/``add_images`` accept per item
ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]  # noqa: UP007

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _decode(source: Any, name: str) -> Image.Image:
    """Open and fully decode an image file or buffer (so truncation is detected here, not later)."""
    try:
        with Image.open(source) as image:
            image.load()
            return ImageOps.exif_transpose(image)  # always a new, fully loaded image
    except Image.UnidentifiedImageError as exc:
        raise ValueError(f"{name}: not an image (Pillow cannot identify the format)") from exc
    except _DECODE_ERRORS as exc:
        raise ValueError(f"{name}: truncated or corrupt image ({exc})") from exc


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    """HxW or HxWxC (C = 1, 3, 4) array -> PIL. uint8 as is, uint16 full range, float in [0, 1], bool."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"{name}: array must be HxW or HxWxC with C in (1, 3, 4), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: zero-size image array {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        if array.ndim == 2:
            return Image.fromarray(np.ascontiguousarray(array))  # mode I;16
        array = (array >> 8).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: float image array contains NaN or infinite values")
        array = np.clip(np.asarray(array, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"{name}: unsupported array dtype {array.dtype} (use uint8, uint16, bool or float in [0, 1])")
    return Image.fromarray(np.ascontiguousarray(array))  # L, RGB or RGBA from the shape


def load_image(item: ImageLike, name: str = "image") -> Image.Image:
    """A decoded PIL image from a path, encoded bytes, a PIL image or a numpy array.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: non-image or truncated data, zero-size images, unusable arrays (message starts with ``name``).
        TypeError: anything else.
    """
    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, str | os.PathLike):
        if not Path(item).is_file():
            raise FileNotFoundError(f"{name}: no such image file {os.fspath(item)!r}")
        image = _decode(item, f"{name} ({os.fspath(item)})")
    elif isinstance(item, bytes | bytearray | memoryview):
        if len(item) == 0:
            raise ValueError(f"{name}: empty bytes")
        image = _decode(io.BytesIO(bytes(item)), name)
    elif isinstance(item, np.ndarray):
        image = _from_array(item, name)
    else:
        raise TypeError(f"{name}: expected a path, bytes, PIL image or numpy array, got {type(item).__name__}")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{name}: zero-size image ({image.width}x{image.height})")
    return image


def preprocess_images(images: Sequence[ImageLike], preprocessor: ImagePreprocessor, offset: int = 0) -> np.ndarray:
    """Load and transform a batch into the ``(n, 3, size, size)`` float32 array the encoder takes."""
    out = np.empty((len(images), 3, preprocessor.size, preprocessor.size), dtype=np.float32)
    for i, item in enumerate(images):
        name = f"images[{offset + i}]"
        image = load_image(item, name)
        try:
            out[i] = preprocessor([image])[0]
        except (ValueError, OSError) as exc:
            raise ValueError(f"{name}: cannot convert this {image.mode} image ({exc})") from exc
    return out


class ImageEncoder:
    """Run the ONNX image tower on batches prepared by the bundle's ``preprocessor.json``."""

    def __init__(
        self, session: ort.InferenceSession, preprocessor: ImagePreprocessor, *, inputs: Mapping[str, str],
        output: str, dim: int,
    ) -> None:
        check_io(session, inputs, output, dim, "image encoder")
        self.session, self.preprocessor = session, preprocessor
        self.input, self.output, self.dim = inputs["pixel_values"], output, dim
        self._dtype = input_dtype(session, self.input)
        self.model_file: str | None = None  # the bundle file the session runs (set by from_spec)

    @classmethod
    def from_spec(cls, root: Path, spec: Mapping[str, Any], dim: int, model_format: str = "auto",
                  **session_kwargs: Any) -> ImageEncoder:
        """Build from a manifest's ``image_encoder`` section; ``session_kwargs`` go to :func:`create_session`.

        ``model_format``: ``"auto"`` (the ``.onnx``, the ``.ort`` twin as fallback: see :data:`AUTO_FIRST`),
        ``"onnx"`` or ``"ort"`` (see :func:`runtime.bundle.model_files`).
        """
        preprocessor = ImagePreprocessor.load(root / spec["preprocessor"])
        session, loaded = create_first_session(root, model_files(spec, model_format, auto_first=AUTO_FIRST),
                                               **session_kwargs)
        encoder = cls(session, preprocessor, inputs=spec["inputs"], output=spec["output"], dim=dim)
        encoder.model_file = loaded
        return encoder

    def encode(self, images: Sequence[ImageLike], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised embeddings; every bad item raises before any result."""
        if isinstance(images, str | bytes | Image.Image) or (isinstance(images, np.ndarray) and images.ndim != 4):
            raise TypeError("images must be a list of images (paths, bytes, PIL images or arrays), not a single one")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = list(images)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        with progress_bar(progress, total=len(images), desc="images", unit="img") as bar:
            for start in range(0, len(images), batch_size):
                pixels = preprocess_images(images[start : start + batch_size], self.preprocessor, offset=start)
                (emb,) = self.session.run([self.output], {self.input: pixels.astype(self._dtype, copy=False)})
                out[start : start + len(pixels)] = _checked(emb, len(pixels), self.dim, "image encoder")
                bar.update(len(pixels))
        return out
