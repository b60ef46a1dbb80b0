"""The student dual encoder: a small text tower and a small image tower living in the teacher's space.

Checkpoint format (DESIGN.md): ``model.safetensors``, ``config.json`` (:class:`StudentConfig`),
``tokenizer.json`` (the pruned vocabulary) and ``preprocessor.json`` (the image transform).
Both towers end in a projection to the teacher's dim; outputs are L2-normalised, and every
Matryoshka prefix (e.g. the first 64/128/256 dims, renormalised) is usable on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn
from tqdm.auto import tqdm
from transformers import BertModel

from edgeret.distill.models.efficientnet_lite import load_lite0
from edgeret.distill.models.image_tower import ImageTower, inherit_image_tower, lite0_stages
from edgeret.distill.models.text_tower import TextTower, bert_config, inherit_text_tower, minilm_path
from edgeret.runtime.preprocess import ImagePreprocessor
from edgeret.runtime.versions import edgeret_version

from .pruning.structure import Structure, apply_structure, is_uniform, structure_of
from .vocab import configure_for_inference, load_tokenizer, prune_tokenizer

logger = logging.getLogger(__name__)

FORMAT = "edgeret-student"
FORMAT_VERSION = 1


@dataclass
class TextConfig:
    """Text tower sizes; ``teacher_layers`` are the inherited MiniLM layers (``init='minilm'``)."""

    hidden: int = 384
    layers: int = 2
    intermediate: int = 512
    max_length: int = 64
    vocab_size: int = 0  # set when the vocabulary is pruned
    init: str = "minilm"  # or "scratch" (random weights; e.g. a GME teacher has no small text model)
    teacher_layers: list[int] = field(default_factory=lambda: [0, 5])
    freeze_embeddings: bool = False  # keep the inherited token embeddings (words unseen in training stay aligned)


@dataclass
class ImageConfig:
    """Image tower sizes: Lite0 stages as [repeats, kernel, stride, expand, in, out] lists."""

    image_size: int = 128
    stages: list[list[int]] = field(default_factory=lambda: lite0_stages([1, 2, 2, 3, 2, 1, 1]))
    stem_channels: int = 32
    head_channels: int = 1280
    frozen_blocks: int = 0
    init: str = "lite0"  # or "scratch"


@dataclass
class StudentConfig:
    """Everything that determines the student's architecture (``config.json``)."""

    dim: int = 384
    matryoshka_dims: list[int] = field(default_factory=lambda: [64, 128, 256, 384])
    text: TextConfig | None = field(default_factory=TextConfig)  # None: an image-only student
    image: ImageConfig | None = field(default_factory=ImageConfig)  # None: a text-only student
    teacher_id: str | None = None
    #: per-layer sizes of a pruned student (:class:`~edgeret.distill.pruning.structure.Structure`), else None
    pruned: dict[str, list[int]] | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    edgeret_version: str = field(default_factory=edgeret_version)

    def __post_init__(self) -> None:
        if isinstance(self.text, dict):
            self.text = TextConfig(**self.text)
        if isinstance(self.image, dict):
            self.image = ImageConfig(**self.image)
        dims = sorted(set(self.matryoshka_dims) | {self.dim})
        if dims[0] < 1 or dims[-1] != self.dim:
            raise ValueError(f"Matryoshka dims {self.matryoshka_dims} must lie in [1, {self.dim}]")
        self.matryoshka_dims = dims

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        """A config from ``config.json``'s content; refuses another format or version."""
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"not a student config: format {data.get('format')!r}")
        if int(data.get("format_version", FORMAT_VERSION)) != FORMAT_VERSION:
            raise ValueError(f"unsupported student format_version {data.get('format_version')}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write ``config.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> StudentConfig:
        """Read ``config.json``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def normalize_prefix(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """The first ``dim`` columns of ``x`` (all when None), L2-normalised."""
    return F.normalize(x if dim is None else x[..., :dim], dim=-1)


class DualEncoder(nn.Module):
    """Text tower + image tower + their tokenizer and image preprocessor; either tower may be absent (a
    text-only or image-only student: its ``text``/``tokenizer`` or ``image``/``preprocessor`` are None)."""

    def __init__(self, config: StudentConfig, tokenizer: Tokenizer | None, preprocessor: ImagePreprocessor | None):
        super().__init__()
        t, i = config.text, config.image
        if t is None and i is None:
            raise ValueError("a student needs a text tower, an image tower or both")
        if t is not None and (tokenizer is None or t.vocab_size != tokenizer.get_vocab_size()):
            found = None if tokenizer is None else tokenizer.get_vocab_size()
            raise ValueError(f"config vocab_size {t.vocab_size} != tokenizer's {found}")
        if i is not None and (preprocessor is None or preprocessor.size != i.image_size):
            raise ValueError(f"preprocessor size {getattr(preprocessor, 'size', None)} != image_size {i.image_size}")
        self.config = config
        self.tokenizer = configure_for_inference(tokenizer, t.max_length) if t is not None else None
        self.preprocessor = preprocessor if i is not None else None
        self.text = (TextTower(bert_config(t.vocab_size, t.hidden, t.layers, t.intermediate, t.max_length), config.dim)
                     if t is not None else None)
        self.image = (ImageTower(i.stages, i.stem_channels, i.head_channels, config.dim, i.frozen_blocks)
                      if i is not None else None)

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return next(self.parameters()).device

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dim: int | None = None
    ) -> torch.Tensor:
        """L2-normalised text embeddings (the first ``dim`` dims, renormalised, when given)."""
        return normalize_prefix(self.text(input_ids, attention_mask), dim)

    def encode_image(self, pixel_values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        """L2-normalised image embeddings from preprocessed NCHW pixels."""
        return normalize_prefix(self.image(pixel_values), dim)

    def matryoshka(self, features: torch.Tensor) -> dict[int, torch.Tensor]:
        """Each Matryoshka prefix of raw tower outputs, renormalised: {dim: (B, dim)}."""
        return {d: normalize_prefix(features, d) for d in self.config.matryoshka_dims}

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask (int64, padded to the longest text, truncated to max_length)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask

    @torch.inference_mode()
    def embed_texts(
        self, texts: Sequence[str], batch_size: int = 128, progress: bool = False, dim: int | None = None
    ) -> np.ndarray:
        """L2-normalised float32 (N, dim) text embeddings (numpy; usable by ``bench.evaluate``)."""
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("embed_texts expects strings")
        self.eval()
        if not texts:
            return _stack([], dim or self.config.dim)
        if self.text is None:
            raise ValueError("this student has no text tower")
        ids, mask = self.tokenize(texts)
        chunks, restore = length_chunks(mask, batch_size)  # similar lengths share a batch: little padding
        device = self.device
        out = [self.encode_text(ids[rows, :longest].to(device), mask[rows, :longest].to(device), dim).float().cpu()
               .numpy() for rows, longest in tqdm(chunks, disable=not progress, desc="student texts")]
        return _stack(out, dim or self.config.dim)[restore.numpy()]

    @torch.inference_mode()
    def embed_images(
        self, images: Sequence[Image.Image], batch_size: int = 64, progress: bool = False, dim: int | None = None
    ) -> np.ndarray:
        """L2-normalised float32 (N, dim) image embeddings of PIL images."""
        images = list(images)
        if self.image is None:
            raise ValueError("this student has no image tower")
        self.eval()
        chunks, device = [], self.device
        for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="student images"):
            pixels = torch.from_numpy(self.preprocessor(images[start : start + batch_size])).to(device)
            chunks.append(self.encode_image(pixels, dim).float().cpu().numpy())
        return _stack(chunks, dim or self.config.dim)


def length_chunks(mask: torch.Tensor, chunk: int) -> tuple[list[tuple[torch.Tensor, int]], torch.Tensor]:
    """Rows of a padded batch sorted by length in groups of ``chunk``, each with its longest length, and the
    permutation that puts the concatenated group outputs back in input order."""
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    groups = [(rows, int(lengths[rows].max())) for rows in torch.split(order, chunk)]
    return groups, torch.argsort(order)


def _stack(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, dim), np.float32)
    return np.ascontiguousarray(np.concatenate(chunks).astype(np.float32))


def student_preprocessor(image_size: int) -> ImagePreprocessor:
    """The student's image transform: the teacher's (bicubic, ImageNet mean/std) at ``image_size``."""
    return ImagePreprocessor(size=image_size, resample="bicubic")


def text_init_path(init: str) -> Path:
    """The folder a text tower inherits from: MiniLM-L6 (``"minilm"``, also the vocabulary of ``"scratch"``)
    or any local BERT-family folder with a ``tokenizer.json`` (a path)."""
    return minilm_path() if init in ("minilm", "scratch") else Path(init)


def build_student(
    config: StudentConfig, vocab_texts: Iterable[str] | None = None, base_tokenizer: Tokenizer | None = None
) -> DualEncoder:
    """A new student: vocabulary pruned to ``vocab_texts`` (all tokens kept when None), weights inherited.

    ``base_tokenizer`` defaults to the text init folder's (MiniLM-L6, see :func:`text_init_path`); inheritance
    (text ``init`` = ``"minilm"`` or a folder, image ``init`` = ``"lite0"``) loads the weights from the installed
    packages or the folder; ``"scratch"`` keeps the random initialisation.
    """
    tokenizer, keep_ids = None, []
    if config.text is not None:
        base = base_tokenizer or load_tokenizer(text_init_path(config.text.init))
        if vocab_texts is not None:
            tokenizer, keep_ids = prune_tokenizer(base, vocab_texts)
        else:
            tokenizer, keep_ids = Tokenizer.from_str(base.to_str()), list(range(base.get_vocab_size()))
        config.text.vocab_size = tokenizer.get_vocab_size()
    torch.manual_seed(0)
    preprocessor = student_preprocessor(config.image.image_size) if config.image is not None else None
    model = DualEncoder(config, tokenizer, preprocessor)
    if config.text is not None and config.text.init != "scratch":
        path = text_init_path(config.text.init)
        teacher_text = BertModel.from_pretrained(str(path), add_pooling_layer=False, local_files_only=True).eval()
        inherit_text_tower(model.text, teacher_text, keep_ids, list(config.text.teacher_layers))
    if config.image is not None and config.image.init == "lite0":
        inherit_image_tower(model.image, load_lite0())
    return _freeze(model)


def _freeze(model: DualEncoder) -> DualEncoder:
    """Apply the config's frozen parts: the image prefix blocks, optionally the token embeddings."""
    if model.image is not None and model.config.image.frozen_blocks:
        model.image.freeze_prefix()
    if model.text is not None and model.config.text.freeze_embeddings:
        model.text.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return model


def save_student(model: DualEncoder, out_dir: str | Path) -> Path:
    """Write the student checkpoint (model.safetensors, config.json, tokenizer.json, preprocessor.json).

    A pruned student's per-layer sizes go to ``config.json`` under ``pruned`` (only when they are not what
    the config's uniform sizes build), so :func:`load_student` rebuilds the same shapes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    structure = structure_of(model)
    model.config.pruned = None if is_uniform(model, structure) else structure.to_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    model.config.save(out / "config.json")
    if model.tokenizer is not None:
        model.tokenizer.save(str(out / "tokenizer.json"))
    if model.preprocessor is not None:
        model.preprocessor.save(out / "preprocessor.json")
    return out


def load_student(path: str | Path) -> DualEncoder:
    """Load a student checkpoint written by :func:`save_student`, pruned or not (eval mode)."""
    path = Path(path)
    missing = [n for n in ("model.safetensors", "config.json") if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a student checkpoint: missing {', '.join(missing)}")
    config = StudentConfig.load(path / "config.json")
    needed = [*(["tokenizer.json"] if config.text else []), *(["preprocessor.json"] if config.image else [])]
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a student checkpoint: missing {', '.join(missing)}")
    tokenizer = load_tokenizer(path / "tokenizer.json") if config.text else None
    preprocessor = ImagePreprocessor.load(path / "preprocessor.json") if config.image else None
    model = DualEncoder(config, tokenizer, preprocessor)
    if config.pruned:
        apply_structure(model, Structure.from_dict(config.pruned))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return _freeze(model).eval()
