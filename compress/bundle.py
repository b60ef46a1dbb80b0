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

from edgeret.data.evalset import EvalSet
from edgeret.distill.flops import size_and_flops
from edgeret.distill.student import DualEncoder, load_student
from edgeret.runtime.bundle import OPERATOR_CONFIG, write_manifest

from .agreement import DEFAULT_SETS, OnnxEncoder, agreement, load_sets
from .calibration import Calibration
from .embedding_split import COLD_BLOCKS
from .ort_format import convert_to_ort, ort_parity, write_operator_config
from .quantize import has_4bit_tensors
from .towers import TOWERS, TowerFiles

logger = logging.getLogger(__name__)

QUANT_MODES = ("fp32", "int8", "int4", "fp16")
#: bundle mode -> (text tower quantisation, image tower quantisation)
TOWER_QUANT = {"fp32": ("fp32", "fp32"), "int8": ("int8", "int8"), "int4": ("int4", "int8"), "fp16": ("fp16", "fp16")}
INDEX = {"space": "cosine", "M": 16, "ef_construction": 200, "ef_search": 64}
INT8_TARGETS = {"top10_overlap": 0.9, "recall_drop": 0.02}
#: .ort vs .onnx (optimised as the twin was made, so the same kernels run), per item: the conversion must not
#: change the model. (Against the desktop session a quantised graph differs more: the portable .ort keeps the float
#: stem out of x86's NCHWc kernels, and a last-bit change before a QuantizeLinear can flip a rounding step;
#: measured: INT8 image min cosine 0.99899-0.99951 over 16 images. That is reported, not checked.)
ORT_PARITY_MIN_COSINE = 0.9999


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
    #: INT8 and INT4 text towers: share of the vocabulary (the rarest tokens of the training texts) whose embedding
    #: rows are stored at 4 bits instead of 8 (compress.embedding_split); 0 keeps every row at 8 bits (INT8) or
    #: every row 4-bit in one GatherBlockQuantized table (INT4)
    embedding_cold_share: float = 0.95
    #: the cold rows' quantisation block (values sharing one float16 scale and a 4-bit zero point): 32 costs 0.6
    #: bits per value in scales and zero points, 128 a quarter of that, at a larger rounding error
    #: (bench/results/embedding_split_f16.md: 0.95 / 128 makes the demo's INT8 bundle 9.96 MB)
    embedding_cold_block: int = 128

    def __post_init__(self) -> None:
        if self.quant not in QUANT_MODES:
            raise ValueError(f"quant must be one of {QUANT_MODES}, got {self.quant!r}")
        if not 0.0 <= self.embedding_cold_share < 1.0:
            raise ValueError(f"embedding_cold_share must be in [0, 1), got {self.embedding_cold_share}")
        if self.embedding_cold_block not in COLD_BLOCKS:
            raise ValueError(f"embedding_cold_block must be one of {COLD_BLOCKS}, got {self.embedding_cold_block}")



def _suffix(mode: str) -> str:
    return "" if mode == "fp32" else f"_{mode}"


