"""One tower of a student -> its bundle file: ONNX export, parity with torch, offline optimisation, quantisation.

:data:`TOWERS` maps a tower name to its builder; a student without a tower (text-only, image-only) simply
has no entry to build. Quantisation per tower mode: text ``int8`` = dynamic INT8 (the rarest tokens'
embedding rows at 4 bits, :mod:`.embedding_split`), ``int4`` = MatMulNBits (the same embedding split); image
``int8`` = static QDQ calibrated on real images with the stem and blocks 0-3 in float; ``fp16`` casts either.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.distill.student import DualEncoder

from . import export as ex
from . import quantize as q
from .calibration import Calibration
from .embedding_split import NoBlockFits, split_embedding, token_counts
from .optimize import IMAGE_CANDIDATES, TEXT_CANDIDATES, choose_fastest, latency_ms

logger = logging.getLogger(__name__)

#: image nodes left in float by default: the stem and blocks 0-3 (64x64 and 32x32 maps, where 8-bit activations
#: cost most; 50 KB of float weights, ~+7% latency). Measured on the student: image mean cosine 0.986 -> 0.9975,
#: top-10 overlap t2i/i2t 0.854/0.859 -> 0.918/0.919 (with full-range depthwise weights, see quantize_image_int8)
IMAGE_INT8_EXCLUDE = ("_conv_stem/", "_blocks.0/", "_blocks.1/", "_blocks.2/", "_blocks.3/")


@dataclass
class TowerFiles:
    """What building one tower produced."""

    raw: Path  # plain fp32 export
    fp32: Path  # optimised fp32
    file: Path  # what the bundle ships (fp32 or quantised)
    mode: str
    parity: dict[str, float]
    optimisation: dict[str, Any]
    feeds: dict[str, np.ndarray]  # one query (latency)
    parity_feeds: dict[str, np.ndarray]  # a batch of real inputs (.ort parity)
    extra: dict[str, Any] = field(default_factory=dict)

    def latency_ms(self) -> float:
        """Median 1-thread latency of the shipped file on one query."""
        return round(latency_ms(self.file, self.feeds), 3)


def _optimise(raw: Path, dst: Path, feeds: dict, candidates: Any, check: Callable[[Path], bool],
              optimize: bool) -> dict[str, Any]:
    if optimize:
        winner, timings = choose_fastest(raw, dst, feeds, candidates, check)
    else:
        shutil.copyfile(raw, dst)
        winner, timings = "plain", {"plain": round(latency_ms(dst, feeds), 3)}
    return {"kept": winner, "latency_ms_1t": timings}


def text_tower(model: DualEncoder, work: Path, mode: str, options: Any, cal: Calibration) -> TowerFiles:
    """The text tower at ``mode`` (fp32, int8, int4, fp16)."""
    texts = [*cal.parity_texts, " ".join(["long"] * 4 * model.config.text.max_length)]
    raw = ex.export_text(model, work / "text_raw.onnx")
    parity = ex.text_parity(model, raw, texts).to_dict()
    ids, mask = model.tokenize(["a small round fruit with a red skin and a stone inside"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    fp32 = work / "text_fp32.onnx"
    optimisation = _optimise(raw, fp32, feeds, TEXT_CANDIDATES,
                             lambda p: ex.text_parity(model, p, texts, check=False).ok(), options.optimize)
    ids, mask = model.tokenize(texts)
    files = TowerFiles(raw, fp32, fp32, mode, parity, optimisation, feeds,
                       {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    if mode == "int8":
        files.file = _text_int8(model, raw, work, options, cal, files.extra)
    elif mode == "int4":
        files.file = _text_int4(model, raw, work, options, cal, files.extra)
    elif mode == "fp16":
        files.file = q.convert_fp16(raw, work / "text_fp16.onnx")
    return files


def _split(model: DualEncoder, raw: Path, work: Path, options: Any, cal: Calibration,
           extra: dict[str, Any]) -> tuple[Path, list[str]] | None:
    """With ``embedding_cold_share``: the graph with the word embedding split (hot rows 8-bit, the rarest
    tokens' rows 4-bit) and the node (its int16 remap) the quantiser must leave alone; None without a split."""
    if options.embedding_cold_share <= 0:
        return None
    counts = token_counts(model.tokenizer, cal.training_texts())
    try:
        split = split_embedding(raw, work / "text_split.onnx", counts, cold_share=options.embedding_cold_share,
                                cold_block=options.embedding_cold_block)
    except NoBlockFits as exc:
        logger.warning("%s: every embedding row stays at 8 bits", exc)
        return None
    extra["embedding_split"] = split.to_dict()
    return work / "text_split.onnx", [split.remap_node]


def _text_int8(model: DualEncoder, raw: Path, work: Path, options: Any, cal: Calibration,
               extra: dict[str, Any]) -> Path:
    """Dynamic INT8 text tower; with ``embedding_cold_share`` the rarest tokens' embedding rows at 4 bits."""
    source, exclude = _split(model, raw, work, options, cal, extra) or (raw, [])
    return q.quantize_text_int8(source, work / "text_int8.onnx", per_channel=options.per_channel, exclude=exclude)


def _text_int4(model: DualEncoder, raw: Path, work: Path, options: Any, cal: Calibration,
               extra: dict[str, Any]) -> Path:
    """INT4 text tower: MatMulNBits weights; the word embedding split as INT8's (hot rows 8-bit, the rest 4-bit
    with float16 block scales, storable in the ORT format), or, without a split, all rows GatherBlockQuantized."""
    split = _split(model, raw, work, options, cal, extra)
    if split is None:
        return q.quantize_int4(raw, work / "text_int4.onnx", block_size=options.block_size)
    source, exclude = split
    # the remaining float tables (position and token-type embeddings) at 8 bits, as INT8's are
    hot = q.quantize_text_int8(source, work / "text_hot8.onnx", per_channel=options.per_channel, exclude=exclude,
                               ops=("Gather",))
    return q.quantize_int4(hot, work / "text_int4.onnx", block_size=options.block_size, gather=False)


def image_tower(model: DualEncoder, work: Path, mode: str, options: Any, cal: Calibration) -> TowerFiles:
    """The image tower at ``mode`` (fp32, int8, fp16)."""
    images = cal.parity_images
    raw = ex.export_image(model, work / "image_raw.onnx")
    parity = ex.image_parity(model, raw, images).to_dict()
    feeds = {"pixel_values": model.preprocessor(images[:1])}
    fp32 = work / "image_fp32.onnx"
    optimisation = _optimise(raw, fp32, feeds, IMAGE_CANDIDATES,
                             lambda p: ex.image_parity(model, p, images, check=False).ok(), options.optimize)
    files = TowerFiles(raw, fp32, fp32, mode, parity, optimisation, feeds,
                       {"pixel_values": model.preprocessor(images)})
    if mode == "int8":
        calibration = model.preprocessor(cal.calibration_images)
        files.file = q.quantize_image_int8(raw, work / "image_int8.onnx", calibration,
                                           per_channel=options.per_channel, exclude=IMAGE_INT8_EXCLUDE)
    elif mode == "fp16":
        files.file = q.convert_fp16(raw, work / "image_fp16.onnx")
    return files


#: tower name -> builder
TOWERS: dict[str, Callable[[DualEncoder, Path, str, Any, Calibration], TowerFiles]] = {
    "text": text_tower, "image": image_tower,
}
