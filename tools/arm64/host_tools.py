"""The host tools the ARM64 check needs (QEMU user-mode emulator, aarch64 cross compiler), apt-installed if missing."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .shell import Arm64Error, run

logger = logging.getLogger(__name__)

#: executable -> the Debian package that provides it
HOST_TOOLS: dict[str, str] = {
    "qemu-aarch64-static": "qemu-user-static",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
}
#: tools that must already be there (any Debian/Ubuntu host has them)
BASE_TOOLS = ("apt-get", "dpkg-deb")


@dataclass(frozen=True)
class HostTools:
    """Paths of the tools found (or installed) on the host."""

    qemu: Path
    cxx: Path


def missing_packages(which: Callable[[str], str | None] | None = None) -> list[str]:
    """Debian packages to install so that every tool in :data:`HOST_TOOLS` is on PATH."""
    which = which or shutil.which
    return sorted({package for tool, package in HOST_TOOLS.items() if which(tool) is None})


def apt_install_commands(packages: list[str], is_root: bool, has_sudo: bool) -> list[list[str]]:
    """``apt-get update`` + ``apt-get install`` for ``packages`` (through ``sudo -n`` when not root).

    Raises:
        Arm64Error: not root and no sudo, so nothing can be installed.
    """
    if not packages:
        return []
    if not is_root and not has_sudo:
        raise Arm64Error(f"missing host packages {packages}: run `sudo apt-get install {' '.join(packages)}` first")
    prefix = [] if is_root else ["sudo", "-n"]
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    return [[*prefix, "apt-get", "update", "-q"], [*prefix, *install]]


def ensure_host_tools(log_dir: Path) -> HostTools:
    """Find qemu-aarch64-static and the aarch64 g++, apt-installing their packages if needed.

    Raises:
        Arm64Error: a base tool is missing or the installation failed (with apt's output).
    """
    absent = [tool for tool in BASE_TOOLS if shutil.which(tool) is None]
    if absent:
        raise Arm64Error(f"{', '.join(absent)} not found: the ARM64 check needs a Debian-based host (apt, dpkg)")
    packages = missing_packages()
    if packages:
        logger.info("installing host packages: %s", " ".join(packages))
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        commands = apt_install_commands(packages, os.geteuid() == 0, shutil.which("sudo") is not None)
        update, install = commands
        if run(update, env=env, log=log_dir / "apt-host-update.log", check=False).returncode != 0:
            logger.warning("apt-get update failed (an unreachable extra source?); installing from the lists present")
        run(install, env=env, log=log_dir / "apt-host-install.log", what="installing host packages with apt-get")
    qemu, cxx = (shutil.which(tool) for tool in HOST_TOOLS)
    if qemu is None or cxx is None:
        raise Arm64Error(f"apt-get installed {packages} but the tools are still not on PATH")
    return HostTools(Path(qemu), Path(cxx))