def _populate(model, out: Path, towers: dict[str, TowerFiles], options: CompressOptions) -> dict[str, dict]:
    """Fill ``out`` (replaced) with the towers (and their ``.ort`` twins), tokenizer and preprocessor;
    returns the manifest's tower sections."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = {tower: f"{tower}_encoder{_suffix(files.mode)}.onnx" for tower, files in towers.items()}
    for tower, files in towers.items():
        shutil.copyfile(files.file, out / names[tower])
    ort_files = _write_ort(out, names, options.quant) if options.ort else {}
    sections = {tower: {"file": names[tower], "quantization": files.mode, **ort_files.get(tower, {})}
                for tower, files in towers.items()}
    if "text" in towers:
        model.tokenizer.save(str(out / "tokenizer.json"), pretty=False)
        sections["text"]["max_length"] = model.config.text.max_length
    if "image" in towers:
        model.preprocessor.save(out / "preprocessor.json")
    return sections


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
        text_encoder=towers.get("text"),
        image_encoder=towers.get("image"),
        index={**INDEX, "dim": config.dim},
        producer={"compress": json.dumps({"prune": prune, "quant": options.quant})},
    )


def ort_towers(files: dict[str, Path]) -> tuple[str, ...]:
    """Towers (of ``files``: tower -> model file) that get an ``.ort`` twin: not those storing a 4-bit tensor (the
    ORT format has no 4-bit tensor type, so a GatherBlockQuantized uint4 table cannot be stored: 'Unsupported
    tensor data type'). MatMulNBits packs its 4-bit weights in uint8 and converts."""
    return tuple(tower for tower in ("text", "image") if tower in files and not has_4bit_tensors(files[tower]))


def _write_ort(out: Path, names: dict[str, str], quant: str) -> dict[str, dict[str, str]]:
    """``.ort`` twins of the tower files and the operator config; the manifest's ``ort_file`` entries."""
    towers = ort_towers({tower: out / name for tower, name in names.items()})
    for tower in set(names) - set(towers):
        logger.info("%s tower (%s): no .ort twin, the ORT format cannot store its 4-bit tensors", tower, quant)
    converted = {tower: convert_to_ort(out / names[tower]) for tower in towers}
    write_operator_config(converted.values(), out / OPERATOR_CONFIG)
    return {tower: {"ort_file": path.name} for tower, path in converted.items()}


def _ort_parity(out: Path, manifest: dict[str, Any], feeds: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Each tower's ``.ort`` against its ``.onnx`` on the parity inputs (real texts and images, one batch each);
    raises if they disagree."""
    result = {}
    for tower in ("text", "image"):
        spec = manifest.get(f"{tower}_encoder") or {}
        if not spec.get("ort_file"):
            continue
        result[tower] = ort_parity(out / spec["file"], out / spec["ort_file"], feeds[tower])
        if result[tower]["min_cosine"] < ORT_PARITY_MIN_COSINE:
            raise RuntimeError(f"{spec['ort_file']} disagrees with {spec['file']} "
                               f"(min cosine < {ORT_PARITY_MIN_COSINE}): "
                               f"{result[tower]}")
    return result


def _agreement(model, towers: dict[str, TowerFiles], tokenizer: Path, options: CompressOptions,
               evalsets: list[EvalSet] | None) -> list[dict[str, Any]]:
    """The variant against its fp32 towers on held-out retrieval sets (those the towers can run)."""
    sets = evalsets if evalsets is not None else load_sets(options.agreement_sets, sample=options.agreement_sample)
    needs = {"t2i": ("text", "image"), "i2t": ("text", "image"), "t2t": ("text",)}
    sets = [s for s in sets if all(t in towers for t in needs.get(s.task, ("text", "image")))]
    c = model.config
    args = (tokenizer, model.preprocessor, c.text.max_length if c.text else 1, c.dim)
    reference = OnnxEncoder(*(towers[t].fp32 if t in towers else None for t in ("text", "image")), *args)
    variant = OnnxEncoder(*(towers[t].file if t in towers else None for t in ("text", "image")), *args)
    rows = agreement(reference, variant, sets)
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
                 prune_report: dict[str, Any] | None = None, calibration: Calibration | None = None,
                 evalsets: list[EvalSet] | None = None) -> dict[str, Any]:
    """Compress a student (a checkpoint folder, or a model such as a freshly pruned one) into a bundle at
    ``out`` (replaced); returns the report (also ``out/compress_report.json``).

    ``prune_report`` (from :func:`edgeret.distill.pruning.recover.prune_and_recover`) is recorded in it;
    ``calibration`` supplies the real inputs (default: the built-in data, :meth:`Calibration.builtin`);
    ``evalsets`` the held-out sets of the agreement check (default: ``options.agreement_sets`` by name).
    """
    options = options or CompressOptions()
    with preserve_root_logging():
        calibration = calibration or Calibration.builtin(options.parity_texts, options.parity_images,
                                                         options.calibration_images)
        return _build_bundle(checkpoint, Path(out), options, prune_report, calibration, evalsets)


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


def _build_bundle(checkpoint: str | Path | DualEncoder, out: Path, options: CompressOptions,
                  prune_report: dict[str, Any] | None, cal: Calibration, evalsets: list[EvalSet] | None) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-work-", dir=out.parent))
    try:
        model = checkpoint.eval() if isinstance(checkpoint, DualEncoder) else load_student(checkpoint)
        modes = dict(zip(("text", "image"), TOWER_QUANT[options.quant], strict=True))
        built = {name: build(model, work, modes[name], options, cal) for name, build in TOWERS.items()
                 if getattr(model, name) is not None}
        source = "(in memory)" if isinstance(checkpoint, DualEncoder) else str(checkpoint)
        report = {"checkpoint": source, "options": asdict(options), "prune": prune_report,
                  "cost": size_and_flops(model), "parity": {t: f.parity for t, f in built.items()},
                  "optimisation": {t: f.optimisation for t, f in built.items()},
                  "latency_ms_1t": {t: f.latency_ms() for t, f in built.items()},
                  "bytes": {t: f.file.stat().st_size for t, f in built.items()}}
        for files in built.values():
            report.update(files.extra)
        towers = _populate(model, out, built, options)
        manifest = _write_report(model, out, towers, options, report)
        if options.ort:
            report["ort_parity"] = _ort_parity(out, manifest, {t: f.parity_feeds for t, f in built.items()})
            manifest = _write_report(model, out, towers, options, report)
        if options.quant != "fp32" and options.check_agreement:
            report["agreement"] = _agreement(model, built, out / "tokenizer.json", options, evalsets)
            manifest = _write_report(model, out, towers, options, report)
        report.update(_bundle_bytes(manifest), bundle=str(out))
        logger.info("bundle %s: %d bytes (%s)", out, report["bundle_bytes"], options.quant)
        return report
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)

