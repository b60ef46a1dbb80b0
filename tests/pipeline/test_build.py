"""``edgeret build``: files on disk -> teacher cache -> student -> bundle -> index -> report, with real teachers."""

import json

import pytest

from edgeret.cli.main import main as edgeret
from edgeret.distill.models.text_tower import minilm_path
from edgeret.pipeline.build import run_build
from edgeret.pipeline.recipe import load_recipe
from edgeret.runtime.bundle import load_manifest
from tests.distill.tiny_clip import build_tiny_clip
from tests.distill.tiny_qwen2vl import build_tiny_qwen2vl
from tests.pipeline.user_corpus import recipe, write_user_corpus

SOURCES = [{"type": "images", "path": "photos"}, {"type": "records", "path": "captions.jsonl"},
           {"type": "texts", "path": "notes.txt"}]
FAST_INT8 = {"name": "int8", "quant": "int8", "optimize": False}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("teachers") / "tiny-clip")


def _search(capsys, bundle, *args):
    capsys.readouterr()
    edgeret(["search", str(bundle), *args, "--json"])
    return json.loads(capsys.readouterr().out)


def test_photos_captions_and_notes_through_clip_into_a_searchable_bundle(tmp_path, clip, capsys):
    write_user_corpus(tmp_path)
    path = recipe(tmp_path, {"name": "clip", "model_path": str(clip)}, SOURCES, [FAST_INT8],
                  index={"variant": "int8", "out": "searchable", "queries": ["a red square on white"]},
                  report={"sample": 50, "latency_queries": 5})
    result = run_build(load_recipe(path))
    (cache,) = result.caches
    table = result.stages.table()
    assert all(r.status == "ran" for r in result.stages.records), table
    assert {r.name for r in result.stages.records} >= {"teacher cache: mine", "distil the student", "compress: int8",
                                                       "index", "report"}
    assert all(r.peak_rss_mb is None or r.peak_rss_mb > 10 for r in result.stages.records)
    assert cache.dim == 24 and len(cache) > 40 and cache.meta["teacher"]["id"].startswith("clip:")
    manifest = load_manifest(result.indexed)
    assert manifest.index["count"] > 40 and manifest.text and manifest.image
    hits = _search(capsys, result.indexed, "a red square on white", "-k", "5")
    assert len(hits) == 5 and all("origin" in h["metadata"] for h in hits)
    image_hits = _search(capsys, result.indexed, "--image", str(tmp_path / "photos" / "2022" / "square" / "red.png"))
    assert image_hits[0]["score"] > 0.9
    rows = result.report["rows"]
    assert {r["variant"] for r in rows} == {"teacher", "int8"}
    tasks = {r["task"] for r in rows if r["variant"] == "int8"}
    assert {"t2i", "i2t"} <= tasks and {"i2i-neighbours", "t2t-neighbours"} & tasks
    assert all(0.0 <= r["teacher_overlap@10"] <= 1.0 and "mean_cosine" in r for r in rows if r["variant"] == "int8")
    assert any("query_vs_teacher_corpus_recall@10" in r for r in rows)
    assert (tmp_path / "work" / "report" / "report.md").read_text().count("| int8 |") >= 2
    again = run_build(load_recipe(path))  # everything current: nothing runs
    assert {r.status for r in again.stages.records} == {"current"}, again.stages.table()


def test_bad_records_are_counted_and_too_many_fail_the_build(tmp_path, clip):
    write_user_corpus(tmp_path)
    path = recipe(tmp_path, {"name": "clip", "model_path": str(clip)}, SOURCES, [FAST_INT8])
    result = run_build(load_recipe(path))
    (scan,) = result.scans
    assert scan.bad == {"missing-file": 1, "undecodable-image": 1, "empty-text": 1, "malformed": 1}
    origins = sorted(p.origin.rsplit("/", 1)[-1] for p in scan.problems)
    assert origins == ["broken.png", "captions.jsonl:25", "captions.jsonl:26", "captions.jsonl:27"]
    strict = json.loads(path.read_text())
    strict["split"]["max_bad"] = 0
    path.write_text(json.dumps(strict))
    with pytest.raises(ValueError, match=r"missing-file|undecodable-image|empty-text|malformed"):
        run_build(load_recipe(path))


