"""VectorIndex: ids, recall, resize, label reuse, filters, persistence, and refusal of bad input."""

import numpy as np
import pytest

from edgeret.runtime.errors import UnknownIdError
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.persist import read_saved_index

from .conftest import random_unit

DIM = 32


def _index(n=0, **kwargs) -> VectorIndex:
    index = VectorIndex(DIM, **kwargs)
    if n:
        index.add([f"v{i}" for i in range(n)], random_unit(n, DIM))
    return index


@pytest.mark.arm64
def test_hnsw_recall_against_exact_search():
    data, queries = random_unit(2000, DIM, seed=1), random_unit(50, DIM, seed=2)
    index = VectorIndex(DIM, M=16, ef_construction=100, ef_search=64)
    index.add([f"v{i}" for i in range(2000)], data)
    recall = []
    for query in queries:
        truth = {r.id for r in index.search(query, k=10, exact=True)}
        approx = index.search(query, k=10, exact=False)
        recall.append(len(truth & {r.id for r in approx}) / 10)
        assert [r.score for r in approx] == sorted((r.score for r in approx), reverse=True)
    expected = {f"v{i}" for i in np.argsort(-(data @ queries[-1]))[:10]}
    assert truth == expected  # exact search really is exact
    assert np.mean(recall) >= 0.95


@pytest.mark.arm64
def test_scores_are_cosine_similarities_and_self_match_is_first():
    index = _index(100)
    vector = random_unit(100, DIM)[7]
    for exact in (True, False):
        hits = index.search(vector * 3.0, k=5, exact=exact)  # unnormalised query is normalised
        assert hits[0].id == "v7" and abs(hits[0].score - 1.0) < 1e-5
        assert hits[0] == ("v7", hits[0].score, None)  # results unpack as (id, score, metadata)


def test_automatic_resize():
    index = _index(1500)
    assert len(index) == 1500 and index.capacity >= 1500
    assert index.search(random_unit(1500, DIM)[1499], k=1, exact=False)[0].id == "v1499"


def test_deleted_labels_are_reused_and_the_graph_does_not_grow():
    index = _index(20)
    freed = sorted(index.label_of(i) for i in ("v3", "v11", "v5"))
    slots = index._backend.element_count
    index.delete(["v3", "v11", "v5"])
    assert len(index) == 17 and "v3" not in index
    new = random_unit(3, DIM, seed=9)
    index.add(["n0", "n1", "n2"], new)
    assert sorted(index.label_of(i) for i in ("n0", "n1", "n2")) == freed
    assert index._backend.element_count == slots
    for i, vec in enumerate(new):
        assert index.search(vec, k=1, exact=False)[0].id == f"n{i}"


@pytest.mark.arm64
def test_deleted_items_are_never_returned():
    index = _index(300)
    gone = [f"v{i}" for i in range(0, 300, 2)]
    index.delete(gone)
    for exact in (True, False):
        hits = index.search(random_unit(1, DIM, seed=5)[0], k=300, exact=exact)
        assert len(hits) == 150 and not {h.id for h in hits} & set(gone)


def test_re_adding_an_id_replaces_vector_and_metadata():
    index = _index(10)
    vec = random_unit(1, DIM, seed=42)
    index.add(["v4"], vec, metadata=[{"new": True}])
    assert len(index) == 10
    hit = index.search(vec[0], k=1)[0]
    assert hit.id == "v4" and hit.metadata == {"new": True}


def test_search_results_carry_metadata_as_it_comes_and_goes(tmp_path):
    # searches skip the metadata lookup while no item has any: the skip must follow adds, replaces, deletes, loads
    index = _index(20)
    vecs = random_unit(2, DIM, seed=43)
    assert index.search(vecs[0], k=1)[0].metadata is None
    index.add(["m"], vecs[:1], metadata=[{"a": 1}])
    assert index.search(vecs[0], k=1)[0].metadata == {"a": 1}
    index.add(["m2"], vecs[1:], metadata=[{"b": 2}])
    index.delete(["m"])
    assert index.search(vecs[1], k=1)[0].metadata == {"b": 2}
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(read_saved_index(tmp_path / "idx"))
    assert loaded.search(vecs[1], k=1)[0].metadata == {"b": 2}
    loaded.add(["m2"], vecs[1:])  # replaced without metadata: none left
    assert loaded.search(vecs[1], k=1)[0].metadata is None and loaded.metadata("m2") is None
    loaded.add(["m3"], vecs[:1], metadata=[{"c": 3}])
    assert loaded.search(vecs[0], k=1)[0].metadata == {"c": 3}


@pytest.fixture
def tagged():
    index = VectorIndex(DIM, exact_threshold=10, ef_search=128)
    metas = [{"lang": ["en", "de", "fr"][i % 3], "year": 1990 + i, "tags": ["odd" if i % 2 else "even", "all"],
              "flag": i % 5 == 0, "date": f"2020-01-{i % 28 + 1:02d}", "nested": {"x": i}} for i in range(90)]
    index.add([f"v{i}" for i in range(90)], random_unit(90, DIM), metas)
    return index


@pytest.mark.parametrize("where, expected", [
    ({"lang": "en"}, {i for i in range(90) if i % 3 == 0}),
    ({"lang": "en", "year": {"gte": 2030}}, {i for i in range(40, 90) if i % 3 == 0}),
    ({"year": {"gt": 2000, "lte": 2003}}, {11, 12, 13}),
    ({"lang": {"in": ["de", "fr"]}}, {i for i in range(90) if i % 3}),
    ({"lang": {"ne": "en"}}, {i for i in range(90) if i % 3}),
    ({"tags": "odd"}, {i for i in range(90) if i % 2}),
    ({"flag": True}, set(range(0, 90, 5))),
    ({"date": {"lt": "2020-01-03"}}, {i for i in range(90) if i % 28 < 2}),
    ({"lang": "xx"}, set()),
])
@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.arm64
def test_metadata_filters(tagged, where, expected, exact):
    hits = tagged.search(random_unit(1, DIM, seed=3)[0], k=90, filter=where, exact=exact)
    assert {int(h.id[1:]) for h in hits} == expected
    assert all(h.metadata["nested"] == {"x": int(h.id[1:])} for h in hits)


