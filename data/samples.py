"""Real inputs for parity checks, calibration and agreement: captions, glosses, lemmas and rendered emoji.

Drawn from ``bench.datasets`` with a fixed seed. Calibration and parity use the ``val`` split by
default, so the ``test`` split stays held out for the reported quality numbers.
"""

from __future__ import annotations

import random

from PIL import Image

from .openmoji import emojis
from .render import render_emoji
from .wordnet import synsets


def real_texts(n: int, split: str = "val", seed: int = 0) -> list[str]:
    """``n`` texts of ``split``, interleaving emoji captions, WordNet glosses and lemma strings."""
    rng = random.Random(seed)
    captions = [c for e in emojis(split) for c in e.captions]
    wordnet = synsets(split)
    glosses = [s.gloss for s in wordnet]
    lemmas = [s.lemmas for s in wordnet]
    pools = [rng.sample(pool, min(len(pool), n)) for pool in (captions, glosses, lemmas)]
    out = [text for group in zip(*pools, strict=False) for text in group]
    return out[:n]


def real_images(n: int, split: str = "val", seed: int = 0, size: int = 224) -> list[Image.Image]:
    """``n`` emoji of ``split`` rendered by the OpenMoji font (RGB PIL images)."""
    chosen = random.Random(seed).sample(emojis(split), n)
    return [render_emoji(e.text, size) for e in chosen]
