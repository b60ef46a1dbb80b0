"""Structured pruning of the student: whole attention heads, FFN neurons, optionally layers (text tower);
MBConv expansion channels and head channels (image tower). Shapes really shrink.

    from edgeret.distill.pruning.prune import PruneConfig, prune_student
    pruned = prune_student(model, PruneConfig(ratio=0.3))            # weight-magnitude ranking
    pruned = prune_student(model, PruneConfig(ratio=0.3, score="taylor"), scores=taylor_scores(model, batches))

Every layer/block loses the same fraction of its units (rounded to ``multiple`` for fast kernels),
keeping the highest-scoring ones. The result is a new ``DualEncoder`` whose ``config`` records the new
uniform sizes; per-layer sizes go to ``config.json`` via :func:`edgeret.distill.student.save_student`.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field

import torch

from .importance import Scores, magnitude_scores
from .structure import keep_expansion, keep_ffn, keep_heads, slice_bn, slice_conv, structure_of

logger = logging.getLogger(__name__)


@dataclass
class PruneConfig:
    """What to remove. Ratios are the fraction of units removed (0 keeps everything)."""

    ratio: float = 0.25
    text_ratio: float | None = None  # heads and FFN neurons; default ``ratio``
    image_ratio: float | None = None  # expansion channels; default ``ratio``
    head_channel_ratio: float | None = None  # image head conv channels; default ``image_ratio``
    drop_layers: list[int] = field(default_factory=list)  # text layers to remove entirely
    score: str = "magnitude"  # or "taylor" (needs teacher-cache batches)
    taylor_batches: int = 4  # loss batches the Taylor scores are summed over
    multiple: int = 8  # FFN neurons / channels kept are rounded to a multiple of this
    prune_frozen: bool = False  # also prune the frozen image prefix (which recovery cannot retrain)

    def __post_init__(self) -> None:
        for name in ("ratio", "text_ratio", "image_ratio", "head_channel_ratio"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.score not in ("magnitude", "taylor"):
            raise ValueError(f"score must be 'magnitude' or 'taylor', got {self.score!r}")

    @property
    def text(self) -> float:
        """Share of attention heads and FFN neurons removed."""
        return self.ratio if self.text_ratio is None else self.text_ratio

    @property
    def image(self) -> float:
        """Share of MBConv expansion channels removed."""
        return self.ratio if self.image_ratio is None else self.image_ratio

    @property
    def head_channels(self) -> float:
        """Share of image head channels removed."""
        return self.image if self.head_channel_ratio is None else self.head_channel_ratio


def n_keep(total: int, ratio: float, multiple: int = 1, minimum: int = 1) -> int:
    """How many of ``total`` units survive removing ``ratio`` of them (rounded up to ``multiple``)."""
    keep = total * (1.0 - ratio)
    if multiple > 1 and total >= multiple:
        keep = math.ceil(keep / multiple - 1e-9) * multiple
    return int(min(total, max(minimum, math.ceil(keep - 1e-9))))


def top_units(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` highest scores, in ascending index order."""
    return torch.sort(torch.topk(scores.float(), keep).indices).values


def prune_student(model, config: PruneConfig, scores: Scores | None = None):
    """A pruned copy of ``model`` (the input is not modified). ``scores`` default to weight magnitude."""
    pruned = copy.deepcopy(model).eval()
    scores = scores if scores is not None else magnitude_scores(pruned)
    _prune_text(pruned, config, scores)
    _prune_image(pruned, config, scores)
    if pruned.image.frozen_blocks:
        pruned.image.freeze_prefix()  # new modules in the prefix must stay frozen
    structure = structure_of(pruned)
    logger.info("pruned: text heads %s, FFN %s, layers %d; image hidden %s, head %d",
                structure.text_heads, structure.text_intermediate, len(structure.text_heads),
                structure.image_hidden, pruned.config.image.head_channels)
    return pruned


@torch.no_grad()
def _prune_text(model, config: PruneConfig, scores: Scores) -> None:
    bert = model.text.bert
    layers = bert.encoder.layer
    for layer, head_scores, ffn_scores in zip(layers, scores.heads, scores.ffn, strict=True):
        heads = layer.attention.self.num_attention_heads
        keep_heads(layer.attention, top_units(head_scores, n_keep(heads, config.text)).tolist())
        width = layer.intermediate.dense.out_features
        keep_ffn(layer, top_units(ffn_scores, n_keep(width, config.text, config.multiple)))
    if config.drop_layers:
        drop = set(config.drop_layers)
        if not drop <= set(range(len(layers))) or len(drop) >= len(layers):
            raise ValueError(f"drop_layers {sorted(drop)} must name some but not all of {len(layers)} layers")
        kept = [i for i in range(len(layers)) if i not in drop]
        bert.encoder.layer = torch.nn.ModuleList([layers[i] for i in kept])
        bert.config.num_hidden_layers = len(kept)
        text = model.config.text
        if len(text.teacher_layers) == len(layers):
            text.teacher_layers = [text.teacher_layers[i] for i in kept]
        text.layers = len(kept)
    model.config.text.intermediate = max(layer.intermediate.dense.out_features for layer in bert.encoder.layer)


@torch.no_grad()
def _prune_image(model, config: PruneConfig, scores: Scores) -> None:
    tower = model.image
    skip = 0 if config.prune_frozen else tower.frozen_blocks
    for i, (block, block_scores) in enumerate(zip(tower.trunk._blocks, scores.expansion, strict=True)):
        if block_scores is None or i < skip or config.image == 0:
            continue
        hidden = block._depthwise_conv.out_channels
        keep_expansion(block, top_units(block_scores, n_keep(hidden, config.image, config.multiple)))
    if config.head_channels > 0 and scores.head_channels is not None:
        _prune_head_channels(model, top_units(scores.head_channels,
                                              n_keep(tower.trunk.head_channels, config.head_channels, config.multiple)))


def _prune_head_channels(model, keep: torch.Tensor) -> None:
    """Keep head conv output channels ``keep`` (and the matching projection inputs)."""
    trunk, proj = model.image.trunk, model.image.proj
    trunk._conv_head = slice_conv(trunk._conv_head, keep, None)
    trunk._bn1 = slice_bn(trunk._bn1, keep)
    new = torch.nn.Linear(len(keep), proj.out_features)
    new.weight.data = proj.weight[:, keep].detach().clone()
    new.bias.data = proj.bias.detach().clone()
    model.image.proj = new
    trunk.head_channels = len(keep)
    model.config.image.head_channels = len(keep)