def test_a_text_only_teacher_makes_a_text_only_bundle(tmp_path, capsys):
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps({"query": f"what colour is a {c} thing", "document": c})
                                                    for c in ("red", "green", "blue", "black", "white", "pink",
                                                              "grey", "brown", "gold", "silver")) + "\n")
    (tmp_path / "notes.txt").write_text("apples are red\nthe sky is blue\ngrass is green\n")
    path = recipe(tmp_path, {"name": "sentence-transformers", "model_path": str(minilm_path())},
                  [{"type": "records", "path": "pairs.jsonl"}, {"type": "texts", "path": "notes.txt"}],
                  [FAST_INT8], index={"variant": "int8", "out": "notes-bundle"}, report={"sample": 20})
    result = run_build(load_recipe(path))
    manifest = load_manifest(result.bundles["int8"])
    assert manifest.image is None and manifest.text["quantization"] == "int8"
    assert _search(capsys, result.indexed, "the sky", "-k", "2")
    assert {r["task"] for r in result.report["rows"]} <= {"t2t", "t2t-neighbours"}


def test_the_tiny_gme_teacher_builds_too(tmp_path):
    write_user_corpus(tmp_path, bad=False)
    model = build_tiny_qwen2vl(tmp_path / "tiny-gme")
    teacher = {"name": "gme", "model_path": str(model), "max_image_tokens": 16, "min_image_tokens": 4}
    path = recipe(tmp_path, teacher, [{"type": "records", "path": "captions.jsonl"}],
                  [{"name": "fp32", "quant": "fp32", "optimize": False}], report={"enabled": False})
    result = run_build(load_recipe(path))
    assert result.caches[0].meta["teacher"]["id"].startswith("gme:")
    assert (result.bundles["fp32"] / "manifest.json").is_file()


def test_an_interrupted_cache_and_an_interrupted_training_resume(tmp_path, clip, monkeypatch):
    from edgeret.distill import loop
    from edgeret.distill.teachers.clip import ClipTeacher

    write_user_corpus(tmp_path, bad=False)
    path = recipe(tmp_path, {"name": "clip", "model_path": str(clip), "batch_size": 4, "shard_size": 8},
                  SOURCES[:2], [{"name": "fp32", "quant": "fp32", "optimize": False}], report={"enabled": False})
    data = json.loads(path.read_text())
    data["student"]["set"] = ["train.epochs=2", "train.save_every=1", "train.image_batch=4"]
    path.write_text(json.dumps(data))
    calls, real = {"n": 0}, ClipTeacher._encode_image_batch

    def flaky(self, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("power cut during the cache")
        return real(self, images)

    monkeypatch.setattr(ClipTeacher, "_encode_image_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_build(load_recipe(path))
    shards = sorted((tmp_path / "work" / "cache").glob("*/shards/shard-*.f16.npy"))
    assert shards, "finished shards are kept"
    steps, real_step = {"n": 0}, loop._Step.__call__

    def interrupted(self, batch):
        steps["n"] += 1
        if steps["n"] == 3:
            raise KeyboardInterrupt("power cut during training")
        return real_step(self, batch)

    monkeypatch.setattr(loop._Step, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_build(load_recipe(path))
    assert (tmp_path / "work" / "student" / "train_state" / "state.pt").is_file()
    before = calls["n"]
    result = run_build(load_recipe(path))
    statuses = {r.name: r.status for r in result.stages.records}
    assert statuses["teacher cache: mine"] == "current" and calls["n"] == before  # the cache was not redone
    report = json.loads((tmp_path / "work" / "student" / "train_report.json").read_text())
    assert report["finished"] and report["global_step"] == steps["n"] - 1  # every step ran exactly once
