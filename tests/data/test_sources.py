"""Corpora from files on disk (edgeret.data.sources): a user-style corpus written by the test, with bad records of
every kind; ids, pairs, roles, splits, the bad-record report and threshold, identity, loading, a teacher cache."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from edgeret.data.items import Corpus
from edgeret.data.records import MAX_LINE_BYTES
from edgeret.data.sources import (
    DEFAULT_QUERY_INSTRUCTION,
    BadRecordsError,
    FileCorpus,
    ImageFolderSource,
    RecordsSource,
    TextsSource,
    allowed_bad,
    rescan,
    scan_sources,
    source_from_dict,
)
from edgeret.data.splits import split_of


def _image(path: Path, size=(16, 12), color=(200, 30, 30), mode="RGB", fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 128).save(path, format=fmt)


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width x height`` RGB pixels (no real pixel data: header checks only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
                     + chunk(b"IEND", b""))


def _jsonl(path: Path, lines: list) -> None:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


@pytest.fixture()
def user(tmp_path: Path) -> Path:
    """What a user has on disk: a photo folder, captions as JSONL and CSV, query/document pairs as TSV, notes."""
    root = tmp_path / "user"
    photos = root / "photos"
    _image(photos / "cats" / "tabby.png")
    _image(photos / "cats" / "kitten.JPG", color=(10, 200, 10))
    _image(photos / "dogs" / "puppy.webp", color=(10, 10, 200))
    _image(photos / "dogs" / "old" / "rex.gif", mode="L")
    _image(photos / "misc" / "scan.bmp")
    _image(photos / "misc" / "scan.tiff", mode="L")
    _image(photos / "misc" / "fax.tif")
    (photos / "README.md").write_text("not an image")
    _image(photos / ".thumb.png")  # hidden: skipped
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")  # undecodable
    _image(photos / "strip.png", size=(1, 40))  # more elongated than 32:1
    _png_header(photos / "huge.png", 7000, 7000)  # ~190 MiB to decode, over the runtime's budget
    _png_header(photos / "bomb.png", 20000, 20000)  # over Pillow's decompression-bomb limit
    _image(tmp_path / "elsewhere" / "secret.png")
    (photos / "leak.png").symlink_to(tmp_path / "elsewhere" / "secret.png")  # leaves the folder
    (photos / "outside").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a folder outside
    (photos / "cats" / "again.png").symlink_to(photos / "cats" / "tabby.png")  # a link inside: fine

    caps = root / "captions"
    for name, color in (("red.png", (250, 0, 0)), ("blue.jpg", (0, 0, 250)), ("green.png", (0, 250, 0))):
        _image(caps / "img" / name, color=color)
    _jsonl(caps / "captions.jsonl", [
        {"image": "img/red.png", "text": "a red square"},                                  # 1
        {"id": "blue", "image": "img/blue.jpg", "text": "a blue square", "split": "test"},  # 2
        {"image": "img/missing.png", "text": "gone"},                                       # 3 missing-file
        {"image": "img/red.png", "text": "   "},                                            # 4 empty-text
        "{not json",                                                                        # 5 malformed
        {"id": "blue", "image": "img/green.png", "text": "again"},                          # 6 duplicate-id
        {"image": "img/red.png", "text": "red", "split": "holdout"},                        # 7 unknown-split
        {"image": "../../elsewhere/secret.png", "text": "x"},                               # 8 escapes-folder
        "",                                                                                 # 9 blank: skipped
        {"image": "img/green.png"},                                                         # 10 image only
        {"text": "a caption without its image", "split": "VAL", "extra": "ignored"},        # 11 text only
        {"id": 7, "image": "img/green.png", "text": "a green square"},                      # 12 integer id
    ])
    (root / "captions.csv").write_text(
        "id,image,text,split\n"
        'c1,captions/img/red.png,"red, like a fire engine",\n'
        'c2,captions/img/blue.jpg,"blue\nover two lines",train\n'                          # lines 3-4
        "c3,captions/img/green.png\n"                                                       # 5 malformed
        ",captions/img/green.png,green,\n", encoding="utf-8")                               # 6 id L6
    (root / "pairs.tsv").write_text(
        "query\tdocument\tinstruction\n"
        'what is "red"\tthe colour of blood\t\n'
        "a yellow fruit\tbanana\tFind the fruit that matches.\n"
        "only a query\t\t\n", encoding="utf-8")                                             # 4 empty-text
    (root / "notes.txt").write_bytes(b"first note\n\n  second note  \n\xff\xfebroken\nthird note\n")  # 4: not UTF-8
    return root


def _specs(root: Path) -> list:
    return [ImageFolderSource(root / "photos"), RecordsSource(root / "captions" / "captions.jsonl"),
            RecordsSource(root / "captions.csv", image_root=root), RecordsSource(root / "pairs.tsv"),
            TextsSource(root / "notes.txt")]


def _scan(root: Path, **kwargs) -> FileCorpus:
    return scan_sources(_specs(root), progress=False, **{"max_bad": 0.5, **kwargs})


def _by_id(corpus: Corpus) -> dict:
    return {item.id: item for item in corpus.iter_items()}


def test_ids_groups_and_roles(user: Path) -> None:
    corpus = _scan(user)
    items = _by_id(corpus)
    assert isinstance(corpus, Corpus) and len(corpus) == len(items)
    folder = sorted(i for i in items if i.startswith("photos:"))
    assert folder == ["photos:cats/again.png", "photos:cats/kitten.JPG", "photos:cats/tabby.png",
                      "photos:dogs/old/rex.gif", "photos:dogs/puppy.webp", "photos:misc/fax.tif",
                      "photos:misc/scan.bmp", "photos:misc/scan.tiff"]
    assert [i for i in corpus.iter_ids() if i.startswith("photos:")] == folder  # sorted walk
    tabby = items["photos:cats/tabby.png"]
    assert (tabby.kind, tabby.group, tabby.role, tabby.origin) == ("image", None, None, f"{user}/photos/cats/tabby.png")
    assert tabby.path == str((user / "photos" / "cats" / "tabby.png").resolve())

    red, red_caption = items["captions.jsonl:L1:image"], items["captions.jsonl:L1:text"]
    assert red.group == red_caption.group == "captions.jsonl:L1"
    assert (red_caption.text, red_caption.role, red_caption.instruction) == ("a red square", None, None)
    assert red_caption.origin.endswith("captions.jsonl:1")
    assert items["captions.jsonl:blue:text"].split == "test" and "captions.jsonl:7:image" in items
    assert items["captions.jsonl:L10"].kind == "image" and items["captions.jsonl:L10"].group is None
    assert items["captions.jsonl:L11"].text == "a caption without its image"

    assert items["captions.csv:c1:text"].text == "red, like a fire engine"
    assert items["captions.csv:c2:text"].text == "blue\nover two lines"
    assert items["captions.csv:L6:image"].path == str((user / "captions" / "img" / "green.png").resolve())

    query, document = items["pairs.tsv:L2:query"], items["pairs.tsv:L2:document"]
    assert (query.text, query.role, query.instruction) == ('what is "red"', "query", DEFAULT_QUERY_INSTRUCTION)
    assert (document.text, document.role, document.instruction) == ("the colour of blood", None, None)
    assert query.group == document.group == "pairs.tsv:L2"
    assert items["pairs.tsv:L3:query"].instruction == "Find the fruit that matches."
    assert [items[i].text for i in ("notes.txt:L1", "notes.txt:L3", "notes.txt:L5")] == \
        ["first note", "second note", "third note"]
    assert corpus.instructions() == {"image": [""], "text": ["", DEFAULT_QUERY_INSTRUCTION,
                                                            "Find the fruit that matches."]}
    assert corpus.ids_sha256() == Corpus("copy", list(corpus.iter_items())).ids_sha256()


EXPECTED_BAD = {
    "photos/broken.png": "undecodable-image", "photos/strip.png": "oversized-image",
    "photos/huge.png": "oversized-image", "photos/bomb.png": "oversized-image",
    "photos/leak.png": "escapes-folder", "photos/outside": "escapes-folder",
    "captions.jsonl:3": "missing-file", "captions.jsonl:4": "empty-text", "captions.jsonl:5": "malformed",
    "captions.jsonl:6": "duplicate-id", "captions.jsonl:7": "unknown-split", "captions.jsonl:8": "escapes-folder",
    "captions.csv:5": "malformed", "pairs.tsv:4": "empty-text", "notes.txt:4": "malformed",
}


def test_every_bad_record_is_reported_with_its_place_and_counted(user: Path) -> None:
    report = _scan(user).report
    found = {p.origin.removeprefix(f"{user}/").replace("captions/captions.jsonl", "captions.jsonl"): p
             for p in report.problems}
    assert {origin: p.reason for origin, p in found.items()} == EXPECTED_BAD
    assert report.bad == dict(Counter(EXPECTED_BAD.values()))
    assert report.ignored == 1  # README.md (hidden files are not even looked at)
    assert "first at" in found["captions.jsonl:6"].message and "captions.jsonl:2" in found["captions.jsonl:6"].message
    assert "img/missing.png" in found["captions.jsonl:3"].message
    assert "holdout" in found["captions.jsonl:7"].message
    assert "32:1" in found["photos/strip.png"].message and "MiB" in found["photos/huge.png"].message
    assert "not UTF-8" in found["notes.txt:4"].message and "columns" in found["captions.csv:5"].message
    assert str(found["captions.jsonl:5"]).endswith("[malformed]")
    assert report.sources["photos"]["bad"] == 6 and report.sources["notes.txt"]["records"] == 3
    assert report.seen == report.records + len(EXPECTED_BAD)


def test_long_lines_and_non_object_lines_are_malformed(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"text": "x" * (MAX_LINE_BYTES + 10)}) + "\n"
                    + "[1, 2]\n" + json.dumps({"text": 5}) + "\n" + json.dumps({"document": "d", "instruction": "i"})
                    + "\n" + json.dumps({"text": "last"}))
    corpus = scan_sources([RecordsSource(path)], progress=False, max_bad=1.0)
    assert [p.origin for p in corpus.report.problems] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "longer than" in corpus.report.problems[0].message
    assert [i.text for i in corpus.iter_items()] == ["ok", "last"]


def test_splits_are_stable_shared_by_a_group_and_explicit_ones_win(user: Path) -> None:
    first, again = _by_id(_scan(user)), _by_id(_scan(user))
    assert {i: it.split for i, it in first.items()} == {i: it.split for i, it in again.items()}
    groups: dict = {}
    for item in first.values():
        if item.group is not None:
            groups.setdefault(item.group, set()).add(item.split)
    assert groups and all(len(splits) == 1 for splits in groups.values())
    assert first["captions.jsonl:blue:image"].split == "test" and first["captions.jsonl:L11"].split == "val"
    assert first["captions.csv:c2:image"].split == "train"
    assert first["captions.jsonl:L1:image"].split == split_of("captions.jsonl:L1", (0.8, 0.1, 0.1), 0)
    assert first["notes.txt:L1"].split == split_of("notes.txt:L1", (0.8, 0.1, 0.1), 0)
    other = _by_id(_scan(user, fractions=(0.2, 0.4, 0.4), seed=3))
    assert other["captions.jsonl:blue:image"].split == "test"
    assert any(other[i].split != first[i].split for i in first)


def test_a_source_split_holds_its_records_unless_they_say_otherwise(user: Path) -> None:
    specs = [RecordsSource(user / "captions" / "captions.jsonl", split="train"), TextsSource(user / "notes.txt",
                                                                                           split="train")]
    items = _by_id(scan_sources(specs, progress=False, max_bad=0.5))
    assert items["captions.jsonl:blue:image"].split == "test" and items["captions.jsonl:L11"].split == "val"
    assert {it.split for i, it in items.items() if i.startswith("notes.txt:")} == {"train"}
    assert items["captions.jsonl:L1:image"].split == "train"
    assert specs[1].describe()["split"] == "train" and "split" not in TextsSource(user / "notes.txt").describe()
    with pytest.raises(ValueError, match="split 'holdout' is not one of train, val, test"):
        scan_sources([TextsSource(user / "notes.txt", split="holdout")], progress=False)


def test_too_many_bad_records_fail_the_scan_with_the_list(user: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRecordsError) as caught:
        _scan(user, max_bad=0.01)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and caught.value.report.bad_total == len(EXPECTED_BAD)
    assert "more than the 5 allowed" in message and "duplicate-id 1" in message and "oversized-image 3" in message
    assert "captions.jsonl:5: not valid JSON" in message and "strip.png" in message
    with pytest.raises(BadRecordsError):
        _scan(user, max_bad=0.01, workdir=tmp_path / "work")
    assert not list((tmp_path / "work").iterdir())  # nothing half-written is left
    assert allowed_bad(20, 0.01) == 5 and allowed_bad(10_000, 0.01) == 100 and allowed_bad(20, 0.0) == 0


def test_one_bad_record_in_twenty_is_not_fatal_but_max_bad_zero_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(19)) + b"\xff\n")
    assert len(scan_sources([TextsSource(path)], progress=False)) == 19
    with pytest.raises(BadRecordsError, match="1 of 20 records are bad"):
        scan_sources([TextsSource(path)], progress=False, max_bad=0)


def test_sources_mix_and_names_must_be_unique(tmp_path: Path) -> None:
    for folder, text in (("a", "alpha\n"), ("b", "beta\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_text(text)
    with pytest.raises(ValueError, match="'notes.txt' is used more than once"):
        scan_sources([TextsSource(tmp_path / "a" / "notes.txt"), TextsSource(tmp_path / "b" / "notes.txt")])
    corpus = scan_sources([TextsSource(tmp_path / "a" / "notes.txt"), TextsSource(tmp_path / "b" / "notes.txt", "b")],
                          progress=False)
    assert corpus.ids == ["notes.txt:L1", "b:L1"] and corpus.name == "notes.txt+b"
    with pytest.raises(ValueError, match="without ':'"):
        scan_sources([TextsSource(tmp_path / "a" / "notes.txt", "a:b")])
    with pytest.raises(FileNotFoundError, match="no such folder"):
        scan_sources([ImageFolderSource(tmp_path / "nothing")])
    with pytest.raises(ValueError, match="format"):
        scan_sources([RecordsSource(tmp_path / "a" / "notes.txt")])


def test_the_fingerprint_follows_the_content(user: Path) -> None:
    base = _scan(user).meta
    assert _scan(user).meta == base
    assert base["counts"]["items"] == len(_scan(user)) and base["split_seed"] == 0
    assert [s["kind"] for s in base["sources"]] == ["images", "records", "records", "records", "texts"]
    assert base["sources"][0]["path"] == str((user / "photos").resolve())
    caps = user / "captions" / "captions.jsonl"
    caps.write_text(caps.read_text().replace("a red square", "a scarlet square"))
    changed = _scan(user).meta
    assert changed["fingerprint"] != base["fingerprint"] and changed["counts"] == base["counts"]
    tabby = user / "photos" / "cats" / "tabby.png"
    os.utime(tabby, ns=(tabby.stat().st_atime_ns, tabby.stat().st_mtime_ns + 10**9))
    touched = _scan(user).meta
    assert touched["fingerprint"] != changed["fingerprint"]
    (user / "photos" / "notes.txt").write_text("another non-image file")  # not a record: same identity
    assert _scan(user).meta == touched
    assert _scan(user, seed=1).meta != _scan(user).meta


def test_items_load_with_the_runtime_loader(user: Path) -> None:
    corpus = _scan(user)
    loaded = [(item, item.load()) for item in corpus.iter_items(chunk=3)]
    images = [payload for item, payload in loaded if item.kind == "image"]
    assert len(images) == 15 and all(isinstance(image, Image.Image) and image.size == (16, 12) for image in images)
    assert all(isinstance(payload, str) and payload for item, payload in loaded if item.kind == "text")
    assert corpus.items[-1].id == "notes.txt:L5" and corpus.slice(0, 2) == corpus.items[:2]
    assert [i.id for i in corpus.items[1:6:2]] == [corpus.items[1].id, corpus.items[3].id, corpus.items[5].id]
    with pytest.raises(IndexError):
        corpus.items[len(corpus)]


def test_workdir_table_reopens_and_a_temporary_one_is_removed(user: Path, tmp_path: Path) -> None:
    corpus = _scan(user, workdir=tmp_path / "work")
    assert corpus.path.parent == (tmp_path / "work").resolve() and corpus.path.name.endswith(".items.sqlite")
    reopened = FileCorpus.open(corpus.path)
    assert reopened.ids == corpus.ids and reopened.meta == corpus.meta
    assert reopened.report.bad == corpus.report.bad and reopened.report.problems == corpus.report.problems
    copy = pickle.loads(pickle.dumps(corpus))
    assert copy.slice(0, 5) == corpus.slice(0, 5)
    temporary = _scan(user)
    path = temporary.path
    assert path.exists() and pickle.loads(pickle.dumps(temporary)).ids == temporary.ids
    temporary.close()
    assert not path.exists()


def test_rescan_gives_the_same_corpus_or_says_what_changed(user: Path) -> None:
    corpus = _scan(user)
    again = rescan(json.loads(json.dumps(corpus.meta)))
    assert again.ids == corpus.ids and again.meta == corpus.meta
    (user / "notes.txt").write_text("a new note\n")
    with pytest.raises(ValueError, match="changed since"):
        rescan(corpus.meta)


def test_source_from_dict_reads_recipe_entries(tmp_path: Path) -> None:
    spec = source_from_dict({"type": "records", "path": "data/pairs.tsv", "name": "pairs", "image_root": "img",
                             "instruction": "Find it."}, tmp_path)
    assert spec == RecordsSource(str(tmp_path / "data" / "pairs.tsv"), "pairs", "Find it.", str(tmp_path / "img"))
    assert source_from_dict({"type": "images", "path": "/abs/photos"}, tmp_path) == ImageFolderSource("/abs/photos")
    assert isinstance(source_from_dict({"type": "texts", "path": "n.txt"}, tmp_path), TextsSource)
    for bad, message in (({"type": "videos", "path": "x"}, "not one of"), ({"type": "texts"}, "'path'"),
                         ({"type": "texts", "path": "x", "colour": 1}, "unknown key"), (["x"], "an object")):
        with pytest.raises(ValueError, match=message):
            source_from_dict(bad, tmp_path)


def test_records_options_headers_and_unusable_tables(tmp_path: Path) -> None:
    _image(tmp_path / "shared" / "a.png")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "pairs.txt").write_text("text,image\nred,a.png\nleak,../../secret.png\n")
    spec = RecordsSource(tmp_path / "lists" / "pairs.txt", format="CSV", image_root=tmp_path / "shared")
    corpus = scan_sources([spec], progress=False)
    assert corpus.ids == ["pairs.txt:L2:image", "pairs.txt:L2:text"]
    assert [p.reason for p in corpus.report.problems] == ["escapes-folder"]
    (tmp_path / "lists" / "nothing.csv").write_text("title,url\nx,y\n")
    with pytest.raises(ValueError, match="names none of the columns"):
        scan_sources([RecordsSource(tmp_path / "lists" / "nothing.csv")], progress=False)
    (tmp_path / "lists" / "empty.tsv").write_text("text\n\n")
    with pytest.raises(ValueError, match="no usable record"):
        scan_sources([RecordsSource(tmp_path / "lists" / "empty.tsv")], progress=False)
    (tmp_path / "not-a-table.sqlite").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a finished corpus table"):
        FileCorpus.open(tmp_path / "not-a-table.sqlite")
    with pytest.raises(FileNotFoundError):
        FileCorpus.open(tmp_path / "missing.sqlite")


def test_scanning_imports_no_torch(user: Path) -> None:
    code = ("import sys; from edgeret.data.sources import ImageFolderSource, scan_sources; "
            "c = scan_sources([ImageFolderSource(sys.argv[1])], progress=False, max_bad=1.0); "
            "c.items[0].load(); assert 'torch' not in sys.modules, 'torch imported'; print(len(c))")
    done = subprocess.run([sys.executable, "-c", code, str(user / "photos")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8"


def test_a_teacher_cache_of_a_file_corpus(user: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgeret.distill.cache import build_cache, load_cache  # torch: only this test needs distill
    from tests.distill.fake_teacher import FakeTeacher  # torch: the fake teacher subclasses distill's Teacher

    corpus = _scan(user)
    teacher = FakeTeacher(dim=16)
    cache = build_cache(teacher, corpus, tmp_path / "cache", shard_size=8, batch_size=4, progress=False)
    assert cache.ids == corpus.ids and cache.embeddings.shape == (len(corpus), 16)
    assert load_cache(tmp_path / "cache", expect_teacher=teacher, expect_corpus=corpus).meta["corpus"]["meta"] == \
        json.loads(json.dumps(corpus.meta))
    assert build_cache(teacher, _scan(user), tmp_path / "cache", shard_size=8, progress=False).ids == cache.ids


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_big_text_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """200,000 lines: the scan and a pass over the ids stay within 40 MiB of RSS growth (peak, sampled). Holding
    the corpus would not: 200,000 CorpusItems alone take ~78 MiB. What does grow is bounded by settings, not by
    the corpus: SQLite's page cache (8 MiB), the in-memory journal of one 50,000-row transaction, a batch of 512
    records and the allocator's slack."""
    path = tmp_path / "big.txt"
    with open(path, "w") as handle:
        handle.writelines(f"document number {i} about things\n" for i in range(200_000))
    small = tmp_path / "small.txt"
    small.write_text("".join(f"warm-up line {i}\n" for i in range(2_000)))
    scan_sources([TextsSource(small)], progress=False).close()  # warm up: imports, first-use allocations
    start, peak, done = _rss_kib(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        corpus = scan_sources([TextsSource(path)], progress=False)
        assert len(corpus) == 200_000 and len(corpus.ids_sha256()) == 64
    finally:
        done.set()
        sampler.join()
    growth_mib = (max(peak[0], _rss_kib()) - start) / 1024
    print(f"scan: {corpus.report.summary()}; RSS growth {growth_mib:.1f} MiB")
    assert growth_mib < 40
    corpus.close()
