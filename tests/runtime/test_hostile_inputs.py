"""Hostile values (issue 14, items 7 and 8 and the smaller ones): huge vectors, huge filters and numbers, odd texts,
huge paths and ids, and bundles whose tokenizer or preprocessor do not fit their models."""

import json
import time
import warnings

import numpy as np
import pytest

from edgeret.runtime.errors import BundleError, UnknownIdError
from edgeret.runtime.image import load_image
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.retriever import Retriever

from .conftest import FIXTURE_BUNDLE, random_unit
from .hostile import edit_json, refresh_manifest_entry

DIM = 32


@pytest.fixture(scope="module")
def ret():
    return Retriever.open(FIXTURE_BUNDLE, threads=1)


@pytest.mark.arm64
@pytest.mark.parametrize("value", [3e38, -3e38, 1e-30, 1e-44])
def test_huge_and_tiny_finite_vectors_keep_their_direction(value):
    index = VectorIndex(DIM)
    vector = np.full((1, DIM), value, dtype=np.float32)
    vector[0, 0] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        index.add(["x"], vector)
    stored = index.vectors(["x"])[0]
    expected = np.sign(value) * np.r_[0, np.full(DIM - 1, 1 / np.sqrt(DIM - 1))]
    assert np.allclose(stored, expected, atol=1e-6)
    assert index.search(vector[0], k=1)[0].id == "x"


@pytest.fixture
def tagged():
    index = VectorIndex(DIM, exact_threshold=10)
    index.add([f"v{i}" for i in range(3000)], random_unit(3000, DIM),
              [{"n": i, "tag": f"t{i % 700}"} for i in range(3000)])
    return index


@pytest.mark.parametrize("values", [498, 5000])
def test_large_in_lists_simply_work(tagged, values):
    where = {"tag": {"in": [f"t{i}" for i in range(values)] + list(range(100))}}
    hits = tagged.search(random_unit(1, DIM)[0], k=3000, filter=where)
    assert {int(h.id[1:]) for h in hits} == {i for i in range(3000) if i % 700 < values}
    numbers = tagged.search(random_unit(1, DIM)[0], k=3000, filter={"n": {"in": list(range(0, 3000, 3))}})
    assert {int(h.id[1:]) for h in numbers} == set(range(0, 3000, 3))


def test_filters_with_thousands_of_keys_simply_work(tagged):
    where = {f"k{i}": {"ne": i} for i in range(2000)} | {"n": {"lt": 10}}
    assert {h.id for h in tagged.search(random_unit(1, DIM)[0], k=50, filter=where)} == {f"v{i}" for i in range(10)}


def test_huge_numbers_in_metadata_and_filters(tagged):
    tagged.add(["huge"], random_unit(1, DIM), [{"big": 10**400, "n": -1}])
    assert tagged.metadata("huge")["big"] == 10**400  # stored and returned, not filterable
    assert tagged.search(random_unit(1, DIM)[0], k=5, filter={"big": {"gte": 0}}) == []
    assert [h.id for h in tagged.search(random_unit(1, DIM)[0], k=5, filter={"n": -1})] == ["huge"]
    with pytest.raises(ValueError, match="finite number within the float range"):
        tagged.search(random_unit(1, DIM)[0], filter={"n": 10**400})
    with pytest.raises(ValueError, match="nested more than 64"):
        nested: dict = {}
        for _ in range(100_000):
            nested = {"a": nested}
        tagged.add(["deep"], random_unit(1, DIM), [nested])
    with pytest.raises(ValueError, match="lone surrogate"):
        tagged.add(["s"], random_unit(1, DIM), [{"name": "\ud800"}])
    assert "deep" not in tagged and "s" not in tagged


def test_many_results_with_metadata(tagged):
    assert len(tagged.search(random_unit(1, DIM)[0], k=40_000, exact=True)) == 3000


