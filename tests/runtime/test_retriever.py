"""Retriever end to end on the tiny bundle: add, search, delete, save, reopen; bad input loses nothing."""

import json

import numpy as np
import pytest
from PIL import Image

from edgeret.runtime.bundle import load_manifest
from edgeret.runtime.errors import BundleError, UnknownIdError
from edgeret.runtime.retriever import Retriever

TEXTS = {"t-apple": "red apple", "t-car": "blue car", "t-dog": "a big dog", "t-sun": "the sun and the moon"}
COLOURS = {"i-red": (255, 0, 0), "i-blue": (0, 0, 255), "i-green": (0, 200, 0)}


def _fill(r: Retriever) -> None:
    r.add_texts(list(TEXTS), list(TEXTS.values()), [{"kind": "text", "n": i} for i in range(len(TEXTS))])
    images = [Image.new("RGB", (40, 30), c) for c in COLOURS.values()]
    r.add_images(list(COLOURS), images, [{"kind": "image", "n": i} for i in range(len(COLOURS))])


@pytest.mark.arm64
def test_add_search_delete_save_reopen(bundle):
    r = Retriever.open(bundle, threads=1)
    _fill(r)
    assert len(r) == 7 and "t-car" in r
    top = r.search(text="blue car", k=3)
    assert top[0].id == "t-car" and top[0].score == pytest.approx(1.0, abs=1e-5)
    assert top[0].metadata == {"kind": "text", "n": 1}
    assert r.search(image=Image.new("RGB", (64, 64), (0, 0, 255)), k=1)[0].id == "i-blue"
    only_images = r.search(text="red apple", k=10, filter={"kind": "image"})
    assert {h.id for h in only_images} == set(COLOURS)
    r.delete(["t-dog"])
    r.ef_search = 50
    r.save()

    again = Retriever.open(bundle, threads=1)
    assert len(again) == 6 and "t-dog" not in again and again.ef_search == 50
    for exact in (True, False):
        assert again.search(text="a big dog", k=10, exact=exact)[0].id != "t-dog"
        assert again.search(text="red apple", k=1, exact=exact)[0].id == "t-apple"
    assert load_manifest(bundle).index["count"] == 6


def test_search_needs_exactly_one_query(retriever):
    with pytest.raises(ValueError, match="exactly one"):
        retriever.search()
    with pytest.raises(ValueError, match="exactly one"):
        retriever.search(text="a", image=Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="non-empty string"):
        retriever.search(text="  ")
    assert retriever.search(text="nothing indexed yet") == []


@pytest.mark.arm64
def test_search_by_vector_and_full_dim_vectors_at_a_matryoshka_dim(bundle):
    r = Retriever.open(bundle, threads=1, dim=16)
    full = Retriever.open(bundle, threads=1).embed_texts(list(TEXTS.values()))
    r.add_embeddings(list(TEXTS), full)  # 32-d vectors are truncated to the index dim
    assert r.search(vector=full[2], k=1)[0].id == "t-dog"
    assert r.search(text="a big dog", k=1)[0].id == "t-dog"
    r.save()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["index"]["dim"] == 16
    assert Retriever.open(bundle).dim == 16
    with pytest.raises(BundleError, match="16-d but dim=32 was requested"):
        Retriever.open(bundle, dim=32)


@pytest.mark.arm64
def test_bad_input_is_refused_and_nothing_already_indexed_is_lost(bundle, tmp_path):
    r = Retriever.open(bundle, threads=1)
    _fill(r)
    r.save()
    snapshot = r.search(text="red apple", k=7)
    not_an_image = tmp_path / "fake.png"
    not_an_image.write_text("hello")
    attempts = [
        (lambda: r.add_texts(["x1", "x2"], ["fine", "   "]), ValueError, r"texts\[1\] is empty"),
        (lambda: r.add_texts(["x1", "x1"], ["one", "two"]), ValueError, "duplicate ids"),
        (lambda: r.add_texts(["x1"], ["one", "two"]), ValueError, "1 ids but 2 texts"),
        (lambda: r.add_images(["x1", "x2"], [Image.new("RGB", (8, 8)), not_an_image]), ValueError, "not an image"),
        (lambda: r.add_images(["x1"], [Image.new("RGB", (0, 8))]), ValueError, "zero-size"),
        (lambda: r.add_embeddings(["x1"], np.full((1, 32), np.nan)), ValueError, "NaN"),
        (lambda: r.add_embeddings(["x1"], np.ones((1, 24))), ValueError, r"shape \(n, 32\)"),
        (lambda: r.delete(["t-car", "ghost"]), UnknownIdError, "ghost"),
        (lambda: r.add_texts(["x1"], ["ok"], metadata=[{"bad": object()}]), ValueError, "JSON"),
    ]
    for attempt, error, match in attempts:
        with pytest.raises(error, match=match):
            attempt()
    assert len(r) == 7 and "x1" not in r
    assert r.search(text="red apple", k=7) == snapshot
    assert len(Retriever.open(bundle)) == 7


def test_stale_leftovers_of_a_killed_save_are_ignored_and_cleaned(retriever, bundle):
    retriever.add_texts(["a"], ["red apple"])
    first = retriever.save()
    (bundle / "index" / ".tmp-deadbeef").mkdir()
    (bundle / "index" / "gen-000009").mkdir()  # published but never pointed at
    assert len(Retriever.open(bundle)) == 1
    retriever.add_texts(["b"], ["blue car"])
    second = retriever.save()
    # the generation CURRENT named before (first) stays for readers opening it; the debris is gone
    assert sorted(p.name for p in (bundle / "index").iterdir()) == ["CURRENT", "LOCK", first.name, second.name]
    assert second.name == "gen-000010"
    third = retriever.save()
    assert sorted(p.name for p in (bundle / "index").iterdir()) == ["CURRENT", "LOCK", second.name, third.name]


def test_add_accepts_progress_and_batch_size(retriever):
    retriever.add_texts([f"t{i}" for i in range(10)], ["red apple"] * 10, batch_size=3, progress=True)
    assert len(retriever) == 10
