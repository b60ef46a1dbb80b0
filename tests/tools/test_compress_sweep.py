"""``python -m tools.compress_sweep`` on the tiny student: rows, retention against a baseline, resuming."""

from __future__ import annotations

import argparse
import json

import pytest

from tools.compress_sweep import main, parse_setting

SETS, SHORT = "wordnet-val-t2t", "val-t2t"


def test_a_setting_is_a_label_and_compress_arguments():
    assert parse_setting("cold0.9=--quant int8 --embedding-cold-share 0.9") == \
        ("cold0.9", ["--quant", "int8", "--embedding-cold-share", "0.9"])
    with pytest.raises(argparse.ArgumentTypeError):
        parse_setting("--quant int8")


def test_sweep_writes_one_row_per_setting_and_reuses_finished_bundles(tiny_student_dir, tmp_path):
    common = "--quant int8 --no-optimize --agreement-sample 30"
    argv = [str(tiny_student_dir), "--sets", SETS, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "res"),
            "--name", "split", "--baseline", "8bit",
            "--setting", f"8bit={common} --embedding-cold-share 0",
            "--setting", f"4bit/16={common} --embedding-cold-share 0.5 --embedding-cold-block 16"]
    summary = main(argv)
    rows = {r["setting"]: r for r in summary["rows"]}
    assert rows["8bit"]["hot/cold rows"] == "–" and rows["8bit"][f"{SHORT} kept"] == 1.0
    hot, cold = (int(n) for n in rows["4bit/16"]["hot/cold rows"].split("/"))
    assert abs(hot - cold) <= 1
    assert rows["4bit/16"]["text bytes"] < rows["8bit"]["text bytes"]
    assert 0.5 <= rows["4bit/16"][f"{SHORT} overlap"] <= 1.0
    saved = json.loads((tmp_path / "res" / "split.json").read_text())
    assert saved["rows"] == summary["rows"] and "| 4bit/16 |" in (tmp_path / "res" / "split.md").read_text()
    model = tmp_path / "work" / "4bit_16" / "text_encoder_int8.onnx"
    stamp = model.stat().st_mtime_ns
    assert main(argv)["rows"] == summary["rows"] and model.stat().st_mtime_ns == stamp  # reused, not rebuilt
