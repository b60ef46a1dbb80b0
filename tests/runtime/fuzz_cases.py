"""The property-based fuzz surfaces of the runtime (hypothesis): images (bytes and arrays), texts, ids + metadata +
filters, and manifests + index files.

The invariant, for every case: a correct answer, or a clear error of the project's own types (ValueError,
TypeError, KeyError and their runtime subclasses BundleError, UnknownIdError) with a short message -- never a
crash, a hang (hypothesis' deadline), a traceback of a foreign type, a write outside the bundle, or the loss of
anything already saved. ``test_fuzz.py`` runs each surface briefly; ``python -m edgeret.bench.hardening`` runs
them at 10,000 cases each (``SURFACES``; ``run_surface`` counts the outcomes).
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from PIL import Image

from edgeret.runtime.bundle import load_manifest
from edgeret.runtime.index import VectorIndex
from edgeret.runtime.retriever import Retriever

from .fuzz_reference import reference_filter
from .hostile import jpeg_with_size, png, png_with_header

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_bundle"
ALLOWED = (ValueError, TypeError, KeyError)  # BundleError, UnknownIdError and the like subclass these
DIM = 32


def expected_error(exc: BaseException) -> str:
    """The outcome name of an allowed error; anything else (or a sprawling message) fails the case."""
    if not isinstance(exc, ALLOWED) or type(exc).__module__.split(".")[0] not in ("builtins", "edgeret"):
        raise AssertionError(f"foreign error {type(exc).__module__}.{type(exc).__name__}: {exc}") from exc
    message = str(exc)
    assert message and len(message) < 2000, f"unclear message ({len(message)} chars)"
    return type(exc).__name__


class Workspace:
    """What the surfaces share: a retriever on the fixture bundle and a scratch bundle with a sentinel beside it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.retriever = Retriever.open(FIXTURE, threads=1)
        self.bundle = self.root / "bundle"
        self.outside = self.root / "outside"
        shutil.copytree(FIXTURE, self.bundle)
        (self.outside / "gen-000001").mkdir(parents=True)
        (self.outside / ".keep.tmp").write_text("sentinel")
        self.manifest = json.loads((self.bundle / "manifest.json").read_text())
        saved = Retriever.open(self.bundle, threads=1)
        saved.add_embeddings([f"s{i}" for i in range(40)], np.random.default_rng(0).standard_normal((40, DIM)))
        generation = saved.save()
        self.generation = {p.name: p.read_bytes() for p in generation.iterdir()}
        self.generation_name = generation.name
        self.reset()

    def reset(self) -> None:
        """The scratch bundle as built: pristine manifest, one saved generation."""
        (self.bundle / "manifest.json").write_text(json.dumps(self.manifest))
        shutil.rmtree(self.bundle / "index", ignore_errors=True)
        folder = self.bundle / "index" / self.generation_name
        folder.mkdir(parents=True)
        for name, blob in self.generation.items():
            (folder / name).write_bytes(blob)
        (self.bundle / "index" / "CURRENT").write_text(json.dumps({"generation": self.generation_name}))

    def outside_intact(self) -> bool:
        return sorted(p.name for p in self.outside.iterdir()) == [".keep.tmp", "gen-000001"] and (
            self.outside / ".keep.tmp").read_text() == "sentinel"


# ---- images ----------------------------------------------------------------------------------------------
def _encoded() -> list[bytes]:
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8))
    out = []
    for fmt, image in (("PNG", base), ("PNG", base.convert("LA")), ("JPEG", base), ("GIF", base.convert("P")),
                       ("BMP", base), ("TIFF", base.convert("CMYK")), ("WEBP", base), ("PNG", base.convert("I;16"))):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


SEEDS = _encoded()


def _mutate(seed: int, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(SEEDS[seed])
    for offset, value in flips:
        data[offset % len(data)] = value
    return bytes(data[:cut] if cut is not None else data)


IMAGE_BYTES = st.one_of(
    st.builds(_mutate, st.integers(0, len(SEEDS) - 1),
              st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
              st.none() | st.integers(0, 4096)),
    st.builds(png_with_header, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1),
              st.sampled_from([1, 2, 4, 8, 16, 3]), st.sampled_from([0, 2, 3, 4, 6, 5]), st.binary(max_size=64)),
    st.builds(lambda w, h: png(w, h), st.integers(1, 4), st.integers(1, 200_000)),
    st.builds(jpeg_with_size, st.integers(0, 65535), st.integers(0, 65535)),
    st.binary(max_size=256),
)


def check_image_bytes(ws: Workspace, data: bytes) -> str:
    try:
        emb = ws.retriever.embed_images([data])
    except BaseException as exc:
        return expected_error(exc)
    assert emb.shape == (1, DIM) and np.isfinite(emb).all() and abs(np.linalg.norm(emb) - 1) < 1e-4
    return "ok"


