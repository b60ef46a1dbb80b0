"""Vocabulary pruning for an inherited WordPiece text tower.

Keeps every special token, every single-character piece (``x`` and ``##x``, so any text still
tokenises) and every token the given texts use; ids are renumbered in the original order, so the
student's embedding matrix is the teacher's rows ``keep_ids``. Because WordPiece matches the longest
piece first and the kept vocabulary is a subset, a text whose pieces were all kept tokenises to the
same pieces as with the full vocabulary.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

logger = logging.getLogger(__name__)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A ``tokenizers`` tokenizer from a ``tokenizer.json`` file or a folder holding one."""
    path = Path(path)
    return Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))


def _is_single_piece(token: str, prefix: str) -> bool:
    return len(token) == 1 or (token.startswith(prefix) and len(token) == len(prefix) + 1)


def token_counts(tokenizer: Tokenizer, texts: Iterable[str], batch: int = 4096) -> np.ndarray:
    """Occurrences of every token id when ``texts`` are tokenised (no truncation, no padding)."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    counts = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    texts = iter(texts)
    while chunk := list(itertools.islice(texts, batch)):  # streamed: a big corpus is never held whole
        for enc in tok.encode_batch(chunk):
            np.add.at(counts, enc.ids, 1)
    return counts


def used_token_ids(tokenizer: Tokenizer, texts: Iterable[str], batch: int = 4096) -> set[int]:
    """Ids of every token appearing when ``texts`` are tokenised (without truncation)."""
    return {int(i) for i in np.flatnonzero(token_counts(tokenizer, texts, batch))}


def prune_tokenizer(tokenizer: Tokenizer, texts: Iterable[str]) -> tuple[Tokenizer, list[int]]:
    """A WordPiece tokenizer restricted to what ``texts`` need; returns (tokenizer, keep_ids).

    ``keep_ids[new_id]`` is the token's id in the original vocabulary (sorted ascending). The result
    neither pads nor truncates (see :func:`configure_for_inference`).
    """
    data = json.loads(tokenizer.to_str())
    model = data["model"]
    if model.get("type") != "WordPiece":
        raise ValueError(f"vocabulary pruning supports WordPiece tokenizers, got {model.get('type')}")
    vocab: dict[str, int] = model["vocab"]
    prefix = model.get("continuing_subword_prefix", "##")
    keep = used_token_ids(tokenizer, texts)
    keep.update(tok["id"] for tok in data.get("added_tokens", []))
    keep.update(i for t, i in vocab.items() if _is_single_piece(t, prefix) or t == model.get("unk_token"))
    keep_ids = sorted(keep)
    new_id = {old: new for new, old in enumerate(keep_ids)}
    by_old = {i: t for t, i in vocab.items()}
    model["vocab"] = {by_old[old]: new for old, new in new_id.items()}
    for tok in data.get("added_tokens", []):
        tok["id"] = new_id[tok["id"]]
    _remap_post_processor(data.get("post_processor"), new_id)
    data["padding"] = data["truncation"] = None  # set for inference by configure_for_inference
    logger.info("pruned vocabulary: %d of %d tokens kept", len(keep_ids), len(vocab))
    return Tokenizer.from_str(json.dumps(data)), keep_ids


def _remap_post_processor(post: dict | None, new_id: dict[int, int]) -> None:
    if not post:
        return
    for special in post.get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    for key in ("cls", "sep"):  # BertProcessing stores [token, id] pairs
        if key in post and isinstance(post[key], list):
            post[key][1] = new_id[post[key][1]]
    for inner in post.get("processors", []) or []:
        _remap_post_processor(inner, new_id)


def configure_for_inference(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """Truncate to ``max_length`` and pad batches to their longest member (what ``tokenizer.json`` ships)."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(max_length)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tok
