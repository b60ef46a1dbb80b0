"""Any local sentence-transformers folder as a text-only teacher.

    teacher = load_teacher("sentence-transformers", model_path="/models/all-MiniLM-L6-v2")
    edgeret teacher-cache --teacher sentence-transformers --model-path /models/bge-small --data wordnet --out cache/wn

The folder is what ``SentenceTransformer.save`` writes or a hub download (``modules.json``, the transformer's
``config.json`` and weights, pooling and other module folders); it is loaded with
``SentenceTransformer(path, local_files_only=True)``, nothing is fetched, and embeddings are exactly what
``model.encode(texts, normalize_embeddings=True)`` gives (the base class normalises).

Text only: :attr:`modalities` is ``("text",)`` and images raise
:class:`~edgeret.distill.teachers.base.UnsupportedModalityError`; check ``"image" in teacher.modalities``
before giving it a corpus with images.

Instructions map onto the model's own prompts (``config_sentence_transformers.json``'s ``prompts``), as
sentence-transformers' ``encode_query`` / ``encode_document`` choose them, except that an empty prompt counts
as absent (sentence-transformers 5 lists empty ``query`` and ``document`` placeholders in every model):

* document side (``instruction=None``): the first of the prompts named ``document``, ``passage``, ``corpus``;
  failing those, the model's ``default_prompt_name`` (if any);
* query side (any instruction): a prompt *named* by the instruction if there is one (``"query"``,
  ``"classification"``, ...), else the ``query`` prompt, else the default prompt. The instruction's own text
  is never prepended: a model without prompts embeds queries and documents alike.

``describe()`` records the prompts and the prompt names each side resolves to, so a cache says which were used.
Needs the ``sentence-transformers`` package (today in edgeret's ``bench`` extra).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .base import Teacher, UnsupportedModalityError, folder_revision, hub_model_name, resolve_device_dtype

logger = logging.getLogger(__name__)

#: Prompt names tried, in order, for the document side (as sentence-transformers' ``encode_document``).
DOCUMENT_PROMPTS = ("document", "passage", "corpus")
QUERY_PROMPT = "query"
#: Files too large or irrelevant to fingerprint (the weights are fingerprinted by name and size).
_NOT_FINGERPRINTED = {"tokenizer.json", "vocab.json", "vocab.txt", "merges.txt"}


def _sentence_transformers() -> Any:
    """The sentence_transformers module, or an ImportError that says what to install."""
    try:
        # lazy: an optional dependency (in the 'bench' extra), needed only by this teacher
        import sentence_transformers
    except ImportError as exc:
        raise ImportError(
            "the sentence-transformers teacher needs the sentence-transformers package, which is not installed; "
            "install it with: pip install 'edgeret[distill]' (or pip install sentence-transformers)"
        ) from exc
    return sentence_transformers


def fingerprint_files(path: Path) -> list[str]:
    """The JSON files (relative paths, sorted) of a sentence-transformers folder and its module folders."""
    found = [p for pattern in ("*.json", "*/*.json") for p in path.glob(pattern)]
    names = sorted(p.relative_to(path).as_posix() for p in found if p.name not in _NOT_FINGERPRINTED)
    if not names:
        raise FileNotFoundError(f"no modules.json or config.json in {path} (a sentence-transformers folder)")
    return names


class SentenceTransformerTeacher(Teacher):
    """A local sentence-transformers model: text embeddings only, its prompts standing in for instructions."""

    default_instruction = None
    modalities = ("text",)

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        """Load the model at ``model_path`` (local files only).

        ``device`` defaults to cuda when available, else cpu. The model runs in the dtype it loads in (fp32)
        unless ``dtype`` is given; ``max_seq_length`` overrides the model's own truncation length.
        """
        self.model_path = Path(model_path)
        if not self.model_path.is_dir():
            raise FileNotFoundError(f"{self.model_path} is not a folder (a sentence-transformers model on disk)")
        files = fingerprint_files(self.model_path)
        self.device, _ = resolve_device_dtype(device, "float32")
        st = _sentence_transformers()
        self.model = st.SentenceTransformer(str(self.model_path), device=str(self.device), local_files_only=True)
        if dtype is not None:
            self.model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.model.eval()
        self.dim = self._embedding_dim()
        self.id = "st:" + hub_model_name(self.model_path)
        self._revision = folder_revision(self.model_path, files, recursive=True)
        logger.info("loaded %s (dim %d) on %s", self.id, self.dim, self.device)

    def _embedding_dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:  # no module declares it: measure
            dim = int(self.model.encode(["probe"], convert_to_numpy=True).shape[-1])
        return int(dim)

    @classmethod
    def from_options(cls, **options: Any) -> SentenceTransformerTeacher:
        """Needs ``model_path``: a local sentence-transformers folder."""
        if not options.get("model_path"):
            raise ValueError("the sentence-transformers teacher needs --model-path, a sentence-transformers folder")
        return super().from_options(**options)

    @property
    def prompts(self) -> dict[str, str]:
        """The model's named prompts (empty when it has none)."""
        return dict(getattr(self.model, "prompts", None) or {})

    def prompt_name(self, instruction: str | None) -> str | None:
        """The name of the (non-empty) prompt used for ``instruction`` (None: the document side); None: no prompt."""
        prompts = {name: text for name, text in self.prompts.items() if text}
        candidates = DOCUMENT_PROMPTS if instruction is None else (instruction, QUERY_PROMPT)
        default = getattr(self.model, "default_prompt_name", None)
        return next((name for name in (*candidates, default) if name in prompts), None)

    def describe(self) -> dict[str, Any]:
        """Base description plus revision, prompts (and which each side uses), truncation and modules."""
        out = super().describe()
        out.update(
            self._revision,
            normalised=True,
            modalities=list(self.modalities),
            prompts=self.prompts,
            default_prompt_name=getattr(self.model, "default_prompt_name", None),
            query_prompt_name=self.prompt_name(""),
            document_prompt_name=self.prompt_name(None),
            instructions="mapped to the model's prompts (a prompt named by the instruction, else 'query')",
            max_seq_length=self.model.max_seq_length,
            modules=[type(module).__name__ for module in self.model],
            dtype=str(next(self.model.parameters()).dtype).replace("torch.", ""),
        )
        return out

    def _encode_text_batch(self, texts: list[str], instruction: str | None) -> np.ndarray:
        side = "encode_document" if instruction is None else "encode_query"
        encode = getattr(self.model, side, self.model.encode)  # sentence-transformers >= 5 routes by side
        name = self.prompt_name(instruction)
        prompt = {"prompt_name": name} if name else {}  # none: leave sentence-transformers' (empty) defaults
        return encode(
            texts,
            **prompt,
            batch_size=max(1, len(texts)),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )

    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        raise UnsupportedModalityError(f"teacher {self.id} embeds text only (a sentence-transformers text model)")
