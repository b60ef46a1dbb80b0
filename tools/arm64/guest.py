"""Run the aarch64 Python under user-mode QEMU (no binfmt registration: the emulator is called directly)."""

from __future__ import annotations

import json
import logging
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .rootfs import GUEST_PYTHON
from .shell import Arm64Error, quote, run

logger = logging.getLogger(__name__)

#: Raspberry Pi 4's core; must match the /proc/cpuinfo written into the root
GUEST_CPU = "cortex-a72"
#: what ``pytest -m`` selects in the guest
PYTEST_MARKER = "arm64"


@dataclass(frozen=True)
class Guest:
    """An emulated aarch64 CPython: ``qemu -cpu CPU -L ROOT ROOT/usr/bin/python3.11`` with a clean environment."""

    qemu: Path
    root: Path
    pythonpath: tuple[Path, ...]
    pycache: Path
    cpu: str = GUEST_CPU

    @property
    def python(self) -> Path:
        return self.root / GUEST_PYTHON

    def command(self, args: Sequence[str]) -> list[str]:
        """The host command running ``python3.11 ARGS`` in the guest."""
        return [str(self.qemu), "-cpu", self.cpu, "-L", str(self.root), str(self.python), *args]

    def environment(self) -> dict[str, str]:
        """The guest's whole environment: nothing of the host's Python setup (venv, PYTHONPATH) leaks in."""
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.pycache.parent),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONPATH": ":".join(str(p) for p in self.pythonpath),
            "PYTHONNOUSERSITE": "1",
            "PYTHONSAFEPATH": "1",  # no current folder on sys.path: edgeret is the staged package, not repo/edgeret
            "PYTHONPYCACHEPREFIX": str(self.pycache),
        }

    def shown(self, args: Sequence[str]) -> str:
        """The command with its environment, as one copy-pasteable shell line (for reports and logs)."""
        env = self.environment()
        prefix = " ".join(f"{key}={quote([env[key]])}" for key in ("PYTHONPATH", "PYTHONPYCACHEPREFIX"))
        return f"env -i LANG=C.UTF-8 {prefix} {quote(self.command(args))}"

    def run(self, args: Sequence[str], *, cwd: Path, log: Path, what: str, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run python3.11 in the guest; raises :class:`Arm64Error` (with the output's tail) if it fails."""
        logger.debug("guest: %s", self.shown(args))
        return run(self.command(args), cwd=cwd, env=self.environment(), log=log, what=what, check=check,
                   timeout=timeout)


def probe_command() -> list[str]:
    """Guest args printing (as JSON) the interpreter, machine, CPU seen and versions of the runtime's packages."""
    code = (
        "import json, platform, sys\n"
        "from importlib import metadata\n"
        "import numpy, onnxruntime, tokenizers, PIL, hnswlib, tqdm, faiss\n"
        "cpu = [l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('CPU part')]\n"
        "names = ('numpy', 'onnxruntime', 'tokenizers', 'pillow', 'hnswlib', 'tqdm', 'faiss-cpu', 'pytest')\n"
        "print(json.dumps({'python': platform.python_version(), 'machine': platform.machine(),\n"
        "    'cpu_parts': cpu, 'versions': {n: metadata.version(n) for n in names}}))\n"
    )
    return ["-c", code]


def probe(guest: Guest, cwd: Path, log_dir: Path) -> dict:
    """Import every runtime dependency in the guest (onnxruntime segfaults here without the ARM cpuinfo)."""
    log = log_dir / "guest-probe.log"
    proc = guest.run(probe_command(), cwd=cwd, log=log, what="guest probe", check=False)
    if proc.returncode in (-11, 128 + 11):
        raise Arm64Error(f"the guest crashed (SIGSEGV) importing the runtime's dependencies: onnxruntime does this "
                         f"when it reads the host's x86 /proc/cpuinfo; is {guest.root / 'proc' / 'cpuinfo'} the ARM "
                         f"one? (log: {log})")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise Arm64Error(f"importing the runtime's dependencies in the aarch64 guest failed (exit {proc.returncode}; "
                         f"log: {log}):\n{tail}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if info["machine"] != "aarch64":
        raise Arm64Error(f"the guest reports machine {info['machine']!r}, not aarch64")
    return info


def pytest_args(junit: Path, paths: Sequence[str] = ("tests/runtime",), marker: str = PYTEST_MARKER) -> list[str]:
    """Guest args running the tests marked ``marker`` (the command line's ``-m`` overrides pyproject's addopts).

    ``--import-mode=append`` puts the repository at the end of ``sys.path`` (and ``PYTHONSAFEPATH`` keeps the
    current folder off it): ``edgeret`` is then the guest's staged package (with ``edgeret.runtime``), not the
    repository's ``edgeret/`` folder, which lacks it.
    """
    return ["-m", "pytest", "-q", "-m", marker, "-p", "no:cacheprovider", "--import-mode=append",
            f"--junitxml={junit}", *paths]


def junit_counts(path: Path) -> dict[str, int]:
    """passed / failed / errors / skipped / total from a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    return {
        "passed": totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"],
        "failed": totals["failures"],
        "errors": totals["errors"],
        "skipped": totals["skipped"],
        "total": totals["tests"],
    }
