"""Prove the runtime on ARM64 (Raspberry Pi 4 class) under user-mode QEMU: ``python -m tools.arm64 [--reduced]``.

Builds (and caches under ``build/arm64``) an aarch64 Python from Debian's arm64 packages, the runtime's
dependencies from PyPI's aarch64 wheels (faiss-cpu included) and hnswlib cross-compiled from its sdist; then,
per bundle, checks that every text and image embedding agrees with x86 (cosine >= 0.999), that an index saved on
x86 gives the same top-10 lists in the guest, and that so does every index format (:mod:`tools.arm64.formats`),
and runs the runtime tests marked ``arm64`` in the guest. Results go to
``bench/results/arm64.json`` and ``arm64.md``. See ``docs/arm64.md``.
"""

from .cli import main

__all__ = ["main"]
