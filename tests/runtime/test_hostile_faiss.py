"""Crafted and bit-flipped ``index.faiss`` / ``tombstones.npy`` files (checksums rewritten, as an attacker would):
a BundleError or a clean load, never a signal. Every open and search runs in a child process."""

import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from .conftest import CHILD_CWD, random_unit
from .hostile import rewrite_index_checksums

faiss = pytest.importorskip("faiss")

N, DIM = 1000, 32

CHILD = r"""
import sys
import numpy as np
from edgeret.runtime.errors import BundleError
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.persist import read_saved_index

query = np.random.default_rng(0).standard_normal(32)
for folder in sys.argv[1:]:
    try:
        index = VectorIndex.load(read_saved_index(folder, verify="size"), exact_threshold=10)
        index.search(query, k=10, exact=False)
        index.search(query, k=10, exact=True)
        index.search(query, k=10, filter={"g": 3})
        index.add(["new"], query)
        index.search(query, k=10, exact=False)
        print("ok", flush=True)
    except BundleError as exc:
        print("BundleError", str(exc)[:160].replace(" ", "_"), flush=True)
"""


def _layout(data: bytes) -> dict[str, int]:
    """Byte offsets of the fields the crafts change (parsed independently of runtime.faiss_file)."""
    out, pos = {}, 4 + struct.calcsize("<iqqq?i")
    out["ntotal"] = 8
    for name, size in (("probas", 8), ("cum", 4), ("levels", 4), ("offsets", 8), ("neighbors", 4)):
        (count,) = struct.unpack_from("<Q", data, pos)
        out[name], out[name + "_n"] = pos + 8, count
        pos += 8 + count * size
    out["entry"], out["max_level"] = pos, pos + 4
    pos += 20 + 4 + struct.calcsize("<iqqq?i") + struct.calcsize("<iifQQ")
    out["trained"] = pos + 8
    (count,) = struct.unpack_from("<Q", data, pos)
    out["codes_count"] = pos + 8 + 4 * count
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from edgeret.runtime.index import VectorIndex  # after importorskip: collected only where faiss is

    root = tmp_path_factory.mktemp("faiss-index")
    index = VectorIndex(DIM, format="faiss-hnsw-sq8", M=8, ef_construction=40)
    index.add([f"v{i}" for i in range(N)], random_unit(N, DIM, seed=1), [{"g": i % 50} for i in range(N)])
    index.delete(["v3", "v4"])
    index.save(root / "index")
    return root / "index"


def _copy(saved, target) -> tuple:
    shutil.copytree(saved, target)
    generation = next(target.glob("gen-*"))
    return target, generation, bytearray((generation / "index.faiss").read_bytes())


def _put(data: bytearray, offset: int, fmt: str, *values) -> None:
    struct.pack_into("<" + fmt, data, offset, *values)


def _craft(name: str, data: bytearray) -> bytes:
    at = _layout(bytes(data))
    if name == "truncated":
        return bytes(data[: len(data) - 100])
    if name == "trailing":
        return bytes(data) + b"\0" * 16
    if name == "neighbour-ids":
        for slot in np.random.default_rng(0).integers(0, at["neighbors_n"], 300):
            _put(data, at["neighbors"] + 4 * int(slot), "i", 2**31 - 9)
    elif name == "negative-neighbour":
        _put(data, at["neighbors"] + 4 * 5, "i", -7)
    elif name == "upper-link-to-level-0":
        levels = np.frombuffer(bytes(data), dtype="<i4", count=at["levels_n"], offset=at["levels"])
        offsets = np.frombuffer(bytes(data), dtype="<u8", count=at["offsets_n"], offset=at["offsets"])
        upper, flat = int(np.flatnonzero(levels > 1)[0]), int(np.flatnonzero(levels == 1)[-1])
        _put(data, at["neighbors"] + 4 * (int(offsets[upper]) + 16), "i", flat)  # first level-1 slot (2M = 16)
    elif name == "entry-point":
        _put(data, at["entry"], "i", N + 5)
    elif name == "max-level":
        _put(data, at["max_level"], "i", 40)
    elif name == "levels":
        _put(data, at["levels"] + 4 * 10, "i", 7)
    elif name == "offsets":
        _put(data, at["offsets"] + 8 * 100, "Q", 10**12)
    elif name == "ntotal":
        _put(data, at["ntotal"], "q", N + 10)
    elif name == "codes-count":
        _put(data, at["codes_count"], "Q", N * DIM // 2)
    elif name == "nan-ranges":
        _put(data, at["trained"], "f", float("nan"))
    return bytes(data)


CRAFTS = ["truncated", "trailing", "neighbour-ids", "negative-neighbour", "upper-link-to-level-0", "entry-point",
          "max-level", "levels", "offsets", "ntotal", "codes-count", "nan-ranges"]


def _run(folders) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, folders)], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ), cwd=CHILD_CWD)
    assert out.returncode == 0, f"the child died ({out.returncode}) after {out.stdout.split()}: {out.stderr[-400:]}"
    lines = out.stdout.split("\n")[: len(folders)]
    assert len(lines) == len(folders), out.stdout
    return lines


def test_crafted_faiss_files_are_bundle_errors(saved, tmp_path):
    folders = []
    for name in CRAFTS:
        folder, generation, data = _copy(saved, tmp_path / name)
        (generation / "index.faiss").write_bytes(_craft(name, data))
        rewrite_index_checksums(generation)
        folders.append(folder)
    folder, generation, _ = _copy(saved, tmp_path / "tombstones")
    np.save(generation / "tombstones.npy", np.asarray([5, 2, N + 3], dtype=np.int64))
    rewrite_index_checksums(generation)
    folders.append(folder)
    folders.append(_copy(saved, tmp_path / "intact")[0])
    lines = _run(folders)
    assert lines[-1] == "ok", lines[-1]
    for name, line in zip(CRAFTS, lines, strict=False):  # caught by runtime.faiss_file, before faiss reads it
        assert line.startswith("BundleError") and "malformed_faiss_index" in line, (name, line)
    assert lines[len(CRAFTS)].startswith("BundleError") and "tombstones" in lines[len(CRAFTS)]


def test_flipped_bits_never_crash(saved, tmp_path):
    rng = np.random.default_rng(16)
    folders = []
    for trial in range(24):
        folder, generation, data = _copy(saved, tmp_path / f"flip{trial}")
        graph_end = _layout(bytes(data))["entry"] + 20  # the headers and the graph, where faiss could trip
        for _ in range(1 + trial % 3):
            offset = int(rng.integers(0, graph_end if trial % 4 else len(data)))
            data[offset] ^= 1 << int(rng.integers(0, 8))
        (generation / "index.faiss").write_bytes(bytes(data))
        rewrite_index_checksums(generation)
        folders.append(folder)
    outcomes = [line.split()[0] for line in _run(folders)]
    assert set(outcomes) <= {"ok", "BundleError"} and "BundleError" in outcomes, outcomes
