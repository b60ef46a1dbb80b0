import numpy as np
import pytest
from PIL import Image

from edgeret.distill.teachers.base import Teacher, iter_batches, to_rgb
from edgeret.runtime.vectors import l2_normalise as l2_normalize


class LengthTeacher(Teacher):
    """Embeds a text as (len, 1) and records the batches it was given."""

    id = "length"
    dim = 2

    def __init__(self):
        self.batches = []

    def _encode_text_batch(self, texts, instruction):
        self.batches.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts])

    def _encode_image_batch(self, images):
        return np.array([[im.width, im.height] for im in images], dtype=np.float32)


def test_texts_are_batched_by_length_and_returned_in_order():
    teacher = LengthTeacher()
    texts = ["a" * n for n in (9, 1, 5, 3, 7)]
    out = teacher.embed_texts(texts, batch_size=2)
    assert teacher.batches == [["a", "aaa"], ["aaaaa", "aaaaaaa"], ["a" * 9]]
    assert np.allclose(out, l2_normalize(np.array([[len(t), 1.0] for t in texts])))
    assert out.dtype == np.float32


def test_empty_input_and_bad_types():
    teacher = LengthTeacher()
    assert teacher.embed_texts([]).shape == (0, 2)
    with pytest.raises(TypeError, match="text 1"):
        teacher.embed_texts(["ok", 3])
    with pytest.raises(ValueError):
        list(iter_batches([1, 2], 0))


def test_images_from_paths_arrays_and_modes(tmp_path):
    teacher = LengthTeacher()
    Image.new("RGBA", (4, 3), (0, 0, 0, 0)).save(tmp_path / "a.png")
    out = teacher.embed_images([tmp_path / "a.png", np.zeros((5, 6, 3), np.uint8), Image.new("CMYK", (2, 2))])
    assert np.allclose(out, l2_normalize(np.array([[4, 3], [6, 5], [2, 2]], dtype=np.float32)))
    assert np.asarray(to_rgb(Image.new("LA", (1, 1), (0, 0)))).tolist() == [[[255, 255, 255]]]
    with pytest.raises(TypeError):
        to_rgb(np.zeros((2, 2, 3), np.float32))