DTYPES = ["uint8", "uint16", "bool", "float32", "float64", "int32", "int64", "complex64", "object"]
IMAGE_ARRAYS = st.builds(
    lambda shape, dtype, fill, seed: _array(shape, dtype, fill, seed),
    st.one_of(st.tuples(st.integers(0, 64), st.integers(0, 64)),
              st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 5)),
              st.tuples(st.integers(1, 2), st.integers(1, 100_000)),
              st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))),
    st.sampled_from(DTYPES), st.sampled_from(["random", "nan", "inf", "huge", "zero"]), st.integers(0, 2**16))


def _array(shape: tuple[int, ...], dtype: str, fill: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = {"random": rng.random(shape) * 300, "nan": np.full(shape, np.nan), "inf": np.full(shape, np.inf),
              "huge": np.full(shape, 1e300), "zero": np.zeros(shape)}[fill]
    if dtype == "object":
        return values.astype(object)
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def check_image_array(ws: Workspace, array: np.ndarray) -> str:
    return check_image_bytes(ws, array)  # type: ignore[arg-type] - embed_images takes arrays too


# ---- texts -----------------------------------------------------------------------------------------------
ODD = ["\ud800", "\udfff", "\u200b", "\u200d", "\x00", "\x7f", "\u202e", "\ufeff", "\U0010ffff", "\n", " ", "\t",
       "apple", "##", "[CLS]", "[SEP]", "\u0301"]
TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(ODD) | st.characters(), max_size=60).map("".join),
    st.builds(lambda part, n: part * n, st.sampled_from(ODD) | st.text(max_size=4), st.integers(0, 200_000)),
    st.integers() | st.none() | st.binary(max_size=4),
)


def check_text(ws: Workspace, text: Any) -> str:
    try:
        emb = ws.retriever.embed_texts([text])
        hits = ws.retriever.search(text=text, k=3) if isinstance(text, str) else []
    except BaseException as exc:
        return expected_error(exc)
    assert emb.shape == (1, DIM) and np.isfinite(emb).all() and abs(np.linalg.norm(emb) - 1) < 1e-4
    assert isinstance(hits, list)
    return "ok"


# ---- ids, metadata and filters (model-checked against a plain-Python reference) --------------------------
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.just(10**400),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["a", "b", "", "\ud800", "é", "a\x00"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                                           max_size=3), max_leaves=8)
KEYS = st.sampled_from(["k", "n", "tag"])
METADATA = (st.none() | st.dictionaries(KEYS | st.text(max_size=2), VALUES, max_size=3)
            | st.sampled_from([[], 5, {1: 2}]))
IDS = (st.sampled_from(["a", "b", "c", "d", "é", "a\x00b"]) | st.text(max_size=3)
       | st.sampled_from(["", "\ud800", 7, None]))
OPS = ["eq", "ne", "in", "gt", "gte", "lt", "lte", "between"]
CONDITION = SCALARS | st.lists(SCALARS, max_size=2) | st.dictionaries(
    st.sampled_from(OPS), SCALARS | st.lists(SCALARS, max_size=3) | st.lists(st.sampled_from(["a", "b", 1.0]),
                                                                               min_size=490, max_size=600), max_size=2)
FILTERS = (st.none() | st.dictionaries(KEYS | st.text(max_size=2) | st.integers(0, 3), CONDITION, max_size=3)
           | st.just({}))
VECTORS = st.sampled_from(["unit", "huge", "tiny", "zero", "nan", "wide"])
OPERATION = st.one_of(
    st.tuples(st.just("add"), st.lists(IDS, max_size=4), st.lists(METADATA, max_size=4), VECTORS, st.integers(0, 99)),
    st.tuples(st.just("delete"), st.lists(IDS, max_size=3)),
    st.tuples(st.just("search"), FILTERS, st.integers(-1, 60)),
)


def _vectors(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, DIM if kind != "wide" else DIM + 1)).astype(np.float32)
    with np.errstate(all="ignore"):
        return {"huge": base * 1e38, "tiny": base * 1e-40, "zero": base * 0, "nan": base * np.nan}.get(kind, base)


def check_index_ops(ws: Workspace, operations: list[tuple]) -> str:
    index, model, outcome = VectorIndex(DIM, exact_threshold=8), {}, Counter()
    for op in operations:
        before = sorted(index.ids())
        try:
            if op[0] == "add":
                _, ids, metas, kind, seed = op
                index.add(ids, _vectors(kind, len(ids), seed), metas if metas or not ids else None)
                model.update({i: json.loads(json.dumps(m)) if m is not None else None
                              for i, m in zip(ids, metas or [None] * len(ids), strict=True)})
            elif op[0] == "delete":
                index.delete(op[1])
                for item in op[1]:
                    model.pop(item, None)
            else:
                _check_search(index, model, op[1], op[2])
            outcome["ok"] += 1
        except BaseException as exc:
            outcome[expected_error(exc)] += 1
            assert sorted(index.ids()) == before, "a refused operation changed the index"
    assert sorted(index.ids()) == sorted(model)
    return max(outcome, key=outcome.get) if outcome else "empty"


