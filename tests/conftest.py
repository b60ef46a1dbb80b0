"""Fixtures for every test folder. Nothing here may import torch at module level: tests/runtime also runs on
the base install (``make test-runtime-base``), which has no torch."""

import os

import pytest

TEXTS = ["grinning face", "flag: France", "draw air into, and expel out of, the lungs", "a small round fruit",
         "red apple", "a dog running on the beach"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory):
    """Keep fitted artefacts written by tests out of the user's ~/.cache."""
    old = os.environ.get("EDGERET_CACHE_DIR")
    os.environ["EDGERET_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgeret-cache"))
    yield
    if old is None:
        os.environ.pop("EDGERET_CACHE_DIR", None)
    else:
        os.environ["EDGERET_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory):
    """A small real-weight student (MiniLM layers 0 and 5 at 128 wide, 3 Lite0 stages at 64 px), saved."""
    from edgeret.distill.models.image_tower import lite0_stages  # torch: only tests that use the student
    from edgeret.distill.student import ImageConfig, StudentConfig, TextConfig, build_student, save_student

    config = StudentConfig(
        dim=64, matryoshka_dims=[32, 64], teacher_id="fake-teacher",
        text=TextConfig(hidden=128, layers=2, intermediate=192, max_length=32, teacher_layers=[0, 5]),
        image=ImageConfig(image_size=64, stages=lite0_stages([1, 2, 1]), head_channels=96),
    )
    model = build_student(config, vocab_texts=TEXTS).eval()
    return save_student(model, tmp_path_factory.mktemp("student") / "ckpt")


@pytest.fixture(scope="session")
def tiny_student(tiny_student_dir):
    from edgeret.distill.student import load_student

    return load_student(tiny_student_dir)


@pytest.fixture(scope="session")
def real_texts():
    from edgeret.data.samples import real_texts

    return real_texts(30) + ["long " * 80]


@pytest.fixture(scope="session")
def caches(tmp_path_factory):
    """Tiny openmoji and wordnet teacher caches from distill's cheap fake teacher (dim 64 like the student)."""
    from edgeret.data.corpora import build_corpus
    from edgeret.distill.cache import build_cache
    from tests.distill.fake_teacher import FakeTeacher

    root = tmp_path_factory.mktemp("caches")
    teacher = FakeTeacher(dim=64)
    build_cache(teacher, build_corpus("openmoji", augment_copies=1, limit=12), root / "om", progress=False)
    build_cache(teacher, build_corpus("wordnet", limit=120), root / "wn", progress=False)
    return root
