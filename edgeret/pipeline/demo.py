"""The embedded default, end to end, on the offline data (``edgeret demo``): the packaged ``demo`` recipe.

stand-in teacher (image head fitted on the train split) -> teacher caches (OpenMoji, WordNet) -> teacher
quality -> distil the default student -> compress (fp32, pruned, INT8, pruned INT8, INT4 bundles) -> index the
test emoji into the INT8 bundle and search it -> bench (the accuracy/latency table). The same code as ``edgeret build``;
every stage reuses its outputs in ``work_dir`` unless ``force``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import BuildResult, run_build
from .recipe import Recipe, packaged_recipe, read_recipe, recipe_from_dict


@dataclass
class DemoConfig:
    """What ``edgeret demo`` can set (over the packaged recipe)."""

    work_dir: Path = Path("artifacts")
    results: Path = Path("bench/results")
    augment_copies: int = 4
    wordnet_train: int | None = None  # None: every WordNet train synset (24,111)
    preset: str = "default"
    limit: int | None = None
    force: bool = False
    gme_arch: bool = False  # the gme2b-arch bench row (GME-2B's architecture: ~5 min, ~9 GB)


def demo_recipe(config: DemoConfig) -> Recipe:
    """The packaged demo recipe with ``config`` applied (paths from the current folder)."""
    path = packaged_recipe("demo")
    data: dict[str, Any] = copy.deepcopy(read_recipe(path))
    data["work_dir"], data["results_dir"] = str(config.work_dir), str(config.results)
    data["teacher"]["head_path"] = str(config.work_dir / "teacher" / "standin_image_head.safetensors")
    for source in data["sources"]:
        source.update({"openmoji": {"augment_copies": config.augment_copies},
                       "wordnet": {"max_train": config.wordnet_train}}[source["type"]])
        if config.limit is not None:
            source["limit"] = config.limit
    data["student"]["preset"] = config.preset
    data["bench"]["gme_arch"] = config.gme_arch
    return recipe_from_dict(data, path, base_dir=Path.cwd())


def run_demo(config: DemoConfig) -> BuildResult:
    """Run the demo recipe; returns what it built (``result.stages`` times every stage)."""
    return run_build(demo_recipe(config), force=config.force)