def _check_search(index: VectorIndex, model: dict, where: Any, k: int) -> None:
    query = np.random.default_rng(k).standard_normal(DIM)
    try:
        wanted = reference_filter(where) if where is not None else (lambda meta: True)
    except ValueError:
        wanted = None
    for exact in (True, False):
        try:
            hits = index.search(query, k=k, filter=where, exact=exact)
        except ValueError:
            assert wanted is None or k < 1, f"refused a valid filter {where!r}"
            raise
        assert wanted is not None and k >= 1, f"accepted an invalid filter {where!r} or k {k}"
        truth = {item for item, meta in model.items() if wanted(meta)}
        assert {h.id for h in hits} <= truth and len(hits) == len({h.id for h in hits})
        if exact:
            assert len(hits) == min(k, len(truth)), (where, len(hits), len(truth))
        assert all(h.metadata == model[h.id] for h in hits)


# ---- manifests and index files ---------------------------------------------------------------------------
EVIL = st.one_of(SCALARS, st.sampled_from(["../outside", "/etc/passwd", str(Path("/tmp")), "index/../..", "x" * 5000,
                                           "..", ".", "index", "tokenizer.json", "gen-000001", 10**30, 2**64, -1, 1e30,
                                           "DEEP", [], {}, {"sha256": "0" * 64, "bytes": 1}]))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


def _edit(data: Any, path: tuple, action: str, value: Any) -> Any:
    if not path:
        return value if action == "set" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if action == "delete" and isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return data


MANIFEST_EDITS = st.tuples(st.sampled_from(["manifest.json", "index.json", "CURRENT", "hnsw.bin"]),
                           st.integers(0, 10**6), st.sampled_from(["set", "delete"]), EVIL,
                           st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
                           st.booleans())


def check_manifest_edit(ws: Workspace, edit: tuple) -> str:
    target, choice, action, value, flips, save = edit
    ws.reset()
    folder = ws.bundle / "index" / ws.generation_name
    path = {"manifest.json": ws.bundle / "manifest.json", "CURRENT": ws.bundle / "index" / "CURRENT"}.get(
        target, folder / target)
    if target == "hnsw.bin":
        data = bytearray(path.read_bytes())
        for offset, byte in flips:
            data[offset % len(data)] = byte
        path.write_bytes(bytes(data))
    else:
        doc = json.loads(path.read_text())
        paths = _paths(doc)
        doc = _edit(doc, paths[choice % len(paths)], action, value)
        path.write_text(json.dumps(doc).replace('"DEEP"', "[" * 50_000 + "]" * 50_000))
    try:
        load_manifest(ws.bundle, verify="size")
        retriever = Retriever.open(ws.bundle, threads=1, verify="size" if target == "hnsw.bin" else True)
        retriever.search(vector=np.ones(retriever.dim), k=5, exact=False)
        if save:
            retriever.add_embeddings(["new"], np.ones((1, retriever.dim)))
            retriever.save()
            assert "new" in Retriever.open(ws.bundle, threads=1)
        outcome = "ok"
    except BaseException as exc:
        outcome = expected_error(exc)
    assert ws.outside_intact(), "something outside the bundle changed"
    return outcome


# ---- running ---------------------------------------------------------------------------------------------
SURFACES: dict[str, tuple[st.SearchStrategy, Callable[[Workspace, Any], str]]] = {
    "image-bytes": (IMAGE_BYTES, check_image_bytes),
    "image-arrays": (IMAGE_ARRAYS, check_image_array),
    "texts": (TEXTS, check_text),
    "ids-metadata-filters": (st.lists(OPERATION, min_size=1, max_size=8), check_index_ops),
    "manifests": (MANIFEST_EDITS, check_manifest_edit),
}


def run_surface(ws: Workspace, name: str, cases: int, seed: int | None = None, deadline_ms: int = 10_000) -> Counter:
    """Run ``cases`` hypothesis cases of one surface; the outcome counts (an invariant violation raises)."""
    strategy, check = SURFACES[name]
    counts: Counter = Counter()

    @settings(max_examples=cases, database=None, deadline=deadline_ms, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(strategy)
    def run(case: Any) -> None:
        counts[check(ws, case)] += 1

    if seed is not None:
        run = hypothesis_seed(seed)(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the fuzzer claims huge sizes on purpose
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # "Corrupt EXIF data" and the like
        run()
    return counts
