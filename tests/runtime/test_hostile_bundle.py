"""Hostile bundles (issue 14, items 2, 3, 6 and 8): paths that leave the bundle, planted symlinks, leftovers of
killed saves, crafted graph files and malformed manifests all end in a BundleError, never outside the bundle."""

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from edgeret.runtime.bundle import load_manifest
from edgeret.runtime.errors import BundleError
from edgeret.runtime.retriever import Retriever

from .conftest import CHILD_CWD, random_unit
from .hostile import edit_json, rewrite_index_checksums, set_level0_link


def _saved(bundle, n=50):
    r = Retriever.open(bundle, threads=1)
    r.add_embeddings([f"k{i}" for i in range(n)], random_unit(n, 32), [{"n": i} for i in range(n)])
    return r, r.save()


def _victims(tmp_path):
    outside = tmp_path / "outside"
    (outside / "gen-000001").mkdir(parents=True)
    (outside / "gen-000001" / "photo.jpg").write_text("precious")
    (outside / ".notes.tmp").write_text("precious")
    return outside


def _intact(outside):
    return (outside / "gen-000001" / "photo.jpg").read_text() == "precious" == (outside / ".notes.tmp").read_text()


@pytest.mark.parametrize("where", ["relative", "absolute", "symlink"])
def test_index_path_cannot_leave_the_bundle(bundle, tmp_path, where):
    outside = _victims(tmp_path)
    if where == "symlink":
        (bundle / "index").symlink_to(outside)
    else:
        path = "../outside" if where == "relative" else str(outside)
        edit_json(bundle / "manifest.json", lambda d: d["index"].update(path=path))
    with pytest.raises(BundleError, match="outside the bundle|relative path inside the bundle"):
        r = Retriever.open(bundle, threads=1)
        r.add_embeddings(["x"], random_unit(1, 32))
        r.save()
    assert _intact(outside) and sorted(p.name for p in outside.iterdir()) == [".notes.tmp", "gen-000001"]


@pytest.mark.parametrize("name", ["tokenizer.json", "preprocessor.json", "text_encoder.onnx"])
def test_bundle_files_cannot_be_symlinks_out_of_the_bundle(bundle, tmp_path, name):
    target = tmp_path / f"elsewhere-{name}"
    target.write_bytes((bundle / name).read_bytes())  # same bytes: only the location is wrong
    (bundle / name).unlink()
    (bundle / name).symlink_to(target)
    with pytest.raises(BundleError, match="leads outside the bundle"):
        Retriever.open(bundle, threads=1, lazy_image=False)


def test_index_files_cannot_be_symlinks_out_of_the_bundle(bundle, tmp_path):
    _, generation = _saved(bundle)
    stolen = tmp_path / "stolen.sqlite"
    stolen.write_bytes((generation / "meta.sqlite").read_bytes())
    (generation / "meta.sqlite").unlink()
    (generation / "meta.sqlite").symlink_to(stolen)
    with pytest.raises(BundleError, match="leads outside"):
        Retriever.open(bundle, threads=1)


def test_planted_symlinks_at_temporary_names_are_never_written_through(bundle, tmp_path):
    r, _ = _saved(bundle)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    pid = os.getpid()
    for planted in (bundle / f".manifest.json.{pid}.tmp", bundle / "index" / f".CURRENT.{pid}.tmp",
                    bundle / "index" / f".index.json.{pid}.tmp"):
        planted.symlink_to(victim)
    r.add_embeddings(["new"], random_unit(1, 32, seed=5))
    r.save()
    assert victim.read_text() == "precious"
    assert "new" in Retriever.open(bundle, threads=1)


