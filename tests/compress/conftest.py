import logging

import pytest


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
def real_images():
    from edgeret.data.samples import real_images

    return real_images(12, size=96)


@pytest.fixture(scope="session")
def fp32_onnx(tiny_student, tmp_path_factory):
    from edgeret.compress.export import export_image, export_text

    root = tmp_path_factory.mktemp("onnx")
    return {"text": export_text(tiny_student, root / "text.onnx"),
            "image": export_image(tiny_student, root / "image.onnx"), "root": root}
