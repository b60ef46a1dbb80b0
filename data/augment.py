"""An unlabeled, reproducible stream of augmented glyph renders for distillation.

Distillation needs only the teacher's embeddings of these images, never captions. Every image is a
pure function of (seed, emoji id, copy number), so any process renders exactly the same pixels.
"""

from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass

from PIL import Image

from .items import CorpusItem
from .openmoji import emojis
from .render import compose, glyph_rgba


@dataclass(frozen=True)
class AugmentParams:
    """How one augmented render differs from the clean one."""

    scale: float
    offset: tuple[float, float]
    background: tuple[int, int, int]
    angle: float
    blur: float


def sample_params(rng: random.Random) -> AugmentParams:
    """Draw scale 0.45-0.95, centre offset up to what keeps most of the glyph visible, a background
    (white half the time, else a random colour), rotation within ±25° and a blur 30% of the time."""
    scale = rng.uniform(0.45, 0.95)
    slack = max(0.0, (1.0 - scale) / 2)
    offset = (rng.uniform(-slack, slack), rng.uniform(-slack, slack))
    if rng.random() < 0.5:
        background = (255, 255, 255)
    else:
        background = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    angle = rng.uniform(-25, 25) if rng.random() < 0.6 else 0.0
    blur = rng.uniform(0.3, 1.6) if rng.random() < 0.3 else 0.0
    return AugmentParams(scale, offset, background, angle, blur)


def augmented_render(emoji_text: str, emoji_key: str, copy: int, seed: int = 0, size: int = 224) -> Image.Image:
    """Render copy number ``copy`` of an emoji with augmentation drawn from (seed, key, copy)."""
    params = sample_params(random.Random(f"{seed}:{emoji_key}:{copy}"))
    glyph = glyph_rgba(emoji_text)
    if glyph is None:
        raise ValueError(f"the OpenMoji font has no glyph for {emoji_text!r}")
    return compose(glyph, size=size, **asdict(params))


def augmented_items(split: str = "train", copies: int = 4, seed: int = 0, size: int = 224) -> list[CorpusItem]:
    """``copies`` augmented renders of every emoji of ``split`` as lazy image items 'aug:<id>:<k>'."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    return [
        CorpusItem(
            id=f"aug:{e.id}:{k}",
            kind="image",
            image_fn=functools.partial(augmented_render, e.text, e.id, k, seed, size),
            split=e.split,
            group=e.id,
        )
        for e in emojis(split)
        for k in range(copies)
    ]
