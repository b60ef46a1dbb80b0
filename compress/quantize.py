"""Quantised variants of the exported towers.

* ``int8`` text: dynamic quantisation (weights int8 offline, activations at run time) of every MatMul
  with a weight and of the embedding Gathers (a bundle stores the rarest tokens' rows at 4 bits instead:
  :mod:`compress.embedding_split`). Weights default to **uint8, per channel**: on x86 CPUs
  without VNNI, u8 x s8 products saturate in the AVX2 kernels (measured: mean cosine 0.985 vs 0.999
  with u8 weights). :func:`sensitive_nodes` finds MatMuls that still hurt and excludes them.
* ``int8`` image: static QDQ, per-channel 7-bit int8 weights (same saturation reason), uint8 activations
  calibrated on real rendered images (dynamic quantisation is known to wreck depthwise convolutions);
  depthwise weights keep all 8 bits (their kernel cannot saturate); the bundle keeps the stem and the first
  four blocks (64x64 and 32x32 maps, where 8-bit activation noise piles up; 50 KB of weights) in float.
* ``int4``: weight-only MatMulNBits (and GatherBlockQuantized for the embedding table), block size
  configurable. A CNN has almost no MatMul, so INT4 only pays off for the text tower.
* ``fp16``: weights and compute in float16, inputs/outputs kept float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx

logger = logging.getLogger(__name__)

TEXT_INT8_OPS = ("MatMul", "Gather")


def weight_matmuls(model: onnx.ModelProto, op_types: Sequence[str] = ("MatMul", "Gemm")) -> list[str]:
    """Names of the nodes of ``op_types`` that have an initializer input (i.e. a weight)."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in op_types and any(i in inits for i in n.input)]


def quantize_text_int8(src: str | Path, dst: str | Path, per_channel: bool = True, weight_type: str = "uint8",
                       exclude: Sequence[str] = (), reduce_range: bool = False,
                       ops: Sequence[str] = TEXT_INT8_OPS) -> Path:
    """Dynamic INT8 text tower: MatMul weights and embedding tables (Gather) quantised (``ops``: only those op
    types); ``exclude`` stays fp32."""
    # lazy: onnxruntime's quantisation tools reconfigure the root logger at import
    from onnxruntime.quantization import (
        QuantType,
        quantize_dynamic,
    )

    model = onnx.load(str(src))
    matmuls = set(weight_matmuls(model, ("MatMul",)))
    activation_matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in matmuls]
    quantize_dynamic(
        str(src), str(dst), op_types_to_quantize=list(ops), per_channel=per_channel,
        reduce_range=reduce_range, weight_type=QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8,
        nodes_to_exclude=[*activation_matmuls, *exclude],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return Path(dst)


class ImageCalibration:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over preprocessed image batches."""

    def __init__(self, pixels: np.ndarray, input_name: str = "pixel_values", batch: int = 8):
        self._batches = [pixels[i : i + batch].astype(np.float32) for i in range(0, len(pixels), batch)]
        self._input = input_name
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next calibration batch (None when done), as onnxruntime's calibrator asks."""
        if self._pos >= len(self._batches):
            return None
        self._pos += 1
        return {self._input: self._batches[self._pos - 1]}

    def rewind(self) -> None:
        """Start over from the first batch."""
        self._pos = 0


def depthwise_weights(model: onnx.ModelProto, skip: Sequence[str] = ()) -> list[str]:
    """Weight initializers of the grouped (depthwise) convolutions, except those of nodes named in ``skip``."""
    inits = {i.name for i in model.graph.initializer}
    return [n.input[1] for n in model.graph.node
            if n.op_type == "Conv" and n.name not in skip and n.input[1] in inits
            and next((a.i for a in n.attribute if a.name == "group"), 1) > 1]


def quantize_image_int8(src: str | Path, dst: str | Path, calibration_pixels: np.ndarray, per_channel: bool = True,
                        exclude: Sequence[str] = (), method: str = "minmax", weight_type: str = "int8",
                        reduce_range: bool = True, depthwise_full_range: bool = True) -> Path:
    """Static QDQ INT8 image tower calibrated on ``calibration_pixels`` (real preprocessed images).

    ``exclude``: node names, or substrings of node names (e.g. ``"_conv_stem/"``), left in float.
    u8 x s8 products saturate in x86 AVX2 kernels; measured on a default student (48 test emoji, 1 thread):
    int8 weights 0.988 / 0.932 mean / min cosine to fp32 at 3.9 ms; ``reduce_range`` (7-bit) 0.990 / 0.968
    at 3.8 ms (the default); ``weight_type='uint8'`` 0.997 / 0.993 but 19.5 ms (no fused kernel; fp32 5.8 ms).
    ``depthwise_full_range``: depthwise conv weights keep all 8 bits even with ``reduce_range`` (the depthwise
    kernel does not sum u8 x s8 pairs in int16, so it cannot saturate); measured on the student (128 val images):
    mean cosine 0.9871 -> 0.9927, same latency and bytes.
    """
    # lazy: onnxruntime's quantisation tools reconfigure the root logger at import
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    # lazy: onnxruntime's tools reconfigure the root logger at import
    from onnxruntime.quantization.shape_inference import (
        quant_pre_process,  # lazy: onnxruntime's quantisation tools reconfigure the root logger at import
    )

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    dst = Path(dst)
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre))
    names = [n.name for n in graph.graph.node]
    excluded = [n for n in names if any(n == e or e in n for e in exclude)]
    overrides = {}
    if depthwise_full_range and reduce_range and weight_type != "uint8":
        overrides = {w: [{"axis": 0, "reduce_range": False}] for w in depthwise_weights(graph, excluded)}
    try:
        quantize_static(
            str(pre), str(dst), ImageCalibration(calibration_pixels), quant_format=QuantFormat.QDQ,
            per_channel=per_channel, reduce_range=reduce_range and weight_type != "uint8",
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": weight_type != "uint8",
                           **({"TensorQuantOverrides": overrides} if overrides else {})},
        )
    finally:
        pre.unlink(missing_ok=True)
    return dst


