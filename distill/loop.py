"""The distillation loop: projection init by ridge regression, AdamW + warmup/cosine, resumable state."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import LossConfig, distill_loss
from .sampler import Batch, BatchSampler
from .student import DualEncoder, length_chunks

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
#: the towers of a dual encoder, by attribute name
TOWERS = ("text", "image")


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
    device: str = "auto"  # "auto": the first CUDA GPU when there is one, else the CPU
    #: "auto": bf16 autocast on a GPU that has it (else fp16), fp32 on the CPU; or "fp32", "bf16", "fp16"
    precision: str = "auto"
    #: towers ("text", "image") kept exactly as they are: no gradients, batch norms in eval mode (recovery leaves
    #: a tower that pruning did not cut as it was trained)
    frozen_towers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.frozen_towers) - set(TOWERS)
        if unknown:
            raise ValueError(f"frozen_towers: unknown tower(s) {sorted(unknown)}; expected some of {TOWERS}")
        self.frozen_towers = tuple(self.frozen_towers)

    def torch_device(self) -> torch.device:
        """The device training runs on."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def autocast_dtype(self) -> torch.dtype | None:
        """The mixed-precision dtype (None: full fp32)."""
        device = self.torch_device()
        if self.precision == "fp32" or (self.precision == "auto" and device.type != "cuda"):
            return None
        if self.precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]


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


def nhwc(model: DualEncoder) -> AbstractContextManager:
    """The image tower's convolutions in channels-last layout for a block of training or batch inference."""
    return model.image.channels_last() if model.image is not None else nullcontext()


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
    with nhwc(model):
        _init_projections(model, sampler, settings)


def _init_projections(model: DualEncoder, sampler: BatchSampler, settings: TrainSettings) -> None:
    model.eval()
    rng = np.random.default_rng(settings.seed)
    data, n = sampler.data, settings.ridge_samples
    if sampler.n_images:
        rows = np.sort(rng.permutation(sampler.n_images)[:n])
        feats = torch.cat([_pooled_images(model, sampler, rows[i : i + 128]) for i in range(0, len(rows), 128)])
        _fit(model.image.proj, feats, data.images.gather(rows), settings.ridge_penalty)
    if sampler.tokens is not None and len(sampler.tokens):
        rows = np.sort(rng.permutation(len(sampler.tokens))[:n])
        order = rows[np.argsort(sampler.tokens.lengths[rows], kind="stable")]  # similar lengths batch together
        feats = torch.cat([model.text.pooled(*sampler.tokens.batch(order[i : i + 256]))
                           for i in range(0, len(order), 256)])
        _fit(model.text.proj, feats, data.texts.gather(order), settings.ridge_penalty)
    logger.info("projections initialised by ridge regression")


def _fit(proj: torch.nn.Linear, feats: torch.Tensor, targets: np.ndarray, penalty: float) -> None:
    w, b = ridge_projection(feats, torch.from_numpy(targets), penalty)
    proj.weight.copy_(w)
    proj.bias.copy_(b)


def _pooled_images(model: DualEncoder, sampler: BatchSampler, rows: np.ndarray) -> torch.Tensor:
    """Pooled image features: from cached prefix features, or through the prefix of normalised pixels."""
    inputs, prefixed = sampler.image_input(rows)
    return model.image.pooled(inputs if prefixed else model.image.prefix(inputs))


