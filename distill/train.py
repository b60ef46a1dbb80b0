"""Train the student dual encoder from teacher caches (the teacher never runs): :func:`train`.

    report = train([load_cache("cache/openmoji"), load_cache("cache/wordnet")], load_preset("default"),
                   "artifacts/student", test=True)

Writes the student checkpoint (best validation epoch) to ``out``, resumable state to ``out/train_state``
(call again with the same arguments to resume), and ``out/train_report.json`` (:class:`TrainReport`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeret.data.corpora import CORPORA
from edgeret.data.evalset import EvalSet
from edgeret.data.scoring import evaluate_encoder

from .cache import TeacherCache
from .flops import compare
from .held_out import evaluate_sets, table_eval_sets, teacher_agreement
from .loop import init_projections, run_epochs
from .pairs import TrainData, load_train_data
from .presets import Preset
from .sampler import BatchSampler
from .student import DualEncoder, build_student, load_student, save_student

logger = logging.getLogger(__name__)

REPORT = "train_report.json"
#: the folder under a student checkpoint with its run's resumable state and prepared inputs (tokens, pixels, prefix)
TRAIN_STATE = "train_state"


@dataclass
class TrainReport:
    """What a training run did (``train_report.json``)."""

    preset: dict[str, Any]
    epochs_done: int
    global_step: int
    best_val_score: float
    history: list[dict[str, Any]]
    prep_seconds: float
    seconds: float
    finished: bool
    test: list[dict[str, Any]] | None = None
    cost: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``train_report.json`` (``test`` and ``cost`` only when measured)."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if v is not None or k not in ("test", "cost")}

    def save(self, path: Path) -> None:
        """Write ``path`` (its folder is created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TrainReport:
        """Read a ``train_report.json``."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


def eval_sets(caches: Sequence[TeacherCache], split: str, sample: int | None = None) -> list[EvalSet]:
    """Every task's eval set of ``split`` for the corpora the caches hold (in cache order): a built-in corpus's
    own sets, else the pairs of the cache's item table."""
    out = []
    for cache in caches:
        if cache.corpus_name in CORPORA:
            source = CORPORA[cache.corpus_name]
            out += [source.eval_set(task, split, sample=sample) for task in source.tasks]
        elif cache.items is not None:
            out += table_eval_sets(cache.items, cache.corpus_name, split, sample)
    return out


def train(
    caches: Sequence[TeacherCache], preset: Preset, out: str | Path, *, test: bool = False,
    stop_after_steps: int | None = None, fresh: bool = False, progress: bool = True,
) -> TrainReport:
    """Train (or resume) a student on ``caches`` with ``preset``; keep the best checkpoint in ``out``.

    ``stop_after_steps`` stops after that many optimisation steps (state saved), as an interruption would;
    ``fresh`` ignores saved training state; ``test`` scores the best student on the test splits at the end.
    """
    out = Path(out)
    settings = preset.train
    torch.manual_seed(settings.seed)
    started = time.time()
    state_dir = out / TRAIN_STATE
    resuming = (state_dir / "run.json").is_file() and not fresh
    data = load_train_data(caches, state_dir, progress=progress)
    model = _prepare_model(preset, caches, data, state_dir, resuming)
    loss = dataclasses.replace(preset.loss, matryoshka_dims=model.config.matryoshka_dims)
    # tokens, pixels and frozen-prefix features of the train items: prepared once per run, kept for resumptions
    sampler = BatchSampler.for_model(model, data, settings, state_dir, prefix=True, progress=progress)
    if not resuming:
        init_projections(model, sampler, settings)
        save_student(model, state_dir / "init")
        (state_dir / "run.json").write_text(json.dumps(preset.to_dict(), indent=2))
    prep_seconds = time.time() - started
    val = eval_sets(caches, "val", settings.val_sample)
    state = run_epochs(model, sampler, loss, settings, state_dir,
                       validate=lambda epoch: _validate(model, val, caches, epoch),
                       on_best=lambda: save_student(model, out),
                       stop_after=stop_after_steps, progress=progress)
    report = TrainReport(preset=preset.to_dict(), epochs_done=state.epoch, global_step=state.global_step,
                         best_val_score=state.best_score, history=state.history,
                         prep_seconds=round(prep_seconds, 1), seconds=round(time.time() - started, 1),
                         finished=state.epoch >= settings.epochs)
    if report.finished and test:
        report.test = _test(out, caches)
        report.cost = compare(load_student(out))
    report.save(out / REPORT)
    return report


def _prepare_model(preset: Preset, caches: Sequence[TeacherCache], data: TrainData, state_dir: Path,
                   resuming: bool) -> DualEncoder:
    """A fresh student (vocabulary pruned to the train texts), or the saved initial one when resuming."""
    if resuming:
        saved = json.loads((state_dir / "run.json").read_text())
        if Preset.from_dict(saved).to_dict() != preset.to_dict():  # a run saved before a field was added resumes
            raise ValueError(f"saved training state in {state_dir} was made with another preset; use --fresh")
        return load_student(state_dir / "init")
    first = caches[0]
    config = preset.student_config(first.dim, first.meta.get("teacher", {}).get("id"))
    if not len(data.texts):  # no training texts (an image-only corpus): an image-only student
        config.text = None
    if not data.n_images:  # no training images (a text-only corpus or teacher): a text-only student
        config.image = None
    model = build_student(config, vocab_texts=data.iter_texts() if config.text else None)
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in [state_dir / "state.pt", *state_dir.glob("prefix*.npy")]:  # a fresh student's prefix may differ
        stale.unlink(missing_ok=True)
    return model


def _validate(model: DualEncoder, evalsets: list[EvalSet], caches: Sequence[TeacherCache], epoch: int) -> float:
    """Mean student Recall@10 over the validation sets; without any (a corpus with no pairs), the mean cosine
    between the student's and the teacher's embeddings of the validation items."""
    if not evalsets:
        score = teacher_agreement(model, caches, "val")
        model.train()
        logger.info("epoch %d validation: mean cosine to the teacher %.4f", epoch + 1, score)
        return score
    scores = {}
    for evalset in evalsets:
        metrics, _ = evaluate_encoder(model, evalset)
        scores[f"{evalset.name}-{evalset.task}"] = metrics["recall@10"]
    model.train()
    logger.info("epoch %d validation Recall@10: %s", epoch + 1, {k: round(v, 4) for k, v in scores.items()})
    return sum(scores.values()) / max(1, len(scores))


def _test(out: Path, caches: Sequence[TeacherCache]) -> list[dict]:
    """Test-split rows of the best student, full dim then each Matryoshka prefix (one embedding pass)."""
    model = load_student(out)
    evalsets, memo = eval_sets(caches, "test"), {}
    rows = evaluate_sets(model, evalsets, caches, memo=memo)
    for dim in model.config.matryoshka_dims[:-1]:
        rows += evaluate_sets(model, evalsets, caches, dim=dim, memo=memo)
    return rows
