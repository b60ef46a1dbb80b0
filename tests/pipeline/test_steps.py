import copy
import dataclasses

import pytest
import torch

from edgeret.distill.pruning.prune import PruneConfig
from edgeret.distill.student import save_student
from edgeret.pipeline import steps
from edgeret.pipeline.steps import Pruning, pruned_student, pruning_key


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_second_variant_reuses_the_pruned_student(tiny_student, tmp_path, monkeypatch):
    checkpoint = save_student(tiny_student, tmp_path / "student")
    pruning = Pruning(PruneConfig(ratio=0.25), keep_dir=tmp_path / "pruned")
    first, report = pruned_student(checkpoint, pruning, tmp_path)
    assert (tmp_path / "pruned" / pruning_key(checkpoint, pruning) / "prune_report.json").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("pruned again")

    monkeypatch.setattr(steps, "prune_and_recover", refuse)
    again, again_report = pruned_student(checkpoint, pruning, tmp_path)
    assert _same_weights(first, again) and again_report["prune"] == report["prune"]
    with pytest.raises(AssertionError, match="pruned again"):  # other settings are another student
        pruned_student(checkpoint, dataclasses.replace(pruning, config=PruneConfig(ratio=0.5)), tmp_path)


def test_the_key_follows_the_checkpoint_and_the_settings(tiny_student, tmp_path):
    checkpoint = save_student(tiny_student, tmp_path / "student")
    pruning = Pruning(PruneConfig(ratio=0.25))
    key = pruning_key(checkpoint, pruning)
    assert pruning_key(checkpoint, dataclasses.replace(pruning, max_steps=10)) != key
    changed = copy.deepcopy(tiny_student)  # the fixture is shared by the session
    with torch.no_grad():
        next(changed.parameters()).add_(1.0)
    save_student(changed, checkpoint)
    assert pruning_key(checkpoint, pruning) != key


def test_without_a_keep_dir_nothing_is_kept(tiny_student, tmp_path):
    checkpoint = save_student(tiny_student, tmp_path / "student")
    model, report = pruned_student(checkpoint, Pruning(PruneConfig(ratio=0.25)), tmp_path)
    assert report["pruned"]["cost"] and not (tmp_path / "pruned").exists()


def test_recovery_continues_the_loss_the_student_was_trained_with(tiny_student, tmp_path):
    import json

    from edgeret.distill.losses import LossConfig
    from edgeret.distill.presets import Preset
    from edgeret.distill.pruning.recover import RECOVERY_LOSS

    checkpoint = save_student(tiny_student, tmp_path / "student")
    pruning = Pruning(PruneConfig(ratio=0.25))
    assert pruning.recovery_loss(checkpoint) == RECOVERY_LOSS and RECOVERY_LOSS.affinity == 0.0
    key = pruning_key(checkpoint, pruning)
    own = LossConfig(cosine=1.0, affinity=0.5, contrastive=0.2, matryoshka_dims=[])  # as JSON reads back
    report = {"preset": Preset(loss=own).to_dict()}
    (checkpoint / "train_report.json").write_text(json.dumps(report), encoding="utf-8")
    assert pruning.recovery_loss(checkpoint) == own
    assert pruning_key(checkpoint, pruning) != key  # a kept student recovered with another loss is not reused
    chosen = LossConfig(cosine=0.5)
    assert dataclasses.replace(pruning, loss=chosen).recovery_loss(checkpoint) == chosen
