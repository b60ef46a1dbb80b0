"""A user-style corpus written to disk: photos in nested folders, a captions JSONL, notes, a few bad records."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40),
           "black": (10, 10, 10), "white": (245, 245, 245), "purple": (140, 40, 160), "orange": (250, 140, 20)}
SHAPES = ("square", "circle", "stripe")


def _image(colour: tuple[int, int, int], shape: str, size: int = 48) -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    if shape == "square":
        image.paste(colour, (8, 8, size - 8, size - 8))
    elif shape == "stripe":
        image.paste(colour, (0, size // 3, size, 2 * size // 3))
    else:
        for y in range(size):
            for x in range(size):
                if (x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2:
                    image.putpixel((x, y), colour)
    return image


def write_user_corpus(root: Path, bad: bool = True) -> dict[str, Path]:
    """``photos/`` (nested, mixed formats), ``captions.jsonl`` pairing some photos with captions, ``notes.txt``,
    and (with ``bad``) a missing file, an undecodable image, an empty caption and a malformed line."""
    photos = root / "photos"
    records = []
    suffixes = (".png", ".jpg", ".webp", ".bmp")
    for i, (name, colour) in enumerate(COLOURS.items()):
        for j, shape in enumerate(SHAPES):
            folder = photos / ("2021" if j % 2 else "2022") / shape
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}{suffixes[(i + j) % len(suffixes)]}"
            _image(colour, shape).save(path)
            records.append({"image": str(path.relative_to(root)), "text": f"a {name} {shape} on white"})
    (photos / "broken.png").write_bytes(b"not an image at all")
    lines = [json.dumps(r) for r in records]
    if bad:
        lines += [json.dumps({"image": "photos/missing.png", "text": "gone"}), json.dumps({"text": "   "}),
                  "{not json"]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    notes = [f"a note about the colour {name}" for name in COLOURS] + ["shopping list: apples, bread"]
    (root / "notes.txt").write_text("\n".join(notes) + "\n", encoding="utf-8")
    return {"photos": photos, "captions": root / "captions.jsonl", "notes": root / "notes.txt"}


def recipe(root: Path, teacher: dict, sources: list[dict], variants: list[dict] | None = None,
           index: dict | None = None, **sections: object) -> Path:
    """Write ``root/recipe.json`` (the tiny preset, one fp32-free-of-optimisation variant by default)."""
    data = {"name": "mine", "work_dir": "work", "teacher": teacher, "sources": sources,
            "split": {"fractions": [0.6, 0.2, 0.2], "seed": 0, "max_bad": 0.2},
            "student": {"preset": "tiny", "set": ["train.epochs=1"]},
            "variants": variants or [{"name": "fp32", "quant": "fp32"}], **sections}
    if index is not None:
        data["index"] = index
    path = root / "recipe.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path
