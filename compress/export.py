"""Export each student tower to its own ONNX file and prove it matches torch.

* text: inputs ``input_ids``, ``attention_mask`` (int64, [batch, sequence]) -> ``embeddings`` float32 [batch, dim];
* image: input ``pixel_values`` (float32, [batch, 3, S, S]) -> ``embeddings`` float32 [batch, dim].

Pooling, projection and L2 normalisation are inside the graph; batch (and sequence) axes are dynamic,
the embedding axis static. Uses torch's TorchScript exporter (``dynamo=False``; the dynamo exporter
needs ``onnxscript``). :func:`text_parity` / :func:`image_parity` compare ONNX Runtime against torch on
real inputs and raise :class:`ParityError` beyond ``max_abs_diff`` / ``min_cosine``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image
from torch import nn

from edgeret.data.metrics import row_cosines
from edgeret.runtime.sessions import create_session

logger = logging.getLogger(__name__)

OPSET = 18
TEXT_INPUTS = ("input_ids", "attention_mask")
IMAGE_INPUT = "pixel_values"
OUTPUT = "embeddings"
MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.9999


class ParityError(AssertionError):
    """ONNX outputs differ from torch beyond tolerance."""


class TextEncoder(nn.Module):
    """(input_ids, attention_mask) -> L2-normalised embeddings of a student's text tower."""

    def __init__(self, model):
        super().__init__()
        self.tower = model.text

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of a token batch."""
        return nn.functional.normalize(self.tower(input_ids, attention_mask), dim=-1)


class ImageEncoder(nn.Module):
    """pixel_values -> L2-normalised embeddings of a student's image tower."""

    def __init__(self, model, fuse_batchnorm: bool = True):
        super().__init__()
        self.tower = copy.deepcopy(model.image).eval()
        if fuse_batchnorm:
            self.tower.trunk.fuse_batchnorm()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of preprocessed NCHW pixels."""
        return nn.functional.normalize(self.tower(pixel_values), dim=-1)


def _export(module: nn.Module, args: tuple, path: Path, inputs: Sequence[str], axes: dict, opset: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python-side shape branches
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=[OUTPUT],
                          dynamic_axes={**axes, OUTPUT: {0: "batch"}}, opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    _fix_output_shape(path, module)
    logger.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _fix_output_shape(path: Path, module: nn.Module) -> None:
    """Declare the output as [batch, dim] (the tracer may leave the embedding axis symbolic)."""
    dim = module.tower.proj.out_features
    model = onnx.load(str(path))
    out = model.graph.output[0].type.tensor_type.shape.dim
    if len(out) != 2:
        raise ValueError(f"{path.name}: output must be [batch, dim], got rank {len(out)}")
    if out[1].dim_value not in (0, dim):
        raise ValueError(f"{path.name}: output width {out[1].dim_value} != embedding dim {dim}")
    out[1].Clear()
    out[1].dim_value = dim
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_text(model, path: str | Path, opset: int = OPSET) -> Path:
    """Write the text tower of ``model`` as ONNX (dynamic batch and sequence axes)."""
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]], dtype=torch.long).clamp(max=model.config.text.vocab_size - 1)
    mask = (torch.arange(5) < torch.tensor([[5], [3]])).long()  # padded row: the mask path must be traced
    axes = {name: {0: "batch", 1: "sequence"} for name in TEXT_INPUTS}
    return _export(TextEncoder(model), (ids, mask), path, TEXT_INPUTS, axes, opset)


def export_image(model, path: str | Path, opset: int = OPSET, fuse_batchnorm: bool = True) -> Path:
    """Write the image tower of ``model`` as ONNX (dynamic batch axis; batch norms folded into convs)."""
    size = model.config.image.image_size
    pixels = torch.randn(2, 3, size, size)
    return _export(ImageEncoder(model, fuse_batchnorm), (pixels,), path, (IMAGE_INPUT,), {IMAGE_INPUT: {0: "batch"}},
                   opset)


@dataclass
class Parity:
    """Elementwise and cosine agreement of ONNX embeddings with torch's."""

    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    rows: int

    def ok(self, max_abs_diff: float = MAX_ABS_DIFF, min_cosine: float = MIN_COSINE) -> bool:
        """Whether both measures are within tolerance."""
        return self.max_abs_diff <= max_abs_diff and self.min_cosine >= min_cosine

    def to_dict(self) -> dict[str, float]:
        """The measures as a JSON-ready dict."""
        return {"max_abs_diff": self.max_abs_diff, "min_cosine": self.min_cosine, "mean_cosine": self.mean_cosine,
                "rows": self.rows}