def test_leftovers_of_killed_saves_are_cleaned_without_following_symlinks(bundle, tmp_path):
    r, _ = _saved(bundle)
    victim, victim_dir = tmp_path / "victim.txt", tmp_path / "victim-dir"
    victim.write_text("precious")
    victim_dir.mkdir()
    (victim_dir / "keep.txt").write_text("precious")
    (bundle / ".manifest.json.4242.tmp").write_text("{half a manifest")  # what a kill mid-update leaves
    (bundle / ".manifest.json.4243.tmp").symlink_to(victim)
    (bundle / "index" / ".CURRENT.4242.tmp").write_text("{")
    (bundle / "index" / ".tmp-0123abcd").mkdir()
    (bundle / "index" / ".tmp-0123abcd" / "hnsw.bin").write_bytes(b"partial")
    (bundle / "index" / ".tmp-link").symlink_to(victim_dir)
    (bundle / "index" / "gen-000077").symlink_to(victim_dir)
    r.add_embeddings(["new"], random_unit(1, 32, seed=5))
    r.save()
    names = {p.name for p in bundle.iterdir()} | {p.name for p in (bundle / "index").iterdir()}
    assert not {n for n in names if n.endswith(".tmp") or n.startswith(".tmp-") or n == "gen-000077"}, names
    assert victim.read_text() == "precious" and (victim_dir / "keep.txt").read_text() == "precious"


CRASH_CHILD = r"""
import sys
from edgeret.runtime.errors import BundleError
from edgeret.runtime.retriever import Retriever

for verify in ("size", True):
    try:
        r = Retriever.open(sys.argv[1], threads=1, verify=verify)
        r.search(vector=[1.0] * 32, k=5, exact=False)
        r.search(text="red apple", k=5, exact=False)
        print("ok", flush=True)
    except BundleError as exc:
        print("BundleError", str(exc)[:200], flush=True)
"""


def _open_in_child(bundle):
    out = subprocess.run([sys.executable, "-c", CRASH_CHILD, str(bundle)], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ), cwd=CHILD_CWD)
    assert out.returncode == 0, f"the child died ({out.returncode}): {out.stderr[-500:]}"
    return out.stdout.split("\n")


@pytest.mark.parametrize("craft", ["link-ids", "link-count", "entry-point", "upper-level"])
def test_crafted_graph_files_are_refused_not_segfaults(bundle, craft):
    _, generation = _saved(bundle, n=300)
    path = generation / "hnsw.bin"
    data = bytearray(path.read_bytes())
    if craft == "link-ids":
        for element in range(300):
            set_level0_link(path, element, 0, 0x7FFFFFFF, count=1)
    elif craft == "link-count":
        set_level0_link(path, 3, 0, 1, count=60000)
    elif craft == "entry-point":
        data[52:56] = (10**6).to_bytes(4, sys.byteorder)
        path.write_bytes(bytes(data))
    else:
        tail = 96 + 300 * int.from_bytes(data[24:32], sys.byteorder)
        words = np.frombuffer(bytes(data[tail:]), dtype=np.uint32).copy()
        first = int(np.flatnonzero(words)[0])
        words[first + 2] = 0x7FFFFFF0  # a link id in the first upper-level list
        path.write_bytes(bytes(data[:tail]) + words.tobytes())
    rewrite_index_checksums(generation)
    lines = _open_in_child(bundle)
    assert lines[0].startswith("BundleError") and "malformed hnswlib index" in lines[0], lines
    assert lines[1].startswith("BundleError"), lines


FLIP_CHILD = r"""
import sys
import numpy as np
from edgeret.runtime.errors import BundleError
from edgeret.runtime.retriever import Retriever

bundle, hnsw, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
original = open(hnsw, "rb").read()
per_element = int.from_bytes(original[24:32], sys.byteorder)
rng = np.random.default_rng(14)
fields = [53, 54, 55, 48, 49, 72, 24]  # entry point (bytes 1-3), maxlevel, maxM0, size_data_per_element
for trial in range(trials):
    data = bytearray(original)
    if trial < len(fields):  # header fields hnswlib trusts: an entry-point bit crashed it every time
        offset = fields[trial]
    elif trial % 2:  # the high byte of a level-0 link id or link count
        offset = 96 + int(rng.integers(0, 300)) * per_element + int(rng.choice([1, 7]))
    else:  # anywhere in the header or the first elements
        offset = int(rng.integers(0, 96 + 20 * per_element))
    data[offset] ^= 1 << int(rng.integers(0, 8))
    open(hnsw, "wb").write(bytes(data))
    try:
        r = Retriever.open(bundle, threads=1, verify="size")
        r.search(vector=rng.standard_normal(32), k=10, exact=False)
        print("ok", flush=True)
    except BundleError:
        print("BundleError", flush=True)
"""


