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
