import dataclasses

import numpy as np
import pytest
import torch

from edgeret.compress.export import export_text, text_parity
from edgeret.distill.flops import count_params
from edgeret.distill.pruning.importance import magnitude_scores, taylor_scores
from edgeret.distill.pruning.prune import PruneConfig, n_keep, prune_student
from edgeret.distill.pruning.structure import keep_heads, structure_of
from edgeret.distill.student import load_student, save_student

TEXTS = ["red apple", "flag: France", "a dog running on the beach", "draw air into, and expel out of, the lungs"]


def _embed(model, pixels):
    with torch.no_grad():
        return model.embed_texts(TEXTS), model.encode_image(pixels).numpy()


def test_pruning_shrinks_shapes_and_params(tiny_student):
    pruned = prune_student(tiny_student, PruneConfig(ratio=0.5))
    before, after = structure_of(tiny_student), structure_of(pruned)
    assert before.text_heads == [4, 4] and after.text_heads == [2, 2]
    assert after.text_intermediate == [96, 96]
    assert pruned.text.bert.encoder.layer[0].intermediate.dense.weight.shape == (96, 128)
    assert all(a < b for a, b in zip(after.image_hidden, before.image_hidden, strict=True) if b)
    assert pruned.config.image.head_channels == 48 == pruned.image.proj.in_features
    assert count_params(pruned.text) < count_params(tiny_student.text)
    assert count_params(pruned.image) < 0.8 * count_params(tiny_student.image)
    assert structure_of(tiny_student) == before  # the input model is untouched
    text, image = _embed(pruned, torch.randn(3, 3, 64, 64))
    assert text.shape == (4, 64) and image.shape == (3, 64) and np.isfinite(text).all()


def test_small_ratio_stays_close(tiny_student):
    pixels = torch.from_numpy(tiny_student.preprocessor([__import__("PIL").Image.new("RGB", (64, 64), "red")]))
    pruned = prune_student(tiny_student, PruneConfig(ratio=0.1, multiple=1))
    (t0, i0), (t1, i1) = _embed(tiny_student, pixels), _embed(pruned, pixels)
    assert structure_of(pruned) != structure_of(tiny_student)
    assert (t0 * t1).sum(1).mean() > 0.9
    assert (i0 * i1).sum(1).mean() > 0.8


def test_zero_ratio_is_identity(tiny_student):
    pruned = prune_student(tiny_student, PruneConfig(ratio=0.0, head_channel_ratio=0.0))
    assert np.allclose(_embed(pruned, torch.zeros(1, 3, 64, 64))[0], _embed(tiny_student, torch.zeros(1, 3, 64, 64))[0],
                       atol=1e-6)


def test_image_ratio_zero_prunes_the_text_tower_only(tiny_student):
    pruned = prune_student(tiny_student, PruneConfig(ratio=0.5, image_ratio=0.0))
    before, after = structure_of(tiny_student), structure_of(pruned)
    assert after.text_heads == [2, 2] and after.image_hidden == before.image_hidden
    assert pruned.config.image.head_channels == tiny_student.config.image.head_channels
    pixels = torch.randn(2, 3, 64, 64)
    np.testing.assert_allclose(_embed(pruned, pixels)[1], _embed(tiny_student, pixels)[1], atol=1e-6)


def test_non_uniform_structure_round_trips_and_exports(tiny_student, tmp_path, real_texts):
    pruned = prune_student(tiny_student, PruneConfig(ratio=0.25, drop_layers=[]))
    keep_heads(pruned.text.bert.encoder.layer[1].attention, [0, 2])  # layer 1: 3 -> 2 heads
    assert structure_of(pruned).text_heads == [3, 2]
    save_student(pruned, tmp_path / "ckpt")
    loaded = load_student(tmp_path / "ckpt")
    assert structure_of(loaded) == structure_of(pruned)
    assert np.allclose(loaded.embed_texts(TEXTS), pruned.embed_texts(TEXTS), atol=1e-6)
    assert text_parity(loaded, export_text(loaded, tmp_path / "t.onnx"), real_texts[:12]).ok()


def test_drop_layers_and_bad_configs(tiny_student):
    pruned = prune_student(tiny_student, PruneConfig(ratio=0.0, drop_layers=[1]))
    assert len(pruned.text.bert.encoder.layer) == 1 and pruned.config.text.layers == 1
    assert pruned.config.text.teacher_layers == [0]
    with pytest.raises(ValueError, match="drop_layers"):
        prune_student(tiny_student, PruneConfig(drop_layers=[0, 1]))
    with pytest.raises(ValueError, match="ratio"):
        PruneConfig(ratio=1.0)
    assert n_keep(12, 0.25) == 9 and n_keep(192, 0.3, multiple=8) == 136 and n_keep(4, 0.99) == 1


