"""Teachers: the offline stand-in (MiniLM-L6 + EfficientNet-Lite0) and GME on Qwen2-VL."""

from __future__ import annotations

from .base import Teacher

TEACHERS = ("standin", "gme")


def load_teacher(name: str, model_path: str | None = None, head_path=None, **kwargs) -> Teacher:
    """Instantiate a teacher by name.

    ``gme`` needs ``model_path``, a local folder with the weights; ``head_path`` is the stand-in's
    fitted image head (default: under ``$EDGERET_CACHE_DIR``).
    """
    if name == "standin":
        from .standin import StandinTeacher

        return StandinTeacher(head_path=head_path, **kwargs)
    if name == "gme":
        if not model_path:
            raise ValueError("the GME teacher needs --model-path, a local folder with the GME weights")
        from .gme import GmeTeacher

        return GmeTeacher(model_path, **kwargs)
    raise ValueError(f"unknown teacher {name!r}; choose from {TEACHERS}")


__all__ = ["TEACHERS", "Teacher", "load_teacher"]
