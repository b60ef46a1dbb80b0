"""ClipTeacher on tiny random CLIP, SigLIP and SigLIP 2 folders: one space, normalised, deterministic, cached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from edgeret.data.items import Corpus, CorpusItem
from edgeret.distill.cache import build_cache
from edgeret.distill.teachers import TEACHERS, load_teacher
from edgeret.distill.teachers.clip import FAMILIES, ClipTeacher, detect_family
from tests.distill.tiny_clip import BUILDERS, CLIP_DIM, SIGLIP_DIM

TOL = 1e-5
QUERY = "Find an image that matches the given text."
SHORT = "a photo of a cat"
LONG = "the quick brown fox jumps over the lazy dog while two cats sleep in the sun all day long"
DIMS = {"clip": CLIP_DIM, "siglip": SIGLIP_DIM, "siglip2": SIGLIP_DIM}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-clip")
    return {name: build(root / f"tiny-{name}") for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def teachers(folders: dict[str, Path]) -> dict[str, ClipTeacher]:
    return {name: ClipTeacher(path, device="cpu") for name, path in folders.items()}


@pytest.fixture(params=list(BUILDERS))
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(32, 32), (40, 64), (64, 20)]  # (h, w): square, wide, tall
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def assert_unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_identity_and_describe(teachers: dict[str, ClipTeacher], family: str) -> None:
    teacher = teachers[family]
    assert teacher.id == f"clip:tiny-{family}" and teacher.dim == DIMS[family]
    assert teacher.default_instruction is None and teacher.modalities == ("text", "image")
    info = teacher.describe()
    assert (info["id"], info["dim"], info["model_type"]) == (teacher.id, teacher.dim, family)
    assert info["model_class"] == FAMILIES[family].model_class
    assert info["normalised"] is True and info["instructions"] == "ignored" and info["dtype"] == "float32"
    assert len(info["revision"]) == 16 and info["commit"] is None
    assert info["text"]["padding"] == ("longest" if family == "clip" else "max_length")
    assert info["text"]["max_length"] == teacher.max_length
    assert info["image_processor"]["image_processor_type"].endswith("ImageProcessor")  # the slow one
    assert info["image_size"] == (None if family == "siglip2" else 32)
    json.dumps(info)  # goes into cache metadata


def test_text_and_image_share_one_normalised_space(
    teachers: dict[str, ClipTeacher], family: str, images: list[Image.Image]
) -> None:
    teacher = teachers[family]
    text = teacher.embed_texts([SHORT, LONG, ""])
    image = teacher.embed_images(images)
    assert_unit_rows(text, 3, teacher.dim)
    assert_unit_rows(image, 3, teacher.dim)
    assert (text @ image.T).shape == (3, 3)
    assert np.abs(text[0] - text[1]).max() > 1e-3 and np.abs(image[0] - image[1]).max() > 1e-3


def test_deterministic_and_batch_invariant(
    teachers: dict[str, ClipTeacher], folders: dict[str, Path], family: str, images: list[Image.Image]
) -> None:
    teacher = teachers[family]
    text_alone = teacher.embed_texts([SHORT])[0]
    image_alone = teacher.embed_images(images[:1])[0]
    texts = teacher.embed_texts([LONG, "hi", SHORT], batch_size=3)
    np.testing.assert_allclose(texts[2], text_alone, atol=TOL)  # padding does not leak into the pooled token
    np.testing.assert_allclose(teacher.embed_images(images[::-1], batch_size=3)[2], image_alone, atol=TOL)
    again = ClipTeacher(folders[family], device="cpu")
    np.testing.assert_array_equal(again.embed_texts([LONG, "hi", SHORT], batch_size=3), texts)
    np.testing.assert_array_equal(again.embed_images(images[:1])[0], image_alone)


def test_query_instruction_is_ignored(teachers: dict[str, ClipTeacher], family: str) -> None:
    teacher = teachers[family]
    doc = teacher.embed_texts([SHORT, LONG])
    np.testing.assert_array_equal(teacher.embed_texts([SHORT, LONG], instruction=QUERY), doc)


def test_texts_truncate_at_the_model_positions(teachers: dict[str, ClipTeacher], family: str) -> None:
    teacher = teachers[family]
    tokens = teacher.tokenizer(LONG)["input_ids"]
    assert len(tokens) > teacher.max_length  # LONG really is cut
    longer = teacher.embed_texts([LONG + " and then some more words", LONG])
    np.testing.assert_allclose(longer[0], longer[1], atol=TOL)


def test_siglip_pads_to_max_length_without_mask(teachers: dict[str, ClipTeacher]) -> None:
    seen: list[dict] = []
    teacher = teachers["siglip"]
    original = teacher.model.get_text_features
    teacher.model.get_text_features = lambda **kw: seen.append(kw) or original(**kw)
    try:
        teacher.embed_texts(["hi"])
    finally:
        del teacher.model.get_text_features
    assert set(seen[0]) == {"input_ids"} and seen[0]["input_ids"].shape == (1, teacher.max_length)


def test_siglip_families_lowercase_and_clip_does_not(teachers: dict[str, ClipTeacher]) -> None:
    upper = "A PHOTO OF A CAT"
    for name in ("siglip", "siglip2"):  # trained on lowercased text; the tiny tokenizers are case-sensitive
        siglip = teachers[name]
        np.testing.assert_array_equal(siglip.embed_texts([upper]), siglip.embed_texts([upper.lower()]))
    clip = teachers["clip"]
    assert np.abs(clip.embed_texts([upper]) - clip.embed_texts([upper.lower()])).max() > 1e-3


def test_cache_meta_records_the_teacher(
    teachers: dict[str, ClipTeacher], family: str, images: list[Image.Image], tmp_path: Path
) -> None:
    teacher = teachers[family]
    items = [CorpusItem(id=f"img:{i}", kind="image", image_fn=lambda im=im: im) for i, im in enumerate(images)]
    items += [CorpusItem(id="q:0", kind="text", text=SHORT, instruction=QUERY),
              CorpusItem(id="d:0", kind="text", text=LONG)]
    corpus = Corpus("tiny", items, meta={"n": len(items)})
    cache = build_cache(teacher, corpus, tmp_path / "cache", shard_size=2, batch_size=2, progress=False)
    meta = json.loads((tmp_path / "cache" / "cache_meta.json").read_text())
    assert meta["teacher"] == json.loads(json.dumps(teacher.describe()))
    assert meta["teacher"]["revision"] == teacher.describe()["revision"]
    assert (meta["dim"], meta["normalised"]) == (teacher.dim, True)
    assert meta["instructions"] == {"image": [""], "text": ["", QUERY]}
    expected = np.concatenate([teacher.embed_images(images), teacher.embed_texts([SHORT, LONG])])
    np.testing.assert_allclose(cache.rows(corpus.ids), expected, atol=2e-3)  # float16 on disk


def test_revision_follows_config_and_processor(folders: dict[str, Path], tmp_path: Path) -> None:
    copy = shutil.copytree(folders["clip"], tmp_path / "tiny-clip")
    first = ClipTeacher(copy, device="cpu").describe()
    processor = json.loads((copy / "preprocessor_config.json").read_text())
    (copy / "preprocessor_config.json").write_text(json.dumps({**processor, "image_mean": [0.5, 0.5, 0.5]}))
    second = ClipTeacher(copy, device="cpu").describe()
    assert second["revision"] != first["revision"] and second["image_processor"]["image_mean"] == [0.5] * 3


def test_hub_snapshot_names_the_repo(folders: dict[str, Path], tmp_path: Path) -> None:
    snap = tmp_path / "models--google--siglip-tiny" / "snapshots" / ("b" * 40)
    shutil.copytree(folders["siglip"], snap)
    teacher = ClipTeacher(snap, device="cpu")
    assert teacher.id == "clip:google/siglip-tiny" and teacher.describe()["commit"] == "b" * 40


def test_family_detection() -> None:
    assert detect_family(SimpleNamespace(model_type="siglip", architectures=None)) == "siglip"
    assert detect_family(SimpleNamespace(model_type="my_clip", architectures=["CLIPModel"])) == "clip"
    with pytest.raises(ValueError, match="not a CLIP-like family"):
        detect_family(SimpleNamespace(model_type="bert", architectures=["BertModel"]))


def test_unknown_family_and_missing_folder_are_clear(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="not a CLIP-like family"):
        ClipTeacher(tmp_path, device="cpu")
    with pytest.raises(FileNotFoundError, match="config.json"):
        ClipTeacher(tmp_path / "nowhere", device="cpu")


def test_registered_and_loaded_by_name(folders: dict[str, Path]) -> None:
    assert "clip" in TEACHERS
    teacher = load_teacher("clip", model_path=str(folders["clip"]), device="cpu")
    assert isinstance(teacher, ClipTeacher) and teacher.id == "clip:tiny-clip"
    for options in ({}, {"model_path": None, "device": "cpu"}, {"model_path": ""}):
        with pytest.raises(ValueError, match="needs --model-path"):
            load_teacher("clip", **options)
    with pytest.raises(ValueError, match="does not take"):
        load_teacher("clip", model_path=str(folders["clip"]), head_path="x")
