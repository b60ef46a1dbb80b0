"""``edgeret build RECIPE``: teacher cache -> distil -> compress -> index -> report, for one recipe.

    report = run_build(load_recipe("photos.toml"))

Each stage resumes and is skipped when its output is current for the recipe (:mod:`.stages`); the work
folder holds ``cache/``, ``corpus/`` (the scan of file sources), ``student/``, ``bundles/<variant>/``, the
indexed bundle and ``report/``. The demo (``edgeret demo``) is the packaged ``demo`` recipe.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeret.bench.compare import BenchConfig, run_bench
from edgeret.bench.corpus_report import corpus_report
from edgeret.bench.teacher_quality import run_teacher_quality
from edgeret.cli.bench import argv_of
from edgeret.compress.bundle import CompressOptions
from edgeret.compress.calibration import Calibration
from edgeret.data.corpora import build_corpus
from edgeret.data.items import Corpus
from edgeret.data.results import invocation
from edgeret.data.sources import ScanReport, scan_sources, source_from_dict
from edgeret.distill.cache import TeacherCache, build_cache, load_cache
from edgeret.distill.held_out import table_eval_sets
from edgeret.distill.presets import Preset, preset_dict
from edgeret.distill.pruning.prune import PruneConfig
from edgeret.distill.pruning.recover import RECOVERY_TRAIN
from edgeret.distill.teachers import Teacher, load_teacher, teacher_class
from edgeret.distill.train import TrainReport, train

from .indexing import index_corpus
from .recipe import BUILTIN_SOURCES, Recipe, VariantSpec
from .stages import Stages, fingerprint
from .steps import Pruning, compress_student

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What a build produced: the caches, the student, the bundles, the indexed bundle and the report."""

    caches: list[TeacherCache]
    student: Path
    bundles: dict[str, Path]
    indexed: Path | None
    report: dict[str, Any] | None
    stages: Stages
    scans: list[ScanReport] = field(default_factory=list)  # what scanning the file sources found


class _Teacher:
    """The recipe's teacher, loaded on first use (a build whose caches are current never loads it)."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe, self._teacher = recipe, None

    @property
    def name(self) -> str:
        """Its cache-folder name: the class's fixed id, else the registry name."""
        cls = teacher_class(self.recipe.teacher.name)
        return cls.id if isinstance(getattr(cls, "id", None), str) else self.recipe.teacher.name

    def get(self) -> Teacher:
        if self._teacher is None:
            options = {k: _resolve(self.recipe, k, v) for k, v in self.recipe.teacher.options.items()}
            self._teacher = load_teacher(self.recipe.teacher.name, **options)
        return self._teacher


def _resolve(recipe: Recipe, key: str, value: Any) -> Any:
    """Teacher options that are paths are relative to the recipe's folder."""
    return str(recipe.base_dir / value) if key.endswith("_path") and isinstance(value, str) else value


def corpora(recipe: Recipe) -> list[Corpus]:
    """The recipe's corpora: one for all file sources (scanned into ``work/corpus``), one per built-in source."""
    out: list[Corpus] = []
    files = [source_from_dict(s, recipe.base_dir) for s in recipe.sources if s["type"] not in BUILTIN_SOURCES]
    if files:
        split = recipe.split
        out.append(scan_sources(files, fractions=split.fractions, seed=split.seed, max_bad=split.max_bad,
                                workdir=recipe.work_dir / "corpus", name=recipe.name))
        logger.info("corpus %s: %s", recipe.name, out[-1].report.summary())
    for source in recipe.sources:
        if source["type"] in BUILTIN_SOURCES:
            out.append(build_corpus(source["type"], **{k: v for k, v in source.items() if k != "type"}))
    return out


def _caches(recipe: Recipe, stages: Stages, teacher: _Teacher, scans: list[ScanReport]) -> list[TeacherCache]:
    spec, caches = recipe.teacher, []

    def build(corpus: Corpus, target: Path) -> TeacherCache:
        return build_cache(teacher.get(), corpus, target, shard_size=spec.shard_size, batch_size=spec.batch_size,
                           force=stages.force)

    for corpus in corpora(recipe):
        if getattr(corpus, "report", None) is not None:
            scans.append(corpus.report)
        target = recipe.work_dir / "cache" / f"{teacher.name}--{corpus.name}"
        print_ = fingerprint(dataclasses.asdict(spec), corpus.name, corpus.meta, len(corpus))
        caches.append(stages.run(f"teacher cache: {corpus.name}", print_, lambda c=corpus, t=target: build(c, t),
                                 output=target / "cache_meta.json", load=lambda t=target: load_cache(t)))
    return caches


def _cache_prints(caches: list[TeacherCache]) -> list[Any]:
    return [[c.meta["teacher"], c.meta["corpus"]["ids_sha256"], c.meta["corpus"].get("meta")] for c in caches]


def _distill(recipe: Recipe, stages: Stages, caches: list[TeacherCache]) -> tuple[Path, str]:
    student = recipe.work_dir / "student"
    preset = preset_dict(recipe.student.preset, recipe.student.set)
    print_ = fingerprint(preset, _cache_prints(caches))

    def build() -> TrainReport:
        # an interrupted run of the same inputs resumes; state left by other inputs is discarded
        marker = student / "train_state" / "build_fingerprint"
        fresh = stages.force or (marker.is_file() and marker.read_text() != print_)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(print_)
        return train(caches, Preset.from_dict(preset), student, test=True, fresh=fresh)

    stages.run("distil the student", print_, build, output=student / "train_report.json",
               load=lambda: TrainReport.load(student / "train_report.json"))
    return student, print_


