"""The stand-in teacher exported to ONNX (fp32) as a runtime bundle, parity-checked against torch.

* ``text_encoder.onnx``: MiniLM-L6 (``input_ids``, ``attention_mask``) -> mean pooling -> L2 norm;
  MiniLM's own ``tokenizer.json``, max length 256 as the torch teacher;
* ``image_encoder.onnx``: EfficientNet-Lite0 (batch norms folded) -> fitted linear head -> L2 norm;
  the teacher's 224-px ``preprocessor.json``.

The bundle is measured through the torch-free runtime exactly like the students. It is written once
(``export_info.json`` records the head's sha256 and the parity) and reused while the head is unchanged.
Parity is end to end: torch teacher (HF tokenizer, torch preprocessing) vs the runtime on the bundle.

:func:`build_teacher_int8_bundle` quantises that bundle into ``teacher-onnx-int8``, the peer a user would pick
on a CPU (as FastEmbed serves MiniLM quantised): the text tower dynamic INT8 and the image tower static INT8
with the same tools, settings and calibration images as the student's INT8 bundle (:mod:`edgeret.compress.quantize`),
the text tower's ``.ort`` twin as the student's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeret.compress import quantize as q
from edgeret.compress.bundle import preserve_root_logging
from edgeret.compress.calibration import Calibration
from edgeret.compress.ort_format import convert_to_ort
from edgeret.compress.towers import IMAGE_INT8_EXCLUDE
from edgeret.distill.teachers.standin import mean_pool, minilm_path
from edgeret.runtime.bundle import load_manifest, write_manifest
from edgeret.runtime.preprocess import ImagePreprocessor
from edgeret.runtime.retriever import Retriever

logger = logging.getLogger(__name__)

OPSET = 18
MIN_COSINE = 0.9999
INFO_FILE = "export_info.json"


class TeacherText(nn.Module):
    """MiniLM -> mean pooling -> L2 norm, from ``input_ids`` and ``attention_mask``."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised (B, dim) embeddings."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)


class TeacherImage(nn.Module):
    """Image trunk -> the fitted linear head -> L2 norm, from ``pixel_values``."""

    def __init__(self, trunk: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        self.head.weight.data, self.head.bias.data = weight.clone(), bias.clone()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised (B, dim) embeddings."""
        return nn.functional.normalize(self.head(self.trunk(pixel_values)), dim=-1)


def _modules(teacher: Any) -> tuple[TeacherText, TeacherImage]:
    """torch modules (text, image) computing the teacher's normalised embeddings from model inputs."""
    trunk = copy.deepcopy(teacher.image_model).to(memory_format=torch.contiguous_format).eval()
    return TeacherText(teacher.text_model).eval(), TeacherImage(trunk, teacher.head_weight, teacher.head_bias).eval()


def _export(module: Any, args: tuple, path: Path, inputs: Sequence[str], axes: dict) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python-side shape branches
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=["embeddings"],
                          dynamic_axes={**axes, "embeddings": {0: "batch"}}, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    logger.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)


