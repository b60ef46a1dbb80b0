"""Every runtime guarantee for every index format (hnswlib-f32 and faiss-hnsw-sq8): round trip, recall, deletes,
compaction, filters, Matryoshka dims, readers during saves, merging writers, refusal of unknown formats.

faiss is an optional extra: its cases skip where it is not installed (``make test-runtime-base``). The cases marked
``arm64`` (a few seconds under emulation, both formats) also run in the emulated aarch64 guest (``make arm64``).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edgeret.runtime import index_formats
from edgeret.runtime.errors import BundleError
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.persist import read_saved_index
from edgeret.runtime.retriever import Retriever

from .conftest import CHILD_CWD, random_unit

FORMATS = ["hnswlib-f32", "faiss-hnsw-sq8"]
DIM = 32


@pytest.fixture(params=FORMATS)
def fmt(request, monkeypatch) -> str:
    """Each index format (faiss's skipped without faiss; its ranges trained from 500 vectors on, so that these
    small indexes search faiss's graph rather than their float32 vectors before training)."""
    if request.param == "faiss-hnsw-sq8":
        pytest.importorskip("faiss")
        from edgeret.runtime import faiss_backend  # needs faiss: imported once it is known to be installed

        monkeypatch.setattr(faiss_backend, "TRAIN_MIN", 500)
    return request.param


def _filled(fmt: str, n: int = 2000, seed: int = 0, **kwargs) -> tuple[VectorIndex, np.ndarray]:
    vectors = random_unit(n, DIM, seed=seed)
    index = VectorIndex(DIM, format=fmt, exact_threshold=100, ef_construction=100, threads=2, **kwargs)
    index.add([f"v{i}" for i in range(n)], vectors, [{"g": i % 100, "half": i % 2} for i in range(n)])
    return index, vectors


def _load(index_dir) -> VectorIndex:
    return VectorIndex.load(read_saved_index(index_dir), exact_threshold=100)


def _top(index: VectorIndex, query: np.ndarray, **kwargs) -> list[str]:
    return [hit.id for hit in index.search(query, **kwargs)]


def _recall(index: VectorIndex, vectors: np.ndarray, queries: np.ndarray, keep: np.ndarray | None = None,
            **kwargs) -> float:
    """recall@10 of ``index.search(**kwargs)`` against exact float32 search over ``keep`` (default: all)."""
    keep = np.arange(len(vectors)) if keep is None else keep
    truth = keep[np.argsort(-(queries @ vectors[keep].T), axis=1)[:, :10]]
    found = 0
    for query, row in zip(queries, truth, strict=True):
        found += len({f"v{i}" for i in row} & set(_top(index, query, k=10, **kwargs)))
    return found / truth.size


def test_save_load_round_trip(fmt, tmp_path):
    index, vectors = _filled(fmt)
    index.ef_search = 80
    queries = random_unit(20, DIM, seed=5)
    saved = index.save(tmp_path / "index")  # faiss: trains the 8-bit ranges (fewer than TRAIN_MIN vectors)
    before = [_top(index, q, k=10, exact=False) for q in queries]
    assert saved.meta["index_format"] == fmt and saved.meta["version"] == index_formats.FORMATS[fmt].version
    again = _load(tmp_path / "index")
    assert again.format == fmt and len(again) == 2000 and again.ef_search == 80
    assert [_top(again, q, k=10, exact=False) for q in queries] == before
    assert again.metadata("v7") == {"g": 7, "half": 1}
    stored = again.vectors(["v3", "v1999"])
    assert np.allclose(stored, vectors[[3, 1999]], atol=0.02)  # faiss: decoded from 8-bit codes
    again.close()


def test_graph_search_recall_against_exact(fmt):
    index, vectors = _filled(fmt, n=3000, seed=1)
    assert fmt == "hnswlib-f32" or index._backend.ntotal == 3000  # in faiss, not float32 rows awaiting training
    queries = random_unit(40, DIM, seed=2)
    assert _recall(index, vectors, queries, exact=False) >= 0.9
    assert _recall(index, vectors, queries, exact=True) >= (0.999 if fmt == "hnswlib-f32" else 0.95)


def test_delete_and_re_add(fmt, tmp_path):
    index, vectors = _filled(fmt)
    gone = [f"v{i}" for i in range(0, 2000, 20)]
    labels = sorted(index.label_of(i) for i in gone)
    index.delete(gone)
    for i in (0, 20, 40):
        for exact in (True, False):
            assert f"v{i}" not in _top(index, vectors[i], k=10, exact=exact)
    fresh = random_unit(len(gone), DIM, seed=9)
    index.add([f"n{i}" for i in range(len(gone))], fresh)
    new_labels = sorted(index.label_of(f"n{i}") for i in range(len(gone)))
    if index_formats.FORMATS[fmt].name == "hnswlib-f32":
        assert new_labels == labels  # reused at once
    else:
        assert min(new_labels) >= 2000  # tombstones are not reused before compaction
    index.add(["v1"], fresh[:1])  # a replace
    index.save(tmp_path / "index")
    again = _load(tmp_path / "index")
    assert len(again) == 2000 and "v0" not in again
    for exact in (True, False):
        assert _top(again, fresh[3], k=1, exact=exact) == ["n3"]
        assert _top(again, fresh[0], k=2, exact=exact)[:2] in (["n0", "v1"], ["v1", "n0"])
        assert "v20" not in _top(again, vectors[20], k=10, exact=exact)


def test_compact(fmt, tmp_path):
    index, vectors = _filled(fmt)
    gone = [f"v{i}" for i in range(0, 2000, 3)]  # a third: the save compacts
    index.delete(gone)
    freed_now = index.compact()
    if fmt == "hnswlib-f32":
        assert freed_now == 0
    else:
        assert freed_now == len(gone) and sorted(index.label_of(i) for i in index.ids()) == list(range(len(index)))
    index.delete(["v1"])
    saved = index.save(tmp_path / "index")
    assert saved.meta["count"] == 2000 - len(gone) - 1
    again = _load(tmp_path / "index")
    for i in (2, 5, 1999):
        for exact in (True, False):
            assert _top(again, vectors[i], k=1, exact=exact) == [f"v{i}"]
    assert "v1" not in _top(again, vectors[1], k=10, exact=False)


def test_filters(fmt, tmp_path):
    index, vectors = _filled(fmt, n=3000, seed=3)
    index.save(tmp_path / "index")
    queries = random_unit(20, DIM, seed=4)
    for where in (index, _load(tmp_path / "index")):  # SQL filters after writes; numpy columns when opened
        one = np.arange(7, 3000, 100)  # {"g": 7}: 1% of the items, exact over the subset
        assert _recall(where, vectors, queries, one, filter={"g": 7}) >= 0.95
        half = np.arange(1, 3000, 2)  # 50%: graph search with a selector / predicate
        assert _recall(where, vectors, queries, half, filter={"half": 1}, exact=False) >= 0.85
        hits = where.search(queries[0], k=30, filter={"g": {"in": [1, 2]}})
        assert len(hits) == 30 and {h.metadata["g"] for h in hits} <= {1, 2}
        assert where.search(queries[0], k=5, filter={"g": 1000}) == []
    where.delete(["v7"])
    assert "v7" not in _top(where, vectors[7], k=10, filter={"g": 7})


@pytest.mark.arm64
def test_matryoshka_dims(fmt, bundle):
    r = Retriever.open(bundle, threads=1, dim=16, index_format=fmt)
    full = random_unit(300, 32, seed=11)
    r.add_embeddings([f"e{i}" for i in range(300)], full)  # truncated to 16 and renormalised
    assert r.dim == 16 and r.index.format == fmt
    assert r.search(vector=full[42], k=1)[0].id == "e42"
    r.save()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["index"]["dim"] == 16 and manifest["index"]["format"] == fmt
    again = Retriever.open(bundle, threads=1)
    assert again.dim == 16 and again.index.format == fmt
    assert again.search(vector=full[42], k=1)[0].id == "e42"
    assert again.search(vector=full[42][:16], k=1, exact=False)[0].id == "e42"
    other = "faiss-hnsw-sq8" if fmt == "hnswlib-f32" else "hnswlib-f32"
    with pytest.raises(BundleError, match="was requested"):
        Retriever.open(bundle, index_format=other)
    again.close()


def test_readers_open_and_search_while_a_writer_saves(fmt, tmp_path):
    index, vectors = _filled(fmt, n=500)
    index_dir = tmp_path / "index"
    index.save(index_dir)
    counts, errors, done = {500}, [], threading.Event()
    extra = random_unit(200, DIM, seed=8)

    def reader() -> None:
        try:
            while not done.is_set():
                opened = _load(index_dir)
                assert len(opened) in counts
                assert _top(opened, vectors[10], k=1, exact=False) == ["v10"]
                opened.close()
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for batch in range(10):
            counts.add(len(index) + 20)
            index.add([f"x{batch}-{i}" for i in range(20)], extra[batch * 20 : batch * 20 + 20])
            index.save(index_dir)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    assert len(_load(index_dir)) == 700


def test_searches_run_while_a_writer_adds_deletes_and_saves(fmt, tmp_path):
    index, vectors = _filled(fmt, n=600)
    errors, done, searches = [], threading.Event(), [0, 0, 0]
    extra = random_unit(300, DIM, seed=13)

    def searcher(slot: int) -> None:
        try:
            while not done.is_set():
                where = {"g": {"lt": 10}} if slot == 2 else None
                hits = index.search(vectors[slot], k=10, filter=where, exact=(None, False, None)[slot])
                assert len(hits) == 10 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
                searches[slot] += 1
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    try:
        for batch in range(10):
            index.add([f"x{batch}-{i}" for i in range(30)], extra[batch * 30 : batch * 30 + 30])
            index.delete([f"v{100 + batch}"])
            if batch % 3 == 2:
                index.save(tmp_path / "index")
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    assert all(searches) and len(index) == 600 + 300 - 10
    assert len(_load(tmp_path / "index")) == 600 + 270 - 9


KILLED_WRITER = r"""
import sys
import numpy as np
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.persist import read_saved_index

folder, fmt = sys.argv[1], sys.argv[2]
saved = read_saved_index(folder)
index = VectorIndex(32, format=fmt) if saved is None else VectorIndex.load(saved)
rng = np.random.default_rng(len(index))
index.add([f"k{len(index) + i}" for i in range(600)], rng.standard_normal((600, 32)))
while True:
    index.save(folder)
    print("SAVED", len(index), flush=True)
    index.add([f"k{len(index)}"], rng.standard_normal((1, 32)))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_writer_killed_during_saves_leaves_a_loadable_index(fmt, tmp_path):
    folder = tmp_path / "index"
    for round_ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(folder), fmt], stdout=subprocess.PIPE,
                                text=True, env=dict(os.environ), cwd=CHILD_CWD)
        saved = []
        try:
            for line in proc.stdout:
                saved.append(int(line.split()[1]))
                if len(saved) == 3 + round_:
                    time.sleep(0.003 * (round_ + 1))  # land inside the next save
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            proc.wait(timeout=60)
        finally:
            proc.kill()
        again = _load(folder)
        assert again.format == fmt and saved[-1] <= len(again) <= saved[-1] + 1
        assert len(again.search(random_unit(1, DIM)[0], k=5, exact=False)) == 5
        again.close()


@pytest.mark.arm64
def test_two_writers_merge(fmt, tmp_path):
    index, vectors = _filled(fmt, n=400)
    index_dir = tmp_path / "index"
    index.save(index_dir)
    first, second = _load(index_dir), _load(index_dir)
    extra = random_unit(20, DIM, seed=12)
    first.add([f"a{i}" for i in range(10)], extra[:10])
    first.delete(["v1"])
    second.add([f"b{i}" for i in range(10)], extra[10:])
    second.delete(["v2"])
    first.save(index_dir)
    second.save(index_dir)  # merges over first's save
    merged = _load(index_dir)
    assert merged.format == fmt and len(merged) == 400 + 20 - 2
    assert not {"v1", "v2"} & set(merged.ids())
    for i in (0, 15):
        assert _top(merged, extra[i], k=1, exact=False) == [("a" if i < 10 else "b") + str(i % 10)]


@pytest.mark.arm64
def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(BundleError, match="not supported by this runtime"):
        VectorIndex(DIM, format="usearch-i8")
    index = VectorIndex(DIM)
    index.add(["a"], random_unit(1, DIM))
    saved = index.save(tmp_path / "index")
    meta_path = saved.directory / "index.json"
    meta = json.loads(meta_path.read_text())
    meta["index_format"] = "usearch-i8"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="index format 'usearch-i8' is not supported"):
        read_saved_index(tmp_path / "index")
    meta["index_format"] = "faiss-hnsw-sq8"  # a 1.x file that claims the 2.x format
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="written as version 2.x"):
        read_saved_index(tmp_path / "index")


@pytest.mark.arm64
def test_a_missing_library_names_the_extra(monkeypatch):
    real = index_formats.importlib.util.find_spec
    monkeypatch.setattr(index_formats.importlib.util, "find_spec",
                        lambda name, *a: None if name == "faiss" else real(name, *a))
    with pytest.raises(BundleError, match=r"pip install 'edgeret\[faiss\]'"):
        VectorIndex(DIM, format="faiss-hnsw-sq8")


@pytest.mark.arm64
def test_faiss_refuses_l2():
    pytest.importorskip("faiss")
    with pytest.raises(ValueError, match="not 'l2'"):
        VectorIndex(DIM, space="l2", format="faiss-hnsw-sq8")