@pytest.mark.arm64
def test_filtered_hnsw_search_returns_the_top_of_the_subset(tagged):
    query = random_unit(1, DIM, seed=4)[0]
    exact = tagged.search(query, k=5, filter={"lang": "de"}, exact=True)
    approx = tagged.search(query, k=5, filter={"lang": "de"}, exact=False)
    assert [h.id for h in approx] == [h.id for h in exact]


@pytest.mark.parametrize("where, match", [
    ({"year": {"between": 1}}, "unknown operator 'between'"),
    ({"year": {"in": []}}, "non-empty list"),
    ({"year": [1, 2]}, "string or a finite number"),
    ({"year": float("nan")}, "finite number"),
    ({}, "non-empty dict"),
])
def test_bad_filters_are_refused(tagged, where, match):
    with pytest.raises(ValueError, match=match):
        tagged.search(random_unit(1, DIM)[0], filter=where)


def test_bad_input_is_refused_and_nothing_is_lost():
    index = _index(10)
    before = index.search(random_unit(10, DIM)[3], k=3)
    bad_vectors = random_unit(2, DIM, seed=7)
    bad_vectors[1, 4] = np.nan
    cases = [
        ((["a", "b"], bad_vectors), ValueError, r"NaN.*rows \[1\]"),
        ((["a", "a"], random_unit(2, DIM)), ValueError, "duplicate ids in one call: \\['a'\\]"),
        ((["a", "b"], random_unit(2, 16)), ValueError, r"shape \(n, 32\)"),
        ((["a", "b"], random_unit(3, DIM)), ValueError, "2 ids but 3 vectors"),
        ((["a", ""], random_unit(2, DIM)), ValueError, r"ids\[1\]"),
        (("ab", random_unit(2, DIM)), TypeError, "list of strings"),
        ((["a"], np.zeros((1, DIM))), ValueError, "zero norm"),
        ((["a"], random_unit(1, DIM), [{"x": float("nan")}]), ValueError, r"metadata\[0\]"),
        ((["a"], random_unit(1, DIM), [{1: "x"}]), TypeError, r"metadata\[0\]"),
        ((["a"], random_unit(1, DIM), [{}, {}]), ValueError, "one dict"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            index.add(*args)
    with pytest.raises(UnknownIdError, match="'nope'") as info:
        index.delete(["v1", "nope"])
    assert isinstance(info.value, KeyError) and info.value.ids == ["nope"]
    assert len(index) == 10 and "v1" in index and "a" not in index
    assert index.search(random_unit(10, DIM)[3], k=3) == before


def test_search_edge_cases():
    index = _index()
    assert index.search(random_unit(1, DIM)[0]) == []
    index.add(["only"], random_unit(1, DIM))
    assert [h.id for h in index.search(random_unit(1, DIM, seed=3)[0], k=50, exact=False)] == ["only"]
    with pytest.raises(ValueError, match="k must be"):
        index.search(random_unit(1, DIM)[0], k=0)
    with pytest.raises(ValueError, match="one query vector"):
        index.search(random_unit(2, DIM))
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full(DIM, np.nan))


@pytest.mark.parametrize("space", ["ip", "l2"])
def test_other_spaces(space):
    index = _index(200, space=space)
    vector = random_unit(200, DIM)[17]
    for exact in (True, False):
        hits = index.search(vector, k=3, exact=exact)
        assert hits[0].id == "v17" and hits[0].score >= hits[1].score


@pytest.mark.arm64
def test_save_and_load_round_trip_with_ef_search(tmp_path):
    index = _index(300, ef_search=40)
    index.delete(["v0", "v1"])
    index.ef_search = 77
    index.add(["tag"], random_unit(1, DIM, seed=8), [{"k": "v"}])
    saved = index.save(tmp_path / "idx")
    loaded = VectorIndex.load(read_saved_index(tmp_path / "idx"))
    assert loaded.ef_search == 77 and len(loaded) == 299 and loaded.config() == index.config()
    assert "v0" not in loaded and loaded.metadata("tag") == {"k": "v"}
    query = random_unit(1, DIM, seed=11)[0]
    assert loaded.search(query, k=10, exact=False) == index.search(query, k=10, exact=False)
    loaded.add(["z"], random_unit(1, DIM, seed=12))
    assert loaded.label_of("z") in (0, 1)  # a freed label, also after reloading
    second = loaded.save(tmp_path / "idx")
    assert second.directory.name == "gen-000002"
    assert saved.directory.exists()  # the replaced generation is kept for readers that are opening it ...
    loaded.save(tmp_path / "idx")
    assert not saved.directory.exists() and second.directory.exists()  # ... until the next save


def test_ef_search_is_validated():
    with pytest.raises(ValueError, match="ef_search"):
        _index().ef_search = 0


@pytest.mark.arm64
def test_hnsw_file_of_another_dim_is_refused(tmp_path):
    import shutil

    from edgeret.runtime.errors import BundleError

    VectorIndex(16).save(tmp_path / "small")
    big = _index(5).save(tmp_path / "big")
    shutil.copy(read_saved_index(tmp_path / "small").hnsw_path, big.hnsw_path)
    with pytest.raises(BundleError, match="holds 16-d vectors but index.json says dim 32"):
        VectorIndex.load(read_saved_index(tmp_path / "big", verify=False))
