"""runtime-bench end to end on the tiny fixture bundle: every measure present, nothing lost in the soak."""

import json
from pathlib import Path

import numpy as np

from edgeret.bench.runtime_bench import RuntimeBenchOptions, index_vectors, run_runtime_bench
from edgeret.cli import runtime_bench as cli

FIXTURE = Path(__file__).resolve().parents[1] / "runtime" / "fixtures" / "tiny_bundle"


def test_runtime_bench_on_the_fixture_bundle(tmp_path):
    result = run_runtime_bench(cli.parse_options([
        str(FIXTURE), "--items", "3000", "--queries", "12", "--soak-items", "300", "--vectors", "random",
        "--cold-repeats", "1", "--out", str(tmp_path), "--name", "rt"]))
    saved = json.loads((tmp_path / "rt.json").read_text())
    assert saved["items"] == 3000 and saved["vectors"] == "random"
    assert saved["text_query"]["n"] == 12 and saved["image_query"]["p50_ms"] > 0
    assert saved["soak"]["errors"] == 0 and saved["soak"]["missing_ids"] == 0
    cold = saved["cold_start"]["size"]
    assert cold["items"] == 3000 and not cold["torch_imported"] and 0 < cold["peak_rss_mb"] < 2000
    assert "median of 1" in (tmp_path / "rt.md").read_text()
    assert result["cold_start_empty_index"]["items"] == 0


def test_real_index_vectors_are_the_bundle_embeddings_then_their_neighbours(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    real = np.eye(4, 32, dtype=np.float32)
    import hashlib

    key = hashlib.sha256((FIXTURE / "manifest.json").read_bytes()).hexdigest()[:16]
    np.save(cache / f"real-{FIXTURE.name}-{key}.npy", real)  # what ann_vectors.real_embeddings caches
    vectors = index_vectors("real", 10, 32, FIXTURE, cache)
    assert vectors.shape == (10, 32) and np.array_equal(vectors[:4], real)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors[4:] @ real.T).max(1).min() > 0.5  # neighbours of a real vector, not uniform noise


def test_the_command_line_builds_the_options_and_prints_one_line(tmp_path, monkeypatch, capsys):
    seen = []
    result = {"text_query": {"p50_ms": 1.5}, "image_query": None, "cold_start": {"size": {"cold_start_ms": 250.0}},
              "soak": {"errors": 0}}
    monkeypatch.setattr(cli, "run_runtime_bench", lambda options: seen.append(options) or result)
    assert cli.main([str(FIXTURE), "--items", "10", "--out", str(tmp_path)]) == 0
    (options,) = seen
    assert options == RuntimeBenchOptions(bundle=FIXTURE, items=10, out=tmp_path,
                                          command=f"edgeret runtime-bench {FIXTURE} --items 10 --out {tmp_path}")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "text query p50 1.50 ms, cold start 250 ms with 10 items" in out
    defaults = cli.parse_options([str(FIXTURE)])
    assert (defaults.items, defaults.queries, defaults.soak_items, defaults.cold_repeats) == (100_000, 200, 10_000, 7)
    assert defaults.vectors == "real" and defaults.name == "runtime" and defaults.cold_python is None
