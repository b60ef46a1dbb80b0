"""Concurrent processes (issue 14, items 4 and 5): readers never fail during another process's saves, and two
writers never silently lose each other's items (a save over a changed index merges)."""

import os
import subprocess
import sys
import time

import pytest

from edgeret.runtime import persist
from edgeret.runtime.errors import BundleError, IndexBusyError
from edgeret.runtime.retriever import Retriever

from .conftest import CHILD_CWD, random_unit

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs fcntl")

#: a writer that obeys commands on stdin: "add TAG N" adds N items, "save" saves, "loop TAG N" adds+saves N times,
#: "loopfor TAG S" adds+saves for S seconds, "hold S" holds the writers' lock for S seconds
WRITER = r"""
import sys
import numpy as np
from edgeret.runtime.retriever import Retriever

r = Retriever.open(sys.argv[1], threads=1)
rng = np.random.default_rng(abs(hash(sys.argv[2])) % 1000)
print("READY", len(r), flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "add":
        tag, n = args[0], int(args[1])
        r.add_embeddings([f"{tag}-{i}" for i in range(n)], rng.standard_normal((n, 32)), [{"by": tag}] * n)
    elif cmd == "save":
        r.save()
    elif cmd == "loop":
        for i in range(int(args[1])):
            r.add_embeddings([f"{args[0]}-loop{i}"], rng.standard_normal((1, 32)))
            r.save()
    elif cmd == "loopfor":  # add + save until the given seconds have passed
        import time
        end, i = time.monotonic() + float(args[1]), 0
        while time.monotonic() < end:
            r.add_embeddings([f"{args[0]}-loop{i}"], rng.standard_normal((1, 32)))
            r.save()
            i += 1
    elif cmd == "hold":  # keep the writers' lock for a while
        from edgeret.runtime.persist import writer_lock
        with writer_lock(r.manifest.index_dir):
            print("HOLDING", flush=True)
            import time; time.sleep(float(args[0]))
    print("DONE", cmd, len(r), flush=True)
"""


class Writer:
    """A writer process on ``bundle``; ``do(cmd)`` sends one command and waits for it to finish."""

    def __init__(self, bundle, tag):
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(bundle), tag], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                                     cwd=CHILD_CWD)
        assert self.proc.stdout.readline().startswith("READY")

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def wait(self, prefix="DONE"):
        line = self.proc.stdout.readline()
        assert line.startswith(prefix), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        return line

    def do(self, cmd):
        self.send(cmd)
        return self.wait()

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()


def _base(bundle, n=200):
    r = Retriever.open(bundle, threads=1)
    r.add_embeddings([f"base-{i}" for i in range(n)], random_unit(n, 32))
    r.save()


def test_two_writers_each_adding_an_item_lose_nothing(bundle):
    _base(bundle)
    a, b = Writer(bundle, "a"), Writer(bundle, "b")  # both open the same generation
    a.do("add a 1")
    b.do("add b 1")
    a.do("save")
    b.do("save")  # over an index that changed on disk since b opened it: merges
    a.close()
    b.close()
    ids = set(Retriever.open(bundle, threads=1).index.ids())
    assert {"a-0", "b-0"} <= ids and len(ids) == 202


def test_two_save_loops_lose_nothing_and_never_fail(bundle):
    _base(bundle)
    a, b = Writer(bundle, "a"), Writer(bundle, "b")
    a.send("loop a 15")
    b.send("loop b 15")
    a.wait()
    b.wait()
    a.close()
    b.close()
    r = Retriever.open(bundle, threads=1)
    expected = {f"{t}-loop{i}" for t in "ab" for i in range(15)} | {f"base-{i}" for i in range(200)}
    assert set(r.index.ids()) == expected
    assert r.search(vector=random_unit(1, 32)[0], k=5, filter=None)


def test_opens_never_fail_while_another_process_saves_in_a_loop(bundle):
    _base(bundle, n=1000)
    writer = Writer(bundle, "w")
    writer.send("loopfor w 6")
    failures, opens, start = [], 0, time.monotonic()
    try:
        while opens < 300 and time.monotonic() - start < 5.5:
            try:
                r = Retriever.open(bundle, threads=1, verify="size")
                assert len(r) >= 1000
            except BundleError as exc:
                failures.append(str(exc))
            opens += 1
    finally:
        saves = int(writer.wait().split()[-1]) - 1000
        writer.close()
    assert opens >= 50 and saves >= 20 and not failures, (opens, saves, failures[:3])
    index = bundle / "index"
    generations = [p for p in index.iterdir() if p.name.startswith("gen-")]
    assert len(generations) <= 3  # old generations are still cleaned up once no reader holds them


def test_merge_replays_adds_replaces_and_deletes(bundle):
    _base(bundle, n=10)
    first, second = Retriever.open(bundle, threads=1), Retriever.open(bundle, threads=1)
    first.add_embeddings(["from-first"], random_unit(1, 32, seed=1), [{"who": "first"}])
    first.delete(["base-0"])
    first.save()
    vector = random_unit(1, 32, seed=2)
    second.add_embeddings(["from-second", "base-1"], random_unit(2, 32, seed=3), [{"who": "second"}] * 2)
    second.add_embeddings(["base-1"], vector, [{"who": "replaced"}])
    second.delete(["base-2"])
    second.save()
    assert "from-first" in second and "base-0" not in second  # the save adopted the merged collection
    reopened = Retriever.open(bundle, threads=1)
    assert set(reopened.index.ids()) == {f"base-{i}" for i in range(3, 10)} | {"base-1", "from-first", "from-second"}
    assert reopened.index.metadata("base-1") == {"who": "replaced"}
    assert reopened.search(vector=vector[0], k=1)[0].id == "base-1"
    assert reopened.index.metadata("from-first") == {"who": "first"}


def test_a_save_waits_for_the_writers_lock_then_says_so(bundle, monkeypatch):
    _base(bundle, n=10)
    holder = Writer(bundle, "h")
    holder.send("hold 1.5")
    holder.wait("HOLDING")
    monkeypatch.setattr(persist, "LOCK_TIMEOUT_S", 0.5)
    r = Retriever.open(bundle, threads=1)
    r.add_embeddings(["x"], random_unit(1, 32))
    with pytest.raises(IndexBusyError, match="another process has been saving"):
        r.save()
    holder.wait()
    holder.close()
    r.save()
    assert "x" in Retriever.open(bundle, threads=1)


def test_a_save_over_an_index_saved_at_another_dim_fails_clearly(bundle):
    stale = Retriever.open(bundle, threads=1)
    stale.add_embeddings(["a"], random_unit(1, 32))
    other = Retriever.open(bundle, threads=1, dim=16)
    other.add_embeddings(["b"], random_unit(1, 16))
    other.save()
    with pytest.raises(BundleError, match="another process saved a 16-d cosine index .* reopen"):
        stale.save()