@pytest.mark.arm64
@pytest.mark.parametrize("text, message", [
    ("\u200b\u200b\u200b", "nothing the tokenizer can read"),
    ("\x01\x02\x7f", "nothing the tokenizer can read"),
    ("apple \ud800 pie", r"lone surrogate \(U\+D800"),
])
def test_texts_with_nothing_to_embed_are_refused(ret, text, message):
    with pytest.raises(ValueError, match=message):
        ret.embed_texts(["fine", text])


def test_huge_texts_are_cut_before_tokenising(ret):
    for text in ("apple " * 170_000, "a" * 10_000_000):  # 1 MB of words; a 10 MB single token
        start = time.perf_counter()
        emb = ret.embed_texts([text])
        assert time.perf_counter() - start < 1.0 and emb.shape == (1, DIM)
    assert np.allclose(ret.embed_texts(["apple " * 170_000]), ret.embed_texts(["apple " * 14]), atol=1e-5)


@pytest.mark.arm64
def test_error_messages_never_quote_megabytes(ret):
    huge = "x" * 1_000_000
    for attempt in (lambda: load_image(huge + ".png"), lambda: ret.embed_images([huge + ".png"]),
                    lambda: ret.index.add([huge, huge], random_unit(2, DIM)), lambda: ret.delete([huge]),
                    lambda: ret.search(vector=random_unit(1, DIM)[0], filter={huge: {huge: 1}})):
        with pytest.raises((ValueError, OSError, UnknownIdError)) as info:
            attempt()
        assert len(str(info.value)) < 600, str(info.value)[:100]


def test_tokenizer_ids_beyond_the_model_table_fail_at_open(bundle):
    def grow(data):
        vocab = data["model"]["vocab"]
        for i in range(50):
            vocab[f"extra{i}"] = len(vocab)
    edit_json(bundle / "tokenizer.json", grow)
    refresh_manifest_entry(bundle, "tokenizer.json")
    with pytest.raises(BundleError, match="token ids at max_length 16 do not fit the model"):
        Retriever.open(bundle, threads=1)


def test_a_preprocessor_size_the_model_cannot_take_fails_before_any_encode(bundle):
    edit_json(bundle / "preprocessor.json", lambda d: d.update(size=64))
    refresh_manifest_entry(bundle, "preprocessor.json")
    edit_json(bundle / "manifest.json", lambda d: d["image_encoder"].update(image_size=64))
    with pytest.raises(BundleError, match=r"input 'pixel_values' has shape \['batch', 3, 32, 32\].* 3, 64, 64"):
        Retriever.open(bundle, threads=1, lazy_image=False)
    lazy = Retriever.open(bundle, threads=1)
    with pytest.raises(BundleError, match="has shape"):
        lazy.embed_images([np.zeros((8, 8, 3), dtype=np.uint8)])


@pytest.mark.parametrize("field, value", [("size", 10**9), ("mean", 5), ("std", [0, 1, 1]), ("background", [1, 2])])
def test_malformed_preprocessor_configs_are_bundle_errors(bundle, field, value):
    edit_json(bundle / "preprocessor.json", lambda d: d.update({field: value}))
    refresh_manifest_entry(bundle, "preprocessor.json")
    if field == "size":
        edit_json(bundle / "manifest.json", lambda d: d["image_encoder"].update(image_size=value))
    with pytest.raises(BundleError):
        Retriever.open(bundle, threads=1, lazy_image=False)


def test_a_huge_pad_id_is_refused(bundle):
    edit_json(bundle / "tokenizer.json", lambda d: d.update(padding={"strategy": "BatchLongest", "direction": "Right",
                                                                     "pad_to_multiple_of": None, "pad_id": 2**40,
                                                                     "pad_type_id": 0, "pad_token": "[PAD]"}))
    refresh_manifest_entry(bundle, "tokenizer.json")
    with pytest.raises(BundleError, match="pad id|cannot load tokenizer"):
        Retriever.open(bundle, threads=1)


def test_malformed_filter_json_on_the_command_line_is_a_usage_error(bundle, capsys):
    from edgeret.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["search", str(bundle), "apple", "--filter", "[" * 100_000 + "]" * 100_000])
    assert info.value.code == 2 and "not valid JSON" in capsys.readouterr().err
    assert json.loads("[]") == []
