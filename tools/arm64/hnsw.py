"""hnswlib for aarch64: PyPI has no aarch64 wheel, so cross-compile its sdist with Debian's g++-aarch64-linux-gnu.

Inputs: hnswlib's sdist at the host's version (``pip download --no-binary``), the pybind11 headers (its wheel),
numpy's headers (from the aarch64 site folder) and Python's arm64 headers (``libpython3.11-dev:arm64``).
Output: ``hnswlib.cpython-311-aarch64-linux-gnu.so`` plus a minimal ``.dist-info`` in a folder of its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .shell import Arm64Error, run

logger = logging.getLogger(__name__)

EXTENSION_SUFFIX = ".cpython-311-aarch64-linux-gnu.so"
#: generic ARMv8-A code (hnswlib's setup.py would use -march=native, i.e. the build machine's CPU)
TARGET_FLAGS = ("-march=armv8-a",)


def host_hnswlib_version() -> str:
    """The hnswlib version installed on the host (the guest gets the same source)."""
    try:
        return metadata.version("hnswlib")
    except metadata.PackageNotFoundError as exc:
        raise Arm64Error("hnswlib is not installed on the host: pip install -e . first") from exc


@dataclass(frozen=True)
class HnswBuild:
    """Folders of the hnswlib cross build under ``base``; ``lib`` goes on the guest's PYTHONPATH."""

    base: Path
    version: str

    @property
    def lib(self) -> Path:
        return self.base / "lib"

    @property
    def module(self) -> Path:
        return self.lib / f"hnswlib{EXTENSION_SUFFIX}"


def compile_command(cxx: str | os.PathLike, source: Path, output: Path, includes: list[Path],
                    version: str) -> list[str]:
    """The g++ command line building the extension (flags as hnswlib's setup.py, minus -march=native/OpenMP)."""
    flags = ["-O3", "-std=c++14", "-fPIC", "-shared", "-fvisibility=hidden", "-pthread", *TARGET_FLAGS,
             f'-DVERSION_INFO="{version}"']
    return [os.fspath(cxx), *flags, *(f"-I{d}" for d in includes), str(source), "-o", str(output), "-s"]


def fetch_sources(build: HnswBuild, log_dir: Path) -> tuple[Path, Path]:
    """Download and unpack hnswlib's sdist and the pybind11 wheel; returns (sdist folder, pybind11 include)."""
    downloads = build.base / "downloads"
    shutil.rmtree(downloads, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
           "-d", str(downloads)]
    run([*pip, "--no-binary", "hnswlib", f"hnswlib=={build.version}"], log=log_dir / "pip-hnswlib-sdist.log",
        what="pip download hnswlib sdist")
    run([*pip, "--only-binary=:all:", "pybind11"], log=log_dir / "pip-pybind11.log", what="pip download pybind11")
    src = build.base / "src"
    shutil.rmtree(src, ignore_errors=True)
    (sdist,) = downloads.glob("hnswlib-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(src, filter="data")
    (wheel,) = downloads.glob("pybind11-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(src / "pybind11")
    return src / f"hnswlib-{build.version}", src / "pybind11" / "pybind11" / "include"


def numpy_include(site: Path) -> Path:
    """numpy's C headers inside the aarch64 site folder (numpy 2 keeps them under ``_core``)."""
    for candidate in (site / "numpy" / "_core" / "include", site / "numpy" / "core" / "include"):
        if candidate.is_dir():
            return candidate
    raise Arm64Error(f"numpy headers not found in {site}: build the site folder first")


def write_dist_info(build: HnswBuild) -> None:
    """A minimal ``.dist-info`` so ``importlib.metadata.version('hnswlib')`` works in the guest."""
    info = build.lib / f"hnswlib-{build.version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    metadata_text = f"Metadata-Version: 2.1\nName: hnswlib\nVersion: {build.version}\n"
    (info / "METADATA").write_text(metadata_text, encoding="utf-8")
    (info / "top_level.txt").write_text("hnswlib\n", encoding="utf-8")
    (info / "INSTALLER").write_text("edgeret-bench-arm64 (cross-compiled)\n", encoding="utf-8")


def build_hnswlib(build: HnswBuild, cxx: Path, python_includes: list[Path], site: Path, log_dir: Path) -> Path:
    """Cross-compile hnswlib into ``build.lib`` (niced: the machine is shared); returns the module path."""
    sdist, pybind_include = fetch_sources(build, log_dir)
    shutil.rmtree(build.lib, ignore_errors=True)
    build.lib.mkdir(parents=True)
    includes = [pybind_include, numpy_include(site), sdist / "hnswlib", *python_includes]
    cmd = compile_command(cxx, sdist / "python_bindings" / "bindings.cpp", build.module, includes, build.version)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    run([*nice, *cmd], log=log_dir / "hnswlib-compile.log", what="cross-compiling hnswlib for aarch64")
    write_dist_info(build)
    return build.module