def make_optimizer(model: DualEncoder, s: TrainSettings, total_steps: int):
    """AdamW with per-tower learning rates, linear warmup then cosine decay to zero."""
    towers = [t for t in (model.text, model.image) if t is not None]
    groups = [
        {"params": [] if model.text is None else [p for p in model.text.bert.parameters() if p.requires_grad],
         "lr": s.lr_text},
        {"params": [] if model.image is None else [p for p in model.image.trunk.parameters() if p.requires_grad],
         "lr": s.lr_image},
        {"params": [p for t in towers for p in t.proj.parameters() if p.requires_grad], "lr": s.lr_proj},
    ]
    if not any(g["params"] for g in groups):
        raise ValueError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=s.weight_decay)
    warmup = max(1, int(total_steps * s.warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def hold_towers(model: DualEncoder, towers: tuple[str, ...]) -> None:
    """Freeze ``towers`` of ``model``: no gradients, eval mode (their batch norms keep their statistics)."""
    for name in towers:
        tower = getattr(model, name)
        if tower is None:
            continue
        tower.eval()
        for p in tower.parameters():
            p.requires_grad_(False)


def forward_batch(model: DualEncoder, batch: Batch) -> dict[str, torch.Tensor]:
    """Raw student features per group (images from prefix features or pixels, as the sampler gives), float32."""
    out = {}
    if batch.pixels is not None:
        out["image"] = model.image.suffix(batch.pixels) if batch.prefixed else model.image(batch.pixels)
    for name, (ids, mask) in batch.tokens.items():
        out[name] = encode_by_length(model.text, ids, mask)
    return {name: value.float() for name, value in out.items()}


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
    """Restore model, optimiser and scheduler from ``path``; returns where the run was."""
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
    interruption would; calling again resumes. The image tower runs channels-last meanwhile (:func:`nhwc`).
    """
    trainable = {p: p.requires_grad for p in model.parameters()}
    try:
        with nhwc(model):
            return _run_epochs(model, sampler, loss_config, settings, state_dir, validate, on_best, stop_after,
                               progress)
    finally:  # frozen_towers hold only for this run
        for p, flag in trainable.items():
            p.requires_grad_(flag)


def _run_epochs(model: DualEncoder, sampler: BatchSampler, loss_config: LossConfig, settings: TrainSettings,
                state_dir: Path, validate: Callable[[int], float], on_best: Callable[[], None], stop_after: int | None,
                progress: bool) -> TrainState:
    steps = sampler.steps_per_epoch()
    device = settings.torch_device()
    model.to(device)
    hold_towers(model, settings.frozen_towers)
    optimizer, scheduler = make_optimizer(model, settings, steps * settings.epochs)
    step_fn = _Step(model, loss_config, optimizer, scheduler, device, settings.autocast_dtype())
    state_path = state_dir / STATE_FILE
    state = load_state(state_path, model, optimizer, scheduler) if state_path.is_file() else TrainState()
    if state_path.is_file():
        logger.info("resuming at epoch %d step %d", state.epoch, state.step)
    done_here = 0
    while state.epoch < settings.epochs:
        model.train()
        hold_towers(model, settings.frozen_towers)
        bar = tqdm(range(state.step, steps), desc=f"epoch {state.epoch + 1}/{settings.epochs}", disable=not progress)
        running, start = None, time.time()
        for step in bar:
            terms = step_fn(sampler.batch(state.epoch, step))
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


class _Step:
    """One optimisation step on ``device``, under autocast when ``dtype`` is set (a GradScaler for fp16)."""

    def __init__(self, model: DualEncoder, loss_config: LossConfig, optimizer: Any, scheduler: Any,
                 device: torch.device, dtype: torch.dtype | None) -> None:
        self.model, self.loss_config, self.optimizer, self.scheduler = model, loss_config, optimizer, scheduler
        self.device, self.dtype = device, dtype
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def __call__(self, batch: Batch) -> dict[str, float]:
        batch = batch.to(self.device) if self.device.type != "cpu" else batch
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            features = forward_batch(self.model, batch)
        terms = distill_loss(features, batch.features, self.loss_config, batch.labels, batch.partner)
        self.optimizer.zero_grad(set_to_none=True)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.scaler is not None:
            self.scaler.scale(terms["total"]).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.optimizer.step()
        self.scheduler.step()
        return {k: round(float(v.detach()), 5) for k, v in terms.items()}
