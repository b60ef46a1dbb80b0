"""Training presets (``distill/presets/*.json``) as typed objects: the student's shape, the loss and the optimiser.

    preset = load_preset("default", ["loss.affinity=1", "train.epochs=2"])
    preset.loss.affinity, preset.train.epochs, preset.student.text.layers

``tiny`` (tests, seconds), ``default`` (the embedded demo, minutes on 2 CPU cores), ``large`` (GPU). A
preset file has the sections ``student`` (``matryoshka_dims``, ``text``: :class:`TextConfig` fields,
``image``: :class:`ImageConfig` fields with ``repeats`` (Lite0 blocks per stage) instead of ``stages``),
``loss`` (:class:`LossConfig`) and ``train`` (:class:`TrainSettings`); an unknown key is an error.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loop import TrainSettings
from .losses import LossConfig
from .models.image_tower import lite0_stages
from .student import ImageConfig, StudentConfig, TextConfig

PRESETS_DIR = Path(__file__).with_name("presets")


@dataclass
class StudentPreset:
    """The ``student`` section: tower shapes; the output dim comes from the teacher."""

    matryoshka_dims: list[int] | None = None  # None: the teacher's dim only
    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)


@dataclass
class Preset:
    """A whole training preset."""

    description: str = ""
    student: StudentPreset = field(default_factory=StudentPreset)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainSettings = field(default_factory=TrainSettings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preset:
        """Check and convert a preset's JSON (``ValueError`` names an unknown or mistyped key)."""
        data = copy.deepcopy(data)
        student = data.pop("student", {}) or {}
        image = student.get("image", {}) or {}
        if "repeats" in image:
            image["stages"] = lite0_stages(image.pop("repeats"))
        preset = cls(
            description=data.pop("description", ""),
            student=StudentPreset(
                matryoshka_dims=student.get("matryoshka_dims"),
                text=_typed(TextConfig, student.get("text", {}), "student.text"),
                image=_typed(ImageConfig, image, "student.image"),
            ),
            loss=_typed(LossConfig, data.pop("loss", {}), "loss"),
            train=_typed(TrainSettings, data.pop("train", {}), "train"),
        )
        unknown = sorted(set(data) | (set(student) - {"matryoshka_dims", "text", "image"}))
        if unknown:
            raise ValueError(f"preset: unknown section(s) {unknown}")
        return preset

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as it reads back from JSON (what ``train_report.json`` and the resumable state record)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def student_config(self, dim: int, teacher_id: str | None) -> StudentConfig:
        """The student's architecture for a teacher of dimension ``dim``."""
        dims = [d for d in (self.student.matryoshka_dims or [dim]) if d <= dim]
        return StudentConfig(dim=dim, matryoshka_dims=dims, text=copy.deepcopy(self.student.text),
                             image=copy.deepcopy(self.student.image), teacher_id=teacher_id)


def _typed(kind: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"preset {where}: unknown key(s) {unknown}; known: {sorted(names)}")
    return kind(**values)


def preset_names() -> list[str]:
    """The presets shipped in ``distill/presets``."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def preset_dict(name: str, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's JSON by name (``distill/presets/<name>.json``) or path, with ``KEY=VALUE`` overrides applied
    (values are JSON, else strings: ``loss.affinity=0``, ``student.text.layers=3``)."""
    path = Path(name) if name.endswith(".json") else PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no preset {name!r}; known presets: {', '.join(preset_names())}")
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


def load_preset(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Preset:
    """:func:`preset_dict`, checked and typed."""
    return Preset.from_dict(preset_dict(name, overrides))
