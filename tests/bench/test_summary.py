"""Rows and files of ``edgeret bench``: accuracy rows, Matryoshka rows, gme rows, summary.json's contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeret.bench.compare import BenchConfig, Context, measure_bundle, write_results
from edgeret.bench.rows import COLUMNS, METRICS, accuracy_rows, complete, gme_rows, truncated, with_cost
from edgeret.bench.tables import latency_ratios, overview
from edgeret.cli import bench as cli
from edgeret.cli.bench import build_parser
from edgeret.data.evalset import EvalSet
from edgeret.data.items import CorpusItem
from edgeret.data.results import invocation

#: the row keys DESIGN.md's results contract names
CONTRACT = ("variant", "task", "dataset", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10",
            "teacher_overlap@10", "query_ms_p50_1t", "query_ms_p95_1t", "model_bytes", "peak_rss_mb")


def _evalset(n: int = 12) -> EvalSet:
    queries = [CorpusItem(f"q{i}", "text", text=f"query {i}") for i in range(n)]
    corpus = [CorpusItem(f"d{i}", "text", text=f"doc {i}") for i in range(n)]
    return EvalSet("toy-test-t2t", "t2t", queries, corpus, {f"q{i}": {f"d{i}"} for i in range(n)})


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_accuracy_and_matryoshka_rows():
    rng = np.random.default_rng(0)
    docs = _unit(rng.standard_normal((12, 8)))
    queries = _unit(docs + 0.01 * rng.standard_normal((12, 8)))  # each query next to its own doc
    evalsets = {"t2t": _evalset()}
    rows, reference = accuracy_rows("teacher-torch", {"t2t": (queries, docs)}, evalsets, None)
    assert rows[0]["recall@1"] == 1.0 and rows[0]["mrr@10"] == 1.0 and rows[0]["teacher_overlap@10"] == 1.0
    assert rows[0]["dataset"] == "toy-test" and rows[0]["dim"] == 8
    small = truncated({"t2t": (queries, docs)}, 4)
    np.testing.assert_allclose(np.linalg.norm(small["t2t"][0], axis=1), 1.0, atol=1e-6)
    sub, _ = accuracy_rows("student@4", small, evalsets, reference)
    assert sub[0]["dim"] == 4 and 0.0 <= sub[0]["teacher_overlap@10"] <= 1.0
    flipped, _ = accuracy_rows("shuffled", {"t2t": (queries[::-1].copy(), docs)}, evalsets, reference)
    assert flipped[0]["recall@1"] < 0.5


def test_with_cost_picks_the_query_modality():
    cost = {"text_query_ms_p50_1t": 1.0, "image_query_ms_p50_1t": 5.0}
    assert with_cost({"task": "t2i"}, cost)["query_ms_p50_1t"] == 1.0
    assert with_cost({"task": "i2t"}, cost)["query_ms_p50_1t"] == 5.0
    row = complete({"variant": "v", "task": "t2t", "extra": 1})
    assert list(row)[: len(COLUMNS)] == list(COLUMNS) and row["extra"] == 1 and row["recall@1"] is None


def _gme_result() -> dict:
    result = {"params": 2_208_985_600, "dtype": "float32", "embedding_dim": 1536, "text_sequence": 39,
              "image_sequence": 278, "image_px": [448, 448], "image_tokens": 256, "text_repeats": 5,
              "image_repeats": 2, "peak_rss_mb": 9000.0}
    for suffix, scale in (("1t", 1.0), ("all", 0.6)):
        result |= {f"text_query_ms_p50_{suffix}": 900 * scale, f"text_query_ms_p95_{suffix}": 950 * scale,
                   f"image_query_ms_p50_{suffix}": 20000 * scale, f"image_query_ms_p95_{suffix}": 21000 * scale}
    return result


def _student_rows() -> list[dict]:
    rows = []
    for task in ("t2i", "i2t", "t2t"):
        row = {"variant": "student-int8", "task": task, "dataset": "x-test", "dim": 384, "model_bytes": 10,
               "peak_rss_mb": 100.0, **{m: 0.5 for m in METRICS}}
        rows.append(complete(with_cost(row, {"text_query_ms_p50_1t": 1.5, "image_query_ms_p50_1t": 4.0,
                                              "text_query_ms_p50_all": 1.0, "image_query_ms_p50_all": 2.0})))
    return rows


def test_gme_rows_have_null_accuracy_and_latency():
    rows = gme_rows(_gme_result(), {"t2i": "openmoji-test", "i2t": "openmoji-test", "t2t": "wordnet-test"})
    assert [r["task"] for r in rows] == ["t2i", "i2t", "t2t"]
    for row in rows:
        assert all(row[m] is None for m in METRICS)
        assert row["model_bytes"] == 4 * 2_208_985_600 and row["peak_rss_mb"] == 9000.0
    assert rows[1]["query_ms_p50_1t"] == 20000 and rows[0]["query_ms_p50_1t"] == 900
    ratios = latency_ratios(_student_rows() + rows)
    assert ratios["gme2b-arch"]["text_query_ms_p50_1t"] == pytest.approx(600)
    assert ratios["gme2b-arch"]["image_query_ms_p50_1t"] == pytest.approx(5000)


def test_summary_json_follows_the_contract(tmp_path):
    rows = _student_rows() + gme_rows(_gme_result(), {"t2i": "o", "i2t": "o", "t2t": "w"})
    summary = write_results(rows, invocation("edgeret bench", ["--head-path", "h", "--gme-arch"]), tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data == json.loads(json.dumps(summary))
    assert data["command"] == "edgeret bench --head-path h --gme-arch"
    assert {"command", "created", "machine", "versions", "rows"} <= set(data)
    assert {"cpu", "cores", "threads_used"} <= set(data["machine"])
    assert {"edgeret", "onnxruntime", "torch"} <= set(data["versions"])
    for row in data["rows"]:
        assert set(CONTRACT) <= set(row) and list(row)[: len(COLUMNS)] == list(COLUMNS)
    markdown = (tmp_path / "summary.md").read_text()
    assert "gme2b-arch" in markdown and "Latency relative to student-int8" in markdown
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    assert [line["variant"] for line in overview(rows)] == ["student-int8", "gme2b-arch"]


def test_parser_has_the_new_rows():
    args = build_parser().parse_args(["--head-path", "h", "--teacher-onnx", "t", "--peer", "--gme-arch"])
    assert args.peer and args.gme_arch and str(args.teacher_onnx) == "t" and args.gme_repeats == [5, 2]


def test_the_command_line_builds_the_config_and_prints_one_line(tmp_path, monkeypatch, capsys):
    argv = ["--head-path", "h", "--teacher-cache", "c1", "c2", "--bundle", "int8=b/int8", "fp32=b/fp32", "--peer",
            "--gme-repeats", "3", "1", "--no-matryoshka", "--out", str(tmp_path)]
    seen = []
    monkeypatch.setattr(cli, "run_bench", lambda config: seen.append(config) or {"rows": _student_rows()})
    assert cli.main(argv) == 0
    (config,) = seen
    assert config == BenchConfig(head_path=Path("h"), teacher_cache=(Path("c1"), Path("c2")),
                                 bundles=(("int8", "b/int8"), ("fp32", "b/fp32")), peer=True, gme_repeats=(3, 1),
                                 matryoshka=False, out=tmp_path, command=invocation("edgeret bench", argv))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "1 variants (student-int8), 3 rows" in out
    defaults = cli.parse_config(["--head-path", "h"])
    assert defaults.footprint and defaults.matryoshka and defaults.out == Path("bench/results")
    assert defaults.gme_dtype == "float32" and defaults.gme_repeats == (5, 2) and defaults.bundles == ()


def test_a_config_made_in_code_has_its_command_line():
    config = BenchConfig(head_path=Path("h"), teacher_cache=(Path("c1"), Path("c2")), out=Path("r"),
                         teacher_onnx=Path("t"), peer=True, gme_arch=True, bundles=(("int8", "b/int8"),))
    argv = cli.argv_of(config)
    assert argv == ["--head-path", "h", "--teacher-cache", "c1", "c2", "--out", "r", "--teacher-onnx", "t", "--peer",
                    "--gme-arch", "--bundle", "int8=b/int8"]  # the order edgeret demo has always recorded
    assert cli.parse_config(argv) == BenchConfig(**{**config.__dict__, "command": invocation("edgeret bench", argv)})
    other = BenchConfig(head_path=Path("h"), gme_dtype="bfloat16", gme_repeats=(1, 1), matryoshka=False,
                        footprint=False)
    assert cli.parse_config(cli.argv_of(other)).__dict__ == {**other.__dict__, "command": "edgeret bench " + " ".join(
        cli.argv_of(other))}


def test_shipped_bytes_count_the_loaded_twin_only():
    from edgeret.bench.compare import shipped_bytes
    from edgeret.runtime.retriever import Retriever

    fixture = Path(__file__).resolve().parents[1] / "runtime" / "fixtures" / "tiny_bundle"
    files = {p.name: p.stat().st_size for p in fixture.iterdir() if p.is_file() and p.name != "manifest.json"}
    common = sum(b for n, b in files.items() if not n.startswith(("text_encoder", "image_encoder"))
                 and n != "required_operators.config")
    for fmt, suffix in (("ort", ".ort"), ("onnx", ".onnx")):
        r = Retriever.open(fixture, threads=1, model_format=fmt)
        assert shipped_bytes(r) == common + files[f"text_encoder{suffix}"] + files[f"image_encoder{suffix}"]


def test_a_bundle_and_its_matryoshka_dims_are_measured_through_the_runtime():
    fixture = Path(__file__).resolve().parents[1] / "runtime" / "fixtures" / "tiny_bundle"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    ctx = Context(BenchConfig(head_path=Path("h"), footprint=False), {"t2t": _evalset()}, ["a red apple", "a cat"],
                  [image], inputs=None)
    rows = measure_bundle("tiny", str(fixture), ctx, note="toy")
    assert [(r["variant"], r["dim"]) for r in rows] == [("tiny", 32), ("tiny@8", 8), ("tiny@16", 16)]
    for row in rows:
        assert list(row)[: len(COLUMNS)] == list(COLUMNS) and row["note"] == "toy" and row["cold_start_ms"] is None
        assert row["text_query_ms_p50_1t"] > 0 and row["image_query_ms_p50_1t"] > 0
        assert row["query_ms_p50_1t"] == row["text_query_ms_p50_1t"] and row["model_bytes"] > 0
    assert [r["cost_of"] for r in rows] == [None, "tiny", "tiny"]


def _variant_rows(variant: str, recall: float, text_ms: float, image_ms: float, overlap: float | None = None) -> list:
    rows = []
    for task in ("t2i", "i2t", "t2t", "i2i"):
        row = {"variant": variant, "task": task, "dataset": "x-test", "dim": 384, **{m: recall for m in METRICS}}
        if overlap is not None:
            row["fp32_overlap@10"] = overlap
        if task == "i2i":
            row["by_style"] = {"grayscale": recall, "jpeg": recall / 2}
        rows.append(complete(with_cost(row, {"text_query_ms_p50_1t": text_ms, "image_query_ms_p50_1t": image_ms})))
    return rows


def test_retention_agreement_styles_and_speedups_over_the_peer(tmp_path, monkeypatch):
    from edgeret.bench import compare
    from edgeret.bench.tables import retention, speedups

    monkeypatch.setattr(compare, "pareto_plot", lambda rows, path: None)  # the plot has its own test

    rows = (_variant_rows("teacher-torch", 0.5, 10.0, 20.0) + _variant_rows("teacher-onnx-int8", 0.5, 4.0, 8.0)
            + _variant_rows("student-fp32", 0.5, 1.0, 4.0) + _variant_rows("student-int8", 0.48, 0.5, 2.0, 0.96)
            + _variant_rows("student-int8@64", 0.4, 0.5, 2.0)
            + _variant_rows("student-pruned-int8", 0.47, 0.4, 1.0, 0.9))
    speed = speedups(rows, "teacher-onnx-int8")
    assert set(speed) == {"student-fp32", "student-int8", "student-pruned-int8"}
    assert speed["student-int8"]["text_query_ms_p50_1t"] == pytest.approx(8.0)
    assert speed["student-pruned-int8"]["image_query_ms_p50_1t"] == pytest.approx(8.0)
    lines = {(line["variant"], line["of"]): line for line in retention(rows)}
    assert lines[("student-int8", "teacher")]["t2t"] == "96%"
    assert lines[("student-pruned-int8", "student-int8")]["t2i"] == "98%"
    assert ("teacher-torch", "teacher") not in lines and ("student-int8@64", "teacher") not in lines
    summary = write_results(rows, "edgeret bench", tmp_path)
    assert summary["speedup_vs_peer"]["peer"] == "teacher-onnx-int8"
    markdown = (tmp_path / "summary.md").read_text()
    for title in ("Recall@10 retained", "Top-10 agreement with student-fp32", "image -> image Recall@10 per style",
                  "Speed-up of each student over teacher-onnx-int8"):
        assert title in markdown, title
    assert "| student-int8 | 0.960 |" in markdown and "8.0x" in markdown


def test_style_rows_split_recall_per_style():
    from edgeret.bench.rows import style_recall

    queries = [CorpusItem(f"sty:{s}:{i}", "image", image_fn=lambda: None) for i, s in enumerate(("jpeg", "busy") * 3)]
    corpus = [CorpusItem(f"img:{i}", "image", image_fn=lambda: None) for i in range(6)]
    evalset = EvalSet("toy-style-test", "i2i", queries, corpus, {q.id: {f"img:{i}"} for i, q in enumerate(queries)})
    ranked = np.array([[i] if i % 2 == 0 else [(i + 1) % 6] for i in range(6)])  # jpeg queries hit, busy miss
    assert style_recall(ranked, evalset, k=1) == {"jpeg": 1.0, "busy": 0.0}
