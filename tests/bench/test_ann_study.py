"""ANN study on tiny sizes: exact ground truth, synthetic vectors, recall at high ef ~ 1, output files."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from edgeret.bench.ann_study import AnnStudyOptions, run_ann_study
from edgeret.bench.ann_vectors import collection, exact_topk, random_centres, recall_at_k, split_queries, synthetic
from edgeret.cli import ann_study as cli
from edgeret.runtime.errors import BundleError


def test_exact_topk_matches_a_full_sort():
    rng = np.random.default_rng(1)
    data = random_centres(1000, 16, rng)
    queries = random_centres(7, 16, rng)
    expected = np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(exact_topk(data, queries, k=10, chunk=128), expected)


def test_recall_hand_case():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert recall_at_k(found, exact) == pytest.approx((0.5 + 1.0) / 2)


def test_synthetic_vectors_cluster_around_parents():
    rng = np.random.default_rng(0)
    parents = random_centres(5, 64, rng)
    children = synthetic(500, parents, rng, spread=0.5)
    assert children.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(children, axis=1), 1.0, atol=1e-5)
    nearest = (children @ parents.T).max(axis=1)
    assert np.median(nearest) == pytest.approx(1 / np.sqrt(1.25), abs=0.03)


def test_collection_keeps_real_first_and_held_out_queries_apart():
    rng = np.random.default_rng(0)
    real = random_centres(300, 8, rng)
    base, queries = split_queries(real, 20, rng)
    assert len(base) == 280 and len(queries) == 20
    assert not np.isin(queries.view("V32"), base.view("V32")).any()
    data, n_real = collection(1000, base, rng)
    assert n_real == 280 and data.shape == (1000, 8)
    np.testing.assert_array_equal(data[:280], base)
    small, n_small = collection(100, base, rng)
    assert n_small == 100 and small.shape == (100, 8)


def test_study_on_tiny_sizes(tmp_path):
    formats = ["hnswlib-f32"] + (["faiss-hnsw-sq8"] if importlib.util.find_spec("faiss") else [])
    summary = run_ann_study(cli.parse_options(["--sizes", "1500", "3000", "--queries", "40", "--ef", "10", "320",
                                               "--dim", "32", "--formats", *formats, "--out", str(tmp_path)]))
    assert [r["size"] for r in summary["sizes"]] == [1500, 3000]
    for result in summary["sizes"]:
        assert [f["format"] for f in result["formats"]] == formats and result["filter"]["kept"] == result["size"] // 100
        for fmt in result["formats"]:
            by_ef = {s["ef_search"]: s for s in fmt["sweep"]}
            assert by_ef[320]["recall@10"] >= (0.99 if fmt["format"] == "hnswlib-f32" else 0.95)
            assert by_ef[10]["recall@10"] <= by_ef[320]["recall@10"] + 0.01
            assert fmt["file_bytes_per_vector"] > 32 + 4 * 16  # the vector (or its codes) plus its links
            assert fmt["build_s"] > 0 and by_ef[10]["query_ms_p50_1t"] > 0 and by_ef[10]["search_ms_p50_1t"] > 0
            assert fmt["filtered"]["recall@10"] >= 0.95 and fmt["cold_open_ms"] > 0
            assert fmt["rss_bytes_per_vector_probe"]["queries_rss"] > 0
    assert json.loads((tmp_path / "ann.json").read_text())["M"] == 16
    markdown = (tmp_path / "ann.md").read_text()
    assert "ef_search" in markdown and all(f"{f} recall@10" in markdown for f in formats)
    assert (tmp_path / "ann.png").stat().st_size > 1000


def test_a_format_without_its_library_is_refused_before_any_work(tmp_path, monkeypatch):
    from edgeret.runtime import index_formats  # patched: faiss looks uninstalled

    real = index_formats.importlib.util.find_spec
    monkeypatch.setattr(index_formats.importlib.util, "find_spec",
                        lambda name, *a: None if name == "faiss" else real(name, *a))
    with pytest.raises(BundleError, match=r"pip install 'edgeret\[faiss\]'"):
        run_ann_study(cli.parse_options(["--sizes", "100", "--out", str(tmp_path)]))
    assert not list(tmp_path.iterdir())


def test_the_command_line_builds_the_options_and_prints_one_line(tmp_path, monkeypatch, capsys):
    seen = []
    sweep = [{"ef_search": 10, "recall@10": 0.5, "query_ms_p50_1t": 0.1},
             {"ef_search": 320, "recall@10": 0.99, "query_ms_p50_1t": 0.9}]
    monkeypatch.setattr(cli, "run_ann_study", lambda options: seen.append(options) or {"sizes": [
        {"size": 1500, "formats": [{"format": "hnswlib-f32", "sweep": sweep}]}]})
    assert cli.main(["--sizes", "1500", "--M", "8", "--out", str(tmp_path)]) == 0
    (options,) = seen
    assert options == AnnStudyOptions(sizes=(1500,), M=8, out=tmp_path,
                                      command=f"edgeret ann-study --sizes 1500 --M 8 --out {tmp_path}")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "1,500 hnswlib-f32: recall@10 0.990 at ef 320" in out
    defaults = cli.parse_options([])
    assert defaults.sizes == (100_000, 1_000_000) and defaults.ef == (10, 20, 40, 80, 160, 320)
    assert defaults.queries == 1000 and defaults.ef_construction == 100 and defaults.bundle is None
    assert defaults.formats == ("hnswlib-f32", "faiss-hnsw-sq8")
