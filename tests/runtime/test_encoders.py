"""Text and image encoding: shapes, normalisation, every kind of input, and every bad input."""

import io
import logging

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from edgeret.runtime.image import load_image, preprocess_images
from edgeret.runtime.preprocess import ImagePreprocessor
from edgeret.runtime.retriever import Retriever
from edgeret.runtime.sessions import create_session

from .conftest import FIXTURE_BUNDLE

TEXTS = ["red apple", "green apple", "a big dog", "blue car", "the sun and the moon"]


@pytest.fixture(scope="module")
def ret():
    return Retriever.open(FIXTURE_BUNDLE, threads=1)


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _gradient(size=(48, 40)) -> Image.Image:
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([x * 5 % 256, y * 6 % 256, (x + y) * 3 % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


@pytest.mark.arm64
def test_text_embeddings_are_normalised_float32(ret):
    emb = ret.embed_texts(TEXTS)
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])


@pytest.mark.arm64
def test_text_batching_and_padding_do_not_change_embeddings(ret):
    together = ret.embed_texts(TEXTS, batch_size=64)
    alone = np.concatenate([ret.embed_texts([t]) for t in TEXTS])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(ret.embed_texts(TEXTS, batch_size=2, progress=True), together, atol=1e-5)


@pytest.mark.parametrize("bad, error, match", [
    (["fine", ""], ValueError, r"texts\[1\] is empty"),
    (["  \n\t "], ValueError, r"texts\[0\] is empty or whitespace"),
    (["fine", 3], TypeError, r"texts\[1\] is a int"),
    ("a single string", TypeError, "list of strings"),
])
def test_bad_texts_are_refused(ret, bad, error, match):
    with pytest.raises(error, match=match):
        ret.embed_texts(bad)


@pytest.mark.arm64
def test_long_text_is_truncated_with_a_warning(ret, caplog):
    long = "apple " * 500
    with caplog.at_level(logging.WARNING, logger="edgeret.runtime.text"):
        emb = ret.embed_texts(["short", long])
    assert "truncated" in caplog.text and "max_length=16" in caplog.text
    assert np.allclose(emb[1], ret.embed_texts(["apple " * 14]), atol=1e-5)  # 14 words + [CLS] [SEP] = 16


@pytest.mark.arm64
def test_every_image_source_gives_the_same_embedding(ret, tmp_path):
    image = _gradient()
    path = tmp_path / "g.png"
    image.save(path)
    sources = [image, path, str(path), _png(image), bytearray(_png(image)), np.asarray(image),
               np.asarray(image).astype(np.float32) / 255.0]
    emb = ret.embed_images(sources)
    assert emb.shape == (len(sources), 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb, emb[0], atol=1e-5)


@pytest.mark.arm64
def test_runtime_pixels_are_exactly_the_shared_transform(ret):
    """The encoder sees exactly what ``ImagePreprocessor`` (the class distill trains with) produces."""
    prep = ImagePreprocessor.load(FIXTURE_BUNDLE / "preprocessor.json")
    images = [_gradient((48, 40)), _gradient((20, 90)).convert("L"), _gradient((33, 33)).convert("RGBA")]
    assert np.array_equal(preprocess_images(images, ret.image_encoder.preprocessor), prep(images))
    session = ort.InferenceSession(str(FIXTURE_BUNDLE / "image_encoder.onnx"), providers=["CPUExecutionProvider"])
    (direct,) = session.run(["embeddings"], {"pixel_values": prep(images)})
    assert np.allclose(ret.embed_images(images), direct, atol=1e-5)


def _white() -> Image.Image:
    return Image.new("RGB", (40, 40), (255, 255, 255))


@pytest.mark.parametrize("image", [
    Image.new("L", (40, 40), 255),
    Image.new("CMYK", (40, 40), (0, 0, 0, 0)),
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)),
    Image.new("LA", (40, 40), (0, 0)),
    Image.new("I;16", (40, 40), 65535),
    np.full((40, 40), 65535, dtype=np.uint16),
    np.ones((40, 40, 1), dtype=bool),
], ids=["L", "CMYK", "RGBA-transparent", "LA-transparent", "I16", "uint16-array", "bool-array"])
@pytest.mark.arm64
def test_odd_image_modes_are_converted(ret, image):
    assert np.allclose(ret.embed_images([image]), ret.embed_images([_white()]), atol=1e-5)


