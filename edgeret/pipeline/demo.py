"""The embedded default, end to end, on the offline data (``edgeret demo``): :func:`run_demo`.

data -> stand-in teacher (image head fitted on the train split) -> teacher caches (OpenMoji, WordNet)
-> teacher quality -> distil the default student -> compress (fp32, pruned, INT8, INT4 bundles)
-> index test emoji into the INT8 bundle and search it -> bench (the accuracy/latency table).
Every stage reuses its outputs in ``work_dir`` unless ``force``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeret.bench.compare import BenchConfig, run_bench
from edgeret.bench.teacher_quality import run_teacher_quality
from edgeret.cli.bench import argv_of
from edgeret.compress.bundle import CompressOptions
from edgeret.data.corpora import build_corpus
from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.results import invocation
from edgeret.data.wordnet import synsets
from edgeret.distill.cache import TeacherCache, build_cache
from edgeret.distill.presets import load_preset
from edgeret.distill.pruning.prune import PruneConfig
from edgeret.distill.teachers.standin import StandinTeacher
from edgeret.distill.train import TrainReport, train
from edgeret.runtime.retriever import Retriever

from .steps import Pruning, compress_student

logger = logging.getLogger(__name__)

#: bundle name -> (compress options, prune ratio, recovery steps)
BUNDLES: dict[str, tuple[CompressOptions, float, int | None]] = {
    "student-fp32": (CompressOptions(quant="fp32"), 0.0, None),
    "student-pruned": (CompressOptions(quant="fp32"), 0.25, 40),
    "student-int8": (CompressOptions(quant="int8", ort=True), 0.0, None),
    # .ort for the INT8 image tower only (no 4-bit in the ORT format)
    "student-int4": (CompressOptions(quant="int4", ort=True), 0.0, None),
}
QUERIES = ("a red heart", "a smiling cat", "the flag of Japan")


@dataclass
class DemoConfig:
    """What ``edgeret demo`` can set."""

    work_dir: Path = Path("artifacts")
    results: Path = Path("bench/results")
    augment_copies: int = 4
    wordnet_train: int = 8000
    preset: str = "default"
    limit: int | None = None
    force: bool = False
    gme_arch: bool = False  # the gme2b-arch bench row (GME-2B's architecture: ~5 min, ~9 GB)


@dataclass
class Stages:
    """Runs named stages, logs and times them."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, timed under ``name``."""
        logger.info("==> %s", name)
        start = time.time()
        result = fn()
        self.seconds[name] = round(time.time() - start, 1)
        logger.info("    %s: %.0f s", name, self.seconds[name])
        return result


def _student_done(student: Path) -> bool:
    report = student / "train_report.json"
    return report.is_file() and TrainReport.load(report).finished


def compress_bundles(student: Path, bundles: Path, caches: list[TeacherCache], force: bool) -> dict[str, Path]:
    """Every demo bundle (reused when present unless ``force``); name -> folder."""
    out = {}
    for name, (options, ratio, steps) in BUNDLES.items():
        target = bundles / name
        if force or not (target / "manifest.json").is_file():
            pruning = Pruning(PruneConfig(ratio=ratio), caches, max_steps=steps) if ratio else None
            compress_student(student, target, options, pruning)
        out[name] = target
    return out


def index_and_search(bundle: Path, work: Path) -> list[tuple[str, list[str]]]:
    """Write the test emoji as PNG files, index them into a copy of ``bundle``, run a few searches."""
    images = work / "demo_images"
    images.mkdir(parents=True, exist_ok=True)
    paths = []
    for e in emojis("test"):
        path = images / f"{e.name.replace('/', '-')}.png"
        if not path.exists():
            render_emoji(e.text).save(path)
        paths.append(path)
    demo_bundle = work / "demo_bundle"
    shutil.rmtree(demo_bundle, ignore_errors=True)
    shutil.copytree(bundle, demo_bundle)
    retriever = Retriever.open(demo_bundle)
    ids = [p.name for p in paths]
    retriever.add_images(ids, [str(p) for p in paths], [{"path": i} for i in ids])
    retriever.save()
    found = [(query, [hit.id for hit in retriever.search(text=query, k=3)]) for query in QUERIES]
    for query, hits in found:
        logger.info("  search %r: %s", query, ", ".join(hits))
    return found


def run_demo(config: DemoConfig) -> dict[str, float]:
    """Run the pipeline; returns per-stage seconds."""
    stages, work = Stages(), config.work_dir
    stages.run("data", lambda: [logger.info("  %s: %d emoji, %d synsets", s, len(emojis(s)), len(synsets(s)))
                                for s in ("train", "val", "test")])
    head = work / "teacher" / "standin_image_head.safetensors"
    if config.force and head.exists():
        head.unlink()
    # remember_features: the head fit's Lite0 features of the train renders are reused by the OpenMoji cache
    teacher = stages.run("stand-in teacher (fits its image head once)",
                         lambda: StandinTeacher(head_path=head, remember_features=True))
    caches = []
    for data in ("openmoji", "wordnet"):
        corpus = build_corpus(data, augment_copies=config.augment_copies, limit=config.limit,
                              max_train=config.wordnet_train)
        target = work / "cache" / f"{teacher.id}--{data}"
        caches.append(stages.run(f"teacher cache: {data}",
                                 lambda c=corpus, d=target: build_cache(teacher, c, d, force=config.force)))
    cache_dirs = [Path(c.path) for c in caches]
    quality_argv = ["--out", str(config.results), "--head-path", str(head), "--teacher-cache", *map(str, cache_dirs)]
    stages.run("teacher quality", lambda: run_teacher_quality(
        teacher, teacher_cache=cache_dirs, out=config.results,
        command=invocation("edgeret teacher-quality", quality_argv)))
    student = work / "student"
    if config.force or not _student_done(student):
        stages.run("distil the student", lambda: train(caches, load_preset(config.preset), student, test=True,
                                                       fresh=config.force))
    bundles = stages.run("compress", lambda: compress_bundles(student, work / "bundles", caches, config.force))
    stages.run("index + search (runtime, no torch)", lambda: index_and_search(bundles["student-int8"], work))
    bench = BenchConfig(head_path=head, teacher_cache=tuple(cache_dirs), out=config.results,
                        teacher_onnx=work / "bundles" / "teacher-onnx", peer=True, gme_arch=config.gme_arch,
                        bundles=tuple((name, str(path)) for name, path in bundles.items()))
    bench = dataclasses.replace(bench, command=invocation("edgeret bench", argv_of(bench)))
    stages.run("bench", lambda: run_bench(bench))
    logger.info("stage seconds: %s", stages.seconds)
    return stages.seconds
