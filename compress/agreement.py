"""How closely a compressed variant follows fp32: mean cosine and top-10 overlap on held-out retrieval sets.

:class:`OnnxEncoder` runs a pair of ONNX towers through the runtime's own encoders (the code that
serves them), so anything ``bench.evaluate`` accepts can be compared: fp32 vs INT8/INT4/fp16, or
ONNX vs torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.catalog import load_eval
from edgeret.data.scoring import embed_items, score_evalset
from edgeret.runtime.image import ImageEncoder
from edgeret.runtime.sessions import create_session
from edgeret.runtime.text import TextEncoder, load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_SETS = ("openmoji-test-t2i", "openmoji-test-i2t", "wordnet-test-t2t")


class OnnxEncoder:
    """``embed_texts`` / ``embed_images`` from ONNX files (either may be None), via ``runtime``'s encoders."""

    def __init__(self, text_path: str | Path | None, image_path: str | Path | None, tokenizer_path: str | Path,
                 preprocessor, max_length: int, dim: int, threads: int | None = 1):
        self.text = self.image = None
        if text_path is not None:
            tokenizer, pad_id = load_tokenizer(tokenizer_path, max_length)
            self.text = TextEncoder(create_session(text_path, threads=threads), tokenizer,
                                    inputs={"input_ids": "input_ids", "attention_mask": "attention_mask"},
                                    output="embeddings", max_length=max_length, dim=dim, pad_id=pad_id)
        if image_path is not None:
            self.image = ImageEncoder(create_session(image_path, threads=threads), preprocessor,
                                      inputs={"pixel_values": "pixel_values"}, output="embeddings", dim=dim)

    def embed_texts(self, texts: Sequence[str], progress: bool = False, **_: Any) -> np.ndarray:
        """L2-normalised text embeddings through the runtime's text encoder."""
        return self.text.encode(texts, progress=progress)

    def embed_images(self, images: Sequence[Any], progress: bool = False, **_: Any) -> np.ndarray:
        """L2-normalised image embeddings through the runtime's image encoder."""
        return self.image.encode(images, progress=progress)


def load_sets(names: Sequence[str], size: int = 224, sample: int | None = None) -> list:
    """Eval sets by name (``bench.datasets.load_eval``), optionally restricted to ``sample`` queries."""
    sets = []
    for name in names:
        evalset = load_eval(name, size=size)
        if sample is not None and len(evalset.queries) > sample:
            keep = evalset.queries[:: max(1, len(evalset.queries) // sample)][:sample]
            evalset.queries = keep
        sets.append(evalset)
    return sets


def agreement(reference, variant, evalsets: Sequence, memo_ref: dict | None = None) -> list[dict[str, Any]]:
    """Per set: the variant's metrics, its top-10 overlap with ``reference`` and mean cosine to it.

    ``memo_ref`` caches the reference's embeddings across calls (one per reference encoder).
    """
    memo_ref = {} if memo_ref is None else memo_ref
    memo_var: dict = {}
    rows = []
    for evalset in evalsets:
        ref_q = embed_items(reference, evalset.queries, memo=memo_ref)
        ref_c = embed_items(reference, evalset.corpus, memo=memo_ref)
        var_q = embed_items(variant, evalset.queries, memo=memo_var)
        var_c = embed_items(variant, evalset.corpus, memo=memo_var)
        ref_metrics, ref_ranked = score_evalset(ref_q, ref_c, evalset)
        metrics, _ = score_evalset(var_q, var_c, evalset, ref_ranked)
        cosine = np.concatenate([(ref_q * var_q).sum(1), (ref_c * var_c).sum(1)])
        rows.append({
            "set": f"{evalset.name}-{evalset.task}", "queries": len(evalset.queries), "corpus": len(evalset.corpus),
            "recall@10": metrics["recall@10"], "reference_recall@10": ref_metrics["recall@10"],
            "top10_overlap": metrics.pop("teacher_overlap@10"), "mean_cosine": float(cosine.mean()),
            "min_cosine": float(cosine.min()),
        })
        logger.info("%s: R@10 %.4f (fp32 %.4f), top-10 overlap %.4f, mean cos %.5f", rows[-1]["set"],
                    rows[-1]["recall@10"], rows[-1]["reference_recall@10"], rows[-1]["top10_overlap"],
                    rows[-1]["mean_cosine"])
    return rows
