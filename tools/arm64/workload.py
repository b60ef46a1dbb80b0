"""What both machines embed and search: real OpenMoji captions and renders (full) or synthetic items (reduced).

Items are written to files once (texts in JSON, images as PNG) so x86 and the guest read identical bytes;
the guest then decodes and preprocesses them itself, which is part of what is being compared.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

_COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
            "orange": (245, 140, 30), "purple": (140, 60, 180), "black": (20, 20, 20), "pink": (240, 120, 180)}
_NOUNS = ("apple", "cat", "dog", "car", "house", "tree", "flower", "sun", "moon", "star", "fish", "bird", "heart")
_SHAPES = ("ellipse", "rectangle", "triangle")


@dataclass(frozen=True)
class Workload:
    """Ids and payloads of the texts and images (image paths) to embed; ``source`` names where they came from."""

    source: str
    text_ids: list[str]
    texts: list[str]
    image_ids: list[str]
    images: list[str]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Workload:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct short phrases like 'a red cat and a blue moon' (deterministic)."""
    rng = np.random.default_rng(seed)
    colours, out, seen = list(_COLOURS), [], set()
    while len(out) < n:
        c1, c2 = rng.choice(colours, 2)
        n1, n2 = rng.choice(_NOUNS, 2)
        text = f"a {c1} {n1}" if rng.random() < 0.4 else f"a {c1} {n1} and a {c2} {n2}"
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def synthetic_image(index: int, size: int = 64, seed: int = 0) -> Image.Image:
    """A few coloured shapes on a tinted background, determined by ``(seed, index)``."""
    rng = np.random.default_rng([seed, index])
    colours = list(_COLOURS.values())
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(180, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        x1, y1 = x0 + int(rng.integers(8, size // 2)), y0 + int(rng.integers(8, size // 2))
        fill = colours[int(rng.integers(len(colours)))]
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        if shape == "triangle":
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
        else:
            getattr(draw, shape)([x0, y0, x1, y1], fill=fill)
    return image


def synthetic_workload(n: int, folder: Path) -> Workload:
    """``n`` synthetic phrases and ``n`` synthetic 64x64 images (PNG files under ``folder``)."""
    paths = []
    for i in range(n):
        path = folder / f"synthetic-{i:04d}.png"
        synthetic_image(i).save(path)
        paths.append(str(path))
    return Workload("synthetic", [f"text:{i:04d}" for i in range(n)], synthetic_texts(n),
                    [f"image:{i:04d}" for i in range(n)], paths)


def openmoji_workload(n: int, folder: Path, size: int = 224) -> Workload:
    """The first ``n`` test-split emoji (a fixed sample): their names as texts, their clean renders as PNGs."""
    from edgeret.data.evalset import sample_keys
    from edgeret.data.openmoji import emojis
    from edgeret.data.render import render_emoji

    test = {e.id: e for e in emojis("test")}
    chosen = [test[key] for key in sample_keys(list(test), min(n, len(test)), 0)]
    paths = []
    for e in chosen:
        path = folder / f"{e.id}.png"
        render_emoji(e.text, size).save(path)
        paths.append(str(path))
    return Workload("openmoji-test", [f"cap:{e.id}" for e in chosen], [e.name for e in chosen],
                    [f"img:{e.id}" for e in chosen], paths)


def prepare_workload(source: str, n: int, folder: Path) -> Workload:
    """Build (or reuse, if already written for the same source and size) the workload in ``folder``."""
    manifest = folder / "workload.json"
    if manifest.is_file():
        cached = Workload.load(manifest)
        complete = all(Path(p).is_file() for p in cached.images)
        if cached.source.startswith(source) and len(cached.texts) == n and complete:
            return cached
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    workload = openmoji_workload(n, folder) if source == "openmoji" else synthetic_workload(n, folder)
    workload.save(manifest)
    logger.info("workload: %d texts + %d images from %s in %s", n, n, workload.source, folder)
    return workload


def index_on_host(bundle: Path, workload: Workload, queries: int, threads: int, vectors_out: Path) -> dict[str, Any]:
    """Index every text and image of the workload into ``bundle`` with the x86 runtime and save it.

    Also writes the x86 embeddings of the first ``queries`` texts and images to ``vectors_out`` (the
    vector queries both machines run, so their inputs are bit-identical). Returns timings and counts.
    """
    from edgeret.runtime.retriever import Retriever

    start = time.perf_counter()
    retriever = Retriever.open(bundle, threads=threads)
    retriever.add_texts(workload.text_ids, workload.texts)
    retriever.add_images(workload.image_ids, workload.images)
    saved = retriever.save()
    seconds = time.perf_counter() - start
    vectors = np.concatenate([retriever.embed_texts(workload.texts[:queries]),
                              retriever.embed_images(workload.images[:queries])])
    np.save(vectors_out, vectors)
    return {"items": len(retriever), "dim": retriever.dim, "build_and_save_s": round(seconds, 3),
            "saved": str(Path(saved).resolve().relative_to(bundle.resolve()))}


def make_job(repo: Path, bundle: Path, workload: Workload, queries: int, threads: int, vectors: Path,
             out: Path, k: int = 10) -> dict[str, Any]:
    """The job description :mod:`tools.arm64.guest_worker` runs (identical on both machines but for ``out``)."""
    return {"repo": str(repo), "bundle": str(bundle), "threads": threads, "k": k, "texts": workload.texts,
            "images": workload.images, "query_vectors": str(vectors), "query_texts": workload.texts[:queries],
            "query_images": workload.images[:queries], "out": str(out)}
