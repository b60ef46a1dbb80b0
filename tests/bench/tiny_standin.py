"""A tiny stand-in teacher: the real ``StandinTeacher`` code and MiniLM tokenizer around small random towers.

Text: a 2-layer BERT (MiniLM's vocabulary, hidden 32); image: a conv + pooling trunk with 16 features
and a random linear head; 32-px preprocessing. Built in well under a second, for export tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from edgeret.distill.teachers.standin import StandinTeacher, minilm_path
from edgeret.runtime.preprocess import ImagePreprocessor

TINY_DIM = 24


class TinyTrunk(nn.Module):
    """(N, 3, S, S) -> (N, 16) pooled features, like EfficientNet-Lite0's pooled output."""

    head_channels = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv(pixels))).flatten(1)


def tiny_standin(tmp: Path, seed: int = 0) -> StandinTeacher:
    """A ``StandinTeacher`` instance (its encode methods unchanged) with tiny random towers."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    teacher = StandinTeacher.__new__(StandinTeacher)
    teacher.dim = TINY_DIM
    teacher.device = torch.device("cpu")
    teacher.text_max_length = 32
    teacher.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=teacher.tokenizer.vocab_size, hidden_size=TINY_DIM, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=48, max_position_embeddings=64)
    teacher.text_model = BertModel(config, add_pooling_layer=False).eval()
    teacher.image_model = TinyTrunk().eval()
    teacher.preprocess = ImagePreprocessor(size=32)
    teacher.remember_features, teacher._feature_memo = False, {}
    teacher.head_weight, teacher.head_bias = torch.randn(TINY_DIM, 16) / 4, torch.randn(TINY_DIM) / 10
    teacher.head_path = tmp / "head.bin"
    teacher.head_path.write_bytes(teacher.head_weight.numpy().tobytes())
    teacher.head_sha256 = hashlib.sha256(teacher.head_path.read_bytes()).hexdigest()
    teacher.head_info = {"method": "random"}
    return teacher
