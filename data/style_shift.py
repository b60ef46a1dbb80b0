"""A style-shift evaluation: held-out emoji rendered with transforms that training never uses.

Training renders (:mod:`edgeret.data.augment`) vary scale, offset, a plain background colour, rotation and
blur. A variant that only fits those renders can look fine on the clean test split and still fail on
images that look different, so every variant is also judged here. Each emoji of a split gets one of
:data:`STYLES`, assigned in turn along a seeded order (equal counts per style), drawn at the clean render's
place and scale:

* ``grayscale``: the clean render without colour;
* ``outline``: line art only (OpenMoji's dark strokes in black on white, the colour fills dropped);
* ``recolour``: hues rotated by 90-270 degrees and saturation boosted (a red heart turns green or blue);
* ``lowres``: rendered at 16-28 px, scaled back up with nearest-neighbour pixels;
* ``jpeg``: JPEG at quality 4-10 (block and chroma artefacts);
* ``busy``: a cluttered background of random shapes, lines and noise behind the glyph.

Three retrieval sets per split (:func:`style_eval`), on the same emoji as the clean sets:
``t2i`` (captions -> styled images), ``i2t`` (styled images -> captions) and ``i2i`` (a styled image finds
the clean render of its emoji among the split's clean renders). Every image is a pure function of
(style seed, emoji id), ids ``sty:<style>:<emoji id>``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from .evalset import QUERY_INSTRUCTIONS, EvalSet
from .items import CorpusItem
from .openmoji import Emoji, caption_items, emojis, image_item
from .render import compose, glyph_rgba

STYLES = ("grayscale", "outline", "recolour", "lowres", "jpeg", "busy")
TASKS = ("t2i", "i2t", "i2i")
STYLE_SEED = 0
_CLEAN_SCALE = 0.8  # the clean render's glyph scale (render.render_emoji)


def _rng(style: str, key: str, seed: int) -> random.Random:
    return random.Random(f"style:{seed}:{style}:{key}")


def _clean(glyph: Image.Image, size: int) -> Image.Image:
    return compose(glyph, size=size, scale=_CLEAN_SCALE)


def _grayscale(glyph: Image.Image, size: int, rng: random.Random) -> Image.Image:
    return ImageOps.grayscale(_clean(glyph, size)).convert("RGB")


def _outline(glyph: Image.Image, size: int, rng: random.Random) -> Image.Image:
    rgba = np.asarray(glyph.convert("RGBA"), dtype=np.float32)
    luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    strokes = (rgba[..., 3] > 128) & (luma < 90)
    if strokes.mean() < 0.005:  # a glyph without dark strokes: the edges of its shape instead
        alpha = Image.fromarray(rgba[..., 3].astype(np.uint8))
        strokes = np.asarray(alpha.filter(ImageFilter.FIND_EDGES)) > 64
    line = np.zeros(rgba.shape, np.uint8)
    line[strokes] = (0, 0, 0, 255)
    return compose(Image.fromarray(line, "RGBA"), size=size, scale=_CLEAN_SCALE)


def _recolour(glyph: Image.Image, size: int, rng: random.Random) -> Image.Image:
    alpha = glyph.getchannel("A")
    hsv = np.asarray(glyph.convert("RGB").convert("HSV"), dtype=np.int32)
    hsv[..., 0] = (hsv[..., 0] + rng.randint(64, 192)) % 256  # 90-270 degrees
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.6 + 40, 0, 255)
    rgb = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    recoloured = rgb.convert("RGBA")
    recoloured.putalpha(alpha)
    return compose(recoloured, size=size, scale=_CLEAN_SCALE)


def _lowres(glyph: Image.Image, size: int, rng: random.Random) -> Image.Image:
    small = rng.randint(16, 28)
    return _clean(glyph, size).resize((small, small), Image.Resampling.BOX).resize((size, size),
                                                                                  Image.Resampling.NEAREST)


def _jpeg(glyph: Image.Image, size: int, rng: random.Random) -> Image.Image:
    buffer = io.BytesIO()
    _clean(glyph, size).save(buffer, format="JPEG", quality=rng.randint(4, 10), subsampling=2)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _busy(glyph: Image.Image, size: int, rng: random.Random) -> Image.Image:
    noise = np.random.default_rng(rng.getrandbits(32)).integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    canvas = Image.fromarray(noise, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(14, 24)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        x0, y0 = rng.uniform(-0.2, 1.0) * size, rng.uniform(-0.2, 1.0) * size
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * size, y0 + rng.uniform(0.05, 0.5) * size
        shape = rng.choice(("rectangle", "ellipse", "line"))
        if shape == "line":
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randint(2, 8))
        else:
            getattr(draw, shape)((x0, y0, x1, y1), fill=colour)
    longer = max(glyph.width, glyph.height)
    factor = _CLEAN_SCALE * size / longer
    resized = glyph.resize((max(1, round(glyph.width * factor)), max(1, round(glyph.height * factor))),
                           Image.Resampling.LANCZOS)
    canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2), resized)
    return canvas


#: style -> transform(glyph RGBA, size, rng) -> RGB image
TRANSFORMS: dict[str, Callable[[Image.Image, int, random.Random], Image.Image]] = {
    "grayscale": _grayscale, "outline": _outline, "recolour": _recolour, "lowres": _lowres, "jpeg": _jpeg,
    "busy": _busy,
}


def styled_render(emoji_text: str, emoji_key: str, style: str, seed: int = STYLE_SEED, size: int = 224) -> Image.Image:
    """The emoji drawn with ``style`` (its random choices drawn from (seed, style, key)), RGB ``size`` x ``size``."""
    if style not in TRANSFORMS:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    glyph = glyph_rgba(emoji_text)
    if glyph is None:
        raise ValueError(f"the OpenMoji font has no glyph for {emoji_text!r}")
    return TRANSFORMS[style](glyph, size, _rng(style, emoji_key, seed))


def assign_styles(keys: list[str], seed: int = STYLE_SEED) -> dict[str, str]:
    """Each key's style: the styles in turn along a seeded hash order of the keys (counts differ by at most 1)."""
    order = sorted(keys, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).digest())
    return {key: STYLES[i % len(STYLES)] for i, key in enumerate(order)}


