"""An aarch64 root folder with Debian's arm64 Python 3.11, unpacked from .debs without touching the host's apt state.

QEMU's ``-L ROOT`` looks every path up under ROOT first, so the root also carries the ARM ``/proc/cpuinfo``
that onnxruntime needs: under user-mode QEMU the kernel's file is the host's x86 one, and onnxruntime's
CPU detection segfaults at import when it reads that.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from .shell import Arm64Error, run

logger = logging.getLogger(__name__)

DEBIAN_SUITES = (
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian", "bookworm-updates"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
)
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: what the guest Python needs at run time (ARM.md's list)
RUNTIME_DEBS = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libexpat1", "zlib1g", "libffi8",
    "libssl3", "libsqlite3-0", "libbz2-1.0", "liblzma5", "libgcc-s1", "libstdc++6", "libuuid1", "libncursesw6",
    "libtinfo6", "libreadline8", "libdb5.3", "libgdbm6", "libcrypt1",
)
#: Python's headers for cross-compiling extensions (unpacked into a separate folder)
DEV_DEBS = ("libpython3.11-dev",)
GUEST_PYTHON = "usr/bin/python3.11"


@dataclass(frozen=True)
class AptDirs:
    """A private apt state (lists, cache, sources) under ``base``; the host's /etc/apt and /var stay untouched."""

    base: Path

    @property
    def sources(self) -> Path:
        return self.base / "sources.list"

    def options(self) -> list[str]:
        """``-o`` options making apt-get treat arm64 as native and use only the private state."""
        settings = {
            "APT::Architecture": "arm64",
            "APT::Architectures": "arm64",
            "Dir::State": self.base / "state",
            "Dir::State::Lists": self.base / "state" / "lists",
            "Dir::State::status": self.base / "state" / "status",
            "Dir::Cache": self.base / "cache",
            "Dir::Etc::SourceList": self.sources,
            "Dir::Etc::SourceParts": self.base / "sources.list.d",
            "Dir::Etc::Preferences": self.base / "preferences",
            "Dir::Etc::PreferencesParts": self.base / "preferences.d",
            "Debug::NoLocking": "1",
        }
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def prepare(self) -> None:
        """Create the folders and files apt expects, and a sources.list of Debian bookworm (main)."""
        for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "state" / "status").touch()
        self.sources.write_text(sources_list(DEBIAN_KEYRING.is_file()), encoding="utf-8")


def sources_list(signed: bool) -> str:
    """One-line-style sources for :data:`DEBIAN_SUITES` (``signed-by`` the Debian keyring when it exists)."""
    option = f"[signed-by={DEBIAN_KEYRING}] " if signed else ""
    return "".join(f"deb {option}{mirror} {suite} main\n" for mirror, suite in DEBIAN_SUITES)


def apt_update(apt: AptDirs, log_dir: Path) -> None:
    """Fetch the arm64 package lists into the private state."""
    apt.prepare()
    run(["apt-get", *apt.options(), "-q", "update"], log=log_dir / "apt-arm64-update.log",
        what="apt-get update (arm64 lists)")


def download_debs(apt: AptDirs, packages: tuple[str, ...], dest: Path, log_dir: Path) -> list[Path]:
    """``apt-get download`` the arm64 ``packages`` into ``dest`` (emptied first); returns the .deb files."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    run(["apt-get", *apt.options(), "-q", "download", *(f"{p}:arm64" for p in packages)], cwd=dest,
        log=log_dir / f"apt-arm64-download-{dest.name}.log", what="apt-get download (arm64 packages)")
    debs = sorted(dest.glob("*.deb"))
    if len(debs) != len(packages):
        raise Arm64Error(f"asked apt for {len(packages)} packages, got {len(debs)} .deb files in {dest}")
    return debs


def unpack_debs(debs: list[Path], target: Path) -> None:
    """``dpkg-deb -x`` every package into ``target`` (emptied first)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for deb in debs:
        run(["dpkg-deb", "-x", deb, target], what=f"unpacking {deb.name}")


def cortex_a72_cpuinfo(cores: int = 4) -> str:
    """``/proc/cpuinfo`` as a Raspberry Pi 4 (4x Cortex-A72, ARMv8) reports it under a 64-bit kernel."""
    block = (
        "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    )
    return "".join(block.format(n=n) for n in range(cores)) + "Model\t\t: Raspberry Pi 4 Model B (emulated)\n"


def write_cpuinfo(root: Path, cores: int = 4) -> Path:
    """Write the ARM cpuinfo where QEMU's ``-L`` lookup finds it first; returns its path."""
    path = root / "proc" / "cpuinfo"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cortex_a72_cpuinfo(cores), encoding="ascii")
    return path


def python_include_dirs(dev: Path) -> list[Path]:
    """Include folders for the arm64 Python headers inside the unpacked ``libpython3.11-dev``.

    Debian's ``python3.11/pyconfig.h`` includes ``<aarch64-linux-gnu/python3.11/pyconfig.h>``, so the
    parent ``usr/include`` is needed too (it holds only Python's folders, nothing shadowing the compiler's).

    Raises:
        Arm64Error: the headers are not where Debian puts them.
    """
    include = dev / "usr" / "include"
    for header in (include / "python3.11" / "Python.h", include / "aarch64-linux-gnu" / "python3.11" / "pyconfig.h"):
        if not header.is_file():
            raise Arm64Error(f"{header} not found: libpython3.11-dev:arm64 did not unpack as expected")
    return [include / "python3.11", include]
