"""CLIP- and SigLIP-family models (CLIP, SigLIP, SigLIP 2) as teachers, loaded from a local folder.

    teacher = load_teacher("clip", model_path="/models/siglip-base-patch16-224")
    edgeret teacher-cache --teacher clip --model-path /models/clip-vit-base-patch32 --data openmoji --out cache/om

The folder is a Hugging Face download (``config.json``, weights, tokenizer files, ``preprocessor_config.json``);
nothing is fetched. Its family is read from ``config.json`` (``model_type``, else ``architectures``) and looked
up in :data:`FAMILIES`, which says which transformers class loads it and how its texts are tokenised:

* ``clip`` (CLIPModel): padded to the longest text in the batch, with an attention mask (CLIP's text tower
  is causal and pools at the end-of-text token, so padding after it changes nothing);
* ``siglip`` (SiglipModel) and ``siglip2`` (Siglip2Model): padded to ``max_length`` = the model's text
  positions, without an attention mask, as the family was trained: the text tower pools the *last position*,
  which is padding for short texts. Both were trained on lowercased text: SigLIP's own tokenizer lowercases
  (and needs ``sentencepiece``), Gemma's (SigLIP 2, also in fixed-resolution SigLIP 2 folders whose
  ``model_type`` is ``siglip``) does not, so texts are lowercased here (a no-op for the former).

Texts are truncated at the model's text positions. Images go through the folder's own image processor
(the slow PIL/numpy one, ``use_fast=False``: no torchvision, same pixels on every machine) and
``get_image_features``; texts through the folder's tokenizer and ``get_text_features``. Both towers land in
one space of ``dim`` = the projection dim; the base class L2-normalises. These models take no instructions:
a query instruction is ignored (``describe()`` says so), so queries and documents embed alike.

Another CLIP-like family is one more :class:`Family` in :data:`FAMILIES` (its ``model_type`` as the key).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

from .base import Teacher, folder_revision, hub_model_name, resolve_device_dtype

logger = logging.getLogger(__name__)

#: Files fingerprinted (besides the weights' names and sizes) into the teacher's revision.
REVISION_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class Family:
    """How one CLIP-like family is loaded and how its texts are tokenised."""

    model_class: str  #: transformers class with get_text_features / get_image_features
    padding: str  #: "longest" or "max_length" (the tokenizer's ``padding``)
    attention_mask: bool  #: whether the text tower gets the tokenizer's attention mask
    lowercase: bool = False  #: lowercase texts before tokenising


#: config ``model_type`` -> family
FAMILIES: dict[str, Family] = {
    "clip": Family("CLIPModel", padding="longest", attention_mask=True),
    "siglip": Family("SiglipModel", padding="max_length", attention_mask=False, lowercase=True),
    "siglip2": Family("Siglip2Model", padding="max_length", attention_mask=False, lowercase=True),
}


def detect_family(config: Any) -> str:
    """The :data:`FAMILIES` key of a loaded config: its ``model_type``, else a class in ``architectures``."""
    if config.model_type in FAMILIES:
        return config.model_type
    by_class = {family.model_class: name for name, family in FAMILIES.items()}
    for arch in getattr(config, "architectures", None) or []:
        if arch in by_class:
            return by_class[arch]
    raise ValueError(
        f"model_type {config.model_type!r} (architectures {config.architectures}) is not a CLIP-like family "
        f"this teacher knows; known: {', '.join(FAMILIES)} (add one to edgeret.distill.teachers.clip.FAMILIES)"
    )


def projection_dim(config: Any) -> int:
    """Output dim: CLIP's ``projection_dim``, else the text head's ``projection_size`` (SigLIP), else hidden size."""
    if getattr(config, "projection_dim", None):
        return int(config.projection_dim)
    text = config.text_config
    return int(getattr(text, "projection_size", None) or text.hidden_size)


def _accepted(method: Any) -> set[str]:
    """Parameter names of a model method (the inputs it takes)."""
    return set(inspect.signature(method).parameters)


class ClipTeacher(Teacher):
    """A CLIP / SigLIP / SigLIP 2 folder: text and image towers in one space, no instructions."""

    default_instruction = None

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> None:
        """Load model, tokenizer and image processor from ``model_path`` (local files only).

        ``device`` defaults to cuda when available, else cpu; ``dtype`` to bf16 on GPU and fp32 on CPU.
        """
        self.model_path = Path(model_path)
        if not (self.model_path / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in {self.model_path} (the CLIP/SigLIP folder must be on disk)")
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        config = AutoConfig.from_pretrained(self.model_path, local_files_only=True)
        self.family_name = detect_family(config)
        self.family = FAMILIES[self.family_name]
        self.tokenizer = self._load_tokenizer()
        self.image_processor = AutoImageProcessor.from_pretrained(
            self.model_path, use_fast=False, local_files_only=True
        )
        model_class = getattr(transformers, self.family.model_class)
        self.model = model_class.from_pretrained(self.model_path, dtype=self.dtype, local_files_only=True)
        self.model.to(self.device).eval()
        self.max_length = int(config.text_config.max_position_embeddings)
        self.dim = projection_dim(config)
        self.id = "clip:" + hub_model_name(self.model_path)
        self._revision = folder_revision(self.model_path, REVISION_FILES)
        self._text_inputs = _accepted(self.model.get_text_features)
        self._image_inputs = _accepted(self.model.get_image_features)
        logger.info("loaded %s (%s, dim %d) on %s as %s", self.id, self.family_name, self.dim, self.device, self.dtype)

    def _load_tokenizer(self) -> Any:
        try:
            return AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        except (ImportError, ValueError, OSError) as exc:
            hint = ""
            if (self.model_path / "spiece.model").is_file():
                hint = "; SigLIP's own tokenizer (spiece.model) needs sentencepiece: pip install sentencepiece"
            raise RuntimeError(f"cannot load the tokenizer in {self.model_path}: {exc}{hint}") from exc

    @classmethod
    def from_options(cls, **options: Any) -> ClipTeacher:
        """Needs ``model_path``: a local CLIP / SigLIP / SigLIP 2 folder."""
        if not options.get("model_path"):
            raise ValueError("the clip teacher needs --model-path, a local CLIP/SigLIP/SigLIP 2 folder")
        return super().from_options(**options)

    def describe(self) -> dict[str, Any]:
        """Base description plus family, revision, text handling, image processing and numerics."""
        out = super().describe()
        out.update(
            self._revision,
            model_type=self.family_name,
            model_class=self.family.model_class,
            normalised=True,
            instructions="ignored",
            text=self._text_settings(),
            image_size=getattr(self.model.config.vision_config, "image_size", None),
            image_processor=self._processor_settings(),
            dtype=str(self.dtype).replace("torch.", ""),
        )
        return out

    def _text_settings(self) -> dict[str, Any]:
        settings = {k: v for k, v in asdict(self.family).items() if k != "model_class"}
        return {**settings, "max_length": self.max_length, "tokenizer": type(self.tokenizer).__name__}

    def _processor_settings(self) -> dict[str, Any]:
        settings = self.image_processor.to_dict()
        for private in ("processor_class", "_processor_class"):
            settings.pop(private, None)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}

    @torch.inference_mode()
    def _encode_text_batch(self, texts: list[str], instruction: str | None) -> np.ndarray:
        if self.family.lowercase:
            texts = [t.lower() for t in texts]
        tokens = self.tokenizer(
            texts, padding=self.family.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        if not self.family.attention_mask:
            tokens.pop("attention_mask", None)
        inputs = {k: v.to(self.device) for k, v in tokens.items() if k in self._text_inputs}
        return self.model.get_text_features(**inputs).float().cpu().numpy()

    @torch.inference_mode()
    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        processed = self.image_processor(images=images, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in processed.items() if k in self._image_inputs}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return self.model.get_image_features(**inputs).float().cpu().numpy()
