"""Tests for the teacher cache: contents, metadata, resumability, mismatch checks, data parallelism."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeret.data.items import Corpus, CorpusItem
from edgeret.distill.cache import CacheMismatchError, TeacherCache, build_cache, load_cache
from edgeret.distill.teachers.base import Teacher

REPO = Path(__file__).resolve().parents[2]
QUERY = "Find an image that matches the given text."
N_ITEMS, SHARD, BATCH = 53, 8, 3  # 7 shards, the last one short
N_SHARDS = -(-N_ITEMS // SHARD)


class HashTeacher(Teacher):
    """Deterministic stand-in: text -> seeded hash of (instruction, text) through a fixed projection;
    image -> pixel statistics through a fixed projection. Each row depends on its input only.

    Records every batch call (``calls``) and every input it embedded (``seen``, as item keys), and
    raises after ``fail_after`` batch calls to simulate a crash.
    """

    dim = 16

    def __init__(self, name: str = "hash-teacher", seed: int = 0, fail_after: int | None = None) -> None:
        self.id = name
        self.seed = seed
        self.fail_after = fail_after
        self.calls = 0
        self.seen: list[str] = []
        self.max_batch = 0
        rng = np.random.default_rng(seed)
        self.text_proj = rng.standard_normal((32, self.dim))
        self.image_proj = rng.standard_normal((8, self.dim))

    def describe(self) -> dict:
        return {**super().describe(), "revision": f"seed-{self.seed}", "image_resolution": 12}

    def _tick(self, n: int) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.max_batch = max(self.max_batch, n)

    def _encode_text_batch(self, texts: list[str], instruction: str | None) -> np.ndarray:
        self._tick(len(texts))
        rows = []
        for text in texts:
            self.seen.append(text_key(text, instruction))
            digest = hashlib.sha256(f"{self.seed}\0{instruction or ''}\0{text}".encode()).digest()
            feat = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(32)
            rows.append(feat @ self.text_proj)
        return np.stack(rows)

    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        self._tick(len(images))
        rows = []
        for image in images:
            self.seen.append(image_key(image))
            px = np.asarray(image, dtype=np.float64) / 255.0
            h, w = px.shape[:2]
            feat = np.concatenate(
                [px.mean(axis=(0, 1)), px.std(axis=(0, 1)), [px[: h // 2].mean(), px[:, : w // 2].mean()]]
            )
            rows.append((feat - 0.5) @ self.image_proj)
        return np.stack(rows)


def text_key(text: str, instruction: str | None) -> str:
    return f"t|{instruction}|{text}"


def image_key(image: Image.Image) -> str:
    return "i|" + hashlib.sha1(image.convert("RGB").tobytes()).hexdigest()


def render(item_id: str) -> Image.Image:
    seed = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "little")
    pixels = np.random.default_rng(seed).integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return Image.fromarray(pixels).resize((12, 12), Image.NEAREST)


def make_item(i: int) -> CorpusItem:
    """Interleaved kinds and instructions, so shards mix all three groups."""
    if i % 5 in (0, 3):
        item_id = f"img:{i}"
        return CorpusItem(id=item_id, kind="image", image_fn=lambda: render(item_id))
    if i % 5 == 1:
        return CorpusItem(id=f"q:{i}", kind="text", text=f"query number {i}", instruction=QUERY)
    return CorpusItem(id=f"doc:{i}", kind="text", text=f"document number {i}")


def make_corpus(n: int = N_ITEMS, reverse: bool = False, seed: int = 1) -> Corpus:
    items = [make_item(i) for i in range(n)]
    return Corpus("synthetic", items[::-1] if reverse else items, meta={"seed": seed, "n": n})


def item_key(item: CorpusItem) -> str:
    return text_key(item.text, item.instruction) if item.kind == "text" else image_key(item.load())


def shard_keys(corpus: Corpus, shards: list[int]) -> list[str]:
    rows = [j for i in shards for j in range(i * SHARD, min((i + 1) * SHARD, N_ITEMS))]
    return sorted(item_key(corpus.items[j]) for j in rows)


def direct_embeddings(teacher: Teacher, corpus: Corpus) -> np.ndarray:
    """What the cache must hold: each item embedded on its own through the public API."""
    rows = []
    for item in corpus.items:
        if item.kind == "text":
            rows.append(teacher.embed_texts([item.text], instruction=item.instruction)[0])
        else:
            rows.append(teacher.embed_images([item.load()])[0])
    return np.stack(rows)


def build(teacher: Teacher, corpus: Corpus, out: Path, **kwargs) -> TeacherCache:
    kwargs = {"shard_size": SHARD, "batch_size": BATCH, "progress": False, **kwargs}
    return build_cache(teacher, corpus, out, **kwargs)


def finished_shards(out: Path) -> list[int]:
    return sorted(int(p.name[6:11]) for p in (out / "shards").glob("shard-*.f16.npy"))


def crash_build(out: Path, fail_after: int = 10) -> list[int]:
    """Run a build that crashes after ``fail_after`` batches; returns the shards it finished."""
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(HashTeacher(fail_after=fail_after), make_corpus(), out)
    assert not (out / "cache_meta.json").exists()
    done = finished_shards(out)
    assert done == list(range(len(done))) and 0 < len(done) < N_SHARDS
    return done


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> TeacherCache:
    return build(HashTeacher(), make_corpus(), tmp_path_factory.mktemp("clean") / "cache")


def test_cache_matches_direct_embeddings_and_meta(clean: TeacherCache) -> None:
    teacher, corpus = HashTeacher(), make_corpus()
    expected = direct_embeddings(teacher, corpus)
    assert clean.embeddings.shape == (N_ITEMS, HashTeacher.dim) and clean.embeddings.dtype == np.float16
    np.testing.assert_allclose(clean.embeddings.astype(np.float32), expected, atol=2e-3)
    assert clean.ids == corpus.ids and len(clean) == N_ITEMS and clean.dim == HashTeacher.dim
    # a real .npy and a real JSON id list on disk; shards and plan gone after the merge
    assert np.array_equal(np.load(clean.path / "embeddings.f16.npy"), clean.embeddings)
    assert json.loads((clean.path / "ids.json").read_text()) == corpus.ids
    assert not (clean.path / "shards").exists() and not (clean.path / "plan.json").exists()
    meta = json.loads((clean.path / "cache_meta.json").read_text())
    assert meta["teacher"] == teacher.describe() and meta["teacher"]["revision"] == "seed-0"
    assert meta["corpus"] == {"name": "synthetic", "meta": corpus.meta, "count": N_ITEMS,
                              "ids_sha256": corpus.ids_sha256()}
    assert meta["instructions"] == {"image": [""], "text": ["", QUERY]}
    assert (meta["dim"], meta["normalised"], meta["dtype"]) == (16, True, "float16")
    assert meta["shard_size"] == SHARD
    assert meta["format"] and meta["version"] == 1 and meta["created"]
    assert {"edgeret", "torch", "numpy", "transformers"} <= set(meta["versions"])


def test_rows_and_index_of(clean: TeacherCache) -> None:
    ids = ["img:5", "q:1", "doc:2"]
    rows = clean.rows(ids)
    assert rows.dtype == np.float32 and rows.shape == (3, 16)
    assert np.array_equal(rows[1], clean.embeddings[clean.index_of("q:1")].astype(np.float32))
    assert clean.index_of("img:0") == 0 and clean.rows([]).shape == (0, 16)
    np.testing.assert_allclose(np.linalg.norm(clean.rows(clean.ids), axis=1), 1.0, atol=2e-3)
    with pytest.raises(KeyError, match="nope"):
        clean.index_of("nope")


def test_batches_are_bounded_and_single_kind(tmp_path: Path) -> None:
    teacher = HashTeacher()
    build(teacher, make_corpus(), tmp_path / "c")
    assert teacher.max_batch <= BATCH
    assert sorted(teacher.seen) == shard_keys(make_corpus(), list(range(N_SHARDS)))  # each item once


def test_finished_matching_cache_is_returned_without_work(clean: TeacherCache) -> None:
    teacher = HashTeacher()
    again = build(teacher, make_corpus(), clean.path)
    assert teacher.calls == 0 and np.array_equal(again.embeddings, clean.embeddings)


def test_resume_skips_finished_shards(tmp_path: Path, clean: TeacherCache) -> None:
    out = tmp_path / "c"
    done = crash_build(out)
    teacher = HashTeacher()
    cache = build(teacher, make_corpus(), out)
    assert sorted(teacher.seen) == shard_keys(make_corpus(), list(range(len(done), N_SHARDS)))
    assert np.array_equal(cache.embeddings, clean.embeddings)


def test_temp_and_truncated_shards_do_not_count(tmp_path: Path, clean: TeacherCache) -> None:
    out = tmp_path / "c"
    done = crash_build(out, fail_after=16)
    assert len(done) >= 3
    shard0, shard1, shard2 = (out / "shards" / f"shard-0000{i}.f16.npy" for i in range(3))
    data = shard0.read_bytes()
    (out / "shards" / "shard-00000.f16.npy.tmp-12345").write_bytes(data[: len(data) // 2])
    shard0.unlink()  # crashed before the rename: only the temp file exists
    shard1.write_bytes(shard1.read_bytes()[:-10])  # a damaged file under the final name
    np.save(shard2, np.zeros((SHARD - 1, 16), np.float16))  # a valid .npy of the wrong shape
    teacher = HashTeacher()
    cache = build(teacher, make_corpus(), out, keep_shards=True)
    redo = [0, 1, 2, *range(len(done), N_SHARDS)]
    assert sorted(teacher.seen) == shard_keys(make_corpus(), redo)
    assert not list((out / "shards").glob("*.tmp*")) and finished_shards(out) == list(range(N_SHARDS))
    assert np.array_equal(cache.embeddings, clean.embeddings)


def test_mismatch_is_refused_and_force_rebuilds(clean: TeacherCache, tmp_path: Path) -> None:
    out = tmp_path / "c"
    build(HashTeacher(), make_corpus(), out)
    with pytest.raises(CacheMismatchError, match=r"teacher\.id.*force=True") as info:
        build(HashTeacher(name="other", seed=7), make_corpus(), out)
    assert "teacher.id" in info.value.fields and "teacher.revision" in info.value.fields
    with pytest.raises(CacheMismatchError, match=r"corpus\.ids_sha256"):
        build(HashTeacher(), make_corpus(reverse=True), out)
    with pytest.raises(CacheMismatchError, match=r"corpus\.meta\.seed"):
        build(HashTeacher(), make_corpus(seed=2), out)
    assert isinstance(CacheMismatchError(out, []), ValueError)
    other = HashTeacher(name="other", seed=7)
    cache = build(other, make_corpus(), out, force=True)
    assert cache.meta["teacher"]["id"] == "other" and other.calls > 0
    np.testing.assert_allclose(cache.embeddings.astype(np.float32), direct_embeddings(other, make_corpus()),
                               atol=2e-3)
    assert not np.array_equal(cache.embeddings, clean.embeddings)


def test_unfinished_plan_mismatch(tmp_path: Path, clean: TeacherCache) -> None:
    out = tmp_path / "c"
    crash_build(out)
    with pytest.raises(CacheMismatchError, match="shard_size"):
        build(HashTeacher(), make_corpus(), out, shard_size=4)
    with pytest.raises(CacheMismatchError, match=r"teacher\.id"):
        build(HashTeacher(name="other"), make_corpus(), out)
    teacher = HashTeacher()
    cache = build(teacher, make_corpus(), out, shard_size=4, force=True)
    assert len(teacher.seen) == N_ITEMS and np.array_equal(cache.embeddings, clean.embeddings)


def test_load_cache_checks(clean: TeacherCache, tmp_path: Path) -> None:
    cache = load_cache(clean.path, expect_teacher=HashTeacher().describe(), expect_corpus=make_corpus())
    assert np.array_equal(cache.embeddings, clean.embeddings) and isinstance(cache.embeddings, np.memmap)
    with pytest.raises(CacheMismatchError, match=r"teacher\.id"):
        load_cache(clean.path, expect_teacher=HashTeacher(name="x").describe())
    with pytest.raises(CacheMismatchError, match=r"corpus\.count"):
        load_cache(clean.path, expect_corpus=make_corpus(n=20))
    with pytest.raises(FileNotFoundError, match="cache_meta.json"):
        load_cache(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("embeddings.f16.npy", "cache_meta.json"):
        (broken / name).write_bytes((clean.path / name).read_bytes())
    (broken / "ids.json").write_text(json.dumps(clean.ids[:-1]))
    with pytest.raises(ValueError, match="corrupt teacher cache"):
        load_cache(broken)


def test_reading_does_not_import_torch(clean: TeacherCache) -> None:
    code = ("import sys; from edgeret.distill.cache import load_cache; c = load_cache(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(c), c.rows(['q:1']).shape)")
    out = subprocess.run([sys.executable, "-c", code, str(clean.path)], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(N_ITEMS), "(1,", "16)"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, out: str, log_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        failure = None
        try:  # rank 1 crashes at once: both ranks must raise instead of waiting for each other forever
            build(HashTeacher(fail_after=0 if rank == 1 else None), make_corpus(), Path(out + "-failing"))
        except RuntimeError as exc:
            failure = str(exc)
        teacher = HashTeacher()
        cache = build(teacher, make_corpus(), Path(out))
        record = {"seen": teacher.seen, "len": len(cache), "meta_dim": cache.dim, "failure": failure}
        (Path(log_dir) / f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_process_build_equals_single_process(tmp_path: Path, clean: TeacherCache) -> None:
    import torch.multiprocessing as mp

    out, logs = tmp_path / "dist", tmp_path / "logs"
    logs.mkdir()
    mp.spawn(_dist_worker, args=(2, _free_port(), str(out), str(logs)), nprocs=2, join=True)
    cache = load_cache(out, expect_teacher=HashTeacher().describe(), expect_corpus=make_corpus())
    assert cache.embeddings.dtype == clean.embeddings.dtype
    assert np.array_equal(np.asarray(cache.embeddings), np.asarray(clean.embeddings))
    corpus = make_corpus()
    records = [json.loads((logs / f"rank{rank}.json").read_text()) for rank in range(2)]
    for rank, record in enumerate(records):
        assert record["len"] == N_ITEMS and record["meta_dim"] == 16
        assert sorted(record["seen"]) == shard_keys(corpus, [i for i in range(N_SHARDS) if i % 2 == rank])
    assert records[1]["failure"] == "simulated crash" and "another rank" in records[0]["failure"]
    failed = Path(str(out) + "-failing")
    assert not (failed / "cache_meta.json").exists()
    assert finished_shards(failed) == [i for i in range(N_SHARDS) if i % 2 == 0]  # rank 0's work is kept
