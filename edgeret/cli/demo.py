"""``edgeret demo``: the embedded default, end to end, on the offline data.

data -> stand-in teacher (image head fitted on the train split) -> teacher caches (OpenMoji, WordNet)
-> teacher quality -> distil the default student -> compress (fp32, pruned, INT8, INT4 bundles)
-> index test emoji into the INT8 bundle and search it -> bench (the accuracy/latency table).
Every stage reuses its outputs in ``--work-dir`` unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: bundle name -> compress arguments
BUNDLES = {
    "student-fp32": ["--quant", "fp32"],
    "student-pruned": ["--quant", "fp32", "--prune", "0.25", "--recovery-steps", "40"],
    "student-int8": ["--quant", "int8", "--ort"],
    "student-int4": ["--quant", "int4", "--ort"],  # .ort for the INT8 image tower only (no 4-bit in ORT format)
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeret demo", description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("artifacts"), help="where stage outputs go")
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="where result tables go")
    parser.add_argument("--augment-copies", type=int, default=4, help="augmented renders per train emoji")
    parser.add_argument("--wordnet-train", type=int, default=8000, help="WordNet train synsets to cache")
    parser.add_argument("--preset", default="default", help="distillation preset")
    parser.add_argument("--limit", type=int, help="only the first N items per split (a quick smoke run)")
    parser.add_argument("--force", action="store_true", help="recompute every stage")
    return parser


class Stages:
    """Runs named stages, logs and times them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        logger.info("==> %s", name)
        start = time.time()
        result = fn()
        self.seconds[name] = round(time.time() - start, 1)
        logger.info("    %s: %.0f s", name, self.seconds[name])
        return result


def _student_done(student: Path) -> bool:
    report = student / "train_report.json"
    return report.is_file() and json.loads(report.read_text()).get("finished", False)


def _compress(student: Path, bundles: Path, caches: list[str], force: bool) -> dict[str, Path]:
    from .compress import main as compress

    out = {}
    for name, extra in BUNDLES.items():
        target = bundles / name
        if force or not (target / "manifest.json").is_file():
            recovery = ["--openmoji-cache", caches[0], "--wordnet-cache", caches[1]] if "--prune" in extra else []
            compress([str(student), "--out", str(target), *extra, *recovery])
        out[name] = target
    return out


def _index_and_search(bundle: Path, work: Path) -> None:
    """Write the test emoji as PNG files, index them with ``edgeret index``, run a few searches."""
    import shutil

    from edgeret.data.openmoji import emojis
    from edgeret.data.render import render_emoji

    from .main import main as edgeret

    images = work / "demo_images"
    images.mkdir(parents=True, exist_ok=True)
    for e in emojis("test"):
        path = images / f"{e.name.replace('/', '-')}.png"
        if not path.exists():
            render_emoji(e.text).save(path)
    demo_bundle = work / "demo_bundle"
    shutil.rmtree(demo_bundle, ignore_errors=True)
    shutil.copytree(bundle, demo_bundle)
    edgeret(["index", str(demo_bundle), "--images", str(images)])
    for query in ("a red heart", "a smiling cat", "the flag of Japan"):
        edgeret(["search", str(demo_bundle), query, "-k", "3"])


def main(argv: list[str] | None = None) -> dict:
    """Run the pipeline; returns per-stage seconds."""
    args = build_parser().parse_args(argv)
    from edgeret.bench.compare import main as bench
    from edgeret.bench.teacher_quality import main as teacher_quality
    from edgeret.data.corpora import build_corpus
    from edgeret.data.openmoji import emojis
    from edgeret.data.wordnet import synsets
    from edgeret.distill.cache import build_cache
    from edgeret.distill.teachers.standin import StandinTeacher
    from edgeret.distill.train import main as distill

    stages, work = Stages(), args.work_dir
    stages.run("data", lambda: [logger.info("  %s: %d emoji, %d synsets", s, len(emojis(s)), len(synsets(s)))
                                for s in ("train", "val", "test")])
    head = work / "teacher" / "standin_image_head.safetensors"
    if args.force and head.exists():
        head.unlink()
    # remember_features: the head fit's Lite0 features of the train renders are reused by the OpenMoji cache
    teacher = stages.run("stand-in teacher (fits its image head once)",
                         lambda: StandinTeacher(head_path=head, remember_features=True))
    caches = [str(work / "cache" / f"{teacher.id}--{data}") for data in ("openmoji", "wordnet")]
    for data, cache_dir in zip(("openmoji", "wordnet"), caches, strict=True):
        corpus = build_corpus(data, augment_copies=args.augment_copies, limit=args.limit, max_train=args.wordnet_train)
        stages.run(f"teacher cache: {data}", lambda c=corpus, d=cache_dir: build_cache(teacher, c, d, force=args.force))
    stages.run("teacher quality", lambda: teacher_quality(
        ["--out", str(args.results), "--head-path", str(head), "--teacher-cache", *caches], teacher=teacher))

    student = work / "student"
    if args.force or not _student_done(student):
        stages.run("distil the student", lambda: distill(
            ["--preset", args.preset, "--openmoji-cache", caches[0], "--wordnet-cache", caches[1],
             "--out", str(student), "--test", *(["--fresh"] if args.force else [])]))
    bundles = stages.run("compress", lambda: _compress(student, work / "bundles", caches, args.force))
    stages.run("index + search (runtime, no torch)", lambda: _index_and_search(bundles["student-int8"], work))
    from os import environ  # EDGERET_DEMO_GME=1 adds the gme2b-arch row (GME-2B's architecture: ~8 min, ~9 GB)

    gme = ["--gme-arch"] if environ.get("EDGERET_DEMO_GME") == "1" else []
    stages.run("bench", lambda: bench(
        ["--head-path", str(head), "--teacher-cache", *caches, "--out", str(args.results),
         "--teacher-onnx", str(work / "bundles" / "teacher-onnx"), "--peer", *gme,
         "--bundle", *(f"{name}={path}" for name, path in bundles.items())]))
    logger.info("stage seconds: %s", stages.seconds)
    return {"seconds": stages.seconds}
