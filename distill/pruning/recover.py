"""Prune a student, then recover with a short distillation from the teacher caches; report before/after.

Recovery *is* distillation: the trainer's data loading, batch sampler, loss and loop
(:func:`edgeret.distill.loop.run_epochs`) with :class:`~edgeret.distill.loop.TrainSettings` and
:class:`~edgeret.distill.losses.LossConfig` (defaults: :data:`RECOVERY_TRAIN`, :data:`RECOVERY_LOSS`), so it
optimises exactly the distillation objective; callers that know the student's checkpoint pass the loss it was
trained with (:func:`trained_loss`); recovery and Taylor scores cover its Matryoshka prefixes. Without caches,
pruning still works (weight magnitude ranking) but there is no recovery.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from edgeret.data.scoring import evaluate_encoder

from ..cache import TeacherCache
from ..flops import size_and_flops
from ..loop import TOWERS, TrainSettings, forward_batch, run_epochs
from ..losses import LossConfig, distill_loss
from ..pairs import load_train_data
from ..sampler import BatchSampler
from ..student import DualEncoder
from .importance import magnitude_scores, taylor_scores
from .prune import PruneConfig, prune_student
from .structure import structure_of

logger = logging.getLogger(__name__)

#: a short recovery: one epoch at smaller batches and learning rates than training
RECOVERY_TRAIN = TrainSettings(epochs=1, image_batch=64, text_batch=128, lr_text=1e-4, lr_image=3e-4, lr_proj=3e-4,
                               warmup_frac=0.1, seed=0)
#: the recovery objective when the student's own is unknown: the default preset's, feature mimicry and a small
#: contrastive term. With affinity mimicking (weight 1) as well, one recovery epoch of an *unpruned* demo student
#: cost it 0.022 of WordNet Recall@10 (0.610 -> 0.588; bench/results/pruned_text.md)
RECOVERY_LOSS = LossConfig(cosine=1.0, affinity=0.0, contrastive=0.1, temperature=0.05)


def trained_loss(checkpoint: str | Path) -> LossConfig | None:
    """The loss a student checkpoint was distilled with (its ``train_report.json``); None without a readable one."""
    path = Path(checkpoint) / "train_report.json"
    if not path.is_file():
        return None
    try:
        loss = (json.loads(path.read_text(encoding="utf-8")).get("preset") or {}).get("loss")
        return LossConfig(**loss) if loss is not None else None
    except (ValueError, TypeError, AttributeError) as exc:  # another version's report: recover with the default
        logger.warning("%s: cannot read the training loss (%s); recovery uses RECOVERY_LOSS", path, exc)
        return None



def loss_batches(model: DualEncoder, sampler: BatchSampler, n: int,
                 loss: LossConfig = RECOVERY_LOSS) -> Iterator[Callable[[], torch.Tensor]]:
    """``n`` callables computing the distillation loss ``loss`` of successive batches (for Taylor scores)."""
    config = dataclasses.replace(loss, matryoshka_dims=model.config.matryoshka_dims)
    for step in range(min(n, sampler.steps_per_epoch())):
        batch = sampler.batch(0, step)
        yield lambda batch=batch: distill_loss(forward_batch(model, batch), batch.features, config,
                                               batch.labels, batch.partner)["total"]


def whole_towers(before: DualEncoder, after: DualEncoder) -> tuple[str, ...]:
    """The towers that pruning left exactly as they were (same tensors, same values)."""
    return tuple(name for name in TOWERS if getattr(before, name) is not None and getattr(after, name) is not None
                 and _same_tensors(getattr(before, name), getattr(after, name)))


def _same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(
        left[k].shape == right[k].shape and torch.equal(left[k], right[k]) for k in left)


def _holding(train: TrainSettings, whole: Sequence[str]) -> TrainSettings:
    """``train`` with the towers pruning left whole frozen as well (recovery repairs only what was cut)."""
    return dataclasses.replace(train, frozen_towers=tuple(t for t in TOWERS if t in {*train.frozen_towers, *whole}))


def _nothing_to_train(model: DualEncoder, train: TrainSettings) -> bool:
    return all(getattr(model, t) is None or t in train.frozen_towers for t in TOWERS)


def recover(model: DualEncoder, sampler: BatchSampler, work: Path, train: TrainSettings = RECOVERY_TRAIN,
            loss: LossConfig = RECOVERY_LOSS, max_steps: int | None = None, progress: bool = False) -> list[dict]:
    """Distil ``model`` in place for ``train.epochs`` (or ``max_steps``); returns the loss history."""
    loss = dataclasses.replace(loss, matryoshka_dims=model.config.matryoshka_dims)
    state_dir = Path(tempfile.mkdtemp(prefix="recover-", dir=work))
    state = run_epochs(model, sampler, loss, train, state_dir, validate=lambda epoch: 0.0, on_best=lambda: None,
                       stop_after=max_steps, progress=progress)
    model.eval()
    return [h for h in state.history if "total" in h]


def quality(model: DualEncoder, evalsets: Sequence) -> dict[str, float]:
    """Recall@10 of the torch model per eval set."""
    return {f"{s.name}-{s.task}": round(evaluate_encoder(model, s)[0]["recall@10"], 4) for s in evalsets}


def _sampler(model: DualEncoder, caches: Sequence[TeacherCache], train: TrainSettings, work: Path,
             prefix: bool, reuse: Sequence[Path]) -> BatchSampler:
    data = load_train_data(caches, work, progress=False)
    return BatchSampler.for_model(model, data, train, work, prefix=prefix, reuse=reuse)


def prune_and_recover(
    model: DualEncoder, config: PruneConfig, caches: Sequence[TeacherCache] = (), *,
    train: TrainSettings = RECOVERY_TRAIN, loss: LossConfig = RECOVERY_LOSS, max_steps: int | None = None,
    evalsets: Sequence = (), work_dir: str | Path | None = None, progress: bool = False,
    reuse: Sequence[Path] = (),
) -> tuple[DualEncoder, dict[str, Any]]:
    """Prune ``model`` (Taylor scores need caches), recover by distillation when caches are given.

    ``reuse``: folders of earlier runs (the student's ``train_state``) whose tokens, pre-rendered images and
    frozen-prefix features recovery reads instead of preparing them again, where they hold the same inputs.

    Returns (pruned model, report with params/FLOPs/quality before, after pruning and after recovery).
    """
    caches = [c for c in caches if c is not None]
    if config.score == "taylor" and not caches:
        raise ValueError("Taylor importance needs teacher caches (--cache DIR)")
    started = time.time()
    report: dict[str, Any] = {"prune": dataclasses.asdict(config), "before": {"cost": size_and_flops(model)}}
    if evalsets:
        report["before"]["recall@10"] = quality(model, evalsets)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        work = Path(tmp)
        scores = magnitude_scores(model)
        if config.score == "taylor":
            sampler = _sampler(model, caches, train, work, prefix=False, reuse=reuse)
            scores = taylor_scores(model, loss_batches(model, sampler, config.taylor_batches, loss))
        pruned = prune_student(model, config, scores)
        whole = whole_towers(model, pruned)
        report["pruned"] = {"cost": size_and_flops(pruned), "structure": structure_of(pruned).to_dict(),
                            "whole_towers": list(whole)}
        if evalsets:
            report["pruned"]["recall@10"] = quality(pruned, evalsets)
        train = _holding(train, whole)
        if _nothing_to_train(pruned, train):
            logger.info("pruning removed nothing: no recovery")
        elif caches and train.epochs > 0 and max_steps != 0:
            if whole:
                logger.info("recovery trains the pruned tower(s) only; %s stay(s) as trained", ", ".join(whole))
            history = recover(pruned, _sampler(pruned, caches, train, work, True, reuse), work, train, loss,
                              max_steps, progress)
            report["recovered"] = {"steps": len(history), "settings": dataclasses.asdict(train),
                                   "loss": dataclasses.asdict(loss), "max_steps": max_steps,
                                   "loss_first": history[0]["total"] if history else None,
                                   "loss_last": history[-1]["total"] if history else None}
            if evalsets:
                report["recovered"]["recall@10"] = quality(pruned, evalsets)
    report["seconds"] = round(time.time() - started, 1)
    return pruned.eval(), report
