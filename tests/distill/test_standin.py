import json

import numpy as np
import pytest
import torch

from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.scoring import evaluate_encoder
from edgeret.data.wordnet import wordnet_eval
from edgeret.distill.teachers.standin import StandinTeacher, minilm_path


def test_text_tower_matches_sentence_transformers(standin):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["a grinning face", "flag: France", "draw air into, and expel out of, the lungs", ""]
    reference = sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    ours = standin.embed_texts(texts, batch_size=3)
    assert ours.dtype == np.float32 and ours.shape == (4, 384)
    assert np.abs(ours - reference).max() < 1e-5


def test_image_embeddings_are_normalised_and_batch_independent(standin):
    images = [render_emoji(e.text, 224) for e in emojis("test")[:5]]
    standin._feature_memo.clear()
    together = standin.embed_images(images, batch_size=5)
    standin._feature_memo.clear()
    alone = np.concatenate([standin.embed_images([im]) for im in images])
    assert together.shape == (5, 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.abs(together - alone).max() < 1e-4


def test_image_features_are_remembered_by_content(standin, monkeypatch):
    import edgeret.distill.teachers.standin as module

    images = [render_emoji(e.text, 224) for e in emojis("val")[:3]]
    images.append(images[0].copy())  # same pixels, another object
    assert not standin.remember_features  # off by default: timing a teacher must not read a memo
    monkeypatch.setattr(standin, "remember_features", True)
    standin._feature_memo.clear()
    fresh = standin.image_features(images, batch_size=2)
    assert len(standin._feature_memo) == 3 and np.array_equal(fresh[0], fresh[3])
    calls = []
    model = standin.image_model
    monkeypatch.setattr(standin, "image_model", lambda pixels: calls.append(len(pixels)) or model(pixels))
    assert np.array_equal(standin.image_features(images), fresh) and calls == []
    monkeypatch.setattr(module, "FEATURE_MEMO_SIZE", 2)
    other = [render_emoji(e.text, 224) for e in emojis("val")[3:6]]
    standin.image_features(other + images, batch_size=4)  # more new images than the memo holds
    assert len(standin._feature_memo) == 2 and sum(calls) == 3


def test_fitted_head_is_saved_with_its_report_and_reloads(standin, tmp_path):
    report = standin.head_info
    assert report["train_emoji"] == 40 and report["method"] in report["val"]
    assert set(report["val"][report["method"]]) == {"t2i_recall@10", "i2t_recall@10", "mean"}
    reloaded = StandinTeacher(head_path=standin.head_path, fit_if_missing=False)
    image = [render_emoji(emojis("val")[0].text)]
    assert np.array_equal(reloaded.embed_images(image), standin.embed_images(image))
    assert reloaded.describe() == standin.describe()
    assert json.dumps(standin.describe())  # cache metadata must be JSON


def test_missing_head_without_fitting_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no fitted image head"):
        StandinTeacher(head_path=tmp_path / "absent.safetensors", fit_if_missing=False)


def test_text_retrieval_quality_on_a_wordnet_sample(standin):
    metrics, ranked = evaluate_encoder(standin, wordnet_eval("test", sample=200))
    assert ranked.shape == (200, 10)
    assert metrics["recall@10"] > 0.5  # MiniLM finds most lemma strings from their definition


def test_onnxruntime_image_path_gives_the_torch_features(standin):
    images = [render_emoji(e.text, 224) for e in emojis("val")[:6]]
    fast = StandinTeacher(head_path=standin.head_path, fit_if_missing=False, image_runtime="onnxruntime")
    assert fast._image_session is not None and standin._image_session is None
    standin._feature_memo.clear()
    ours, theirs = standin.image_features(images, batch_size=4), fast.image_features(images, batch_size=4)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(ours).max()
    assert np.abs(standin.embed_images(images) - fast.embed_images(images)).max() < 1e-4
    assert fast.describe() == standin.describe()  # the same teacher: a cache from either serves both
    assert fast.image_model._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="image_runtime"):
        StandinTeacher(head_path=standin.head_path, fit_if_missing=False, image_runtime="tensorflow")
