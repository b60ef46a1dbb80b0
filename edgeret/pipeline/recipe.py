"""Build recipes: one TOML (or JSON) file naming the teacher, the sources, the student, the variants and the index.

    recipe = load_recipe("photos.toml")          # see examples/recipes/ for commented examples

Sections (paths are relative to the recipe's folder; ``work_dir`` holds every stage's output):

* ``[teacher]`` ``name`` (a registered teacher: ``gme``, ``clip``, ``sentence-transformers``, ``standin``)
  and its options (``model_path``, ``device``, ...); ``batch_size``, ``shard_size`` for the cache;
* ``[[sources]]``: ``type`` ``images`` | ``records`` | ``texts`` (files on disk, :mod:`edgeret.data.sources`;
  all of them make one corpus) or a built-in corpus (``openmoji``, ``wordnet``, each its own corpus), with
  their options;
* ``[split]`` ``fractions``, ``seed``, ``max_bad`` for file sources;
* ``[student]`` ``preset`` and ``set`` (``KEY=VALUE`` overrides, as ``edgeret distill --set``);
* ``[[variants]]`` ``name``, ``quant`` (fp32 | int8 | int4 | fp16), ``ort``, ``prune``, ``recovery_steps``, ...;
* ``[index]`` the ``variant`` whose bundle gets an index of the corpus (``split``, ``kinds``, ``dim``, ``format``:
  ``hnswlib-f32`` or the compact ``faiss-hnsw-sq8``), ``queries`` to try;
* ``[report]`` the held-out report (on by default), ``[bench]`` the full side-by-side bench (the demo's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from edgeret.runtime.errors import BundleError
from edgeret.runtime.index_formats import index_format, missing_library

BUILTIN_SOURCES = ("openmoji", "wordnet")
FILE_SOURCES = ("images", "records", "texts")


class RecipeError(ValueError):
    """A recipe is malformed: the message names the file and the field."""


@dataclass
class TeacherSpec:
    """The teacher and its options (passed to ``load_teacher``)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    shard_size: int = 1024


@dataclass
class SplitSpec:
    """How file sources are split (records may carry their own ``split``)."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    max_bad: float = 0.01


@dataclass
class StudentSpec:
    """The student's preset and overrides."""

    preset: str = "default"
    set: list[str] = field(default_factory=list)
    threads: int | None = None


@dataclass
class VariantSpec:
    """One bundle: quantisation, optional pruning (with recovery) and the ORT twins."""

    name: str
    quant: str = "int8"
    ort: bool = False
    prune: float = 0.0
    prune_image: float | None = None  # the image tower's ratio (None: ``prune``; 0 keeps it whole)
    prune_score: str = "magnitude"
    recovery_steps: int | None = None
    recovery_epochs: int = 1
    embedding_cold_share: float = 0.95  # the defaults of compress.bundle.CompressOptions
    embedding_cold_block: int = 128
    block_size: int = 32
    optimize: bool = True  # offline graph optimisation (the fastest of a few, checked for parity)


@dataclass
class IndexSpec:
    """Which bundle gets a searchable index of the corpus, and what goes in it."""

    variant: str
    out: str = "index"
    split: str | None = None  # None: every split
    kinds: tuple[str, ...] = ("image", "text")
    dim: int | None = None
    #: the index format (``hnswlib-f32``, ``faiss-hnsw-sq8``: :mod:`edgeret.runtime.index_formats`); None: the
    #: bundle's, else ``hnswlib-f32``
    format: str | None = None
    queries: list[str] = field(default_factory=list)
    #: a folder (in the work folder) where images without a file (built-in renders) are written as PNG, so an app
    #: (or the web demo) can show them: their metadata ``path`` names the file relative to it
    image_files: str | None = None


@dataclass
class ReportSpec:
    """The held-out report on the recipe's own corpus."""

    enabled: bool = True
    split: str = "test"
    sample: int | None = 2000  # queries per task
    latency_queries: int = 30


@dataclass
class BenchSpec:
    """The side-by-side bench of the built-in data (the demo's tables)."""

    enabled: bool = False
    teacher_quality: bool = True
    teacher_onnx: bool = True
    peer: bool = True
    gme_arch: bool = False


@dataclass
class Recipe:
    """A parsed, checked recipe (paths resolved)."""

    path: Path | None
    name: str
    work_dir: Path
    teacher: TeacherSpec
    sources: list[dict[str, Any]]
    split: SplitSpec = field(default_factory=SplitSpec)
    student: StudentSpec = field(default_factory=StudentSpec)
    variants: list[VariantSpec] = field(default_factory=list)
    index: IndexSpec | None = None
    report: ReportSpec = field(default_factory=ReportSpec)
    bench: BenchSpec = field(default_factory=BenchSpec)
    results_dir: Path | None = None
    base: Path | None = None

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the recipe start from."""
        return self.base or (self.path.parent if self.path is not None else Path.cwd())

    def variant(self, name: str) -> VariantSpec:
        """The variant called ``name``."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise RecipeError(f"{self.path}: no variant named {name!r} (variants: {[v.name for v in self.variants]})")


