"""Student checkpoint (or model) -> bundle: export + parity -> optimise -> quantise -> manifest.

    from edgeret.compress.bundle import CompressOptions, build_bundle
    report = build_bundle("artifacts/student", "artifacts/bundles/int8", CompressOptions(quant="int8"))

The bundle folder (DESIGN.md): ``manifest.json``, ``text_encoder[_q].onnx``, ``image_encoder[_q].onnx``,
``tokenizer.json``, ``preprocessor.json``, ``compress_report.json`` and an empty index section.
Quantisation per bundle mode: ``int8`` = INT8 text (dynamic; the rarest tokens' embedding rows at 4 bits,
:mod:`edgeret.compress.embedding_split`) + INT8 image (static QDQ, blocks 0-3 float); ``int4`` = INT4
text (MatMulNBits) + INT8 image (a CNN has nothing for MatMulNBits); ``fp16`` both fp16. Pruning happens
before, in :mod:`edgeret.distill.pruning` (``edgeret compress --prune`` runs both).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeret.data.samples import real_images, real_texts
from edgeret.distill.flops import size_and_flops
from edgeret.distill.student import DualEncoder, load_student
from edgeret.runtime.bundle import OPERATOR_CONFIG, write_manifest

from . import export as ex
from . import quantize as q
from .agreement import DEFAULT_SETS, OnnxEncoder, agreement, load_sets
from .embedding_split import split_embedding, token_counts, training_texts
from .optimize import IMAGE_CANDIDATES, TEXT_CANDIDATES, choose_fastest, latency_ms
from .ort_format import convert_to_ort, ort_parity, write_operator_config

logger = logging.getLogger(__name__)

QUANT_MODES = ("fp32", "int8", "int4", "fp16")
#: bundle mode -> (text tower quantisation, image tower quantisation)
TOWER_QUANT = {"fp32": ("fp32", "fp32"), "int8": ("int8", "int8"), "int4": ("int4", "int8"), "fp16": ("fp16", "fp16")}
#: image nodes left in float by default: the stem and blocks 0-3 (64x64 and 32x32 maps, where 8-bit activations
#: cost most; 50 KB of float weights, ~+7% latency). Measured on the student: image mean cosine 0.986 -> 0.9975,
#: top-10 overlap t2i/i2t 0.854/0.859 -> 0.918/0.919 (with full-range depthwise weights, see quantize_image_int8)
IMAGE_INT8_EXCLUDE = ("_conv_stem/", "_blocks.0/", "_blocks.1/", "_blocks.2/", "_blocks.3/")
INDEX = {"space": "cosine", "M": 16, "ef_construction": 200, "ef_search": 64}
INT8_TARGETS = {"top10_overlap": 0.9, "recall_drop": 0.02}
#: .ort vs .onnx, per item, by (float tower?): float graphs agree to rounding; in a quantised graph the
#: portable .ort keeps the float stem out of x86's NCHWc kernels, and a last-bit change before a
#: QuantizeLinear can flip a rounding step (measured: INT8 image min cosine 0.99946 over 16 images)
ORT_PARITY_MIN_COSINE = {True: 0.9999, False: 0.999}


@dataclass
class CompressOptions:
    """Everything ``edgeret compress`` can set."""

    quant: str = "fp32"
    block_size: int = 32
    per_channel: bool = True
    optimize: bool = True
    parity_texts: int = 64
    parity_images: int = 16
    calibration_images: int = 64
    agreement_sets: tuple[str, ...] = DEFAULT_SETS
    agreement_sample: int | None = None  # queries per set (None = all)
    check_agreement: bool = True
    keep_work: bool = False
    ort: bool = False  # also write .ort models + required_operators.config (onnxruntime mobile)
    #: INT8 text towers: share of the vocabulary (the rarest tokens of the training texts) whose embedding
    #: rows are stored at 4 bits instead of 8 (compress.embedding_split); 0 keeps every row at 8 bits
    embedding_cold_share: float = 0.4

    def __post_init__(self) -> None:
        if self.quant not in QUANT_MODES:
            raise ValueError(f"quant must be one of {QUANT_MODES}, got {self.quant!r}")
        if not 0.0 <= self.embedding_cold_share < 1.0:
            raise ValueError(f"embedding_cold_share must be in [0, 1), got {self.embedding_cold_share}")



def _suffix(mode: str) -> str:
    return "" if mode == "fp32" else f"_{mode}"


def _export(model, work: Path, options: CompressOptions) -> dict[str, Any]:
    """fp32 ONNX per tower, parity-checked, graph-optimised where faster; returns paths and numbers."""
    texts = real_texts(options.parity_texts) + [" ".join(["long"] * 4 * model.config.text.max_length)]
    images = real_images(options.parity_images)
    text_raw, image_raw = ex.export_text(model, work / "text_raw.onnx"), ex.export_image(model, work / "image_raw.onnx")
    parity = {"text": ex.text_parity(model, text_raw, texts).to_dict(),
              "image": ex.image_parity(model, image_raw, images).to_dict()}
    out = {"text_raw": text_raw, "image_raw": image_raw, "parity": parity}
    ids, mask = model.tokenize(["a small round fruit with a red skin and a stone inside"])
    feeds = {"text": {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
             "image": {"pixel_values": model.preprocessor(images[:1])}}
    for tower, raw, candidates, check in (
        ("text", text_raw, TEXT_CANDIDATES, lambda p: ex.text_parity(model, p, texts, check=False).ok()),
        ("image", image_raw, IMAGE_CANDIDATES, lambda p: ex.image_parity(model, p, images, check=False).ok()),
    ):
        dst = work / f"{tower}_fp32.onnx"
        if options.optimize:
            winner, timings = choose_fastest(raw, dst, feeds[tower], candidates, check)
        else:
            shutil.copyfile(raw, dst)
            winner, timings = "plain", {"plain": round(latency_ms(dst, feeds[tower]), 3)}
        out[tower] = dst
        out[f"{tower}_optimisation"] = {"kept": winner, "latency_ms_1t": timings}
    out["feeds"] = feeds
    ids, mask = model.tokenize(texts)
    out["parity_feeds"] = {"text": {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
                           "image": {"pixel_values": model.preprocessor(images)}}
    return out


def _quantize(model, fp32: dict[str, Any], work: Path, options: CompressOptions) -> dict[str, Path]:
    """The bundle's tower files for ``options.quant`` (fp32 paths when unquantised)."""
    text_mode, image_mode = TOWER_QUANT[options.quant]
    files = {}
    if text_mode == "fp32":
        files["text"] = fp32["text"]
    elif text_mode == "int8":
        files["text"] = _text_int8(model, fp32, work, options)
    elif text_mode == "int4":
        files["text"] = q.quantize_int4(fp32["text_raw"], work / "text_int4.onnx", block_size=options.block_size)
    else:
        files["text"] = q.convert_fp16(fp32["text_raw"], work / "text_fp16.onnx")
    if image_mode == "fp32":
        files["image"] = fp32["image"]
    elif image_mode == "int8":
        calibration = model.preprocessor(real_images(options.calibration_images, split="train", seed=1))
        files["image"] = q.quantize_image_int8(fp32["image_raw"], work / "image_int8.onnx", calibration,
                                               per_channel=options.per_channel, exclude=IMAGE_INT8_EXCLUDE)
    else:
        files["image"] = q.convert_fp16(fp32["image_raw"], work / "image_fp16.onnx")
    return files


