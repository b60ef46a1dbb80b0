"""Steps that cross stages: a pruned bundle is distill's pruning + recovery, then compress's bundle."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeret.compress.bundle import CompressOptions, build_bundle
from edgeret.compress.calibration import Calibration
from edgeret.data.evalset import EvalSet
from edgeret.distill.cache import TeacherCache
from edgeret.distill.loop import TrainSettings
from edgeret.distill.losses import LossConfig
from edgeret.distill.pruning.prune import PruneConfig
from edgeret.distill.pruning.recover import RECOVERY_LOSS, RECOVERY_TRAIN, prune_and_recover, trained_loss
from edgeret.distill.student import DualEncoder, load_student, save_student
from edgeret.distill.train import TRAIN_STATE
from edgeret.runtime.bundle import sha256_file

from .stages import fingerprint

logger = logging.getLogger(__name__)


@dataclass
class Pruning:
    """How to prune before compressing: the structure to cut, and the recovery distillation."""

    config: PruneConfig
    caches: Sequence[TeacherCache] = ()  # none: no recovery (magnitude scores only)
    train: TrainSettings = field(default_factory=lambda: dataclasses.replace(RECOVERY_TRAIN))
    max_steps: int | None = None
    keep_dir: Path | None = None  # where the recovered student is kept, for other variants of the same pruning
    loss: LossConfig | None = None  # none: the loss the student was distilled with, else RECOVERY_LOSS

    def recovery_loss(self, checkpoint: str | Path) -> LossConfig:
        """The recovery objective for the student at ``checkpoint``."""
        return self.loss or trained_loss(checkpoint) or RECOVERY_LOSS


def pruning_key(checkpoint: str | Path, pruning: Pruning) -> str:
    """A digest of the student checkpoint's weights and config and of the pruning and recovery settings."""
    files = [sha256_file(Path(checkpoint) / name) for name in ("model.safetensors", "config.json")]
    return fingerprint(files, dataclasses.asdict(pruning.config), dataclasses.asdict(pruning.train),
                       pruning.max_steps, [str(c.path) for c in pruning.caches],
                       dataclasses.asdict(pruning.recovery_loss(checkpoint)))


def pruned_student(checkpoint: str | Path, pruning: Pruning, work: Path) -> tuple[DualEncoder, dict[str, Any]]:
    """The pruned and recovered student and its report: made in ``work``, or loaded from ``pruning.keep_dir``
    when a variant with the same checkpoint and settings made it before (and kept there when made)."""
    pruning = dataclasses.replace(pruning, loss=pruning.recovery_loss(checkpoint))  # read the report once
    kept = pruning.keep_dir / pruning_key(checkpoint, pruning) if pruning.keep_dir is not None else None
    if kept is not None and (kept / "prune_report.json").is_file():
        logger.info("reusing the pruned and recovered student in %s", kept)
        return load_student(kept), json.loads((kept / "prune_report.json").read_text(encoding="utf-8"))
    model, report = prune_and_recover(load_student(checkpoint), pruning.config, pruning.caches, train=pruning.train,
                                      loss=pruning.loss, max_steps=pruning.max_steps, work_dir=work,
                                      reuse=[Path(checkpoint) / TRAIN_STATE])
    if kept is None:
        return model, report
    staging = kept.with_name(kept.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    save_student(model, staging)
    (staging / "prune_report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    shutil.rmtree(kept, ignore_errors=True)
    staging.replace(kept)
    return model, report


def compress_student(checkpoint: str | Path, out: str | Path, options: CompressOptions,
                     pruning: Pruning | None = None, calibration: Calibration | None = None,
                     evalsets: list[EvalSet] | None = None) -> dict[str, Any]:
    """The bundle of a student checkpoint (pruned and recovered first when ``pruning`` is given); returns the
    compress report (also ``out/compress_report.json``). ``calibration`` and ``evalsets`` go to
    :func:`~edgeret.compress.bundle.build_bundle`."""
    if pruning is None or pruning.config.ratio <= 0:
        return build_bundle(checkpoint, out, options, calibration=calibration, evalsets=evalsets)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{Path(out).name}-prune-", dir=Path(out).parent) as work:
        model, report = pruned_student(checkpoint, pruning, Path(work))
        return build_bundle(model, out, options, prune_report=report, calibration=calibration, evalsets=evalsets)
