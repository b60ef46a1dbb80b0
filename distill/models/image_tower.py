"""The student's image tower: a shallower EfficientNet-Lite inherited from Lite0, pooled, projected.

Depth is cut by keeping the first ``repeats`` blocks of each Lite0 stage (later blocks of a stage are
residual, so dropping them keeps the shapes); the head convolution keeps its largest-magnitude output
channels. The first ``frozen_blocks`` blocks (and the stem) can stay frozen: with no on-the-fly
augmentation their outputs are fixed per image, so training computes them once (:meth:`prefix`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .efficientnet_lite import LITE0_STAGES, EfficientNetLite, StageSpec

logger = logging.getLogger(__name__)


def stages_from_lists(stages: Sequence[Sequence[int]]) -> tuple[StageSpec, ...]:
    """StageSpecs from [repeats, kernel, stride, expand, in, out] lists (as in ``config.json``)."""
    return tuple(StageSpec(*map(int, s)) for s in stages)


def lite0_stages(repeats: Sequence[int]) -> list[list[int]]:
    """Lite0's stages with ``repeats`` blocks each (0 drops a stage; only trailing stages may go)."""
    out = []
    for spec, r in zip(LITE0_STAGES, repeats, strict=False):
        if r < 1:
            break
        if r > spec.repeats:
            raise ValueError(f"stage {spec} has only {spec.repeats} blocks, asked for {r}")
        out.append([r, spec.kernel, spec.stride, spec.expand, spec.in_channels, spec.out_channels])
    return out


class ImageTower(nn.Module):
    """EfficientNet-Lite trunk -> global average pool -> linear projection to ``out_dim`` (not normalised)."""

    def __init__(
        self,
        stages: Sequence[Sequence[int]],
        stem_channels: int,
        head_channels: int,
        out_dim: int,
        frozen_blocks: int = 0,
    ):
        super().__init__()
        self.trunk = EfficientNetLite(stages_from_lists(stages), stem_channels, head_channels)
        self.proj = nn.Linear(head_channels, out_dim)
        if not 0 <= frozen_blocks <= len(self.trunk._blocks):
            raise ValueError(f"frozen_blocks must be in [0, {len(self.trunk._blocks)}], got {frozen_blocks}")
        self.frozen_blocks = frozen_blocks
        self._memory_format = torch.contiguous_format

    @contextmanager
    def channels_last(self) -> Iterator[ImageTower]:
        """Run the convolutions in NHWC inside the block (same results to rounding; on a CPU, training steps
        and batch inference take ~0.6x the time); the weights go back to their layout on leaving it."""
        before = self._memory_format
        self.to(memory_format=torch.channels_last)
        self._memory_format = torch.channels_last
        try:
            yield self
        finally:
            self.to(memory_format=before)
            self._memory_format = before

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = self._memory_format is torch.channels_last and x.dim() == 4
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def prefix(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stem and the first ``frozen_blocks`` blocks."""
        t = self.trunk
        x = nn.functional.relu6(t._bn0(t._conv_stem(self._layout(pixels))))
        for block in t._blocks[: self.frozen_blocks]:
            x = block(x)
        return x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The remaining blocks, head and pooling (from :meth:`prefix` outputs), before the projection."""
        t = self.trunk
        x = self._layout(x)
        for block in t._blocks[self.frozen_blocks :]:
            x = block(x)
        return nn.functional.relu6(t._bn1(t._conv_head(x))).mean(dim=(2, 3))

    def suffix(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`pooled` then the projection."""
        return self.proj(self.pooled(x))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) embeddings of preprocessed NCHW pixels."""
        return self.suffix(self.prefix(pixels))

    def frozen_modules(self) -> list[nn.Module]:
        """Modules of the frozen prefix (kept in eval mode, no gradients)."""
        t = self.trunk
        return [t._conv_stem, t._bn0, *t._blocks[: self.frozen_blocks]]

    def freeze_prefix(self) -> None:
        """Stop gradients through the prefix and keep its batch norms in eval mode."""
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageTower:
        """Train mode for the trainable blocks; the frozen prefix stays in eval mode."""
        super().train(mode)
        for module in self.frozen_modules() if self.frozen_blocks else []:
            module.eval()
        return self


def _teacher_block_index(stages: Sequence[StageSpec]) -> list[int]:
    """For each block of a student built from the first repeats of Lite0's stages: its Lite0 block."""
    starts, pos = [], 0
    for spec in LITE0_STAGES:
        starts.append(pos)
        pos += spec.repeats
    index = []
    for s, spec in enumerate(stages):
        ref = LITE0_STAGES[s]
        if (spec.in_channels, spec.out_channels, spec.kernel, spec.expand) != (
            ref.in_channels, ref.out_channels, ref.kernel, ref.expand
        ):
            raise ValueError(f"stage {s} {spec} does not match Lite0's {ref}; cannot inherit")
        index += [starts[s] + r for r in range(spec.repeats)]
    return index


@torch.no_grad()
def inherit_image_tower(tower: ImageTower, teacher: EfficientNetLite) -> None:
    """Copy Lite0 weights: stem, the kept blocks, and the head's largest-magnitude channels."""
    student = tower.trunk
    student._conv_stem.load_state_dict(teacher._conv_stem.state_dict())
    student._bn0.load_state_dict(teacher._bn0.state_dict())
    for dst, src in zip(student._blocks, _teacher_block_index(student.stages), strict=True):
        dst.load_state_dict(teacher._blocks[src].state_dict())
    head_in = student._conv_head.in_channels
    if head_in != teacher._conv_head.in_channels:
        logger.warning("image tower: head input %d differs from Lite0's; head left randomly initialised", head_in)
        return
    bn = teacher._bn1
    scale = (bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)) * teacher._conv_head.weight.flatten(1).norm(dim=1)
    keep = torch.sort(torch.topk(scale, student.head_channels).indices).values
    student._conv_head.weight.copy_(teacher._conv_head.weight[keep])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(student._bn1, name).copy_(getattr(bn, name)[keep])
    logger.info("image tower inherits %d Lite0 blocks, head %d/%d channels",
                len(student._blocks), student.head_channels, teacher.head_channels)