def export_onnx(teacher: Any, out: Path) -> None:
    """Write ``text_encoder.onnx`` and ``image_encoder.onnx`` of ``teacher`` into ``out``."""
    text, image = _modules(teacher)
    ids = torch.tensor([[101, 2023, 2003, 1037, 102], [101, 7592, 102, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()  # a padded row, so the mask path is traced
    _export(text, (ids, mask), out / "text_encoder.onnx", ("input_ids", "attention_mask"),
            {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}})
    size = teacher.preprocess.size
    _export(image, (torch.randn(2, 3, size, size),), out / "image_encoder.onnx", ("pixel_values",),
            {"pixel_values": {0: "batch"}})


def cosine_parity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Row-wise cosine and max abs difference of two (N, D) arrays."""
    if reference.shape != other.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {other.shape}")
    ref, oth = reference.astype(np.float64), other.astype(np.float64)
    cos = (ref * oth).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(oth, axis=1), 1e-12)
    return {"min_cosine": float(cos.min(initial=1.0)), "mean_cosine": float(cos.mean()),
            "max_abs_diff": float(np.abs(ref - oth).max(initial=0.0)), "rows": int(len(ref))}


def check_parity(teacher: Any, bundle: Path, texts: Sequence[str], images: Sequence[Any],
                 min_cosine: float = MIN_COSINE) -> dict[str, dict[str, float]]:
    """Torch teacher vs the runtime on ``bundle``; raises AssertionError below ``min_cosine``."""
    retriever = Retriever.open(bundle, threads=1, verify="size")
    parity = {"text": cosine_parity(teacher.embed_texts(list(texts), batch_size=7),
                                    retriever.embed_texts(list(texts), batch_size=7)),
              "image": cosine_parity(teacher.embed_images(list(images), batch_size=5),
                                     retriever.embed_images(list(images), batch_size=5))}
    for tower, result in parity.items():
        logger.info("teacher ONNX %s parity: min cosine %.7f, max|diff| %.2e over %d rows", tower,
                    result["min_cosine"], result["max_abs_diff"], result["rows"])
        if result["min_cosine"] < min_cosine:
            raise AssertionError(f"teacher ONNX {tower} differs from torch: min cosine {result['min_cosine']:.6f} "
                                 f"< {min_cosine}")
    return parity


def _head_sha256(teacher: Any) -> str:
    return getattr(teacher, "head_sha256", None) or hashlib.sha256(teacher.head_path.read_bytes()).hexdigest()


def cached_info(out: Path, head_sha256: str) -> dict[str, Any] | None:
    """The export info of a finished bundle at ``out`` made from this head, else None."""
    info_path = out / INFO_FILE
    if not (out / "manifest.json").is_file() or not info_path.is_file():
        return None
    info = json.loads(info_path.read_text(encoding="utf-8"))
    return info if info.get("head_sha256") == head_sha256 else None


def build_teacher_bundle(teacher: Any, out: str | Path, texts: Sequence[str], images: Sequence[Any],
                         force: bool = False) -> dict[str, Any]:
    """Export ``teacher`` into a bundle at ``out`` (reused when already built from the same head).

    ``texts`` / ``images`` are the parity inputs. Returns the export info (head sha256, parity).
    """
    out, head_sha = Path(out), _head_sha256(teacher)
    info = None if force else cached_info(out, head_sha)
    if info is not None:
        logger.info("reusing the teacher's ONNX bundle %s", out)
        return info
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export_onnx(teacher, tmp)
    shutil.copyfile(Path(minilm_path()) / "tokenizer.json", tmp / "tokenizer.json")
    teacher.preprocess.save(tmp / "preprocessor.json")
    write_manifest(tmp, embedding={"dim": teacher.dim, "normalised": True, "matryoshka_dims": []},
                   teacher={"id": teacher.id, "revision": teacher.describe()["revision"]},
                   text_encoder={"file": "text_encoder.onnx", "max_length": teacher.text_max_length},
                   image_encoder={"file": "image_encoder.onnx"}, producer={"export": "edgeret.bench.teacher_onnx"})
    info = {"head_sha256": head_sha, "opset": OPSET, "parity": check_parity(teacher, tmp, texts, images)}
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return info


#: how teacher-onnx-int8's image tower is quantised: the student's INT8 settings (stem and blocks 0-3 float)
INT8_IMAGE_EXCLUDE = IMAGE_INT8_EXCLUDE


def build_teacher_int8_bundle(src: str | Path, out: str | Path, calibration_images: Sequence[Any] | None = None,
                              exclude: Sequence[str] = INT8_IMAGE_EXCLUDE, ort_twin: bool = True,
                              force: bool = False) -> dict[str, Any]:
    """Quantise the teacher's fp32 bundle ``src`` into ``out`` (reused while ``src`` and the settings are unchanged).

    Text: :func:`~edgeret.compress.quantize.quantize_text_int8` (dynamic, uint8 per-channel MatMul weights and
    the embedding Gather), as the student's; image: :func:`~edgeret.compress.quantize.quantize_image_int8`
    (static QDQ, 7-bit per-channel weights, depthwise 8-bit, node names matching ``exclude`` left float) calibrated
    on ``calibration_images`` (default: the student's, :meth:`Calibration.builtin`) at the teacher's resolution.
    Returns the build info (``export_info.json``).
    """
    src, out = Path(src), Path(out)
    source = json.loads((src / INFO_FILE).read_text(encoding="utf-8")) if (src / INFO_FILE).is_file() else {}
    settings = {"source_head_sha256": source.get("head_sha256"), "exclude": list(exclude), "ort_twin": ort_twin,
                "calibration": "builtin" if calibration_images is None else len(calibration_images), "version": 1}
    if not force and (out / "manifest.json").is_file() and (out / INFO_FILE).is_file():
        info = json.loads((out / INFO_FILE).read_text(encoding="utf-8"))
        if info.get("settings") == settings:
            logger.info("reusing the teacher's INT8 bundle %s", out)
            return info
    manifest = load_manifest(src, verify="size")
    text, image = manifest.text, manifest.image
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with preserve_root_logging():
        images = calibration_images if calibration_images is not None else Calibration.builtin().calibration_images
        pixels = ImagePreprocessor.load(src / image["preprocessor"])(list(images))
        q.quantize_text_int8(src / text["file"], tmp / "text_encoder_int8.onnx")
        q.quantize_image_int8(src / image["file"], tmp / "image_encoder_int8.onnx", pixels, exclude=exclude)
        text_section = {"file": "text_encoder_int8.onnx", "max_length": text["max_length"], "quantization": "int8"}
        if ort_twin:
            text_section["ort_file"] = convert_to_ort(tmp / "text_encoder_int8.onnx").name
    for name in (text["tokenizer"], image["preprocessor"]):
        shutil.copyfile(src / name, tmp / name)
    write_manifest(tmp, embedding=manifest.data["embedding"], teacher=manifest.data["teacher"],
                   text_encoder=text_section,
                   image_encoder={"file": "image_encoder_int8.onnx", "quantization": "int8"},
                   producer={"export": "edgeret.bench.teacher_onnx (int8)"})
    info = {"settings": settings, "bytes": {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}}
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return info