def test_taylor_scores_rank_units(tiny_student):
    model = tiny_student
    ids, mask = model.tokenize(TEXTS)
    noise = torch.randn(len(TEXTS), model.config.dim, generator=torch.Generator().manual_seed(0))
    target = torch.nn.functional.normalize(noise, dim=-1)
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    def loss():
        return (1 - (model.encode_text(ids, mask) * target).sum(1)).mean() + model.encode_image(pixels).pow(2).sum() * 0

    scores = taylor_scores(model, [loss, loss])
    magnitude = magnitude_scores(model)
    assert [s.shape for s in scores.heads] == [s.shape for s in magnitude.heads] == [(4,), (4,)]
    assert all((s >= 0).all() and s.sum() > 0 for s in scores.heads + scores.ffn)
    assert all(p.grad is None for p in model.parameters())
    pruned = prune_student(model, PruneConfig(ratio=0.5, score="taylor"), scores)
    assert structure_of(pruned).text_heads == [2, 2]


def test_trained_loss_reads_the_train_report_and_tolerates_another_versions(tiny_student, tmp_path):
    import json

    from edgeret.distill.losses import LossConfig
    from edgeret.distill.presets import Preset
    from edgeret.distill.pruning.recover import trained_loss

    checkpoint = save_student(tiny_student, tmp_path / "student")
    assert trained_loss(checkpoint) is None
    report = {"preset": Preset(loss=LossConfig(affinity=0.25)).to_dict()}
    (checkpoint / "train_report.json").write_text(json.dumps(report))
    assert trained_loss(checkpoint).affinity == 0.25
    report["preset"]["student"]["no_such_section"] = {}  # other sections may change: the loss is still read
    (checkpoint / "train_report.json").write_text(json.dumps(report))
    assert trained_loss(checkpoint).affinity == 0.25
    (checkpoint / "train_report.json").write_text(json.dumps({"preset": {"loss": {"no_such_weight": 1}}}))
    assert trained_loss(checkpoint) is None
    (checkpoint / "train_report.json").write_text("{not json")
    assert trained_loss(checkpoint) is None


@pytest.fixture(scope="module")
def opened(caches):
    """The shared tiny caches (tests/conftest.py), opened."""
    from edgeret.distill.cache import load_cache

    return [load_cache(caches / "om"), load_cache(caches / "wn")]


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def test_recovery_leaves_the_tower_pruning_left_whole_as_it_was(tiny_student, opened, tmp_path):
    from edgeret.distill.pruning.recover import RECOVERY_TRAIN, prune_and_recover

    config = PruneConfig(ratio=0.5, image_ratio=0.0)
    train = dataclasses.replace(RECOVERY_TRAIN, epochs=3)  # the tiny caches make one step per epoch
    pruned, report = prune_and_recover(tiny_student, config, opened, train=train, work_dir=tmp_path)
    assert report["pruned"]["whole_towers"] == ["image"] and report["recovered"]["steps"] == 3
    assert list(report["recovered"]["settings"]["frozen_towers"]) == ["image"]
    assert _same(pruned.image, tiny_student.image)  # weights and batch-norm statistics as trained
    assert any(p.requires_grad for p in pruned.image.parameters())  # frozen for the recovery run only
    untrained = prune_student(tiny_student, config)
    assert not _same(pruned.text, untrained.text)  # the pruned tower was recovered


def test_recovery_trains_both_towers_when_both_were_cut_and_nothing_when_nothing_was(tiny_student, opened,
                                                                                       tmp_path):
    from edgeret.distill.pruning.recover import RECOVERY_TRAIN, prune_and_recover

    pruned, report = prune_and_recover(tiny_student, PruneConfig(ratio=0.5), opened, train=RECOVERY_TRAIN,
                                       max_steps=2, work_dir=tmp_path)
    assert report["pruned"]["whole_towers"] == [] and not report["recovered"]["settings"]["frozen_towers"]
    whole, report = prune_and_recover(tiny_student, PruneConfig(ratio=0.0, head_channel_ratio=0.0), opened,
                                      train=RECOVERY_TRAIN, max_steps=2, work_dir=tmp_path)
    assert report["pruned"]["whole_towers"] == ["text", "image"] and "recovered" not in report
    assert _same(whole, tiny_student)


def test_frozen_towers_are_checked():
    from edgeret.distill.loop import TrainSettings

    with pytest.raises(ValueError, match="unknown tower"):
        TrainSettings(frozen_towers=("audio",))
    assert TrainSettings(frozen_towers=["image"]).frozen_towers == ("image",)
