"""Image tower: load anything image-like, :class:`ImagePreprocessor` it, run the ONNX encoder.

Decoding is bounded before any pixel is decoded: from the header's size and mode, the decoded memory is
estimated (bytes per pixel: 1 for ``L``, 2 for ``1``, 3 for ``I;16``, 4 for ``RGB``, 5 for ``P``/``I``/``F``,
8 otherwise -- the decoded image plus its RGB conversion; plus 16 bytes per row and column for Pillow's row
pointers, and the copy an EXIF rotation makes). Above :data:`MAX_DECODE_BYTES` a JPEG is decoded
at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, ``Image.draft``), the smallest reduction that fits; any
other image is refused with a ValueError that names it. Pillow's decompression-bomb limit still applies
first. EPS files are never opened (Pillow would run Ghostscript). Every failure of a decoder on a hostile
file is a ValueError naming the item.
"""

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

from ._fs import is_regular_file
from ._progress import progress_bar
from .bundle import model_files
from .errors import BundleError, shorten
from .preprocess import ImagePreprocessor
from .sessions import check_io, create_first_session, input_dtype, run_session, static_input_shape
from .text import _checked

logger = logging.getLogger(__name__)

#: ``model_format="auto"`` runs the image tower's ``.onnx`` first: onnxruntime optimises it at load for
#: this CPU (on x86, NCHWc layouts for the float convolutions: INT8 student 4.8 vs 6.2 ms per image from
#: the portable ``.ort``); the image session opens on the first image, so its ~0.1 s load is off the
#: start-up path. The text tower starts from its ``.ort`` (opens ~3x faster, runs as fast).
AUTO_FIRST = "onnx"

#: what ``embed_images``/``add_images`` accept per item
ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]  # noqa: UP007

#: decoded pixel memory an image may need (see the module docstring)
MAX_DECODE_BYTES = 160 << 20
_BYTES_PER_PIXEL = {"L": 1, "1": 2, "I;16": 3, "I;16B": 3, "I;16L": 3, "RGB": 4, "P": 5, "I": 5, "F": 5}
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}  # Pillow's storage; 4 otherwise
_ROW_BYTES = 16  # Pillow keeps a pointer per row: 8 bytes for the decoded image, 8 for its conversion
_DRAFTABLE = ("JPEG", "MPO")
_NEVER_OPEN = {"EPS"}  # Pillow hands EPS to Ghostscript
_TURNS = range(2, 9)  # EXIF orientations that make exif_transpose copy the image


