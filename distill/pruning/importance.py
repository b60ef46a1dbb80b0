"""Importance scores of prunable units: attention heads, FFN neurons, MBConv expansion channels, head channels.

Every unit feeds one "consumer" weight slice: a head feeds 32 input columns of the attention output
dense, an FFN neuron one input column of the output dense, an expansion channel one input channel of
the project conv, an image head channel one input column of the projection. Removing the unit is
zeroing that slice, so:

* ``magnitude``: the norm of the producer rows times the norm of the consumer slice (no data);
* ``taylor``: first-order Taylor estimate of the loss change when the slice is zeroed,
  ``(sum(w * dL/dw))**2`` summed over a few batches of the distillation loss (Molchanov et al. 2019).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class Scores:
    """Per-unit importance: one tensor per text layer / image block (None for blocks without expansion)."""

    heads: list[torch.Tensor] = field(default_factory=list)
    ffn: list[torch.Tensor] = field(default_factory=list)
    expansion: list[torch.Tensor | None] = field(default_factory=list)
    head_channels: torch.Tensor | None = None


def _head_dim(attention: nn.Module) -> int:
    return attention.self.attention_head_size


def _consumers(model) -> dict[str, list[tuple[torch.Tensor, int, int] | None]]:
    """(consumer weight, unit axis, columns per unit) of each prunable group, per layer/block."""
    layers = model.text.bert.encoder.layer
    blocks = model.image.trunk._blocks
    return {
        "heads": [(layer.attention.output.dense.weight, 1, _head_dim(layer.attention)) for layer in layers],
        "ffn": [(layer.output.dense.weight, 1, 1) for layer in layers],
        "expansion": [(b._project_conv.weight, 1, 1) if b.has_expand else None for b in blocks],
        "head_channels": [(model.image.proj.weight, 1, 1)],
    }


def _group_sum(values: torch.Tensor, axis: int, group: int = 1) -> torch.Tensor:
    """Sum ``values`` over every axis but ``axis``, then over consecutive groups of ``group`` units."""
    dims = [d for d in range(values.dim()) if d != axis]
    per_unit = values.sum(dim=dims) if dims else values
    return per_unit.reshape(-1, group).sum(1) if group > 1 else per_unit


@torch.no_grad()
def magnitude_scores(model) -> Scores:
    """Weight-magnitude importance (producer row norm x consumer column norm)."""
    scores = Scores()
    for layer in model.text.bert.encoder.layer:
        att, size = layer.attention, _head_dim(layer.attention)
        produce = sum(getattr(att.self, n).weight.pow(2).sum(1) for n in ("query", "key", "value"))
        consume = att.output.dense.weight.pow(2).sum(0)
        scores.heads.append(((produce + consume).reshape(-1, size).sum(1)).sqrt())
        scores.ffn.append(layer.intermediate.dense.weight.norm(dim=1) * layer.output.dense.weight.norm(dim=0))
    for block in model.image.trunk._blocks:
        if not block.has_expand:
            scores.expansion.append(None)
            continue
        bn = block._bn1
        gain = bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps) if isinstance(bn, nn.BatchNorm2d) else 1.0
        depthwise = block._depthwise_conv.weight.flatten(1).norm(dim=1)
        scores.expansion.append(gain * depthwise * block._project_conv.weight.flatten(2).norm(dim=(0, 2)))
    trunk = model.image.trunk
    bn = trunk._bn1
    gain = bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps) if isinstance(bn, nn.BatchNorm2d) else 1.0
    scores.head_channels = gain * trunk._conv_head.weight.flatten(1).norm(dim=1) * model.image.proj.weight.norm(dim=0)
    return scores


def taylor_scores(model, loss_batches: Iterable[Callable[[], torch.Tensor]]) -> Scores:
    """First-order Taylor importance from the gradients of a few loss evaluations.

    ``loss_batches`` yields callables that compute a scalar loss with the model (one per batch).
    The model's parameters receive gradients (cleared afterwards); weights are not changed.
    """
    consumers = _consumers(model)
    acc: dict[str, list[torch.Tensor | None]] = {
        key: [None if c is None else torch.zeros(c[0].shape[c[1]] // c[2]) for c in items]
        for key, items in consumers.items()
    }
    was_training = model.training
    model.eval()  # batch norms in eval mode: statistics unchanged, scores reflect inference
    params = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    n = 0
    try:
        for compute in loss_batches:
            model.zero_grad(set_to_none=True)
            compute().backward()
            n += 1
            for key, items in consumers.items():
                for i, item in enumerate(items):
                    if item is None or item[0].grad is None:
                        continue
                    weight, axis, group = item
                    acc[key][i] += _group_sum(weight.detach() * weight.grad, axis, group).pow(2)
    finally:
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(params[id(p)])
        model.train(was_training)
    if n == 0:
        raise ValueError("taylor_scores needs at least one batch")
    logger.info("taylor importance from %d batches", n)
    return Scores(heads=acc["heads"], ffn=acc["ffn"], expansion=acc["expansion"], head_channels=acc["head_channels"][0])
