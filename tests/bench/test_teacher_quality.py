"""``edgeret teacher-quality`` on a cheap deterministic teacher: the files, the recorded command, the cache rule."""

from __future__ import annotations

import json
from pathlib import Path

from edgeret.bench.teacher_quality import run_teacher_quality
from edgeret.cli import teacher_quality as cli
from tests.distill.fake_teacher import FakeTeacher

SETS = ["wordnet-test-t2t"]


def test_the_files_record_the_command_and_one_row_per_set(tmp_path):
    result = run_teacher_quality(FakeTeacher(), SETS, out=tmp_path, command="edgeret teacher-quality --sets x")
    saved = json.loads((tmp_path / "teacher_quality.json").read_text())
    assert saved == json.loads(json.dumps(result)) and saved["command"] == "edgeret teacher-quality --sets x"
    (row,) = saved["rows"]
    assert row["dataset"] == "wordnet-test" and row["task"] == "t2t" and row["queries"] == row["corpus"] > 1000
    assert 0.0 <= row["recall@1"] <= row["recall@10"] <= 1.0
    markdown = (tmp_path / "teacher_quality.md").read_text()
    assert markdown.startswith("Teacher `fake-teacher` on held-out splits (`edgeret teacher-quality --sets x`):")


def test_the_command_line_loads_the_teacher_and_reuses_caches_of_the_stand_in_only(tmp_path, monkeypatch, capsys):
    loaded, runs = [], []
    monkeypatch.setattr(cli, "load_teacher", lambda name, **kwargs: loaded.append((name, kwargs)) or FakeTeacher())
    monkeypatch.setattr(cli, "run_teacher_quality", lambda teacher, sets, **kwargs: runs.append((sets, kwargs)) or {
        "rows": [{"dataset": "wordnet-test", "task": "t2t", "recall@10": 0.5}]})
    for teacher in ("standin", "gme"):
        argv = ["--teacher", teacher, "--sets", *SETS, "--teacher-cache", "c", "--out", str(tmp_path)]
        assert cli.main(argv) == 0
        assert runs[-1][1]["command"] == "edgeret teacher-quality " + " ".join(argv)
    assert [name for name, _ in loaded] == ["standin", "gme"]
    assert [kwargs["teacher_cache"] for _, kwargs in runs] == [(Path("c"),), ()]
    assert capsys.readouterr().out.count("Recall@10: wordnet-test t2t 0.500") == 2