def style_of_id(item_id: str) -> str | None:
    """The style named in a styled image's id (``sty:<style>:<emoji id>``), else None."""
    parts = item_id.split(":")
    return parts[1] if len(parts) == 3 and parts[0] == "sty" else None


def styled_item(e: Emoji, style: str, seed: int = STYLE_SEED, size: int = 224) -> CorpusItem:
    """The styled render of an emoji as a lazy image item ``sty:<style>:<emoji id>`` (never trained on)."""
    return CorpusItem(id=f"sty:{style}:{e.id}", kind="image",
                      image_fn=functools.partial(styled_render, e.text, e.id, style, seed, size), split=None,
                      group=e.id)


def style_eval(task: str, split: str = "test", seed: int = STYLE_SEED, size: int = 224) -> EvalSet:
    """The style-shift set of ``task`` (t2i, i2t or i2i) over the emoji of ``split`` (``openmoji-style-<split>``)."""
    if task not in TASKS:
        raise ValueError(f"style-shift tasks are {TASKS}, not {task!r}")
    chosen = emojis(split)
    styles = assign_styles([e.id for e in chosen], seed)
    styled = [styled_item(e, styles[e.id], seed, size) for e in chosen]
    name = f"openmoji-style-{split}"
    if task == "t2i":
        queries = [c for e in chosen for c in caption_items(e, QUERY_INSTRUCTIONS["t2i"])]
        target = {e.id: item.id for e, item in zip(chosen, styled, strict=True)}
        return EvalSet(name, task, queries, styled, {q.id: {target[q.group]} for q in queries})
    if task == "i2t":
        captions = [c for e in chosen for c in caption_items(e)]
        relevant = {item.id: {f"cap:{e.id}:{n}" for n in range(len(e.captions))}
                    for e, item in zip(chosen, styled, strict=True)}
        return EvalSet(name, task, styled, captions, relevant)
    clean = [image_item(e, size) for e in chosen]
    relevant = {item.id: {f"img:{e.id}"} for e, item in zip(chosen, styled, strict=True)}
    return EvalSet(name, task, styled, clean, relevant)


def by_style(evalset: EvalSet) -> dict[str, list[int]]:
    """Indices of ``evalset``'s queries per style (of the styled image each query is, or is looking for)."""
    out: dict[str, list[int]] = {}
    for i, query in enumerate(evalset.queries):
        style = style_of_id(query.id) or next(
            (style_of_id(r) for r in sorted(evalset.relevant[query.id]) if style_of_id(r)), None)
        if style is not None:
            out.setdefault(style, []).append(i)
    return {style: out[style] for style in STYLES if style in out}
