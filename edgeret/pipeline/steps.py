"""Steps that cross stages: a pruned bundle is distill's pruning + recovery, then compress's bundle."""

from __future__ import annotations

import dataclasses
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
from edgeret.distill.pruning.prune import PruneConfig
from edgeret.distill.pruning.recover import RECOVERY_LOSS, RECOVERY_TRAIN, prune_and_recover
from edgeret.distill.student import load_student


@dataclass
class Pruning:
    """How to prune before compressing: the structure to cut, and the recovery distillation."""

    config: PruneConfig
    caches: Sequence[TeacherCache] = ()  # none: no recovery (magnitude scores only)
    train: TrainSettings = field(default_factory=lambda: dataclasses.replace(RECOVERY_TRAIN))
    max_steps: int | None = None


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
        model, report = prune_and_recover(load_student(checkpoint), pruning.config, pruning.caches,
                                          train=pruning.train, loss=RECOVERY_LOSS, max_steps=pruning.max_steps,
                                          work_dir=work)
        return build_bundle(model, out, options, prune_report=report, calibration=calibration, evalsets=evalsets)
