"""aarch64 wheels for the guest: the runtime's dependencies (+ pytest), at the host's versions, into a site folder.

The host's pip resolves and installs for a foreign platform (``--platform``/``--only-binary``), so nothing
is executed for aarch64 here. Pinning the top-level packages to the host's versions (and every dependency
to the host's version where it has one) makes the x86/ARM comparison one of architectures, not of releases.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from .shell import run

logger = logging.getLogger(__name__)

#: the runtime's base dependencies except hnswlib (built from source, see :mod:`tools.arm64.hnsw`), faiss-cpu (the
#: ``faiss`` extra: the ``faiss-hnsw-sq8`` index format; PyPI has aarch64 wheels of it) and pytest
GUEST_PACKAGES = ("numpy", "onnxruntime", "tokenizers", "pillow", "tqdm", "faiss-cpu", "pytest")
GUEST_PYTHON_VERSION = "3.11"
#: Debian bookworm has glibc 2.36: every manylinux tag up to 2.36 runs there (pip does not expand these itself)
PLATFORMS = tuple(f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)) + ("manylinux2014_aarch64",)


def pinned(names: Iterable[str], version_of: Callable[[str], str] = metadata.version) -> list[str]:
    """``name==version`` for each package installed on the host, plain ``name`` for the others."""
    out = []
    for name in names:
        try:
            out.append(f"{name}=={version_of(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def host_constraints(dists: Iterable[metadata.Distribution] | None = None) -> list[str]:
    """``name==version`` of every distribution installed on the host (pip ignores the ones not needed)."""
    dists = metadata.distributions() if dists is None else dists
    lines = set()
    for dist in dists:
        name, version = dist.metadata["Name"], dist.version
        if name and version and "+" not in version:  # local versions (e.g. torch+cpu) exist on no index
            lines.add(f"{name}=={version}")
    return sorted(lines, key=str.lower)


def platform_args(python_version: str = GUEST_PYTHON_VERSION) -> list[str]:
    """pip options selecting CPython ``python_version`` wheels for aarch64 Linux only."""
    abi = "cp" + python_version.replace(".", "")
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version, "--abi", abi]
    for tag in PLATFORMS:
        args += ["--platform", tag]
    return args


def download_command(requirements: list[str], constraints: Path, dest: Path) -> list[str]:
    """pip command downloading the aarch64 wheels of ``requirements`` and their dependencies."""
    return [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", *platform_args(),
            "-c", str(constraints), "-d", str(dest), *requirements]


def install_command(requirements: list[str], wheels: Path, site: Path) -> list[str]:
    """pip command unpacking those wheels (offline, from ``wheels``) into the ``site`` folder."""
    return [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
            "--find-links", str(wheels), "--target", str(site), "--no-compile", *platform_args(), *requirements]


def build_site(requirements: list[str], wheels: Path, site: Path, log_dir: Path) -> None:
    """Download (into ``wheels``, kept as a cache) and install (into a fresh ``site``) the guest packages."""
    wheels.mkdir(parents=True, exist_ok=True)
    constraints = wheels / "constraints.txt"
    constraints.write_text("\n".join(host_constraints()) + "\n", encoding="utf-8")
    run(download_command(requirements, constraints, wheels), log=log_dir / "pip-download.log",
        what="pip download (aarch64 wheels)")
    shutil.rmtree(site, ignore_errors=True)
    run(install_command(requirements, wheels, site), log=log_dir / "pip-install.log",
        what="pip install --target (aarch64 site folder)")
    logger.info("site folder: %d wheels installed into %s", len(list(wheels.glob("*.whl"))), site)
