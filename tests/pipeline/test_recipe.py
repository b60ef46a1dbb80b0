"""Recipes parse, resolve their paths and say what is wrong with a bad one."""

import pytest

from edgeret.pipeline.demo import DemoConfig, demo_recipe
from edgeret.pipeline.recipe import RecipeError, load_recipe, recipe_from_dict

BASE = {"teacher": {"name": "standin"}, "sources": [{"type": "texts", "path": "notes.txt"}]}


def test_the_example_and_the_demo_recipes_parse(tmp_path):
    example = load_recipe("examples/recipes/gme-photos.toml")
    assert example.teacher.name == "gme" and example.teacher.options["model_path"].startswith("/models/")
    assert [s["type"] for s in example.sources] == ["images", "records"] and example.index.variant == "int8"
    assert example.work_dir.name == "my-photos" and example.student.set == ["train.epochs=6"]
    demo = demo_recipe(DemoConfig(work_dir=tmp_path / "a", limit=3))
    assert [v.name for v in demo.variants] == ["student-fp32", "student-pruned", "student-int8", "student-pruned-int8",
                                                   "student-int4"]
    assert [v.prune_image for v in demo.variants if v.prune] == [0.0, 0.0]  # pruning the text tower only
    assert demo.work_dir == tmp_path / "a" and all(s["limit"] == 3 for s in demo.sources)
    assert demo.bench.enabled and not demo.report.enabled and demo.index.kinds == ["image"]


@pytest.mark.parametrize("change, message", [
    ({"extra": 1}, "unknown section"),
    ({"teacher": {}}, "needs a name"),
    ({"sources": []}, "at least one"),
    ({"sources": [{"type": "videos", "path": "x"}]}, "needs a type"),
    ({"sources": [{"type": "images"}]}, "needs a path"),
    ({"variants": [{"name": "a"}, {"name": "a"}]}, "unique"),
    ({"variants": [{"name": "a", "bits": 3}]}, "unknown key"),
    ({"index": {"variant": "nope"}}, "no variant named"),
    ({"variants": [{"name": "a"}], "index": {"variant": "a", "format": "usearch-i8"}}, "is not supported"),
    ({"split": {"fractions": [1, 0, 0], "seeds": 1}}, "unknown key"),
])
def test_bad_recipes_are_refused_with_the_field(change, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({**BASE, **change})


def test_relative_paths_start_at_the_recipe(tmp_path):
    path = tmp_path / "sub" / "r.json"
    path.parent.mkdir()
    path.write_text('{"teacher": {"name": "clip", "model_path": "m"}, "sources": [{"type": "texts", "path": "t"}],'
                    ' "work_dir": "w"}')
    recipe = load_recipe(path)
    assert recipe.work_dir == tmp_path / "sub" / "w" and recipe.base_dir == tmp_path / "sub"
    with pytest.raises(RecipeError, match="not valid JSON"):
        path.write_text("{")
        load_recipe(path)


def test_a_variant_defaults_to_compress_options_embedding_split():
    from edgeret.compress.bundle import CompressOptions
    from edgeret.pipeline.recipe import VariantSpec

    variant, options = VariantSpec(name="x"), CompressOptions()
    assert (variant.embedding_cold_share, variant.embedding_cold_block) == \
        (options.embedding_cold_share, options.embedding_cold_block)