def quantize_int4(src: str | Path, dst: str | Path, block_size: int = 32, symmetric: bool = True,
                  gather: bool = True, accuracy_level: int | None = 4) -> Path:
    """Weight-only INT4 (MatMulNBits; GatherBlockQuantized for embedding tables when ``gather``)."""
    # lazy: onnxruntime's quantisation tools reconfigure the root logger at import
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    ops = ("MatMul", "Gather") if gather else ("MatMul",)
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric, accuracy_level=accuracy_level,
                                          op_types_to_quantize=ops, quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), False)
    return Path(dst)


def has_4bit_tensors(path: str | Path) -> bool:
    """Whether the model stores a 4-bit tensor (uint4/int4, e.g. GatherBlockQuantized's table): the ORT format
    cannot ('Unsupported tensor data type')."""
    four_bit = {onnx.TensorProto.UINT4, onnx.TensorProto.INT4}
    return any(init.data_type in four_bit for init in onnx.load(str(path), load_external_data=False).graph.initializer)


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Float16 weights and compute; graph inputs and outputs stay float32 (runtime contract)."""
    # lazy: onnxruntime's tools reconfigure the root logger at import
    from onnxruntime.transformers.float16 import (
        convert_float_to_float16,  # lazy: onnxruntime's tools reconfigure the root logger at import
    )

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, disable_shape_infer=False)
    onnx.save(model, str(dst))
    return Path(dst)


def sensitive_nodes(
    src: str | Path,
    quantize: Callable[[Path, Path, Sequence[str]], Path],
    score: Callable[[Path], float],
    candidates: Sequence[str],
    work_dir: str | Path,
    target: float,
    max_excluded: int = 4,
) -> list[str]:
    """Greedily exclude the nodes whose quantisation costs most until ``score`` (e.g. mean cosine) >= target.

    Each candidate is scored by quantising everything but it; the best exclusions are added one at a
    time (at most ``max_excluded``). Returns the exclusion list (possibly empty).
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    excluded: list[str] = []
    current = score(quantize(Path(src), work / "q.onnx", excluded))
    while current < target and len(excluded) < max_excluded:
        trials = {}
        for node in candidates:
            if node not in excluded:
                trials[node] = score(quantize(Path(src), work / "q.onnx", [*excluded, node]))
        if not trials:
            break
        best = max(trials, key=trials.get)
        if trials[best] <= current:
            break
        excluded.append(best)
        current = trials[best]
        logger.info("excluding %s from quantisation: score %.5f", best, current)
    return excluded