def _text_int8(model, fp32: dict[str, Any], work: Path, options: CompressOptions) -> Path:
    """Dynamic INT8 text tower; with ``embedding_cold_share`` the rarest tokens' embedding rows at 4 bits."""
    source, exclude = fp32["text_raw"], []
    if options.embedding_cold_share > 0:
        counts = token_counts(model.tokenizer, training_texts())
        source = work / "text_split.onnx"
        split = split_embedding(fp32["text_raw"], source, counts, cold_share=options.embedding_cold_share)
        fp32["embedding_split"], exclude = split.to_dict(), [split.remap_node]
    return q.quantize_text_int8(source, work / "text_int8.onnx", per_channel=options.per_channel, exclude=exclude)


def _populate(model, out: Path, files: dict[str, Path], options: CompressOptions) -> dict[str, dict[str, Any]]:
    """Fill ``out`` (replaced) with the towers (and their ``.ort`` twins), tokenizer and preprocessor;
    returns the manifest's tower sections."""
    text_mode, image_mode = TOWER_QUANT[options.quant]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = {"text": f"text_encoder{_suffix(text_mode)}.onnx", "image": f"image_encoder{_suffix(image_mode)}.onnx"}
    for tower, path in files.items():
        shutil.copyfile(path, out / names[tower])
    ort_files = _write_ort(out, names, options.quant) if options.ort else {}
    model.tokenizer.save(str(out / "tokenizer.json"), pretty=False)
    model.preprocessor.save(out / "preprocessor.json")
    return {
        "text": {"file": names["text"], "max_length": model.config.text.max_length, "quantization": text_mode,
                 **ort_files.get("text", {})},
        "image": {"file": names["image"], "quantization": image_mode, **ort_files.get("image", {})},
    }


