"""Hostile and extreme images (issue 14, item 1 and the 12000x12000 1-bit PNG): bounded work and memory, clear
errors, and ordinary images still transformed bit for bit as before."""

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from edgeret.runtime import image as image_module
from edgeret.runtime import preprocess
from edgeret.runtime.image import load_image, preprocess_images
from edgeret.runtime.preprocess import ImagePreprocessor

from .hostile import gradient, jpeg_with_size, png, preprocess_in_child

MAX_ASPECT = 32  # the rule's limit (runtime/preprocess.py docstring, rule 1)
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class PreviousTransform:
    """A verbatim copy of the transform before issue 14 (runtime/preprocess.py at e0eae82)."""

    def __init__(self, size: int, resample: str, background=(255, 255, 255), mean=(0.5,) * 3, std=(0.5,) * 3):
        self.size, self.resample, self.background, self.mean, self.std = size, resample, background, mean, std

    def to_rgb(self, image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(image, dtype=np.float64)
            peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
            image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info
        )
        if has_alpha:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*self.background, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")

    def resize_crop(self, image):
        image = self.to_rgb(image)
        scale = self.size / min(image.width, image.height)
        width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
        if (width, height) != image.size:
            image = image.resize((width, height), RESAMPLE[self.resample])
        left, top = (width - self.size) // 2, (height - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))

    def __call__(self, images):
        out = np.empty((len(images), 3, self.size, self.size), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        for i, image in enumerate(images):
            pixels = np.asarray(self.resize_crop(image), dtype=np.float32).transpose(2, 0, 1) / 255.0
            out[i] = (pixels - mean) / std
        return out


def previous_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return ImageOps.exif_transpose(image)


def _modes(rgb: np.ndarray) -> dict[str, Image.Image]:
    base = Image.fromarray(rgb)
    grey = base.convert("L")
    alpha = base.convert("RGBA")
    alpha.putalpha(Image.fromarray(rgb[:, :, 0]))
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    transparent = palette.copy()
    transparent.info["transparency"] = 3
    wide = np.asarray(grey, dtype=np.uint16) * 257
    return {
        "RGB": base, "L": grey, "RGBA": alpha, "LA": alpha.convert("LA"), "P": palette, "P+transparency": transparent,
        "1": grey.convert("1"), "CMYK": base.convert("CMYK"), "YCbCr": base.convert("YCbCr"),
        "I;16": Image.fromarray(wide), "I": Image.fromarray(wide.astype(np.int32) // 200),
        "F": Image.fromarray(np.asarray(grey, dtype=np.float32) * 0.7), "PA": alpha.convert("PA"),
    }


SIZES = [(1, 1), (7, 3), (32, 32), (33, 31), (48, 40), (20, 90), (300, 200), (MAX_ASPECT * 5, 5), (3, 3 * MAX_ASPECT),
         (129, 1000)]


def _same_as_before(size: int, resample: str, sizes: list[tuple[int, int]]) -> None:
    ours = ImagePreprocessor(size=size, resample=resample, mean=(0.5,) * 3, std=(0.5,) * 3)
    theirs = PreviousTransform(size, resample)
    for seed, (width, height) in enumerate(sizes):
        for mode, image in _modes(gradient(width, height, seed)).items():
            assert np.array_equal(ours([image]), theirs([image])), (mode, width, height)
            assert np.array_equal(np.asarray(ours.resize_crop(image)), np.asarray(theirs.resize_crop(image)))
            assert np.array_equal(np.asarray(ours.to_rgb(image)), np.asarray(theirs.to_rgb(image))), mode


@pytest.mark.parametrize("resample", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [32, 128])
def test_ordinary_images_are_bit_identical_to_the_previous_transform(size, resample):
    _same_as_before(size, resample, SIZES)


@pytest.mark.arm64
def test_ordinary_images_are_bit_identical_to_the_previous_transform_reduced():
    """The same check on fewer sizes, cheap enough for the emulated aarch64 run."""
    _same_as_before(32, "bicubic", [(7, 3), (48, 40), (3, 3 * MAX_ASPECT)])


@pytest.mark.arm64
def test_decoded_files_are_bit_identical_to_the_previous_decoder():
    ours, theirs = ImagePreprocessor(size=64, mean=(0.5,) * 3, std=(0.5,) * 3), PreviousTransform(64, "bicubic")
    rgb = Image.fromarray(gradient(120, 80, 5))
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    rgb.save(rotated, "JPEG", exif=exif.tobytes())
    files = [rotated.getvalue()]
    sixteen = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    for fmt, img in (("PNG", rgb), ("PNG", rgb.convert("LA")), ("GIF", rgb.convert("P")), ("TIFF", rgb.convert("CMYK")),
                     ("WEBP", rgb), ("BMP", rgb), ("PNG", sixteen)):
        buffer = io.BytesIO()
        img.save(buffer, fmt)
        files.append(buffer.getvalue())
    for data in files:
        assert np.array_equal(ours([load_image(data)]), theirs([previous_decode(data)]))


def test_extreme_aspect_ratio_is_cropped_before_resizing():
    assert getattr(preprocess, "MAX_ASPECT", None) == MAX_ASPECT
    prep = ImagePreprocessor(size=128)
    strip = Image.fromarray(np.arange(300_000, dtype=np.uint32).reshape(300_000, 1).astype(np.uint8) % 251)
    start = time.perf_counter()
    out = prep([strip])
    assert time.perf_counter() - start < 1.0  # was 14 s and ~7 GB at 128 px (size x 300,000*size before the crop)
    kept = strip.crop((0, (300_000 - MAX_ASPECT) // 2, 1, (300_000 - MAX_ASPECT) // 2 + MAX_ASPECT))
    assert np.array_equal(out, prep([kept]))  # rule 1: the centre MAX_ASPECT x shorter pixels
    wide = load_image(png(300_000, 1))
    assert prep([wide]).shape == (1, 3, 128, 128)


@pytest.mark.parametrize("name, data, accepted", [
    ("1x300000 grey PNG", lambda: png(1, 300_000), True),
    ("1x20000000 grey PNG", lambda: png(1, 20_000_000), None),  # Pillow's row pointers alone: 160 MB; refused
    ("12000x12000 1-bit PNG", lambda: png(12000, 12000, bit_depth=1), False),
    ("6000x6000 RGBA zlib bomb", lambda: png(6000, 6000, color_type=6), False),
    ("65000x65000 JPEG header", lambda: jpeg_with_size(65000, 65000), False),
    ("10000x10000 JPEG header", lambda: jpeg_with_size(10000, 10000), None),  # decoded at 1/2 scale: either is fine
])
def test_hostile_images_stay_under_300_mb_and_fail_clearly(tmp_path, name, data, accepted):
    path = tmp_path / "hostile.img"
    path.write_bytes(data())
    result = preprocess_in_child(path, size=128)
    refused = result["status"].startswith("ValueError: image")
    assert (result["status"] == "ok" or refused) if accepted is None else (
        result["status"] == "ok" if accepted else refused), result
    assert result["peak_rss_mb"] < 300, result


def test_large_images_beyond_the_decode_budget(monkeypatch):
    monkeypatch.setattr(image_module, "MAX_DECODE_BYTES", 1 << 20)  # 1 MiB: a 1000x800 RGB needs 3.2
    photo = Image.fromarray(gradient(1000, 800, 3))
    jpeg, png_bytes = io.BytesIO(), io.BytesIO()
    photo.save(jpeg, "JPEG", quality=95)
    photo.save(png_bytes, "PNG")
    drafted = load_image(jpeg.getvalue())
    assert drafted.size == (500, 400)  # decoded at 1/2 scale (libjpeg DCT scaling)
    prep = ImagePreprocessor(size=64)
    full = prep([Image.open(io.BytesIO(jpeg.getvalue()))])
    assert np.abs(prep([drafted]) - full).mean() < 0.05
    with pytest.raises(ValueError, match=r"images\[0\]: a 1000x800 RGB image needs about 3 MiB .* 1 MiB limit"):
        preprocess_images([png_bytes.getvalue()], prep)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate: exif_transpose needs a second copy, which the budget counts
    small, rotated = io.BytesIO(), io.BytesIO()
    photo.resize((600, 400)).save(small, "PNG", exif=exif.tobytes())
    photo.save(rotated, "JPEG", exif=exif.tobytes())
    with pytest.raises(ValueError, match="MiB limit"):
        load_image(small.getvalue())
    assert load_image(rotated.getvalue()).size == (200, 250)  # 1/4 scale (1/2 would not leave room to turn)


def test_eps_is_never_handed_to_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ValueError, match="not an image"):
        load_image(eps)


def test_hostile_decoder_failures_are_value_errors():
    good = io.BytesIO()
    Image.fromarray(gradient(40, 30)).save(good, "PNG")
    raw = good.getvalue()
    rng = np.random.default_rng(0)
    for trial in range(200):
        data = bytearray(raw)
        for offset in rng.integers(0, len(data), 4):
            data[offset] = int(rng.integers(0, 256))
        try:
            load_image(bytes(data), f"t{trial}")
        except ValueError as exc:
            assert str(exc).startswith(f"t{trial}")