def _typed(kind: type, values: Any, where: str, **fixed: Any) -> Any:
    if not isinstance(values, dict):
        raise RecipeError(f"{where} must be a table, got {type(values).__name__}")
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    try:
        return kind(**{**values, **fixed})
    except TypeError as exc:
        raise RecipeError(f"{where}: {exc}") from exc


def _teacher(data: Any, where: str) -> TeacherSpec:
    if not isinstance(data, dict) or "name" not in data:
        raise RecipeError(f"{where}: [teacher] needs a name (gme, clip, sentence-transformers, standin)")
    own = {k: data[k] for k in ("batch_size", "shard_size") if k in data}
    options = {k: v for k, v in data.items() if k not in ("name", "batch_size", "shard_size")}
    return TeacherSpec(str(data["name"]), options, **own)


def _sources(data: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not data:
        raise RecipeError(f"{where}: needs at least one [[sources]] entry")
    for i, source in enumerate(data):
        if not isinstance(source, dict) or source.get("type") not in (*FILE_SOURCES, *BUILTIN_SOURCES):
            raise RecipeError(f"{where}: sources[{i}] needs a type: one of {', '.join(FILE_SOURCES + BUILTIN_SOURCES)}")
        if source["type"] in FILE_SOURCES and "path" not in source:
            raise RecipeError(f"{where}: sources[{i}] ({source['type']}) needs a path")
    return [dict(s) for s in data]


def recipe_from_dict(data: dict[str, Any], path: Path | None = None, base_dir: Path | None = None) -> Recipe:
    """Check and convert a recipe's content (``RecipeError`` names the first problem); relative paths start
    from ``base_dir`` (default: the recipe's folder)."""
    where = str(path or "recipe")
    known = {"name", "work_dir", "results_dir", "teacher", "sources", "split", "student", "variants", "index",
             "report", "bench"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"{where}: unknown section(s) {unknown}; known: {sorted(known)}")
    base = base_dir or (path.parent if path is not None else Path.cwd())
    name = str(data.get("name") or (path.stem if path else "build"))
    variants = [_typed(VariantSpec, v, f"{where} variants[{i}]") for i, v in enumerate(data.get("variants", []))]
    if len({v.name for v in variants}) != len(variants):
        raise RecipeError(f"{where}: variant names must be unique")
    index = data.get("index")
    recipe = Recipe(
        path=path, name=name, work_dir=base / str(data.get("work_dir", f"build/{name}")),
        teacher=_teacher(data.get("teacher"), where), sources=_sources(data.get("sources"), where),
        split=_typed(SplitSpec, data.get("split", {}), f"{where} [split]"),
        student=_typed(StudentSpec, data.get("student", {}), f"{where} [student]"), variants=variants,
        index=None if index is None else _typed(IndexSpec, index, f"{where} [index]"),
        report=_typed(ReportSpec, data.get("report", {}), f"{where} [report]"),
        bench=_typed(BenchSpec, data.get("bench", {}), f"{where} [bench]"),
        results_dir=base / data["results_dir"] if "results_dir" in data else None, base=base,
    )
    if recipe.index is not None:
        recipe.variant(recipe.index.variant)
        _check_index_format(recipe.index.format, f"{where} [index] format")
    return recipe


def _check_index_format(name: str | None, where: str) -> None:
    """An unknown index format, or one whose library is missing, fails the recipe before any stage runs."""
    if name is None:
        return
    try:
        fmt = index_format(name, where)
    except BundleError as exc:
        raise RecipeError(str(exc)) from exc
    problem = missing_library(fmt)
    if problem:
        raise RecipeError(f"{where}: {problem}")


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A ``.toml`` or ``.json`` recipe's content, unchecked."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no recipe at {path}")
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({exc})") from exc


def load_recipe(path: str | Path, base_dir: Path | None = None) -> Recipe:
    """Read and check a ``.toml`` or ``.json`` recipe."""
    path = Path(path).resolve()
    return recipe_from_dict(read_recipe(path), path, base_dir)


def packaged_recipe(name: str) -> Path:
    """A recipe shipped with edgeret (``demo``)."""
    path = Path(__file__).with_name("recipes") / f"{name}.toml"
    if not path.is_file():
        raise RecipeError(f"no packaged recipe {name!r}")
    return path
