"""``edgeret distill``: train the student dual encoder from teacher caches (the teacher never runs).

    edgeret distill --preset default --out artifacts/student
    edgeret distill --preset default --set loss.affinity=0 --out artifacts/student-noaff   # ablation

Presets (``distill/presets/*.json``): ``tiny`` (tests, seconds), ``default`` (the embedded demo, minutes
on 2 CPU cores), ``large`` (GPU). Writes the student checkpoint (best validation epoch) to ``--out``,
resumable state to ``--out/train_state`` (rerun the same command to resume), and ``train_report.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeret.distill.models.image_tower import lite0_stages

from .cache import TeacherCache, load_cache
from .loop import TrainSettings, init_projections, prefix_features, run_epochs
from .losses import LossConfig
from .student import DualEncoder, StudentConfig, build_student, load_student, save_student, student_preprocessor

logger = logging.getLogger(__name__)

PRESETS_DIR = Path(__file__).with_name("presets")
VAL_SETS = (("openmoji", "t2i"), ("openmoji", "i2t"), ("wordnet", "t2t"))


def build_parser() -> argparse.ArgumentParser:
    from edgeret.distill.teachers.standin import STANDIN_ID

    cache_root = Path("artifacts/cache")
    parser = argparse.ArgumentParser(prog="edgeret distill", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="tiny | default | large, or a preset JSON file")
    parser.add_argument("--openmoji-cache", type=Path, default=cache_root / f"{STANDIN_ID}--openmoji",
                        help="teacher cache of the openmoji corpus ('none' to skip images)")
    parser.add_argument("--wordnet-cache", type=Path, default=cache_root / f"{STANDIN_ID}--wordnet",
                        help="teacher cache of the wordnet corpus ('none' to skip)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/student"), help="student checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset value, e.g. loss.affinity=0 or train.epochs=2 (JSON values)")
    parser.add_argument("--stop-after-steps", type=int, help="stop (state saved) after N steps, as an interruption")
    parser.add_argument("--fresh", action="store_true", help="ignore saved training state and start over")
    parser.add_argument("--test", action="store_true", help="score the best student on the test splits at the end")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def load_preset(name: str, overrides: list[str] = ()) -> dict[str, Any]:
    """A preset by name (``distill/presets/<name>.json``) or path, with ``KEY=VALUE`` overrides applied."""
    path = Path(name) if name.endswith(".json") else PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.json"))
        raise FileNotFoundError(f"no preset {name!r}; known presets: {', '.join(known)}")
    preset = json.loads(path.read_text(encoding="utf-8"))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = preset
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return preset


def student_config(preset: dict[str, Any], dim: int, teacher_id: str | None) -> StudentConfig:
    """The StudentConfig of a preset for a teacher of dimension ``dim``."""
    spec = copy.deepcopy(preset.get("student", {}))
    image = spec.get("image", {})
    if "repeats" in image:
        image["stages"] = lite0_stages(image.pop("repeats"))
    dims = [d for d in spec.pop("matryoshka_dims", [dim]) if d <= dim]
    return StudentConfig(dim=dim, matryoshka_dims=dims, teacher_id=teacher_id, **spec)


def _open(path: Path | None) -> TeacherCache | None:
    if path is None or str(path).lower() == "none":
        return None
    return load_cache(path)


def eval_sets(split: str, sample: int | None, caches: dict[str, TeacherCache | None]) -> list:
    """The t2i / i2t / t2t eval sets of ``split`` for the data sources that have a cache."""
    from edgeret.data.openmoji import openmoji_eval
    from edgeret.data.wordnet import wordnet_eval

    out = []
    for source, task in VAL_SETS:
        if caches.get(source) is None:
            continue
        out.append(openmoji_eval(task, split, sample=sample) if source == "openmoji"
                   else wordnet_eval(split, sample=sample))
    return out


def _prepare_model(args, preset, caches, data, state_dir: Path) -> DualEncoder:
    """A fresh student (vocabulary pruned to the train texts, projections fitted), or the saved initial one."""
    init_dir = state_dir / "init"
    if (state_dir / "run.json").is_file() and not args.fresh:
        saved = json.loads((state_dir / "run.json").read_text())
        if saved != preset:
            raise ValueError(f"saved training state in {state_dir} was made with another preset; use --fresh")
        return load_student(init_dir)
    first = next(c for c in caches.values() if c is not None)
    config = student_config(preset, first.dim, first.meta.get("teacher", {}).get("id"))
    model = build_student(config, vocab_texts=data.texts())
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.pt").unlink(missing_ok=True)
    return model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train (or resume), keep the best checkpoint in ``--out``; returns the report dict."""
    from .pairs import load_train_data
    from .sampler import BatchSampler

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = load_preset(args.preset, args.overrides)
    settings = TrainSettings(**preset.get("train", {}))
    loss_config = LossConfig(**preset.get("loss", {}))
    torch.manual_seed(settings.seed)
    started = time.time()
    caches = {"openmoji": _open(args.openmoji_cache), "wordnet": _open(args.wordnet_cache)}
    state_dir = args.out / "train_state"
    size = preset.get("student", {}).get("image", {}).get("image_size", 128)
    data = load_train_data(caches["openmoji"], caches["wordnet"], student_preprocessor(size), state_dir,
                           progress=not args.no_progress)
    model = _prepare_model(args, preset, caches, data, state_dir)
    loss_config.matryoshka_dims = model.config.matryoshka_dims
    prefix = _prefix(model, data, state_dir, resuming=(state_dir / "run.json").is_file() and not args.fresh)
    sampler = BatchSampler(data, model.tokenizer, model.config.text.max_length, settings.image_batch,
                           settings.text_batch, settings.seed, model.preprocessor, prefix)
    if not (state_dir / "run.json").is_file() or args.fresh:
        init_projections(model, sampler, settings)
        save_student(model, state_dir / "init")
        (state_dir / "run.json").write_text(json.dumps(preset, indent=2))
    prep_seconds = time.time() - started
    val = eval_sets("val", settings.val_sample, caches)
    state = run_epochs(model, sampler, loss_config, settings, state_dir,
                       validate=lambda epoch: _validate(model, val, epoch),
                       on_best=lambda: save_student(model, args.out),
                       stop_after=args.stop_after_steps, progress=not args.no_progress)
    report = {"preset": preset, "epochs_done": state.epoch, "global_step": state.global_step,
              "best_val_score": state.best_score, "history": state.history,
              "prep_seconds": round(prep_seconds, 1), "seconds": round(time.time() - started, 1),
              "finished": state.epoch >= settings.epochs}
    if report["finished"] and args.test:
        from .flops import compare

        report["test"] = _test(args.out, caches)
        report["cost"] = compare(load_student(args.out))
    (args.out / "train_report.json").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _prefix(model: DualEncoder, data, state_dir: Path, resuming: bool):
    """Frozen-prefix features of the train images, computed once per run (kept for resumption)."""
    if not model.config.image.frozen_blocks or data.pixels is None:
        return None
    path = state_dir / "prefix.npy"
    if resuming and path.is_file():
        return np.load(path, mmap_mode="r")
    features = prefix_features(model, data.pixels, model.preprocessor)
    np.save(state_dir / "prefix.tmp.npy", features)
    (state_dir / "prefix.tmp.npy").replace(path)
    return features


def _validate(model: DualEncoder, evalsets: list, epoch: int) -> float:
    """Mean student Recall@10 over the validation sets (via ``bench.evaluate``)."""
    from edgeret.data.scoring import evaluate_encoder

    scores = {}
    for evalset in evalsets:
        metrics, _ = evaluate_encoder(model, evalset)
        scores[f"{evalset.name}-{evalset.task}"] = metrics["recall@10"]
    model.train()
    logger.info("epoch %d validation Recall@10: %s", epoch + 1, {k: round(v, 4) for k, v in scores.items()})
    return sum(scores.values()) / max(1, len(scores))


def _test(out: Path, caches: dict[str, TeacherCache | None]) -> list[dict]:
    from .held_out import evaluate_sets

    model = load_student(out)
    present = [c for c in caches.values() if c is not None]
    evalsets, memo = eval_sets("test", None, caches), {}  # one embedding pass; prefixes are truncations
    rows = evaluate_sets(model, evalsets, present, memo=memo)
    for dim in model.config.matryoshka_dims[:-1]:
        rows += evaluate_sets(model, evalsets, present, dim=dim, memo=memo)
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
