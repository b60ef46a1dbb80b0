"""Text tower: ``tokenizer.json`` (HF ``tokenizers``) + an ONNX encoder -> L2-normalised embeddings."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ._progress import progress_bar
from .bundle import model_files
from .errors import BundleError
from .sessions import check_io, create_first_session, input_dtype, run_session
from .vectors import l2_normalise

logger = logging.getLogger(__name__)

_PAD_TOKENS = ("[PAD]", "<pad>", "<|endoftext|>")
#: a text is cut to ``CHARS_PER_TOKEN * max_length`` characters before tokenising: a text that long is
#: truncated at ``max_length`` tokens anyway (unless its tokens average more than this many characters),
#: and a 10 MB text then costs what a few kB do
CHARS_PER_TOKEN = 100


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """A list of non-empty strings, or a ValueError/TypeError naming the first bad item."""
    if isinstance(texts, str | bytes):
        raise TypeError(f"{what} must be a list of strings, not a single {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is a {type(text).__name__}, not a str")
        if not text.strip():
            raise ValueError(f"{what}[{i}] is empty or whitespace-only; there is nothing to embed")
    return texts


def _valid_unicode(text: str, where: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{where} contains a lone surrogate (U+{ord(text[exc.start]):04X} at character "
                             f"{exc.start}); it is not valid Unicode text") from exc
    return text


def load_tokenizer(path: str | Path, max_length: int) -> tuple[Tokenizer, int]:
    """Tokenizer from ``tokenizer.json`` truncating at ``max_length`` (padding off); and its pad id."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise BundleError(f"{Path(path).name}: cannot load tokenizer ({str(exc)[:300]})") from exc
    pad_id = (tokenizer.padding or {}).get("pad_id")
    if pad_id is None:
        pad_id = next((tokenizer.token_to_id(t) for t in _PAD_TOKENS if tokenizer.token_to_id(t) is not None), 0)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    if not isinstance(pad_id, int) or not 0 <= pad_id < max(vocab, 1):
        raise BundleError(f"{Path(path).name}: pad id {str(pad_id)[:40]} is outside the vocabulary of {vocab}")
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer, int(pad_id)


class TextEncoder:
    """Tokenise, pad per batch, run the ONNX text tower, L2-normalise.

    The graph takes ``input_ids``/``attention_mask`` (and optionally ``token_type_ids``), named as
    in the manifest's ``inputs`` role -> name map, and returns ``(batch, dim)`` under ``output``.
    """

    def __init__(
        self, session: ort.InferenceSession, tokenizer: Tokenizer, *, inputs: Mapping[str, str], output: str,
        max_length: int, dim: int, pad_id: int = 0,
    ) -> None:
        check_io(session, inputs, output, dim, "text encoder")
        self.session, self.tokenizer = session, tokenizer
        self.inputs, self.output = dict(inputs), output
        self.max_length, self.dim, self.pad_id = max_length, dim, pad_id
        self._dtypes = {role: input_dtype(session, name) for role, name in self.inputs.items()}
        self.model_file: str | None = None  # the bundle file the session runs (set by from_spec)

    @classmethod
    def from_spec(cls, root: Path, spec: Mapping[str, Any], dim: int, model_format: str = "auto",
                  **session_kwargs: Any) -> TextEncoder:
        """Build from a manifest's ``text_encoder`` section; ``session_kwargs`` go to :func:`create_session`.

        ``model_format``: ``"auto"``, ``"onnx"`` or ``"ort"`` (see :func:`runtime.bundle.model_files`).
        """
        tokenizer, pad_id = load_tokenizer(root / spec["tokenizer"], int(spec["max_length"]))
        session, loaded = create_first_session(root, model_files(spec, model_format), **session_kwargs)
        encoder = cls(session, tokenizer, inputs=spec["inputs"], output=spec["output"],
                      max_length=int(spec["max_length"]), dim=dim, pad_id=pad_id)
        encoder.model_file = loaded
        encoder.probe()
        return encoder

    def probe(self) -> None:
        """Run one ``max_length`` row of the tokenizer's highest id once, so a tokenizer whose ids exceed the
        model's embedding table (or a model that cannot take ``max_length`` tokens) fails here, not at the
        first query. Raises :class:`BundleError`."""
        vocab = self.tokenizer.get_vocab_size(with_added_tokens=True)
        row = [max(vocab - 1, self.pad_id, 0)] * self.max_length
        try:
            self._run([row], 1)
        except (BundleError, ValueError) as exc:
            raise BundleError(f"text encoder {self.model_file}: the tokenizer's {vocab} token ids at max_length "
                              f"{self.max_length} do not fit the model ({exc})") from exc

    def _run(self, ids: list[list[int]], rows: int) -> np.ndarray:
        return _checked(run_session(self.session, self.output, self._feed(ids), "text encoder"), rows, self.dim,
                        "text encoder")

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length`` (a warning names how many were cut).

        Texts are first cut to :data:`CHARS_PER_TOKEN` characters per token of ``max_length``.

        Raises:
            ValueError: a text with a lone surrogate, or with nothing but characters the tokenizer drops
                (control, zero-width, ...), which would embed as the special tokens alone.
        """
        cap = CHARS_PER_TOKEN * self.max_length
        capped = [_valid_unicode(text[:cap], f"texts[{i}]") for i, text in enumerate(texts)]
        try:
            encodings = self.tokenizer.encode_batch(capped)
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ValueError(f"the tokenizer cannot encode these texts ({str(exc)[:200]})") from exc
        for i, enc in enumerate(encodings):
            if all(enc.special_tokens_mask):
                raise ValueError(f"texts[{i}] has nothing the tokenizer can read (only control, zero-width or "
                                 "similar characters); there is nothing to embed")
        cut = [i for i, enc in enumerate(encodings) if enc.overflowing or len(texts[i]) > cap]
        if cut:
            logger.warning(
                "%d text(s) longer than max_length=%d tokens were truncated (first: texts[%d])",
                len(cut), self.max_length, cut[0],
            )
        return [enc.ids for enc in encodings]

    def _feed(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        longest = max(len(row) for row in ids)
        input_ids = np.full((len(ids), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
        return {name: arrays[role].astype(self._dtypes[role], copy=False) for role, name in self.inputs.items()}

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised embeddings of ``texts`` (non-empty strings)."""
        texts = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        if len(ids) == 1:  # a search query: no length sort, no bar
            return self._run(ids, 1)
        order = np.argsort([len(row) for row in ids], kind="stable")  # similar lengths share a batch
        with progress_bar(progress, total=len(texts), desc="texts", unit="text") as bar:
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = self._run([ids[r] for r in rows], len(rows))
                bar.update(len(rows))
        return out


def _checked(emb: np.ndarray, rows: int, dim: int, name: str) -> np.ndarray:
    """Encoder output as normalised float32, or a clear error if its shape or values are wrong."""
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (rows, dim):
        raise BundleError(f"{name}: output has shape {emb.shape}, expected {(rows, dim)}")
    if not np.isfinite(emb).all():
        raise ValueError(f"{name} produced NaN or infinite embeddings")
    return l2_normalise(emb, what=f"{name} output")
