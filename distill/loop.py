"""The distillation loop: projection init by ridge regression, AdamW + warmup/cosine, resumable state."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import LossConfig, distill_loss
from .pairs import normalise_pixels
from .sampler import Batch, BatchSampler, pad
from .student import DualEncoder, length_chunks

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"


@dataclass
class TrainSettings:
    """Optimisation settings (the ``train`` section of a preset)."""

    epochs: int = 4
    image_batch: int = 128
    text_batch: int = 256
    lr_text: float = 2e-4
    lr_image: float = 1e-3
    lr_proj: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    seed: int = 0
    val_sample: int | None = None
    save_every: int = 0
    ridge_samples: int = 4096
    ridge_penalty: float = 1.0


@dataclass
class TrainState:
    """Where a run is: the next (epoch, step), best validation score, history of epoch records."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_score: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)


#: texts per length-sorted chunk in a training step (see :func:`encode_by_length`)
TEXT_CHUNK = 32


def ridge_projection(x: torch.Tensor, y: torch.Tensor, penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares x @ W.T + b ~ y with an L2 penalty relative to the mean feature variance."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    reg = penalty * gram.diagonal().mean().clamp(min=1e-12) * torch.eye(gram.shape[0], dtype=gram.dtype)
    weight = torch.linalg.solve(gram + reg, xc.T @ yc).T
    return weight.float(), (y_mean - x_mean @ weight.T).float()


@torch.no_grad()
def init_projections(model: DualEncoder, sampler: BatchSampler, settings: TrainSettings) -> None:
    """Fit both projections by ridge regression from pooled student features to teacher embeddings."""
    model.eval()
    rng = np.random.default_rng(settings.seed)
    data, n = sampler.data, settings.ridge_samples
    if sampler.n_images:
        rows = np.sort(rng.permutation(sampler.n_images)[:n])
        feats = torch.cat([model.image.pooled(_image_inputs(model, sampler, rows[i : i + 128]))
                           for i in range(0, len(rows), 128)])
        w, b = ridge_projection(feats, torch.from_numpy(data.image_teacher[rows]), settings.ridge_penalty)
        model.image.proj.weight.copy_(w)
        model.image.proj.bias.copy_(b)
    seqs = [t for caps in sampler.caption_tokens for t in caps] + sampler.gloss_tokens + sampler.lemma_tokens
    if seqs:
        targets = np.concatenate([t for t in (*data.caption_teacher, data.gloss_teacher, data.lemma_teacher) if len(t)])
        rows = np.sort(rng.permutation(len(seqs))[:n])
        order = rows[np.argsort([len(seqs[r]) for r in rows], kind="stable")]  # similar lengths batch together
        feats = torch.cat([model.text.pooled(*pad([seqs[r] for r in order[i : i + 256]]))
                           for i in range(0, len(order), 256)])
        w, b = ridge_projection(feats, torch.from_numpy(targets[order]), settings.ridge_penalty)
        model.text.proj.weight.copy_(w)
        model.text.proj.bias.copy_(b)
    logger.info("projections initialised by ridge regression")


def _image_inputs(model: DualEncoder, sampler: BatchSampler, rows: np.ndarray) -> torch.Tensor:
    """Inputs to ``model.image.pooled``: cached prefix features, or the prefix of normalised pixels."""
    if sampler.image_inputs is not None:
        return torch.from_numpy(np.asarray(sampler.image_inputs[rows], dtype=np.float32))
    return model.image.prefix(torch.from_numpy(normalise_pixels(sampler.data.pixels[rows], sampler.preprocessor)))


def make_optimizer(model: DualEncoder, s: TrainSettings, total_steps: int):
    """AdamW with per-tower learning rates, linear warmup then cosine decay to zero."""
    groups = [
        {"params": [p for p in model.text.bert.parameters() if p.requires_grad], "lr": s.lr_text},
        {"params": [p for p in model.image.trunk.parameters() if p.requires_grad], "lr": s.lr_image},
        {"params": [*model.text.proj.parameters(), *model.image.proj.parameters()], "lr": s.lr_proj},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=s.weight_decay)
    warmup = max(1, int(total_steps * s.warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def forward_batch(model: DualEncoder, batch: Batch) -> dict[str, torch.Tensor]:
    """Raw student features per group (images from prefix features or pixels, as the sampler gives)."""
    out = {}
    if batch.pixels is not None:
        out["image"] = model.image.suffix(batch.pixels) if batch.prefixed else model.image(batch.pixels)
    for name, (ids, mask) in batch.tokens.items():
        out[name] = encode_by_length(model.text, ids, mask)
    return out


def encode_by_length(text_tower: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                     chunk: int = TEXT_CHUNK) -> torch.Tensor:
    """``text_tower(ids, mask)`` run on length-sorted chunks, each cut to its own longest text.

    A random batch pads every text to its longest one (WordNet glosses: 13 tokens on average, the
    longest of 256 ~49), so most of the work is padding. Masked positions contribute nothing (absolute
    positions, masked attention and mean pooling), so the rows equal the padded batch's to rounding;
    the result is in the input order.
    """
    if len(ids) <= chunk:
        longest = int(mask.sum(dim=1).max())
        return text_tower(ids[:, :longest], mask[:, :longest])
    groups, restore = length_chunks(mask, chunk)
    return torch.cat([text_tower(ids[rows, :longest], mask[rows, :longest]) for rows, longest in groups])[restore]


def save_state(path: Path, model: DualEncoder, optimizer, scheduler, state: TrainState) -> None:
    """Atomically write everything needed to resume."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": state.__dict__}, tmp)
    tmp.replace(path)


def load_state(path: Path, model: DualEncoder, optimizer, scheduler) -> TrainState:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return TrainState(**saved["state"])


def run_epochs(
    model: DualEncoder,
    sampler: BatchSampler,
    loss_config: LossConfig,
    settings: TrainSettings,
    state_dir: Path,
    validate: Callable[[int], float],
    on_best: Callable[[], None],
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainState:
    """Train from the saved state (if any) to the last epoch; validate and keep the best each epoch.

    ``stop_after`` ends this call after that many optimisation steps (state saved), as an
    interruption would; calling again resumes.
    """
    steps = sampler.steps_per_epoch()
    optimizer, scheduler = make_optimizer(model, settings, steps * settings.epochs)
    state_path = state_dir / STATE_FILE
    state = load_state(state_path, model, optimizer, scheduler) if state_path.is_file() else TrainState()
    if state_path.is_file():
        logger.info("resuming at epoch %d step %d", state.epoch, state.step)
    done_here = 0
    while state.epoch < settings.epochs:
        model.train()
        bar = tqdm(range(state.step, steps), desc=f"epoch {state.epoch + 1}/{settings.epochs}", disable=not progress)
        running, start = None, time.time()
        for step in bar:
            terms = _train_step(model, sampler.batch(state.epoch, step), loss_config, optimizer, scheduler)
            running = terms["total"] if running is None else 0.9 * running + 0.1 * terms["total"]
            bar.set_postfix(loss=f"{running:.4f}")
            state.step, state.global_step, done_here = step + 1, state.global_step + 1, done_here + 1
            state.history.append({"step": state.global_step, **terms})
            if stop_after is not None and done_here >= stop_after:
                save_state(state_path, model, optimizer, scheduler, state)
                return state
            if settings.save_every and state.global_step % settings.save_every == 0:
                save_state(state_path, model, optimizer, scheduler, state)
        score = validate(state.epoch)
        state.history.append({"epoch": state.epoch + 1, "val_score": score, "seconds": round(time.time() - start, 1)})
        if score > state.best_score:
            state.best_score = score
            on_best()
        state.epoch, state.step = state.epoch + 1, 0
        save_state(state_path, model, optimizer, scheduler, state)
    return state


def _train_step(model, batch: Batch, loss_config: LossConfig, optimizer, scheduler) -> dict[str, float]:
    terms = distill_loss(forward_batch(model, batch), batch.features, loss_config, batch.labels)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()
    scheduler.step()
    return {k: round(float(v.detach()), 5) for k, v in terms.items()}
