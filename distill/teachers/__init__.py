"""Teachers by name: the offline stand-in, GME on Qwen2-VL, CLIP/SigLIP folders, sentence-transformers folders, yours.

    teacher = load_teacher("gme", model_path="/models/gme-Qwen2-VL-2B-Instruct")
    teacher = load_teacher("clip", model_path="/models/siglip-base-patch16-224")          # CLIP, SigLIP, SigLIP 2
    teacher = load_teacher("sentence-transformers", model_path="/models/all-MiniLM-L6-v2")  # text only

A teacher is a :class:`~edgeret.distill.teachers.base.Teacher` subclass (``id``, ``dim``, two batch encoders,
optionally ``modalities`` and ``default_instruction``); adding one is the class and one :func:`register_teacher`
call (the class itself, or ``"module:Class"`` so it is imported only when used). :meth:`Teacher.from_options`
turns the command line's options into an instance; the teachers that load a folder need ``model_path`` and say
so with a ValueError. ``teacher.modalities`` says which inputs a teacher embeds (``("text",)`` for
sentence-transformers). docs/teachers.md describes every teacher and walks through adding one.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Teacher, UnsupportedModalityError

#: name -> the class, or "module:Class" imported on first use (so naming a teacher imports only its module)
TEACHERS: dict[str, type[Teacher] | str] = {
    "standin": "edgeret.distill.teachers.standin:StandinTeacher",
    "gme": "edgeret.distill.teachers.gme:GmeTeacher",
    "clip": "edgeret.distill.teachers.clip:ClipTeacher",
    "sentence-transformers": "edgeret.distill.teachers.sentence_transformer:SentenceTransformerTeacher",
}


def register_teacher(name: str, teacher: type[Teacher] | str) -> None:
    """Make a teacher class available by ``name`` (to ``load_teacher`` and ``edgeret teacher-cache --teacher``)."""
    TEACHERS[name] = teacher


def teacher_class(name: str) -> type[Teacher]:
    """The class registered as ``name``."""
    entry = TEACHERS.get(name)
    if entry is None:
        raise ValueError(f"unknown teacher {name!r}; choose from {', '.join(TEACHERS)}")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = TEACHERS[name] = getattr(importlib.import_module(module), attr)
    return entry


def load_teacher(name: str, **options: Any) -> Teacher:
    """An instance of the teacher registered as ``name`` (see :meth:`Teacher.from_options`)."""
    return teacher_class(name).from_options(**options)


__all__ = ["TEACHERS", "Teacher", "UnsupportedModalityError", "load_teacher", "register_teacher", "teacher_class"]