def _formats() -> list[str]:
    Image.init()
    return [name for name in Image.OPEN if name not in _NEVER_OPEN]


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation, when it can be read without decoding pixels (JPEG, WebP, TIFF: in the header)."""
    raw = image.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(0x0112)


def decoded_bytes(image: Image.Image, turned: bool = False) -> int:
    """The estimated memory of decoding ``image`` (opened, not yet loaded) and converting it to RGB; ``turned``
    adds the copy an EXIF rotation makes."""
    width, height = image.size
    need = width * height * _BYTES_PER_PIXEL.get(image.mode, 8) + _ROW_BYTES * (width + height)
    return need + (width * height * _STORED_BYTES.get(image.mode, 4) if turned else 0)


def _fit_budget(image: Image.Image, name: str, budget: int) -> None:
    """Reduce a JPEG's decode scale until it fits ``budget``, or raise ValueError (nothing is decoded here)."""
    turned = _orientation(image) in _TURNS
    need = decoded_bytes(image, turned)
    if need <= budget:
        return
    if image.format in _DRAFTABLE:
        for scale in (2, 4, 8):
            if need <= budget * scale * scale:
                width, height = image.size
                image.draft(None, (max(1, width // scale), max(1, height // scale)))
                logger.info("%s: %dx%d JPEG decoded at 1/%d scale (decode limit %d MiB)", name, width, height,
                            scale, budget >> 20)
                if decoded_bytes(image, turned) <= budget:
                    return
                break
    raise ValueError(f"{name}: a {image.width}x{image.height} {image.mode} image needs about {need >> 20} MiB to "
                     f"decode, more than the {budget >> 20} MiB limit; downscale it first")


def _turn(image: Image.Image, name: str, budget: int) -> None:
    """Apply the EXIF orientation in place, unless the copy it needs would break ``budget`` (late EXIF, e.g. PNG)."""
    if image.getexif().get(0x0112) in _TURNS and decoded_bytes(image, turned=True) > budget:
        raise ValueError(f"{name}: a {image.width}x{image.height} image too large to rotate as its EXIF orientation "
                         f"asks within the {budget >> 20} MiB decode limit; downscale it first")
    ImageOps.exif_transpose(image, in_place=True)


def _decode(source: Any, name: str) -> Image.Image:
    """Open, bound (see the module docstring) and fully decode an image file or buffer."""
    try:
        image = Image.open(source, formats=_formats())
        _fit_budget(image, name, MAX_DECODE_BYTES)
        image.load()
        _turn(image, name, MAX_DECODE_BYTES)
        return image
    except Image.UnidentifiedImageError as exc:
        raise ValueError(f"{name}: not an image (Pillow cannot identify the format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning under -W error
        raise ValueError(f"{name}: too many pixels to decode safely ({exc})") from exc
    except ValueError as exc:
        if str(exc).startswith(name):
            raise
        raise ValueError(f"{name}: truncated or corrupt image ({shorten(str(exc), 200)})") from exc
    except MemoryError as exc:
        raise ValueError(f"{name}: not enough memory to decode this image") from exc
    except Exception as exc:  # a Pillow plugin fed a hostile file can raise almost anything (struct.error, ...)
        raise ValueError(f"{name}: truncated or corrupt image ({type(exc).__name__}: {shorten(str(exc), 200)})"
                         ) from exc


def _decode_path(path: str | os.PathLike, name: str) -> Image.Image:
    try:
        handle = open(path, "rb")  # closed by the with below, after decoding
    except OSError as exc:
        raise OSError(exc.errno, f"{name}: cannot read image file {shorten(os.fspath(path))} ({exc.strerror})") from exc
    with handle:
        return _decode(handle, f"{name} ({shorten(os.fspath(path), 120)})")


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
        if not is_regular_file(Path(item)):
            raise FileNotFoundError(f"{name}: no such image file {shorten(os.fspath(item))}")
        image = _decode_path(item, name)
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
        except (ValueError, OSError, MemoryError) as exc:
            raise ValueError(f"{name}: cannot convert this {image.mode} image ({shorten(str(exc), 200)})") from exc
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
        shape = static_input_shape(session, self.input)
        wanted = [3, preprocessor.size, preprocessor.size]
        pairs = zip(shape[1:], wanted, strict=True) if len(shape) == 4 else ()
        if len(shape) != 4 or any(isinstance(got, int) and got != want for got, want in pairs):
            raise BundleError(f"image encoder: input {self.input!r} has shape {shape}, but the preprocessor makes "
                              f"[batch, {', '.join(map(str, wanted))}]")
        self._dtype = input_dtype(session, self.input)
        self.model_file: str | None = None  # the bundle file the session runs (set by from_spec)

    @classmethod
    def from_spec(cls, root: Path, spec: Mapping[str, Any], dim: int, model_format: str = "auto",
                  **session_kwargs: Any) -> ImageEncoder:
        """Build from a manifest's ``image_encoder`` section; ``session_kwargs`` go to :func:`create_session`.

        ``model_format``: ``"auto"`` (the ``.onnx``, the ``.ort`` twin as fallback: see :data:`AUTO_FIRST`),
        ``"onnx"`` or ``"ort"`` (see :func:`runtime.bundle.model_files`).
        """
        try:
            preprocessor = ImagePreprocessor.load(root / spec["preprocessor"])
        except (ValueError, TypeError) as exc:
            raise BundleError(f"{spec['preprocessor']}: unusable preprocessor config ({exc})") from exc
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
                out[start : start + len(pixels)] = self.encode_pixels(pixels)
                bar.update(len(pixels))
        return out

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, dim)`` embeddings of one batch already made by :func:`preprocess_images` (``(n, 3, S, S)``)."""
        size = self.preprocessor.size
        if not isinstance(pixels, np.ndarray) or pixels.shape[1:] != (3, size, size):
            raise ValueError(f"pixels must be an (n, 3, {size}, {size}) array from preprocess_images")
        emb = run_session(self.session, self.output, {self.input: pixels.astype(self._dtype, copy=False)},
                          "image encoder")
        return _checked(emb, len(pixels), self.dim, "image encoder")
