"""The registry of bench variant kinds: the built-in kinds, a new kind in one class, unknown kinds refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeret.bench import encoders
from edgeret.bench.encoders import KINDS, VariantKind, has_images, open_encoder, register

FIXTURE = Path(__file__).resolve().parents[1] / "runtime" / "fixtures" / "tiny_bundle"


def test_the_built_in_kinds():
    assert tuple(KINDS) == ("bundle", "teacher-torch", "peer-st")
    assert all(isinstance(kind, VariantKind) and kind.name == name for name, kind in KINDS.items())


def test_a_bundle_opens_through_the_runtime_at_a_dim():
    retriever = open_encoder("bundle", str(FIXTURE), threads=1, dim=16)
    assert retriever.dim == 16 and has_images(retriever)


def test_a_new_kind_is_one_class_and_one_registration(monkeypatch):
    monkeypatch.setattr(encoders, "KINDS", dict(KINDS))

    @register
    class Echo(VariantKind):
        name = "echo"

        def open(self, path, threads, dim=None, cached=None):
            return (path, threads, dim, cached)

    assert encoders.open_encoder("echo", "p", 2, dim=8) == ("p", 2, 8, None)
    assert "echo" not in KINDS  # the module's registry is back after the test


def test_an_unknown_kind_names_the_known_ones():
    known = r"\('bundle', 'teacher-torch', 'peer-st'\)"
    with pytest.raises(ValueError, match=rf"unknown variant kind 'nope'; known: {known}"):
        open_encoder("nope", None)
