"""Image preprocessing in numpy + Pillow, driven by ``preprocessor.json``.

This is the one implementation of the image transform: teachers, students and the runtime all
call it, so training and serving can never drift apart. The exact rule (mirror it in other ports):

1. **Aspect limit** (only for extreme images): if the longer side exceeds ``MAX_ASPECT`` (32) times the
   shorter side, crop the decoded image, in its own mode, to the centre ``MAX_ASPECT * shorter`` pixels of
   its longer side: ``offset = (longer - kept) // 2`` with ``kept = MAX_ASPECT * shorter``. Images within the
   limit are untouched, so their output is bit-identical to the transform without this step; extreme
   ones (a 1 x 300,000 strip) now cost what a 1 x 32 one does instead of gigabytes.
2. **Colour**: 16-bit and 32-bit grey (``I;16*``, ``I``, ``F``) scale to 8-bit grey by ``v / peak * 255 + 0.5``,
   clipped, truncated (``peak`` = 65535 for ``I;16*``, else 65535 if the maximum exceeds 255, else 255);
   alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency, ...) is composited over ``background``; every
   other mode converts to RGB as Pillow converts it.
3. **Geometry**: ``scale = size / shorter``; resize (``resample``: bicubic or bilinear, Pillow's filters) to
   ``(max(size, round(w * scale)), max(size, round(h * scale)))`` unless that is the current size; crop
   ``size x size`` at ``((W - size) // 2, (H - size) // 2)``.
4. **Normalise**: RGB / 255, minus ``mean``, divided by ``std``, as float32 NCHW.

Grey sources are resized as 8-bit grey and expanded to RGB after the crop, and alpha is composited in
strips of rows: both give exactly the pixels of converting the whole image first, with less memory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._fs import read_json

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
#: longest side / shortest side beyond which the centre is cropped before anything else (rule 1)
MAX_ASPECT = 32
#: largest ``size`` a preprocessor may have
MAX_SIZE = 2048
_HIGH_BIT = ("I;16", "I;16B", "I;16L", "I", "F")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_STRIP_BYTES = 4 << 20  # rows converted at a time (high-bit grey, alpha compositing)


def _triple(value: Any, name: str, kind: type, low: float, high: float) -> None:
    ok = isinstance(value, tuple | list) and len(value) == 3 and all(
        isinstance(v, kind) and not isinstance(v, bool) and low <= v <= high for v in value)  # NaN/inf fail too
    if not ok:
        raise ValueError(f"{name} must be three {kind.__name__ if kind is int else 'finite'} numbers in "
                         f"{low}..{high}, got {str(value)[:80]}")


@dataclass(frozen=True)
class ImagePreprocessor:
    """Resize the shorter side to ``size``, centre-crop ``size`` x ``size``, scale to 0..1, normalise.

    Alpha is composited over ``background``; any mode (L, P, CMYK, I;16, ...) becomes RGB first. See the
    module docstring for the exact rule, including the aspect limit for extreme images.
    """

    size: int = 224
    resample: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    background: tuple[int, int, int] = (255, 255, 255)
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {str(self.resample)[:40]!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be an int in 1..{MAX_SIZE}, got {str(self.size)[:40]}")
        _triple(self.mean, "mean", float | int, -1e6, 1e6)
        _triple(self.std, "std", float | int, -1e6, 1e6)
        if any(abs(s) < 1e-12 for s in self.std):
            raise ValueError(f"std must not contain zeros, got {self.std}")
        _triple(self.background, "background", int, 0, 255)
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise ValueError(f"version must be an int, got {str(self.version)[:40]}")
        if not isinstance(self.extra, dict):
            raise ValueError("extra must be a dict")

    @staticmethod
    def limit_aspect(image: Image.Image) -> Image.Image:
        """Rule 1: the centre ``MAX_ASPECT * shorter`` pixels of an extreme image's longer side (else the image)."""
        width, height = image.size
        if width == 0 or height == 0:
            raise ValueError("image has zero width or height")
        longer, shorter = max(width, height), min(width, height)
        if longer <= MAX_ASPECT * shorter:
            return image
        kept = MAX_ASPECT * shorter
        offset = (longer - kept) // 2
        box = (offset, 0, offset + kept, height) if width > height else (0, offset, width, offset + kept)
        return image.crop(box)

    def to_rgb(self, image: Image.Image) -> Image.Image:
        """Any PIL image as a new 8-bit RGB image; transparency is composited over ``background`` (rule 2)."""
        working = self._working(image)
        return working.convert("RGB") if working.mode == "L" or working is image else working

    def _working(self, image: Image.Image) -> Image.Image:
        """Rule 2 with grey kept grey: an ``L`` or ``RGB`` image (the input itself if it is one already)."""
        if image.width == 0 or image.height == 0:
            raise ValueError("image has zero width or height")
        if image.mode in _HIGH_BIT:
            return _high_bit_to_grey(image)
        if image.mode in ("L", "RGB"):
            return image
        if image.mode == "1":
            return image.convert("L")
        if image.mode in _ALPHA or (image.mode == "P" and "transparency" in image.info):
            return self._composite(image)
        return image.convert("RGB")

    def _composite(self, image: Image.Image) -> Image.Image:
        out = Image.new("RGB", image.size)
        rows = max(1, _STRIP_BYTES // (4 * image.width))
        for top in range(0, image.height, rows):
            strip = image.crop((0, top, image.width, min(image.height, top + rows))).convert("RGBA")
            canvas = Image.new("RGBA", strip.size, (*self.background, 255))
            out.paste(Image.alpha_composite(canvas, strip).convert("RGB"), (0, top))
        return out

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """Rules 1-3: the ``size`` x ``size`` RGB image the encoder sees (before normalisation)."""
        image = self._working(self.limit_aspect(image))
        scale = self.size / min(image.width, image.height)
        width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
        if (width, height) != image.size:
            image = image.resize((width, height), _RESAMPLE[self.resample])
        left, top = (width - self.size) // 2, (height - self.size) // 2
        out = image.crop((left, top, left + self.size, top + self.size))
        return out if out.mode == "RGB" else out.convert("RGB")

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        """A batch of PIL images -> float32 NCHW array."""
        out = np.empty((len(images), 3, self.size, self.size), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        for i, image in enumerate(images):
            pixels = np.asarray(self.resize_crop(image), dtype=np.float32).transpose(2, 0, 1) / 255.0
            out[i] = (pixels - mean) / std
        return out

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``preprocessor.json`` holds them."""
        data = asdict(self)
        data["mean"], data["std"], data["background"] = list(self.mean), list(self.std), list(self.background)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocessor:
        """From ``preprocessor.json``'s object; a malformed one raises ValueError naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"a preprocessor config must be an object, got {type(data).__name__}")
        known = {k: data[k] for k in ("size", "resample", "version", "extra") if k in data}
        for key in ("mean", "std", "background"):
            if key in data:
                if not isinstance(data[key], list | tuple):
                    raise ValueError(f"{key} must be a list of three numbers, got {str(data[key])[:80]}")
                known[key] = tuple(data[key])
        return cls(**known)

    def save(self, path: str | Path) -> None:
        """Write ``preprocessor.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ImagePreprocessor:
        """Read ``preprocessor.json`` (ValueError if unreadable or malformed)."""
        return cls.from_dict(read_json(path, limit=1 << 20))


def _high_bit_to_grey(image: Image.Image) -> Image.Image:
    """Rule 2 for ``I;16*``/``I``/``F``: 8-bit grey, converted in strips of rows (bit-identical, less memory)."""
    width, height = image.size
    rows = max(1, _STRIP_BYTES // (8 * width))
    strips = [(top, min(height, top + rows)) for top in range(0, height, rows)]
    if image.mode.startswith("I;16"):
        peak = 65535.0
    else:
        highest = np.max([np.asarray(image.crop((0, a, width, b)), dtype=np.float64).max() for a, b in strips])
        peak = 65535.0 if highest > 255 else 255.0
    out = np.empty((height, width), dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        for a, b in strips:
            values = np.asarray(image.crop((0, a, width, b)), dtype=np.float64)
            values /= peak
            values *= 255.0
            values += 0.5
            np.clip(values, 0, 255, out=values)
            out[a:b] = values.astype(np.uint8)
    return Image.fromarray(out)