def compare(reference: np.ndarray, other: np.ndarray) -> Parity:
    """Parity of two (N, D) embedding arrays (rows L2-normalised)."""
    if reference.shape != other.shape:
        raise ParityError(f"shape mismatch: torch {reference.shape} vs onnx {other.shape}")
    ref, oth = reference.astype(np.float64), other.astype(np.float64)
    cos = row_cosines(ref, oth)
    return Parity(float(np.abs(ref - oth).max(initial=0.0)), float(cos.min(initial=1.0)), float(cos.mean()), len(ref))


def _batches(n: int, sizes: Sequence[int]) -> list[slice]:
    """Consecutive slices of ``range(n)`` cycling through ``sizes`` (odd sizes exercise padding)."""
    out, start, i = [], 0, 0
    while start < n:
        out.append(slice(start, min(n, start + sizes[i % len(sizes)])))
        start, i = out[-1].stop, i + 1
    return out


def _parity(torch_fn: Callable, onnx_fn: Callable, n: int, sizes: Sequence[int], what: str,
            max_abs_diff: float, min_cosine: float, check: bool) -> Parity:
    ref, got = [], []
    for part in _batches(n, sizes):
        ref.append(torch_fn(part))
        got.append(onnx_fn(part))
    result = compare(np.concatenate(ref), np.concatenate(got))
    logger.info("%s parity: max|diff| %.2e, min cos %.7f over %d rows", what, result.max_abs_diff,
                result.min_cosine, result.rows)
    if check and not result.ok(max_abs_diff, min_cosine):
        raise ParityError(f"{what}: ONNX differs from torch: max abs diff {result.max_abs_diff:.3e} "
                          f"(limit {max_abs_diff:.0e}), min cosine {result.min_cosine:.6f} (limit {min_cosine})")
    return result


def text_parity(model, onnx_path: str | Path, texts: Sequence[str], batch_sizes: Sequence[int] = (1, 3, 7, 16),
                max_abs_diff: float = MAX_ABS_DIFF, min_cosine: float = MIN_COSINE, check: bool = True,
                session=None) -> Parity:
    """Compare the ONNX text encoder with ``model.encode_text`` on real ``texts`` (padded batches)."""
    session = session or create_session(onnx_path, threads=1)
    names = {i.name for i in session.get_inputs()}
    model.eval()

    def tokens(part: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return model.tokenize(list(texts[part]))

    def run_torch(part: slice) -> np.ndarray:
        with torch.no_grad():
            return model.encode_text(*tokens(part)).numpy()

    def run_onnx(part: slice) -> np.ndarray:
        ids, mask = tokens(part)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        return session.run([OUTPUT], {k: v for k, v in feeds.items() if k in names})[0]

    return _parity(run_torch, run_onnx, len(texts), batch_sizes, f"text {Path(onnx_path).name}", max_abs_diff,
                   min_cosine, check)


def image_parity(model, onnx_path: str | Path, images: Sequence[Image.Image], batch_sizes: Sequence[int] = (1, 3, 5),
                 max_abs_diff: float = MAX_ABS_DIFF, min_cosine: float = MIN_COSINE, check: bool = True,
                 session=None) -> Parity:
    """Compare the ONNX image encoder with ``model.encode_image`` on real ``images``."""
    session = session or create_session(onnx_path, threads=1)
    pixels = model.preprocessor(list(images))
    model.eval()

    def run_torch(part: slice) -> np.ndarray:
        with torch.no_grad():
            return model.encode_image(torch.from_numpy(pixels[part])).numpy()

    def run_onnx(part: slice) -> np.ndarray:
        return session.run([OUTPUT], {IMAGE_INPUT: pixels[part]})[0]

    return _parity(run_torch, run_onnx, len(pixels), batch_sizes, f"image {Path(onnx_path).name}", max_abs_diff,
                   min_cosine, check)
