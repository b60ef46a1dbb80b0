"""Prune a student, then recover with a short distillation from the teacher caches; report before/after.

Reuses ``distill``'s data loading, batch sampler, loss and training loop (``distill.trainer.run_epochs``),
so recovery optimises exactly the distillation objective. Without caches, pruning still works (weight
magnitude ranking) but there is no recovery.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .importance import magnitude_scores, taylor_scores
from .prune import PruneConfig, prune_student
from .structure import structure_of

logger = logging.getLogger(__name__)


@dataclass
class RecoverySettings:
    """Short recovery distillation (the ``train`` settings of ``distill`` with smaller defaults)."""

    epochs: int = 1
    max_steps: int | None = None  # stop early after this many steps
    image_batch: int = 64
    text_batch: int = 128
    lr_text: float = 1e-4
    lr_image: float = 3e-4
    lr_proj: float = 3e-4
    taylor_batches: int = 4
    seed: int = 0


def open_caches(openmoji: str | Path | None, wordnet: str | Path | None) -> dict[str, Any]:
    from edgeret.distill.cache import load_cache

    return {name: load_cache(path) if path is not None and str(path).lower() != "none" else None
            for name, path in (("openmoji", openmoji), ("wordnet", wordnet))}


def make_sampler(model, caches: dict[str, Any], settings: RecoverySettings, work: Path, prefix: bool):
    """distill's BatchSampler over the caches' train pairs (frozen-prefix features when ``prefix``)."""
    from edgeret.distill.loop import prefix_features
    from edgeret.distill.pairs import load_train_data
    from edgeret.distill.sampler import BatchSampler

    data = load_train_data(caches["openmoji"], caches["wordnet"], model.preprocessor, work, progress=False)
    features = None
    if prefix and model.config.image.frozen_blocks and data.pixels is not None:
        features = prefix_features(model, data.pixels, model.preprocessor)
    return BatchSampler(data, model.tokenizer, model.config.text.max_length, settings.image_batch,
                        settings.text_batch, settings.seed, model.preprocessor, features)


def loss_batches(model, sampler, n: int) -> Iterator[Callable[[], torch.Tensor]]:
    """``n`` callables computing the distillation loss of successive batches (for Taylor scores)."""
    from edgeret.distill.loop import forward_batch
    from edgeret.distill.losses import LossConfig, distill_loss

    config = LossConfig(matryoshka_dims=model.config.matryoshka_dims)
    for step in range(min(n, sampler.steps_per_epoch())):
        batch = sampler.batch(0, step)
        yield lambda batch=batch: distill_loss(forward_batch(model, batch), batch.features, config,
                                               batch.labels)["total"]


def recover(model, sampler, settings: RecoverySettings, work: Path, progress: bool = False) -> list[dict]:
    """Distil ``model`` in place for ``settings.epochs`` (or ``max_steps``); returns the loss history."""
    from edgeret.distill.loop import TrainSettings, run_epochs
    from edgeret.distill.losses import LossConfig

    train = TrainSettings(epochs=settings.epochs, image_batch=settings.image_batch, text_batch=settings.text_batch,
                          lr_text=settings.lr_text, lr_image=settings.lr_image, lr_proj=settings.lr_proj,
                          seed=settings.seed, warmup_frac=0.1)
    loss = LossConfig(cosine=1.0, affinity=1.0, contrastive=0.1, temperature=0.05,
                      matryoshka_dims=model.config.matryoshka_dims)
    state_dir = Path(tempfile.mkdtemp(prefix="recover-", dir=work))
    state = run_epochs(model, sampler, loss, train, state_dir, validate=lambda epoch: 0.0, on_best=lambda: None,
                       stop_after=settings.max_steps, progress=progress)
    model.eval()
    return [h for h in state.history if "total" in h]


def tower_cost(model) -> dict[str, dict[str, int]]:
    """Params and FLOPs per tower (one 16-token query, one image at the tower's resolution)."""
    from edgeret.distill.flops import QUERY_TOKENS, count_flops, count_params

    model.eval()
    ids = torch.randint(1, model.config.text.vocab_size, (1, QUERY_TOKENS))
    size = model.config.image.image_size
    pixels = torch.randn(1, 3, size, size)
    mask = torch.ones_like(ids)
    return {"text": {"params": count_params(model.text), "flops": count_flops(lambda: model.text(ids, mask))},
            "image": {"params": count_params(model.image), "flops": count_flops(lambda: model.image(pixels))}}


def quality(model, evalsets: Sequence) -> dict[str, float]:
    """Recall@10 of the torch model per eval set."""
    from edgeret.data.scoring import evaluate_encoder

    return {f"{s.name}-{s.task}": round(evaluate_encoder(model, s)[0]["recall@10"], 4) for s in evalsets}


def prune_and_recover(model, config: PruneConfig, caches: dict[str, Any] | None = None,
                      settings: RecoverySettings | None = None, evalsets: Sequence = (),
                      work_dir: str | Path | None = None, progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """Prune ``model`` (Taylor scores need caches), recover by distillation when caches are given.

    Returns (pruned model, report with params/FLOPs/quality before, after pruning and after recovery).
    """
    settings = settings or RecoverySettings()
    have_data = bool(caches) and any(c is not None for c in caches.values())
    if config.score == "taylor" and not have_data:
        raise ValueError("Taylor importance needs teacher caches (--openmoji-cache / --wordnet-cache)")
    started = time.time()
    report: dict[str, Any] = {"prune": asdict(config), "before": {"cost": tower_cost(model)}}
    if evalsets:
        report["before"]["recall@10"] = quality(model, evalsets)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        work = Path(tmp)
        scores = magnitude_scores(model)
        if config.score == "taylor":
            sampler = make_sampler(model, caches, settings, work, prefix=False)
            scores = taylor_scores(model, loss_batches(model, sampler, settings.taylor_batches))
        pruned = prune_student(model, config, scores)
        report["pruned"] = {"cost": tower_cost(pruned), "structure": structure_of(pruned).to_dict()}
        if evalsets:
            report["pruned"]["recall@10"] = quality(pruned, evalsets)
        if have_data and (settings.epochs > 0 and settings.max_steps != 0):
            sampler = make_sampler(pruned, caches, settings, work, prefix=True)
            history = recover(pruned, sampler, settings, work, progress)
            report["recovered"] = {"steps": len(history), "settings": asdict(settings),
                                   "loss_first": history[0]["total"] if history else None,
                                   "loss_last": history[-1]["total"] if history else None}
            if evalsets:
                report["recovered"]["recall@10"] = quality(pruned, evalsets)
    report["seconds"] = round(time.time() - started, 1)
    return pruned.eval(), report
