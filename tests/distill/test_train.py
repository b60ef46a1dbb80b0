import json

import numpy as np
import pytest

from edgeret.cli.distill import run as main
from edgeret.distill.presets import load_preset
from edgeret.distill.student import load_student


def _args(caches, out, *extra):
    return ["--preset", "tiny", "--openmoji-cache", str(caches / "om"), "--wordnet-cache", str(caches / "wn"),
            "--out", str(out), "--no-progress", *extra]


def test_tiny_preset_trains_end_to_end_and_resumes_after_an_interruption(caches, tmp_path):
    straight = main(_args(caches, tmp_path / "a"))
    assert straight.finished and straight.epochs_done == 2
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "preprocessor.json", "train_report.json"} <= names
    student = load_student(tmp_path / "a")
    assert student.config.dim == 64 and student.config.matryoshka_dims == [32, 64]
    assert student.preprocessor.size == 64
    steps = [h["total"] for h in straight.history if "total" in h]
    assert len(steps) == straight.global_step >= 4
    assert np.mean(steps[-2:]) < np.mean(steps[:2])  # the loss goes down
    epochs = [h for h in straight.history if "val_score" in h]
    assert len(epochs) == 2 and straight.best_val_score == max(h["val_score"] for h in epochs)
    assert json.loads((tmp_path / "a" / "train_report.json").read_text())["global_step"] == straight.global_step

    first = main(_args(caches, tmp_path / "b", "--stop-after-steps", "3"))
    assert not first.finished and first.global_step == 3
    with pytest.raises(ValueError, match="another preset"):
        main(_args(caches, tmp_path / "b", "--set", "loss.affinity=0"))
    resumed = main(_args(caches, tmp_path / "b"))
    assert resumed.finished and resumed.global_step == straight.global_step
    texts = ["red apple", "flag: France"]
    assert np.allclose(load_student(tmp_path / "a").embed_texts(texts), load_student(tmp_path / "b").embed_texts(texts),
                       atol=1e-5)
    assert resumed.best_val_score == pytest.approx(straight.best_val_score)


def test_evaluate_sets_scores_student_teacher_and_cross(caches, tmp_path):
    from edgeret.data.wordnet import wordnet_eval
    from edgeret.distill.cache import load_cache
    from edgeret.distill.held_out import evaluate_sets

    main(_args(caches, tmp_path / "e", "--set", "train.epochs=1"))
    student = load_student(tmp_path / "e")
    cache = load_cache(caches / "wn")
    present = [s for s in wordnet_eval("train").queries if s.id in set(cache.ids)][:20]
    evalset = wordnet_eval("train", sample=None)
    evalset.queries = present
    keys = {q.id.split(":")[1] for q in present}
    evalset.corpus = [c for c in evalset.corpus if c.id.split(":")[1] in keys]
    memo: dict = {}
    rows = evaluate_sets(student, [evalset], [cache], memo=memo)
    rows += evaluate_sets(student, [evalset], [cache], dim=32, memo=memo)
    # the 32-d row reuses the full-dim pass: same scores as the student embedding at dim=32 itself
    from edgeret.data.scoring import score_evalset

    q32 = student.embed_texts([q.text for q in evalset.queries], dim=32)
    c32 = student.embed_texts([c.text for c in evalset.corpus], dim=32)
    direct, _ = score_evalset(q32, c32, evalset)
    assert rows[1]["student"]["recall@10"] == pytest.approx(direct["recall@10"])
    assert rows[1]["student"]["mrr@10"] == pytest.approx(direct["mrr@10"], abs=1e-6)
    t_q = cache.rows([q.id for q in evalset.queries])
    t_c = cache.rows([c.id for c in evalset.corpus])
    best = (t_q @ t_c.T).argmax(1)
    top1 = [evalset.corpus[j].id in evalset.relevant[q.id] for q, j in zip(evalset.queries, best, strict=True)]
    assert rows[0]["teacher"]["recall@1"] == pytest.approx(np.mean(top1))
    assert 0.0 <= rows[0]["student"]["teacher_overlap@10"] <= 1.0
    assert "student_query_teacher_corpus" in rows[0] and rows[1]["dim"] == 32


def test_presets_and_overrides():
    preset = load_preset("default", ["loss.affinity=0", "train.epochs=2", "student.text.layers=3"])
    assert preset.loss.affinity == 0 and preset.train.epochs == 2
    assert preset.student.text.layers == 3
    for name in ("tiny", "default", "large"):
        config = load_preset(name).student_config(dim=384, teacher_id="t")
        assert config.dim == 384 and config.matryoshka_dims[-1] == 384
    with pytest.raises(FileNotFoundError, match="known presets"):
        load_preset("nope")


def test_frozen_token_embeddings_stay_inherited_while_the_rest_trains(caches, tmp_path):
    main(_args(caches, tmp_path / "f", "--set", "train.epochs=1", "--set", "student.text.freeze_embeddings=true"))
    init = load_student(tmp_path / "f" / "train_state" / "init")
    trained = load_student(tmp_path / "f")
    assert trained.config.text.freeze_embeddings
    assert not trained.text.bert.embeddings.word_embeddings.weight.requires_grad
    words = "bert.embeddings.word_embeddings.weight"
    before, after = init.text.state_dict(), trained.text.state_dict()
    assert np.array_equal(before[words].numpy(), after[words].numpy())
    assert not np.allclose(before["bert.encoder.layer.0.attention.self.query.weight"].numpy(),
                           after["bert.encoder.layer.0.attention.self.query.weight"].numpy())


def test_recovery_reuses_the_training_runs_prepared_inputs(caches, tmp_path, monkeypatch):
    import edgeret.distill.inputs as inputs
    import edgeret.distill.sampler as sampler
    from edgeret.distill.cache import load_cache
    from edgeret.distill.pruning.prune import PruneConfig
    from edgeret.distill.pruning.recover import prune_and_recover

    main(_args(caches, tmp_path / "s", "--set", "train.epochs=1"))
    state = tmp_path / "s" / "train_state"
    written, prefixes = [], []
    publish, features = inputs._publish, sampler.prefix_features
    monkeypatch.setattr(inputs, "_publish", lambda tmp, final: written.append(final.name) or publish(tmp, final))
    monkeypatch.setattr(sampler, "prefix_features", lambda *a, **k: prefixes.append(a[3]) or features(*a, **k))
    opened = [load_cache(caches / "om"), load_cache(caches / "wn")]
    config = PruneConfig(ratio=0.5, image_ratio=0.0)  # the frozen prefix is the trained one's
    _, report = prune_and_recover(load_student(tmp_path / "s"), config, opened, max_steps=1, work_dir=tmp_path,
                                  reuse=[state])
    assert report["recovered"]["steps"] == 1
    assert not [n for n in written if n.startswith(("pixels-", "tokens-"))]  # read from the training run
    assert prefixes[-1].parent == state and prefixes[-1].name.startswith("prefix-")
    _, _ = prune_and_recover(load_student(tmp_path / "s"), config, opened, max_steps=1, work_dir=tmp_path)
    assert [n for n in written if n.startswith("pixels-")] and prefixes[-1].parent != state  # without: prepared


def test_a_run_saved_before_a_settings_field_existed_resumes(caches, tmp_path):
    first = main(_args(caches, tmp_path / "old", "--stop-after-steps", "1"))
    assert not first.finished
    run = tmp_path / "old" / "train_state" / "run.json"
    saved = json.loads(run.read_text())
    del saved["train"]["frozen_towers"]  # as an older version wrote it
    run.write_text(json.dumps(saved))
    assert main(_args(caches, tmp_path / "old")).finished
