"""Image preprocessing in numpy + Pillow, driven by ``preprocessor.json``.

This is the one implementation of the image transform: teachers, students and the runtime all
call it, so training and serving can never drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class ImagePreprocessor:
    """Resize the shorter side to ``size``, centre-crop ``size`` x ``size``, scale to 0..1, normalise.

    Alpha is composited over ``background``; any mode (L, P, CMYK, I;16, ...) becomes RGB first.
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
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {self.resample!r}")
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")

    def to_rgb(self, image: Image.Image) -> Image.Image:
        """Any PIL image as 8-bit RGB; transparency is composited over ``background``."""
        if image.width == 0 or image.height == 0:
            raise ValueError("image has zero width or height")
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(image, dtype=np.float64)
            peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
            image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info
        )
        if has_alpha:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*self.background, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """Shorter side to ``size`` then centre crop: the geometric part of the transform."""
        image = self.to_rgb(image)
        scale = self.size / min(image.width, image.height)
        width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
        if (width, height) != image.size:
            image = image.resize((width, height), _RESAMPLE[self.resample])
        left, top = (width - self.size) // 2, (height - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))

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
        data = asdict(self)
        data["mean"], data["std"], data["background"] = list(self.mean), list(self.std), list(self.background)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocessor:
        known = {k: data[k] for k in ("size", "resample", "version", "extra") if k in data}
        for key in ("mean", "std", "background"):
            if key in data:
                known[key] = tuple(data[key])
        return cls(**known)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ImagePreprocessor:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
