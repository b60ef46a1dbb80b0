"""Per-layer shapes of a pruned student: what they are, how to cut a model to them, and how to rebuild them.

``StudentConfig`` describes uniform towers (one head count, one FFN width, Lite0 expansion ratios).
A pruned student has per-layer sizes, recorded in ``config.json`` under the optional key ``pruned``::

    "pruned": {"text_heads": [10, 11], "text_intermediate": [384, 400], "image_hidden": [0, 72, 120, ...]}

(``image_hidden`` is the expansion width of each MBConv block, 0 for blocks without expansion).
:func:`apply_structure` reshapes a freshly built :class:`~edgeret.distill.student.DualEncoder` to those sizes
(weights are then loaded from the checkpoint): :func:`edgeret.distill.student.load_student` does so for a
config with ``pruned`` sizes, and :func:`~edgeret.distill.student.save_student` records them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from ..models.efficientnet_lite import SamePadConv2d
from ..models.text_tower import HEAD_DIM

logger = logging.getLogger(__name__)

@dataclass
class Structure:
    """Per-layer sizes of a (possibly pruned) student."""

    text_heads: list[int] = field(default_factory=list)
    text_intermediate: list[int] = field(default_factory=list)
    image_hidden: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The sizes as a JSON-ready dict."""
        return {"text_heads": self.text_heads, "text_intermediate": self.text_intermediate,
                "image_hidden": self.image_hidden}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Structure:
        """Sizes from :meth:`to_dict`'s output."""
        return cls(**{k: [int(v) for v in data.get(k, [])] for k in ("text_heads", "text_intermediate",
                                                                       "image_hidden")})


def structure_of(model) -> Structure:
    """The per-layer sizes of a DualEncoder as it is now (empty lists for an absent tower)."""
    layers = model.text.bert.encoder.layer if model.text is not None else []
    blocks = model.image.trunk._blocks if model.image is not None else []
    return Structure(
        text_heads=[layer.attention.self.num_attention_heads for layer in layers],
        text_intermediate=[layer.intermediate.dense.out_features for layer in layers],
        image_hidden=[b._depthwise_conv.out_channels if b.has_expand else 0 for b in blocks],
    )


@torch.no_grad()
def keep_heads(attention: nn.Module, keep: list[int]) -> None:
    """Physically keep only the attention heads ``keep`` (indices among the current heads)."""
    n = attention.self.num_attention_heads
    drop = sorted(set(range(n)) - set(keep))
    if not keep:
        raise ValueError("a layer must keep at least one attention head")
    if drop:
        # HF's prune_heads maps indices through already pruned heads; reset so indices are current ones.
        attention.pruned_heads = set()
        attention.prune_heads(drop)
        attention.pruned_heads = set()


@torch.no_grad()
def keep_ffn(layer: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the FFN neurons ``keep`` of a BertLayer."""
    if keep.numel() < 1:
        raise ValueError("a layer must keep at least one FFN neuron")
    keep = keep.to(torch.long)
    layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=0)
    layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=1)


def slice_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Conv2d:
    """A copy of a (SamePad)Conv2d keeping output channels ``out_idx`` and input channels ``in_idx``."""
    weight = conv.weight if out_idx is None else conv.weight[out_idx]
    depthwise = conv.groups > 1
    if in_idx is not None and not depthwise:
        weight = weight[:, in_idx]
    out_ch = weight.shape[0]
    in_ch = out_ch if depthwise else weight.shape[1]
    new = SamePadConv2d(in_ch, out_ch, conv.kernel_size[0], conv.stride[0], groups=out_ch if depthwise else 1,
                        bias=conv.bias is not None)
    new.weight.data = weight.detach().clone()
    if conv.bias is not None:
        new.bias.data = (conv.bias if out_idx is None else conv.bias[out_idx]).detach().clone()
    return new.to(conv.weight.device)


def slice_bn(bn: nn.Module, idx: torch.Tensor) -> nn.Module:
    """A copy of a batch norm keeping channels ``idx`` (an Identity stays as it is)."""
    if isinstance(bn, nn.Identity):
        return bn
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).data = getattr(bn, name)[idx].detach().clone()
    return new.to(bn.weight.device)


@torch.no_grad()
def keep_expansion(block: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the expansion channels ``keep`` of an MBConv block (expand, depthwise, project)."""
    if not block.has_expand:
        raise ValueError("block has no expansion to prune")
    if keep.numel() < 1:
        raise ValueError("a block must keep at least one expansion channel")
    keep = keep.to(torch.long)
    block._expand_conv = slice_conv(block._expand_conv, keep, None)
    block._bn0 = slice_bn(block._bn0, keep)
    block._depthwise_conv = slice_conv(block._depthwise_conv, keep, None)
    block._bn1 = slice_bn(block._bn1, keep)
    block._project_conv = slice_conv(block._project_conv, None, keep)


def apply_structure(model, structure: Structure) -> None:
    """Reshape a freshly built DualEncoder to ``structure`` (keeping the first units; weights come later)."""
    layers = model.text.bert.encoder.layer if model.text is not None else []
    blocks = model.image.trunk._blocks if model.image is not None else []
    if structure.text_heads and len(structure.text_heads) != len(layers):
        raise ValueError(f"structure has {len(structure.text_heads)} text layers, model has {len(layers)}")
    if structure.image_hidden and len(structure.image_hidden) != len(blocks):
        raise ValueError(f"structure has {len(structure.image_hidden)} image blocks, model has {len(blocks)}")
    for layer, heads in zip(layers, structure.text_heads, strict=False):
        keep_heads(layer.attention, list(range(heads)))
    for layer, width in zip(layers, structure.text_intermediate, strict=False):
        keep_ffn(layer, torch.arange(width))
    for block, hidden in zip(blocks, structure.image_hidden, strict=False):
        if hidden and block.has_expand and hidden != block._depthwise_conv.out_channels:
            keep_expansion(block, torch.arange(hidden))


def is_uniform(model, structure: Structure) -> bool:
    """Whether ``structure`` is what ``StudentConfig`` alone would build (so ``load_student`` can load it)."""
    t = model.config.text
    blocks = model.image.trunk._blocks if model.image is not None else []
    default_hidden = [b._expand_conv.in_channels * _expand_of(model, i) if b.has_expand else 0
                      for i, b in enumerate(blocks)]
    return (t is None or (all(h == t.hidden // HEAD_DIM for h in structure.text_heads)
                          and all(w == t.intermediate for w in structure.text_intermediate))
            ) and structure.image_hidden == default_hidden


def _expand_of(model, block_index: int) -> int:
    """The Lite0 expansion ratio of block ``block_index`` from the config's stages."""
    ratios = [int(stage[3]) for stage in model.config.image.stages for _ in range(int(stage[0]))]
    return ratios[block_index]
