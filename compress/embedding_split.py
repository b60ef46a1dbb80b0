"""Frequency-split token embeddings: common tokens at 8 bits, the rest at 4 bits.

The word-embedding table is three quarters of the text tower's bytes. Storing every row at 8 bits
leaves an INT8 bundle at ~26% of fp32 (the tokenizer and float scales do not shrink). Tokens are not
equal, though: the rows that carry most token occurrences are few (in the demo's training texts the 10%
most frequent tokens are 78% of all occurrences), so the default keeps the most frequent 5% at 8 bits and
stores the rarest 95% at 4 bits in blocks of 128 values (measured on the demo student: 9.96 instead of
12.9 MB with 40% in blocks of 32, Recall@10 within 0.01, WordNet top-10 overlap with fp32 0.915 instead of
0.934; ``bench/results/embedding_split.md`` and ``embedding_split_f16.md``).

This module rewrites the fp32 graph's embedding ``Gather`` into

    r      = Gather(remap, input_ids)              # int32: hot row index >= 0, or -(cold row index) - 1
    hot    = GatherBlockQuantized(8-bit table, max(r, 0))
    cold   = GatherBlockQuantized(4-bit table, max(-r - 1, 0))
    output = Where(r >= 0, hot, cold)

(``com.microsoft.GatherBlockQuantized`` with packed ``uint8`` data, asymmetric per block, so the
graph also converts to the ORT format). The cold tier's scales are float16 (its rows' values come out in
float16 and are cast to float32; half-precision rounding is ~100x finer than a 4-bit step) and each of its
blocks has its range clipped to the least-squares choice of :data:`CLIP_FACTORS`; ``remap`` is int16 when
both tiers hold fewer than 32768 rows. Together these take 0.29 MB off the demo student's INT8 bundle
at 90% / 64. Which tokens are "rare" comes from token counts over the *training* texts only
(:func:`token_counts`); held-out sets never choose it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from edgeret.distill.vocab import token_counts as count

logger = logging.getLogger(__name__)

HOT_BITS, COLD_BITS = 8, 4
#: cold-row block sizes GatherBlockQuantized takes (a power of two >= 16) that divide common widths
COLD_BLOCKS = (16, 32, 64, 128)


@dataclass
class SplitReport:
    """What :func:`split_embedding` did."""

    table: str
    vocab: int
    hot_rows: int
    cold_rows: int
    hot_block: int
    cold_block: int
    bytes_before: int
    bytes_after: int
    remap_node: str  # the remap Gather (int16 or int32 data; a quantiser must leave it alone)

    def to_dict(self) -> dict[str, int | str]:
        """The report as a JSON-ready dict."""
        return dict(self.__dict__)


def token_counts(tokenizer: Any, texts: Iterable[str]) -> np.ndarray:
    """Occurrences of every token id in ``texts`` (:func:`distill.vocab.token_counts`); ``tokenizer`` is a
    ``tokenizers.Tokenizer`` (left unchanged) or the path of a ``tokenizer.json``."""
    return count(tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_file(str(tokenizer)), texts)


def quantize_blocks(table: np.ndarray, bits: int, block: int, scale_dtype: type = np.float32,
                    clip_search: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric per-block quantisation along rows: (data, scales, zero_points) as GatherBlockQuantized
    takes them (4-bit values and zero points packed two per byte, low nibble first).

    ``scale_dtype`` is the stored scales' type (``np.float16`` halves their bytes; codes are computed with
    the rounded scales, so dequantising is exact to them). ``clip_search`` shrinks each block's range by the
    factor in :data:`CLIP_FACTORS` with the least squared error (values beyond it clip)."""
    rows, dim = table.shape
    if dim % block:
        raise ValueError(f"block size {block} does not divide the embedding width {dim}")
    groups = table.reshape(rows, dim // block, block).astype(np.float32)
    qmax = 2**bits - 1
    low, high = np.minimum(groups.min(-1), 0.0), np.maximum(groups.max(-1), 0.0)
    if clip_search:
        factor = _best_clip(groups, low, high, qmax, scale_dtype)
        low, high = low * factor, high * factor
    scale = _stored_scales(high - low, qmax, scale_dtype)
    zero, codes = _codes(groups, low, scale.astype(np.float32), qmax)
    data, zero = codes.reshape(rows, dim), zero.astype(np.uint8)
    if bits == 4:
        data = (data[:, 0::2] | (data[:, 1::2] << 4)).astype(np.uint8)
        if zero.shape[1] % 2:
            zero = np.pad(zero, ((0, 0), (0, 1)))
        zero = (zero[:, 0::2] | (zero[:, 1::2] << 4)).astype(np.uint8)
    return data, scale, zero


#: range factors :func:`quantize_blocks` tries per block with ``clip_search`` (measured on the demo student's
#: table: 4-bit row error 0.091 -> 0.087 of the row norm at blocks of 64, 0.101 -> 0.095 at 128)
CLIP_FACTORS = tuple(float(f) for f in np.linspace(1.0, 0.6, 17))


def _stored_scales(span: np.ndarray, qmax: int, dtype: type) -> np.ndarray:
    with np.errstate(over="ignore"):
        scale = (np.maximum(span, 1e-12) / qmax).astype(dtype)
    if not np.all(np.isfinite(scale)):
        raise ValueError(f"block scales overflow {np.dtype(dtype).name}; quantise with float32 scales")
    return np.maximum(scale, np.finfo(dtype).smallest_subnormal).astype(dtype)


def _codes(groups: np.ndarray, low: np.ndarray, scale: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    zero = np.clip(np.round(-low / scale), 0, qmax)
    codes = np.clip(np.round(groups / scale[..., None]) + zero[..., None], 0, qmax).astype(np.uint8)
    return zero, codes


def _best_clip(groups: np.ndarray, low: np.ndarray, high: np.ndarray, qmax: int, dtype: type) -> np.ndarray:
    """Per block, the factor of :data:`CLIP_FACTORS` whose shrunk range quantises with the least error."""
    best, factor = np.full(low.shape, np.inf), np.ones(low.shape, dtype=np.float32)
    for f in CLIP_FACTORS:
        scale = _stored_scales((high - low) * f, qmax, dtype).astype(np.float32)
        zero, codes = _codes(groups, low * f, scale, qmax)
        error = (((codes - zero[..., None]) * scale[..., None] - groups) ** 2).sum(-1)
        better = error < best
        best[better], factor[better] = error[better], f
    return factor


def dequantize_blocks(data: np.ndarray, scales: np.ndarray, zero: np.ndarray, bits: int, block: int) -> np.ndarray:
    """Inverse of :func:`quantize_blocks` (for tests and error estimates)."""
    if bits == 4:
        data = np.stack([data & 0x0F, data >> 4], axis=-1).reshape(data.shape[0], -1)
        zero = np.stack([zero & 0x0F, zero >> 4], axis=-1).reshape(zero.shape[0], -1)[:, : scales.shape[1]]
    rows, dim = data.shape
    groups = data.reshape(rows, dim // block, block).astype(np.float32)
    return ((groups - zero[..., None].astype(np.float32)) * scales[..., None].astype(np.float32)).reshape(rows, dim)


def find_embedding_gather(model: onnx.ModelProto, vocab: int) -> onnx.NodeProto:
    """The Gather reading the ``(vocab, hidden)`` float initializer (the word embeddings)."""
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        if table is not None and table.data_type == TensorProto.FLOAT and len(table.dims) == 2 \
                and table.dims[0] == vocab:
            return node
    raise ValueError(f"no Gather over a ({vocab}, hidden) float table in the graph")


def hot_and_cold(counts: np.ndarray, cold_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Token ids sorted ascending: the ``1 - cold_share`` most frequent (ties: lower id) and the rest."""
    if not 0.0 <= cold_share < 1.0:
        raise ValueError(f"cold_share must be in [0, 1), got {cold_share}")
    order = np.argsort(-counts, kind="stable")
    n_cold = int(round(len(counts) * cold_share))
    hot, cold = order[: len(counts) - n_cold], order[len(counts) - n_cold :]
    return np.sort(hot), np.sort(cold)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


@dataclass(frozen=True)
class Tier:
    """How one tier of rows is stored: bits per value, values per block, scale type, clipping search."""

    bits: int
    block: int
    scale_dtype: type = np.float32
    clip_search: bool = False


class NoBlockFits(ValueError):
    """No block size GatherBlockQuantized takes divides the embedding width (the table cannot be split)."""


def fit_block(requested: int, width: int) -> int:
    """``requested`` if it divides ``width``, else the largest smaller size of :data:`COLD_BLOCKS` that does
    (else the smallest larger one); raises :class:`NoBlockFits` when none does."""
    fitting = [b for b in COLD_BLOCKS if width % b == 0]
    if not fitting:
        raise NoBlockFits(f"no block size of {COLD_BLOCKS} divides the embedding width {width}")
    smaller = [b for b in fitting if b <= requested]
    block = max(smaller) if smaller else min(fitting)
    if block != requested:
        logger.warning("embedding split: block %d does not divide the width %d; using %d", requested, width, block)
    return block


def split_embedding(src: str | Path, dst: str | Path, counts: np.ndarray, cold_share: float = 0.4,
                    hot_block: int = 128, cold_block: int = 32) -> SplitReport:
    """Rewrite the embedding Gather of the fp32 graph ``src`` into the hot/cold form; writes ``dst``.

    Hot rows: 8 bits, float32 scales. Cold rows: 4 bits, float16 scales, range clipped per block by least
    squared error. The remap table is int16 when both tiers have fewer than 32768 rows. A block that does
    not divide the table's width becomes the nearest one that does (:func:`fit_block`; the report has it)."""
    model = onnx.load(str(src))
    node = find_embedding_gather(model, len(counts))
    table_init = next(i for i in model.graph.initializer if i.name == node.input[0])
    table = numpy_helper.to_array(table_init)
    hot_block, cold_block = fit_block(hot_block, table.shape[1]), fit_block(cold_block, table.shape[1])
    hot, cold = hot_and_cold(counts, cold_share)
    if len(cold) == 0:
        raise ValueError("cold_share leaves no cold rows; use the plain INT8 table")
    prefix, out = node.name or "embedding", node.output[0]
    names = {k: f"{prefix}/split/{k}" for k in ("remap", "r", "is_hot", "hot_idx", "neg", "cold_raw", "cold_idx",
                                                 "zero", "one", "axis", "mask", "hot", "cold")}
    inits, nodes = _remap_nodes(names, node.input[1], hot, cold)
    tiers = (("hot", hot, Tier(HOT_BITS, hot_block), names["hot_idx"]),
             ("cold", cold, Tier(COLD_BITS, cold_block, np.float16, True), names["cold_idx"]))
    for part, ids, tier, index in tiers:
        tier_inits, tier_nodes = _tier_nodes(f"{prefix}/split/{part}_table", table[ids], tier, index, names[part])
        inits, nodes = inits + tier_inits, nodes + tier_nodes
    nodes.append(helper.make_node("Where", [names["mask"], names["hot"], names["cold"]], [out], name=f"{prefix}/split"))
    _replace_node(model, node, nodes, inits, drop_init=table_init.name)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    report = SplitReport(table=table_init.name, vocab=len(counts), hot_rows=len(hot), cold_rows=len(cold),
                         hot_block=hot_block, cold_block=cold_block, bytes_before=int(table.nbytes),
                         bytes_after=int(sum(numpy_helper.to_array(i).nbytes for i in inits)),
                         remap_node=names["remap"] + "_gather")
    logger.info("embedding split: %d rows at 8 bits, %d at 4 bits: %.2f -> %.2f MB", report.hot_rows,
                report.cold_rows, report.bytes_before / 1e6, report.bytes_after / 1e6)
    return report


def _remap_nodes(names: dict[str, str], ids: str, hot: np.ndarray,
                 cold: np.ndarray) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """``r = remap[ids]`` (hot row >= 0, or -(cold row) - 1) as int32, and the two tiers' row indices."""
    small = max(len(hot), len(cold)) < 2**15
    remap = np.empty(len(hot) + len(cold), dtype=np.int16 if small else np.int32)
    remap[hot] = np.arange(len(hot))
    remap[cold] = -np.arange(len(cold)) - 1
    inits = [_init(names["remap"], remap), _init(names["zero"], np.array(0, np.int32)),
             _init(names["one"], np.array(1, np.int32)), _init(names["axis"], np.array([-1], np.int64))]
    gathered = names["r"] + "_int16" if small else names["r"]
    nodes = [helper.make_node("Gather", [names["remap"], ids], [gathered], name=names["remap"] + "_gather")]
    if small:
        nodes.append(helper.make_node("Cast", [gathered], [names["r"]], name=names["r"], to=TensorProto.INT32))
    nodes += [helper.make_node("GreaterOrEqual", [names["r"], names["zero"]], [names["is_hot"]], name=names["is_hot"]),
              helper.make_node("Max", [names["r"], names["zero"]], [names["hot_idx"]], name=names["hot_idx"]),
              helper.make_node("Neg", [names["r"]], [names["neg"]], name=names["neg"]),
              helper.make_node("Sub", [names["neg"], names["one"]], [names["cold_raw"]], name=names["cold_raw"]),
              helper.make_node("Max", [names["cold_raw"], names["zero"]], [names["cold_idx"]], name=names["cold_idx"]),
              helper.make_node("Unsqueeze", [names["is_hot"], names["axis"]], [names["mask"]], name=names["mask"])]
    return inits, nodes


def _tier_nodes(base: str, rows: np.ndarray, tier: Tier, index: str,
                out: str) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """One tier's quantised table and its GatherBlockQuantized (cast to float32 when the scales are not)."""
    try:
        data, scales, zero = quantize_blocks(rows, tier.bits, tier.block, tier.scale_dtype, tier.clip_search)
    except ValueError as exc:  # a table too wide-ranging for float16 scales keeps float32 ones
        logger.warning("embedding split: %s", exc)
        data, scales, zero = quantize_blocks(rows, tier.bits, tier.block, np.float32, tier.clip_search)
    inits = [_init(base, data), _init(base + "_scales", scales), _init(base + "_zero_points", zero)]
    cast = scales.dtype != np.float32
    gathered = out + "_" + scales.dtype.name if cast else out
    nodes = [helper.make_node("GatherBlockQuantized", [base, index, base + "_scales", base + "_zero_points"],
                              [gathered], name=out, domain="com.microsoft", gather_axis=0, quantize_axis=1,
                              block_size=tier.block, bits=tier.bits)]
    if cast:
        nodes.append(helper.make_node("Cast", [gathered], [out], name=out + "_cast", to=TensorProto.FLOAT))
    return inits, nodes


def _replace_node(model: onnx.ModelProto, old: onnx.NodeProto, new: list[onnx.NodeProto],
                  inits: list[onnx.TensorProto], drop_init: str) -> None:
    graph = model.graph
    position = list(graph.node).index(old)
    graph.node.remove(old)
    for offset, node in enumerate(new):
        graph.node.insert(position + offset, node)
    still_used = any(drop_init in n.input for n in graph.node)
    if not still_used:
        kept = [i for i in graph.initializer if i.name != drop_init]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    graph.initializer.extend(inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
