import logging

import pytest

from edgeret.distill.models.image_tower import lite0_stages
from edgeret.distill.student import ImageConfig, StudentConfig, TextConfig, build_student, save_student

TEXTS = ["grinning face", "flag: France", "draw air into, and expel out of, the lungs", "a small round fruit",
         "red apple", "a dog running on the beach"]


@pytest.fixture(scope="session", autouse=True)
def _quiet_onnx_logs():
    """Silence onnxruntime's tool loggers for these tests only (never the root logger: other tests use caplog)."""
    names = ("onnxruntime", "onnx_model", "onnx_model_bert", "fusion_utils")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory):
    """A small real-weight student (MiniLM layers 0 and 5 at 128 wide, 3 Lite0 stages at 64 px), saved."""
    config = StudentConfig(
        dim=64, matryoshka_dims=[32, 64], teacher_id="fake-teacher",
        text=TextConfig(hidden=128, layers=2, intermediate=192, max_length=32, teacher_layers=[0, 5]),
        image=ImageConfig(image_size=64, stages=lite0_stages([1, 2, 1]), head_channels=96),
    )
    model = build_student(config, vocab_texts=TEXTS).eval()
    return save_student(model, tmp_path_factory.mktemp("student") / "ckpt")


@pytest.fixture(scope="session")
def tiny_student(tiny_student_dir):
    from edgeret.distill.pruning.structure import load_checkpoint

    return load_checkpoint(tiny_student_dir)


@pytest.fixture(scope="session")
def real_texts():
    from edgeret.data.samples import real_texts

    return real_texts(30) + ["long " * 80]


@pytest.fixture(scope="session")
def real_images():
    from edgeret.data.samples import real_images

    return real_images(12, size=96)


@pytest.fixture(scope="session")
def fp32_onnx(tiny_student, tmp_path_factory):
    from edgeret.compress.export import export_image, export_text

    root = tmp_path_factory.mktemp("onnx")
    return {"text": export_text(tiny_student, root / "text.onnx"),
            "image": export_image(tiny_student, root / "image.onnx"), "root": root}