def _write_report(model, out: Path, towers: dict[str, dict[str, Any]], options: CompressOptions,
                  report: dict[str, Any]) -> dict:
    """(Re)write ``compress_report.json`` and the manifest (whose checksums cover the report)."""
    (out / "compress_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    config = model.config
    prune = ((report.get("prune") or {}).get("prune") or {}).get("ratio", 0.0)
    return write_manifest(
        out,
        embedding={"dim": config.dim, "normalised": True, "matryoshka_dims": list(config.matryoshka_dims)},
        teacher=config.teacher_id or "unknown",
        text_encoder=towers["text"],
        image_encoder=towers["image"],
        index={**INDEX, "dim": config.dim},
        producer={"compress": json.dumps({"prune": prune, "quant": options.quant})},
    )


def ort_towers(quant: str) -> tuple[str, ...]:
    """Towers that get an ``.ort`` twin: not INT4 ones (the ORT format has no 4-bit tensor type, so the
    uint4 embedding table of GatherBlockQuantized cannot be stored: 'Unsupported tensor data type')."""
    return tuple(tower for tower, mode in zip(("text", "image"), TOWER_QUANT[quant], strict=True) if mode != "int4")


def _write_ort(out: Path, names: dict[str, str], quant: str) -> dict[str, dict[str, str]]:
    """``.ort`` twins of the tower files and the operator config; the manifest's ``ort_file`` entries."""
    towers = ort_towers(quant)
    for tower in set(names) - set(towers):
        logger.info("%s tower (%s): no .ort twin, the ORT format cannot store 4-bit tensors", tower, quant)
    converted = {tower: convert_to_ort(out / names[tower]) for tower in towers}
    write_operator_config(converted.values(), out / OPERATOR_CONFIG)
    return {tower: {"ort_file": path.name} for tower, path in converted.items()}


def _ort_parity(out: Path, manifest: dict[str, Any], feeds: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Each tower's ``.ort`` against its ``.onnx`` on the parity inputs (real texts and images, one batch each);
    raises if they disagree."""
    result = {}
    for tower in ("text", "image"):
        spec = manifest[f"{tower}_encoder"]
        if not spec.get("ort_file"):
            continue
        result[tower] = ort_parity(out / spec["file"], out / spec["ort_file"], feeds[tower])
        floor = ORT_PARITY_MIN_COSINE[spec["quantization"] in ("fp32", "fp16")]
        if result[tower]["min_cosine"] < floor:
            raise RuntimeError(f"{spec['ort_file']} disagrees with {spec['file']} (min cosine < {floor}): "
                               f"{result[tower]}")
    return result


def _agreement(model, fp32: dict[str, Any], files: dict[str, Path], tokenizer: Path, options: CompressOptions):
    sets = load_sets(options.agreement_sets, sample=options.agreement_sample)
    c = model.config
    args = (tokenizer, model.preprocessor, c.text.max_length, c.dim)
    rows = agreement(OnnxEncoder(fp32["text"], fp32["image"], *args), OnnxEncoder(files["text"], files["image"], *args),
                     sets)
    if options.quant == "int8":
        for row in rows:
            if (row["top10_overlap"] < INT8_TARGETS["top10_overlap"]
                    or row["reference_recall@10"] - row["recall@10"] > INT8_TARGETS["recall_drop"]):
                logger.warning("INT8 misses its target on %s: %s", row["set"], row)
    return rows


def _bundle_bytes(manifest: dict[str, Any]) -> dict[str, int]:
    """What ships: ``bundle_bytes`` for the ONNX runtime (without the ``.ort`` twins and operator config),
    ``mobile_bundle_bytes`` for an onnxruntime-mobile app (the ``.ort`` files instead of the ``.onnx`` ones)."""
    sizes = {name: entry["bytes"] for name, entry in manifest["files"].items()}
    mobile_only = {n for n in sizes if n.endswith(".ort") or n == OPERATOR_CONFIG}
    out = {"bundle_bytes": sum(b for n, b in sizes.items() if n not in mobile_only)}
    if mobile_only:
        specs = [manifest[f"{t}_encoder"] for t in ("text", "image") if manifest.get(f"{t}_encoder")]
        onnx_towers = {spec["file"] for spec in specs if spec.get("ort_file")}  # replaced by their twins
        out["mobile_bundle_bytes"] = sum(b for n, b in sizes.items() if n not in onnx_towers)
    return out


def build_bundle(checkpoint: str | Path | DualEncoder, out: str | Path, options: CompressOptions | None = None,
                 prune_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compress a student (a checkpoint folder, or a model such as a freshly pruned one) into a bundle at
    ``out`` (replaced); returns the report (also ``out/compress_report.json``). ``prune_report`` (from
    :func:`edgeret.distill.pruning.recover.prune_and_recover`) is recorded in it."""
    with preserve_root_logging():
        return _build_bundle(checkpoint, out, options or CompressOptions(), prune_report)


@contextlib.contextmanager
def preserve_root_logging():
    """Undo what onnxruntime's tools do to the root logger (``basicConfig`` at import, level changes)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def _build_bundle(checkpoint: str | Path | DualEncoder, out: str | Path, options: CompressOptions,
                  prune_report: dict[str, Any] | None) -> dict[str, Any]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-work-", dir=out.parent))
    try:
        model = checkpoint.eval() if isinstance(checkpoint, DualEncoder) else load_student(checkpoint)
        fp32 = _export(model, work, options)
        files = _quantize(model, fp32, work, options)
        source = "(in memory)" if isinstance(checkpoint, DualEncoder) else str(checkpoint)
        report = {"checkpoint": source, "options": asdict(options), "prune": prune_report,
                  "cost": size_and_flops(model), "parity": fp32["parity"],
                  "optimisation": {t: fp32[f"{t}_optimisation"] for t in ("text", "image")},
                  "latency_ms_1t": {t: round(latency_ms(files[t], fp32["feeds"][t]), 3) for t in files},
                  "bytes": {t: files[t].stat().st_size for t in files}}
        if "embedding_split" in fp32:
            report["embedding_split"] = fp32["embedding_split"]
        towers = _populate(model, out, files, options)
        manifest = _write_report(model, out, towers, options, report)
        if options.ort:
            report["ort_parity"] = _ort_parity(out, manifest, fp32["parity_feeds"])
            manifest = _write_report(model, out, towers, options, report)
        if options.quant != "fp32" and options.check_agreement:
            report["agreement"] = _agreement(model, fp32, files, out / "tokenizer.json", options)
            manifest = _write_report(model, out, towers, options, report)
        report.update(_bundle_bytes(manifest), bundle=str(out))
        logger.info("bundle %s: %d bytes (%s)", out, report["bundle_bytes"], options.quant)
        return report
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)

