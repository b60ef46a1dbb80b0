"""Params, FLOPs and single-thread latency of the student's towers beside the stand-in teacher's.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, 2 per
multiply-add), for one 16-token query and one image at each tower's own resolution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertModel

from edgeret.data.timing import percentiles, time_calls

from .models.efficientnet_lite import load_lite0
from .models.text_tower import minilm_path

QUERY_TOKENS = 16


def count_params(module: nn.Module) -> int:
    """Parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call of ``fn``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def latency_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, threads: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds at ``threads`` torch threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return percentiles(time_calls(fn, repeats, warmup=warmup))["p50"]
    finally:
        torch.set_num_threads(old)


def _text_inputs(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, vocab, (1, QUERY_TOKENS))
    return ids, torch.ones_like(ids)


def tower_costs(model, repeats: int = 20) -> dict[str, dict]:
    """Params, FLOPs and (``repeats`` > 0) 1-thread latency of the student's text and image towers (eval mode)."""
    model.eval()
    out = {}
    if model.text is not None:
        ids, mask = _text_inputs(model.config.text.vocab_size)
        out["text"] = _cost(model.text, lambda: model.text(ids, mask), repeats, f"{QUERY_TOKENS} tokens")
    if model.image is not None:
        size = model.config.image.image_size
        pixels = torch.randn(1, 3, size, size)
        out["image"] = _cost(model.image, lambda: model.image(pixels), repeats, f"{size} px")
    return out


def size_and_flops(model) -> dict[str, dict[str, int]]:
    """Params and FLOPs per tower of a student (no timing)."""
    return {tower: {k: cost[k] for k in ("params", "flops")} for tower, cost in tower_costs(model, repeats=0).items()}


def teacher_costs(repeats: int = 20) -> dict[str, dict]:
    """The same numbers for MiniLM-L6 (16 tokens) and EfficientNet-Lite0 at 224 px."""
    bert = BertModel.from_pretrained(str(minilm_path()), add_pooling_layer=False).eval()
    lite0 = load_lite0().eval()
    ids, mask = _text_inputs(bert.config.vocab_size)
    pixels = torch.randn(1, 3, 224, 224)
    return {
        "text": _cost(bert, lambda: bert(input_ids=ids, attention_mask=mask), repeats, f"{QUERY_TOKENS} tokens"),
        "image": _cost(lite0, lambda: lite0(pixels), repeats, "224 px"),
    }


def _cost(module: nn.Module, fn: Callable[[], object], repeats: int, inputs: str) -> dict:
    """Params and FLOPs, and with ``repeats`` > 0 the 1-thread median latency."""
    cost = {"params": count_params(module), "flops": count_flops(fn)}
    if repeats > 0:
        cost["latency_ms_1t"] = round(latency_ms(fn, repeats), 3)
    return {**cost, "input": inputs}


def compare(model, repeats: int = 20) -> dict[str, dict]:
    """Student vs teacher per tower, with the FLOPs ratio (teacher / student)."""
    student, teacher = tower_costs(model, repeats), teacher_costs(repeats)
    return {
        tower: {"student": student[tower], "teacher": teacher[tower],
                "flops_reduction": round(teacher[tower]["flops"] / student[tower]["flops"], 2)}
        for tower in student
    }