@pytest.mark.arm64
def test_palette_and_16bit_files_round_trip(ret, tmp_path):
    palette = _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    sixteen = Image.fromarray((np.arange(40 * 40).reshape(40, 40) * 40).astype(np.uint16))
    cmyk = _gradient().convert("CMYK")
    paths = []
    for name, img, fmt in (("p.png", palette, "PNG"), ("s.png", sixteen, "PNG"), ("c.jpg", cmyk, "JPEG")):
        img.save(tmp_path / name, format=fmt)
        paths.append(tmp_path / name)
    emb = ret.embed_images(paths)
    assert np.isfinite(emb).all() and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb[0], ret.embed_images([palette.convert("RGB")])[0], atol=1e-5)


@pytest.mark.arm64
def test_bad_images_are_refused_naming_the_item(ret, tmp_path):
    good = _gradient()
    truncated = tmp_path / "cut.png"
    png, jpeg = _png(good), _png(good, "JPEG")
    truncated.write_bytes(png[: len(png) // 2])
    cut_jpeg = jpeg[: len(jpeg) // 2]
    cases = [
        (b"this is not an image at all", ValueError, r"images\[1\].*not an image"),
        (truncated, ValueError, r"images\[1\].*truncated or corrupt"),
        (cut_jpeg, ValueError, r"images\[1\].*truncated or corrupt"),
        (b"", ValueError, "empty bytes"),
        (Image.new("RGB", (0, 7)), ValueError, "zero-size"),
        (np.zeros((0, 5, 3), dtype=np.uint8), ValueError, "zero-size"),
        (np.zeros((4, 4, 2), dtype=np.uint8), ValueError, "HxWxC"),
        (np.full((4, 4), np.nan, dtype=np.float32), ValueError, "NaN"),
        (tmp_path / "absent.png", FileNotFoundError, "no such image file"),
        (42, TypeError, "expected a path"),
    ]
    for bad, error, match in cases:
        with pytest.raises(error, match=match):
            ret.embed_images([good, bad])


def test_a_single_image_must_be_wrapped_in_a_list(ret):
    with pytest.raises(TypeError, match="list of images"):
        ret.embed_images(_gradient())


@pytest.mark.arm64
def test_matryoshka_dim_truncates_and_renormalises(bundle):
    full = Retriever.open(bundle, threads=1)
    small = Retriever.open(bundle, threads=1, dim=16)
    assert small.dim == 16
    emb_full, emb_small = full.embed_texts(TEXTS), small.embed_texts(TEXTS)
    expected = emb_full[:, :16] / np.linalg.norm(emb_full[:, :16], axis=1, keepdims=True)
    assert emb_small.shape == (5, 16) and np.allclose(emb_small, expected, atol=1e-5)
    with pytest.raises(Exception, match="not one of the bundle's dims"):
        Retriever.open(bundle, dim=12)


@pytest.mark.arm64
def test_sessions_accept_ort_format_models(tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "text.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(FIXTURE_BUNDLE / "text_encoder.onnx"), options, providers=["CPUExecutionProvider"])
    feed = {"input_ids": np.array([[2, 40, 3]], dtype=np.int64), "attention_mask": np.ones((1, 3), dtype=np.int64)}
    onnx_out = create_session(FIXTURE_BUNDLE / "text_encoder.onnx", threads=1).run(None, feed)[0]
    ort_out = create_session(tmp_path / "text.ort", threads=1).run(None, feed)[0]
    assert np.allclose(onnx_out, ort_out, atol=1e-5)


def test_session_options_are_validated(tmp_path):
    with pytest.raises(ValueError, match="optimization"):
        create_session(FIXTURE_BUNDLE / "text_encoder.onnx", optimization="max")
    with pytest.raises(ValueError, match="threads"):
        create_session(FIXTURE_BUNDLE / "text_encoder.onnx", threads=0)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        create_session(tmp_path / "junk.onnx")


def test_a_session_can_leave_graph_transformers_out(tmp_path):
    feed = {"input_ids": np.array([[2, 40, 3]], dtype=np.int64), "attention_mask": np.ones((1, 3), dtype=np.int64)}
    model = FIXTURE_BUNDLE / "text_encoder.onnx"
    plain = create_session(model, threads=1).run(None, feed)[0]
    portable = create_session(model, threads=1, disabled_optimizers=["NchwcTransformer"]).run(None, feed)[0]
    assert np.allclose(plain, portable, atol=1e-5)


def test_load_image_returns_decoded_images(tmp_path):
    (tmp_path / "a.gif").write_bytes(_png(_gradient(), "GIF"))
    image = load_image(tmp_path / "a.gif")
    assert image.size == (48, 40) and np.asarray(image).size > 0