def test_flipped_bits_in_the_graph_never_crash_the_fast_start(bundle):
    _, generation = _saved(bundle, n=300)
    out = subprocess.run([sys.executable, "-c", FLIP_CHILD, str(bundle), str(generation / "hnsw.bin"), "16"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ), cwd=CHILD_CWD)
    assert out.returncode == 0, f"the child died ({out.returncode}) after {out.stdout.split()}"
    outcomes = out.stdout.split()
    assert len(outcomes) == 16 and set(outcomes) <= {"ok", "BundleError"} and "BundleError" in outcomes


def _deep(levels):
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(producer="DEEP"), "nested too deeply"),
    (lambda d: d["files"].update({"tokenizer.json": None}), r"files\['tokenizer.json'\]: must be an object"),
    (lambda d: d["files"].update({"tokenizer.json": {"sha256": 5, "bytes": 1}}), "sha256"),
    (lambda d: d["index"].update(M=10**30), "'M' is 1000000000000000000000000000000; it must be in 2..1024"),
    (lambda d: d["index"].update(M=1e30), "'M' is missing or not a int"),
    (lambda d: d["index"].update(ef_search=2**64), "ef_search"),
    (lambda d: d["text_encoder"].update(max_length=2**64), "max_length"),
    (lambda d: d["text_encoder"].update(inputs={"input_ids": None}), "inputs"),
    (lambda d: d["embedding"].update(dim=10**20), "dim"),
    (lambda d: d["embedding"].update(matryoshka_dims={"a": 1}), "matryoshka_dims"),
    (lambda d: d.update(text_encoder=[1, 2]), "text_encoder"),
    (lambda d: d.update(files=None), "files"),
    (lambda d: d.update(version="1" * 5000 + ".0"), "MAJOR.MINOR"),
    (lambda d: d["image_encoder"].update(file=None), "image_encoder"),
    (lambda d: d["index"].update(path="text_encoder.onnx"), "holds bundle file|not a folder"),
    (lambda d: d["index"].update(path="."), "not the bundle itself"),
], ids=["deep", "null-entry", "bad-sha", "M-huge-int", "M-float", "ef-2**64", "max_length-2**64", "null-input",
        "dim-huge", "mrl-dict", "tower-list", "files-null", "version-long", "file-null", "index-on-file", "index-root"])
def test_malformed_manifests_are_bundle_errors(bundle, edit, message):
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data).replace('"DEEP"', _deep(100_000)))
    with pytest.raises(BundleError, match=message):
        Retriever.open(bundle, threads=1)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(next_label=10**12), "next_label"),
    (lambda m: m.update(count=10**30), "count"),
    (lambda m: m.update(M=4), "M is 16, expected 4"),
    (lambda m: m.update(files={"hnsw.bin": None, "meta.sqlite": None}), "must be an object"),
    (lambda m: m.update(space=["cosine"]), "space"),
], ids=["next_label", "count", "M", "files", "space"])
def test_malformed_index_json_is_a_bundle_error(bundle, edit, message):
    _, generation = _saved(bundle)
    edit_json(generation / "index.json", edit)
    with pytest.raises(BundleError, match=message):
        Retriever.open(bundle, threads=1, verify=False)


@pytest.mark.parametrize("sql, message", [
    ("CREATE TRIGGER slow AFTER INSERT ON items BEGIN SELECT 1; END", "unexpected tables, indexes or triggers"),
    ("UPDATE items SET id = x'00ff' WHERE label = 3", "an id that is not a non-empty string"),
    ("UPDATE items SET label = -5 WHERE label = 3", "negative label"),
    ("UPDATE items SET metadata = '[1, 2]' WHERE label = 3", "not a JSON object"),
], ids=["trigger", "blob-id", "negative-label", "list-metadata"])
def test_a_tampered_metadata_database_is_refused(bundle, sql, message):
    _, generation = _saved(bundle)
    conn = sqlite3.connect(generation / "meta.sqlite")
    conn.execute(sql)
    conn.commit()
    conn.close()
    rewrite_index_checksums(generation)
    with pytest.raises(BundleError, match=message):
        Retriever.open(bundle, threads=1)


def test_a_symlinked_pointer_or_generation_is_refused(bundle, tmp_path):
    _, generation = _saved(bundle)
    moved = tmp_path / "gen-moved"
    generation.rename(moved)
    generation.symlink_to(moved)
    with pytest.raises(BundleError, match="symlink"):
        load_manifest(bundle)
