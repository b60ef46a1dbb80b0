import numpy as np
import pytest
from PIL import Image

from edgeret.runtime.preprocess import ImagePreprocessor


@pytest.fixture
def prep():
    return ImagePreprocessor(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@pytest.mark.arm64
def test_output_shape_and_range(prep):
    out = prep([Image.new("RGB", (64, 48), (255, 0, 0)), Image.new("RGB", (20, 90), (0, 0, 0))])
    assert out.shape == (2, 3, 32, 32) and out.dtype == np.float32
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[0, 1], -1.0)
    assert np.allclose(out[1], -1.0)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (40, 40), 255),
        Image.new("CMYK", (40, 40), (0, 0, 0, 0)),
        Image.new("RGBA", (40, 40), (0, 0, 0, 0)),  # fully transparent -> white background
        Image.new("LA", (40, 40), (0, 0)),
        Image.new("I;16", (40, 40), 65535),
        Image.new("P", (40, 40), 0).convert("P"),
    ],
    ids=["L", "CMYK", "RGBA", "LA", "I16", "P"],
)
@pytest.mark.arm64
def test_modes_become_the_expected_rgb(prep, image):
    if image.mode == "P":
        image.putpalette([255, 255, 255] * 256)
    rgb = prep.to_rgb(image)
    assert rgb.mode == "RGB"
    assert np.asarray(rgb).min() >= 254  # white in every case above


@pytest.mark.arm64
def test_alpha_composited_over_background():
    prep = ImagePreprocessor(size=8, background=(0, 0, 0))
    half = Image.new("RGBA", (8, 8), (255, 255, 255, 128))
    assert abs(int(np.asarray(prep.to_rgb(half))[0, 0, 0]) - 128) <= 1


def test_zero_size_image_rejected(prep):
    with pytest.raises(ValueError, match="zero"):
        prep.to_rgb(Image.new("RGB", (0, 5)))


def test_json_round_trip(tmp_path, prep):
    prep.save(tmp_path / "preprocessor.json")
    assert ImagePreprocessor.load(tmp_path / "preprocessor.json") == prep
