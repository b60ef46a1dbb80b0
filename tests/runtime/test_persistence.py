"""save() is atomic: a process SIGKILLed at any point of a save leaves the previous index loadable."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgeret.runtime.retriever import Retriever

from .conftest import CHILD_CWD, random_unit

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

#: the child adds 500 vectors and saves; in a "phase" it stops (blocks) at that point of the save
CHILD = r"""
import sys, time
import numpy as np
import edgeret.runtime.persist as persist
from edgeret.runtime.retriever import Retriever

bundle, phase = sys.argv[1], sys.argv[2]
r = Retriever.open(bundle, threads=1)
rng = np.random.default_rng(len(r))

def block(*args, **kwargs):
    print("BLOCKED", flush=True)
    time.sleep(120)

if phase == "files":      # hnsw.bin, meta.sqlite, index.json written in the temp folder, not yet renamed
    persist.fsync_file = block
elif phase == "pointer":  # the new generation is renamed into place, CURRENT not yet swapped
    write = persist.atomic_write_json
    persist.atomic_write_json = lambda path, data: block() if path.name == "CURRENT" else write(path, data)
elif phase == "cleanup":  # CURRENT swapped, old generation not yet removed
    persist.remove_stale = block
start = len(r)
r.add_embeddings([f"k{start + i}" for i in range(500)], rng.standard_normal((500, 32)))
print("READY", flush=True)
while True:
    r.save()
    print("SAVED", len(r), flush=True)
    r.add_embeddings([f"k{len(r)}"], rng.standard_normal((1, 32)))
"""


def _run_and_kill(bundle: Path, phase: str, saves_before_kill: int = 0) -> list[str]:
    """Start the child, SIGKILL it when it blocks (or mid-way through its save loop); return its output."""
    env = dict(os.environ)  # the child imports the installed edgeret
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(bundle), phase], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=CHILD_CWD)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("BLOCKED") or (
                phase == "loop" and sum(x.startswith("SAVED") for x in lines) >= saves_before_kill
            ):
                if phase == "loop":
                    time.sleep(0.005)  # land inside the next save
                os.kill(proc.pid, signal.SIGKILL)
                break
        lines += [line.strip() for line in proc.stdout]
        assert proc.wait() == -signal.SIGKILL, lines
    finally:
        watchdog.cancel()
        proc.kill()
    return lines


def _ids(n_from: int, n_to: int) -> set[str]:
    return {f"k{i}" for i in range(n_from, n_to)}


def test_sigkill_during_save_leaves_a_loadable_index(bundle):
    base = Retriever.open(bundle, threads=1)
    base.add_embeddings([f"k{i}" for i in range(100)], random_unit(100, 32))
    base.save()

    for phase, expected in (("files", 100), ("pointer", 100), ("cleanup", 600)):
        lines = _run_and_kill(bundle, phase)
        assert "BLOCKED" in lines and not any(x.startswith("SAVED") for x in lines), (phase, lines)
        reopened = Retriever.open(bundle, threads=1)  # verify=True: every checksum is checked
        assert len(reopened) == expected, phase
        assert all(item in reopened for item in _ids(0, expected))
        assert reopened.search(vector=random_unit(1, 32, seed=3)[0], k=5, exact=False)

    leftovers = sorted(p.name for p in (bundle / "index").iterdir())
    assert any(name.startswith(".tmp-") for name in leftovers)  # the killed saves left debris ...
    assert [name for name in leftovers if name.startswith("gen-")] == ["gen-000001", "gen-000002", "gen-000003"]
    lines = _run_and_kill(bundle, "loop", saves_before_kill=3)
    last = max(int(x.split()[1]) for x in lines if x.startswith("SAVED"))
    reopened = Retriever.open(bundle, threads=1)
    assert len(reopened) in (last, last + 1), (last, len(reopened))
    assert all(item in reopened for item in _ids(0, last))
    previous = (bundle / "index" / "CURRENT").read_text()
    saved = reopened.save()  # ... which the next successful save removes (it keeps the generation it replaced)
    kept = sorted(p.name for p in (bundle / "index").iterdir())
    assert kept == ["CURRENT", "LOCK", *sorted([saved.name, json.loads(previous)["generation"]])]
