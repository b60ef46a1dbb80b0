"""The real inputs compression needs: parity checks, INT8 calibration images, the training texts' token counts.

:meth:`Calibration.builtin` draws them from the built-in data (OpenMoji renders, WordNet glosses and
lemmas; the demo), :meth:`Calibration.from_caches` from the teacher caches a student was distilled from
(a user's own corpus): parity inputs from the held-out split, calibration images and token counts from the
train split, never the test split.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from PIL import Image

from edgeret.data.openmoji import emojis
from edgeret.data.samples import real_images, real_texts
from edgeret.data.wordnet import synsets
from edgeret.distill.cache import TeacherCache
from edgeret.runtime.image import load_image


@dataclass
class Calibration:
    """Inputs for parity, calibration and embedding-row frequencies (each may be empty for an absent tower)."""

    parity_texts: list[str]
    parity_images: list[Image.Image]
    calibration_images: list[Image.Image]
    training_texts: Callable[[], Iterable[str]]

    @classmethod
    def builtin(cls, parity_texts: int = 64, parity_images: int = 16, calibration_images: int = 64) -> Calibration:
        """From the built-in data: val captions/glosses/lemmas and renders for parity, train renders for
        calibration, the train splits' texts for token counts."""
        return cls(real_texts(parity_texts), real_images(parity_images),
                   real_images(calibration_images, split="train", seed=1), builtin_training_texts)

    @classmethod
    def from_caches(cls, caches: Sequence[TeacherCache], parity_texts: int = 64, parity_images: int = 16,
                    calibration_images: int = 64, seed: int = 0) -> Calibration:
        """From the caches' item tables (a held-out split for parity, falling back to train when it is empty)."""
        def texts(split: str, n: int | None) -> list[str]:
            rows = [t for c in caches if c.items for (t,) in c.items.select("text", "kind = 'text' AND split = ?",
                                                                             (split,))]
            return rows if n is None else random.Random(seed).sample(rows, min(n, len(rows)))

        def images(split: str, n: int) -> list[Image.Image]:
            rows = [(p, o) for c in caches if c.items for p, o in c.items.select(
                "path, origin", "kind = 'image' AND split = ? AND path IS NOT NULL", (split,))]
            chosen = random.Random(seed).sample(rows, min(n, len(rows)))
            return [load_image(path, origin or path) for path, origin in chosen]

        def parity(fetch: Callable[[str, int], list], n: int) -> list:
            return fetch("val", n) or fetch("test", n) or fetch("train", n)

        return cls(parity(texts, parity_texts), parity(images, parity_images), images("train", calibration_images),
                   lambda: texts("train", None))


def builtin_training_texts() -> list[str]:
    """The train splits' texts (OpenMoji captions, WordNet glosses and lemmas): what ranks the tokens."""
    wordnet = synsets("train")
    return [c for e in emojis("train") for c in e.captions] + [s.gloss for s in wordnet] + [s.lemmas for s in wordnet]