def _variant_options(variant: VariantSpec, recipe: Recipe) -> CompressOptions:
    builtin_only = all(s["type"] in BUILTIN_SOURCES for s in recipe.sources)
    return CompressOptions(quant=variant.quant, ort=variant.ort, block_size=variant.block_size,
                           optimize=variant.optimize, embedding_cold_share=variant.embedding_cold_share,
                           embedding_cold_block=variant.embedding_cold_block,
                           check_agreement=True,
                           agreement_sets=CompressOptions().agreement_sets if builtin_only else ())


def _compress(recipe: Recipe, stages: Stages, caches: list[TeacherCache], student: Path,
              student_print: str) -> dict[str, Path]:
    bundles, builtin_only = {}, all(s["type"] in BUILTIN_SOURCES for s in recipe.sources)
    for variant in recipe.variants:
        target = recipe.work_dir / "bundles" / variant.name
        print_ = fingerprint(student_print, dataclasses.asdict(variant))
        bundles[variant.name] = stages.run(
            f"compress: {variant.name}", print_, lambda v=variant, t=target: _bundle(v, t, recipe, caches, student,
                                                                                     builtin_only),
            output=target / "manifest.json", load=lambda t=target: t)
    return bundles


def _bundle(variant: VariantSpec, target: Path, recipe: Recipe, caches: list[TeacherCache], student: Path,
            builtin_only: bool) -> Path:
    pruning = None
    if variant.prune > 0:
        pruning = Pruning(PruneConfig(ratio=variant.prune, image_ratio=variant.prune_image, score=variant.prune_score),
                          caches,
                          dataclasses.replace(RECOVERY_TRAIN, epochs=variant.recovery_epochs), variant.recovery_steps,
                          keep_dir=recipe.work_dir / "pruned")
    calibration = None if builtin_only else Calibration.from_caches(caches)
    evalsets = None if builtin_only else [e for c in caches if c.items for e in
                                          table_eval_sets(c.items, c.corpus_name, "val", 500)]
    compress_student(student, target, _variant_options(variant, recipe), pruning, calibration=calibration,
                     evalsets=evalsets)
    return target


def _bench_config(recipe: Recipe, result: BuildResult) -> BenchConfig:
    spec = recipe.bench
    head = _resolve(recipe, "head_path", recipe.teacher.options.get("head_path"))
    config = BenchConfig(head_path=Path(head), teacher_cache=tuple(Path(c.path) for c in result.caches),
                         out=recipe.results_dir or recipe.work_dir / "results", peer=spec.peer, gme_arch=spec.gme_arch,
                         teacher_onnx=recipe.work_dir / "bundles" / "teacher-onnx" if spec.teacher_onnx else None,
                         bundles=tuple((name, str(path)) for name, path in result.bundles.items()))
    return dataclasses.replace(config, command=invocation("edgeret bench", argv_of(config)))


def _teacher_quality(recipe: Recipe, stages: Stages, teacher: _Teacher, caches: list[TeacherCache]) -> None:
    out = recipe.results_dir or recipe.work_dir / "results"
    head = _resolve(recipe, "head_path", recipe.teacher.options.get("head_path"))
    argv = ["--out", str(out), "--head-path", str(head), "--teacher-cache", *(str(c.path) for c in caches)]
    stages.run("teacher quality", fingerprint(_cache_prints(caches)), lambda: run_teacher_quality(
        teacher.get(), teacher_cache=[Path(c.path) for c in caches], out=out,
        command=invocation("edgeret teacher-quality", argv)), output=out / "teacher_quality.json", load=lambda: None)


def run_build(recipe: Recipe, *, force: bool = False, command: str | None = None) -> BuildResult:
    """Run every stage of ``recipe`` (resuming, skipping current ones); returns what was built
    (``result.stages.table()`` is the stage table)."""
    stages, teacher, scans = Stages(recipe.work_dir, force=force), _Teacher(recipe), []
    caches = _caches(recipe, stages, teacher, scans)
    if recipe.bench.enabled and recipe.bench.teacher_quality:
        _teacher_quality(recipe, stages, teacher, caches)
    student, student_print = _distill(recipe, stages, caches)
    result = BuildResult(caches, student, _compress(recipe, stages, caches, student, student_print), None, None,
                         stages, scans)
    if recipe.index is not None:
        variant = recipe.index.variant
        print_ = fingerprint(student_print, dataclasses.asdict(recipe.variant(variant)),
                             dataclasses.asdict(recipe.index), _cache_prints(caches))
        target = recipe.work_dir / recipe.index.out
        result.indexed = stages.run("index", print_, lambda: index_corpus(result.bundles[variant], target, caches,
                                                                          recipe.index),
                                    output=target / "manifest.json", load=lambda: target)
    if recipe.report.enabled and result.bundles:
        spec = recipe.report
        out = (recipe.results_dir or recipe.work_dir) / "report"
        result.report = stages.run(
            "report", fingerprint(student_print, sorted(result.bundles), dataclasses.asdict(spec)),
            lambda: corpus_report(caches, result.bundles, split=spec.split, sample=spec.sample,
                                  latency_queries=spec.latency_queries, out=out,
                                  command=command or invocation("edgeret build", [str(recipe.path)])),
            output=out / "report.json", load=lambda: json.loads((out / "report.json").read_text()))
    if recipe.bench.enabled:
        config = _bench_config(recipe, result)
        stages.run("bench", fingerprint(student_print, dataclasses.asdict(config)), lambda: run_bench(config),
                   output=config.out / "summary.json", load=lambda: None)
    return result
