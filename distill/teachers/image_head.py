"""Fit the stand-in's linear image head into the frozen MiniLM text space (LiT-style).

Features: pooled EfficientNet-Lite0 outputs of OpenMoji *train* renders (clean + augmented).
Targets: MiniLM embeddings of each emoji's captions. Candidates: ridge regression over a grid of
penalties, then a contrastive (InfoNCE) fine-tune of the best ridge head; the head with the best
validation Recall@10 (mean of text->image and image->text) wins. Nothing from val/test is fitted.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import save_file

from edgeret.data.augment import augmented_render
from edgeret.data.openmoji import Emoji, emojis
from edgeret.data.render import render_emoji
from edgeret.runtime.vectors import l2_normalise


class HeadFitTeacher(Protocol):
    """What fitting a head needs of the teacher (the stand-in): text embeddings, image features, a head slot."""

    def embed_texts(self, texts: list[str], batch_size: int = ...) -> np.ndarray:
        """L2-normalised text embeddings."""
        ...

    def image_features(self, images: list, batch_size: int = ...) -> np.ndarray:
        """Pooled image features (the head's input)."""
        ...

    def load_head(self, path: Path) -> None:
        """Load a saved head."""
        ...


logger = logging.getLogger(__name__)

RIDGE_PENALTIES = (10.0, 100.0, 1000.0, 3000.0, 10000.0)


def _caption_targets(teacher: HeadFitTeacher, items: list[Emoji]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """All caption embeddings, their owner index, and per-emoji mean caption embeddings."""
    texts = [c for e in items for c in e.captions]
    owners = [i for i, e in enumerate(items) for _ in e.captions]
    caps = teacher.embed_texts(texts, batch_size=128)
    means = np.zeros((len(items), caps.shape[1]), np.float32)
    np.add.at(means, owners, caps)
    return caps, l2_normalise(means), owners


def _val_recall10(head: tuple[np.ndarray, np.ndarray], feats: np.ndarray, caps: np.ndarray, owners: list[int]) -> dict:
    """Validation Recall@10 for text->image and image->text with a candidate head."""
    img = l2_normalise(feats @ head[0].T + head[1])
    sims = caps @ img.T  # captions x images
    owners_arr = np.asarray(owners)
    top_t2i = np.argsort(-sims, axis=1)[:, :10]
    t2i = float(np.mean([o in row for o, row in zip(owners_arr, top_t2i, strict=True)]))
    top_i2t = np.argsort(-sims.T, axis=1)[:, :10]
    i2t = float(np.mean([i in owners_arr[row] for i, row in enumerate(top_i2t)]))
    return {"t2i_recall@10": t2i, "i2t_recall@10": i2t, "mean": (t2i + i2t) / 2}


def fit_ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression on standardised features, folded back into (weight (D_out, D_in), bias)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    gram = z.T @ z + penalty * np.eye(z.shape[1], dtype=np.float64)
    coef = np.linalg.solve(gram, z.T @ (y - y.mean(0)))  # (D_in, D_out)
    weight = (coef / std[:, None]).T
    bias = y.mean(0) - mean @ (coef / std[:, None])
    return weight.astype(np.float32), bias.astype(np.float32)


def fit_contrastive(
    x: np.ndarray,
    caps: np.ndarray,
    owners: np.ndarray,
    init: tuple[np.ndarray, np.ndarray],
    steps: int = 400,
    batch: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric InfoNCE between image features (trainable linear head) and frozen caption embeddings."""
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], caps.shape[1])
    head.weight.data, head.bias.data = torch.from_numpy(init[0].copy()), torch.from_numpy(init[1].copy())
    log_temp = torch.nn.Parameter(torch.tensor(np.log(0.05), dtype=torch.float32))
    opt = torch.optim.AdamW([*head.parameters(), log_temp], lr=lr, weight_decay=1e-4)
    xs, cs = torch.from_numpy(x), torch.from_numpy(caps)
    caps_of: dict[int, list[int]] = {}
    for row, owner in enumerate(owners):
        caps_of.setdefault(int(owner), []).append(row)
    for _ in range(steps):
        img_rows = torch.randperm(len(xs), generator=gen)[:batch]
        owner_ids = [int(i) % len(caps_of) for i in img_rows]  # feature row i belongs to emoji i % n_emoji
        cap_rows = [caps_of[o][int(torch.randint(len(caps_of[o]), (1,), generator=gen))] for o in owner_ids]
        img = torch.nn.functional.normalize(head(xs[img_rows]), dim=-1)
        logits = img @ cs[cap_rows].T / log_temp.exp()
        same = torch.tensor(owner_ids)[:, None] == torch.tensor(owner_ids)[None, :]
        targets = same.float() / same.float().sum(1, keepdim=True)
        loss = -(targets * logits.log_softmax(1)).sum(1).mean() - (targets.T * logits.T.log_softmax(1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()


def fit_image_head(
    teacher: HeadFitTeacher, augment_copies: int = 2, seed: int = 0, max_emoji: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit on the train split, select on val; returns (weight, bias, report).

    ``max_emoji`` caps the train and val emoji used (for quick tests; None = all).
    """
    start = time.time()
    train, val = emojis("train")[:max_emoji], emojis("val")[:max_emoji]
    logger.info(
        "fitting the stand-in image head on %d train emoji (+%d augmented copies each)", len(train), augment_copies
    )
    renders = [render_emoji(e.text) for e in train]
    renders += [augmented_render(e.text, e.id, k, seed) for k in range(augment_copies) for e in train]
    x = teacher.image_features(renders, batch_size=16).astype(np.float64)
    caps, targets, owners = _caption_targets(teacher, train)
    y = np.tile(targets, (1 + augment_copies, 1)).astype(np.float64)
    val_feats = teacher.image_features([render_emoji(e.text) for e in val], batch_size=16)
    val_caps, _, val_owners = _caption_targets(teacher, val)
    candidates: dict[str, tuple[np.ndarray, np.ndarray]] = {
        f"ridge(l={p:g})": fit_ridge(x, y, p) for p in RIDGE_PENALTIES
    }
    scores = {name: _val_recall10(h, val_feats, val_caps, val_owners) for name, h in candidates.items()}
    best_ridge = max(scores, key=lambda n: scores[n]["mean"])
    cap_owner = np.asarray(owners)
    candidates["contrastive"] = fit_contrastive(
        x.astype(np.float32), caps, cap_owner, candidates[best_ridge], seed=seed
    )
    scores["contrastive"] = _val_recall10(candidates["contrastive"], val_feats, val_caps, val_owners)
    best = max(scores, key=lambda n: scores[n]["mean"])
    report = {
        "method": best,
        "val": scores,
        "train_emoji": len(train),
        "val_emoji": len(val),
        "augment_copies": augment_copies,
        "seed": seed,
        "fit_seconds": round(time.time() - start, 1),
    }
    logger.info(
        "image head: chose %s (val R@10 t2i %.3f, i2t %.3f)",
        best,
        scores[best]["t2i_recall@10"],
        scores[best]["i2t_recall@10"],
    )
    return candidates[best][0], candidates[best][1], report


def fit_and_save_head(teacher: HeadFitTeacher, path: Path, **kwargs: Any) -> dict:
    """Fit the head, save it atomically as safetensors (report in metadata) and load it into ``teacher``."""
    weight, bias, report = fit_image_head(teacher, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(
        {"weight": torch.from_numpy(weight).contiguous(), "bias": torch.from_numpy(bias).contiguous()},
        str(tmp),
        metadata={"info": json.dumps(report)},
    )
    tmp.replace(path)
    teacher.load_head(path)
    return report
