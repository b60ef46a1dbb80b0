"""Distillation losses. Teacher features come in as plain tensors (read from the teacher cache).

Inputs are dicts keyed by group: ``image`` and ``caption`` (caption i belongs to image ``partner["caption"][i]``,
or to image i without a partner index), ``query`` and ``document`` (row i of each are a pair) and ``text``
(unpaired texts). Student features are the raw tower outputs; teacher features are L2-normalised. Terms:

- ``cos_image`` / ``cos_text``: 1 - cosine between student and teacher embedding (full dim), or the
  squared error of the normalised embeddings with ``mse=True``;
- ``aff_t2i`` / ``aff_i2t`` / ``aff_t2t``: affinity mimicking, KL(teacher || student) between the
  in-batch similarity distributions caption->image, image->caption and query->document;
- ``contrastive``: symmetric InfoNCE on the ground-truth pairs (caption<->image, query<->document),
  with rows sharing a label counted as positives.

Affinity and contrastive terms are averaged over the Matryoshka dims (student prefixes renormalised,
teacher at full dim); the cosine term also, when ``matryoshka_cosine`` (against the teacher's prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

AFFINITY_PAIRS = {"aff_t2i": ("caption", "image"), "aff_i2t": ("image", "caption"), "aff_t2t": ("query", "document")}
CONTRASTIVE_PAIRS = (("caption", "image"), ("query", "document"))
TEXT_GROUPS = ("caption", "query", "document", "text")


@dataclass
class LossConfig:
    """Weights and temperatures of the distillation loss."""

    cosine: float = 1.0
    affinity: float = 1.0
    contrastive: float = 0.0
    temperature: float = 0.05
    contrastive_temperature: float = 0.05
    mse: bool = False
    matryoshka_dims: Sequence[int] = ()
    matryoshka_cosine: bool = False


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor, mse: bool = False) -> torch.Tensor:
    """Mean 1 - cos(student, teacher) per row (or mean squared error of the normalised rows)."""
    s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    if mse:
        return (s - t).pow(2).sum(-1).mean()
    return (1.0 - (s * t).sum(-1)).mean()


def affinity_kl(
    s_query: torch.Tensor, s_key: torch.Tensor, t_query: torch.Tensor, t_key: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over queries of KL(p_teacher || p_student), p = softmax(query . keys / temperature).

    All inputs are L2-normalised; student and teacher may have different dims.
    """
    s_logits = s_query @ s_key.T / temperature
    t_logits = t_query @ t_key.T / temperature
    t_logp = t_logits.log_softmax(-1)
    return (t_logp.exp() * (t_logp - s_logits.log_softmax(-1))).sum(-1).mean()


def contrastive_loss(
    query: torch.Tensor,
    key: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows (row i of ``query`` with row i of ``key``).

    With ``labels`` (one per row), every pair of rows with the same label is a positive.
    """
    logits = query @ key.T / temperature
    if labels is None:
        labels = torch.arange(len(query), device=query.device)
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)
    forward = -(targets * logits.log_softmax(1)).sum(1).mean()
    backward = -(targets.T * logits.T.log_softmax(1)).sum(1).mean()
    return (forward + backward) / 2


def _present(group: dict[str, torch.Tensor], *names: str) -> bool:
    return all(n in group and len(group[n]) > 1 for n in names)


def _paired(groups: dict[str, torch.Tensor], partner: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The images that captions belong to, row-aligned with the captions (when only some images have one)."""
    if "caption" in partner and "image" in groups:
        return {**groups, "image": groups["image"][partner["caption"]]}
    return groups


def distill_loss(
    student: dict[str, torch.Tensor],
    teacher: dict[str, torch.Tensor],
    config: LossConfig,
    labels: dict[str, torch.Tensor] | None = None,
    partner: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """All loss terms as a dict (each averaged over Matryoshka dims where it applies) plus ``total``.

    ``labels`` optionally maps groups to per-row pair labels for the contrastive term; ``partner`` maps
    ``caption`` to each caption's image row (pair terms then use those images only).
    """
    labels, partner = labels or {}, partner or {}
    full = next(iter(student.values())).shape[-1]
    dims = sorted(set(config.matryoshka_dims) | {full})
    texts = [n for n in TEXT_GROUPS if n in student]
    t = {k: F.normalize(v, dim=-1) for k, v in teacher.items()}
    terms: dict[str, torch.Tensor] = {}
    cos_dims = dims if config.matryoshka_cosine else [full]
    if "image" in student:
        s_image, t_image = student["image"], t["image"]
        terms["cos_image"] = _mean(cosine_loss(s_image[:, :d], t_image[:, :d], config.mse) for d in cos_dims)
    if texts:
        s_text = torch.cat([student[n] for n in texts])
        t_text = torch.cat([t[n] for n in texts])
        terms["cos_text"] = _mean(cosine_loss(s_text[:, :d], t_text[:, :d], config.mse) for d in cos_dims)
    prefixes = {d: _paired({k: F.normalize(v[:, :d], dim=-1) for k, v in student.items()}, partner) for d in dims}
    t, labels = _paired(t, partner), _paired(labels, partner)
    for name, (q, k) in AFFINITY_PAIRS.items():
        if _present(student, q, k):
            terms[name] = _mean(
                affinity_kl(prefixes[d][q], prefixes[d][k], t[q], t[k], config.temperature) for d in dims
            )
    if config.contrastive:
        parts = [
            _mean(
                contrastive_loss(prefixes[d][q], prefixes[d][k], config.contrastive_temperature, labels.get(k))
                for d in dims
            )
            for q, k in CONTRASTIVE_PAIRS
            if _present(student, q, k)
        ]
        if parts:
            terms["contrastive"] = _mean(parts)
    terms["total"] = _weighted_total(terms, config)
    return terms


def _mean(values) -> torch.Tensor:
    values = list(values)
    return torch.stack(values).mean()


def _weighted_total(terms: dict[str, torch.Tensor], config: LossConfig) -> torch.Tensor:
    weight = {"cos_image": config.cosine, "cos_text": config.cosine, "contrastive": config.contrastive}
    weight.update({name: config.affinity for name in AFFINITY_PAIRS})
    parts = [weight[name] * value for name, value in terms.items() if weight[name]]
    if not parts:
        raise ValueError("every loss term has weight 0 or no input")
    return torch.stack(parts).sum()
