"""`edgeret teacher-cache` end to end, with the real stand-in and a tiny GME."""

import json

import numpy as np
import pytest

from edgeret.cli.main import main as edgeret
from edgeret.cli.teacher_cache import run as teacher_cache
from edgeret.data.corpora import build_corpus
from edgeret.data.wordnet import synsets
from edgeret.distill.cache import CacheMismatchError, load_cache
from tests.distill.tiny_qwen2vl import build_tiny_qwen2vl


def test_standin_cache_via_cli_is_reused_and_guarded(standin, tmp_path):
    out = tmp_path / "cache"
    args = ["--teacher", "standin", "--head-path", str(standin.head_path), "--data", "wordnet"]
    assert edgeret(["teacher-cache", *args, "--limit", "6", "--out", str(out), "--no-progress"]) == 0
    cache = load_cache(out)
    chosen = sorted([s for split in ("train", "val", "test") for s in synsets(split)[:6]], key=lambda s: s.key)
    first = chosen[0]
    assert cache.ids[0] == f"gloss:{first.key}" and len(cache) == 36 and cache.dim == 384
    assert cache.ids == build_corpus("wordnet", limit=6).ids
    expected = standin.embed_texts([first.lemmas])[0]
    assert np.abs(cache.rows([f"lemma:{first.key}"])[0] - expected).max() < 2e-3  # float16 storage
    meta = json.loads((out / "cache_meta.json").read_text())
    assert meta["teacher"]["id"] == standin.id and meta["corpus"]["name"] == "wordnet"
    # same request again: nothing to do; another corpus in the same folder: refused
    assert len(teacher_cache([*args, "--limit", "6", "--out", str(out), "--no-progress"])) == 36
    with pytest.raises(CacheMismatchError, match="corpus"):
        teacher_cache([*args, "--limit", "7", "--out", str(out), "--no-progress"])


def test_gme_cache_via_cli_on_a_tiny_qwen2vl(tmp_path):
    model = build_tiny_qwen2vl(tmp_path / "tiny-gme")
    out = tmp_path / "gme-cache"
    cache = teacher_cache(
        ["--teacher", "gme", "--model-path", str(model), "--data", "wordnet", "--limit", "4", "--out", str(out)]
    )
    assert len(cache) == 24 and cache.meta["teacher"]["id"].startswith("gme:")
    norms = np.linalg.norm(cache.rows(cache.ids), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)


def test_gme_needs_a_model_path():
    with pytest.raises(ValueError, match="--model-path"):
        teacher_cache(["--teacher", "gme", "--data", "wordnet", "--out", "/tmp/never-written"])


def test_wordnet_corpus_samples_train_but_keeps_val_and_test():
    full, sampled = build_corpus("wordnet"), build_corpus("wordnet", max_train=100)
    kinds = {i.id.split(":")[0] for i in sampled.items}
    assert kinds == {"gloss", "lemma"}
    n_eval = len(synsets("val")) + len(synsets("test"))
    assert len(sampled) == 2 * (100 + n_eval) and len(full) == 60000
    assert build_corpus("wordnet", max_train=100).ids == sampled.ids  # seeded
