"""Write what the browser parity check compares against: a bundle copy with a saved index, its inputs and the
Python runtime's answers.

    python -m tools.web --bundle tests/runtime/fixtures/tiny_bundle --out build/web/fixture
    python -m tools.web --bundle artifacts/demo_bundle --images artifacts/demo_images --out build/web/int8

``OUT`` then holds ``bundle/`` (a copy; a saved index is built in it when the bundle has none), ``images/``
(encoded files the browser decodes), ``raw/`` (the same images decoded by Pillow, RGBA), ``*.f32``/``*.u8``
arrays and ``refs.json``: token ids, embeddings, resize/crop bytes for several preprocessor settings, top-10
results of text, image and vector queries (exact and HNSW, with filters), a larger synthetic index for the
HNSW graph walk, and altered bundles that must be refused. Only ``edgeret.runtime``, numpy and Pillow are used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgeret.runtime.bundle import BundleError
from edgeret.runtime.image import load_image
from edgeret.runtime.preprocess import ImagePreprocessor
from edgeret.runtime.retriever import Retriever
from edgeret.runtime.text import load_tokenizer
from edgeret.runtime.versions import package_versions

from . import inputs

logger = logging.getLogger(__name__)

#: parity thresholds of issue 17 (min cosine of browser vs Python embeddings), by the towers' quantisation
MIN_COSINE = {"fp32": 0.999}
MIN_COSINE_QUANTISED = 0.99
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: extra preprocessor settings whose resize/crop bytes are compared (the bundle's own comes first)
EXTRA_PREPROCESSORS = (
    {"size": 128, "resample": "bicubic"},
    {"size": 224, "resample": "bicubic"},
    {"size": 64, "resample": "bilinear", "background": [0, 128, 255]},
)


def _write(out: Path, name: str, array: np.ndarray) -> str:
    (out / name).write_bytes(np.ascontiguousarray(array).tobytes())
    return name


def _pick(folder: Path, n: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"--images {folder}: no image files")
    step = max(1, len(files) // n)
    return files[::step][:n]


def _names(retriever: Retriever) -> list[str] | None:
    """Item names of a saved index (ids without a file suffix) for building texts, if it has items."""
    ids = retriever.index.ids()
    if not ids:
        return None
    return [Path(i).stem.replace("_", " ").replace("-", " ") or i for i in ids]


def _metadata(i: int, kind: str) -> dict[str, Any]:
    groups = "abcde"
    meta: dict[str, Any] = {"kind": kind, "group": groups[i % 5], "n": i % 10, "x": (i * 37 % 100) / 100,
                            "flag": i % 3 == 0, "tags": [["red", "blue"], ["blue"], [], ["green", "red"]][i % 4],
                            "name": f"item {i:03d}", "nested": {"deep": i}}
    if i % 11 == 0:
        meta["maybe"] = None
    return meta


#: sizes of the raw-pixel resize sweep: around height = 2 x width, where Pillow 13 switches its pass order, both ways
_SWEEP_SIZES = tuple((w, 2 * w + d) for w in (17, 33, 40, 61, 64, 90) for d in (-2, -1, 0, 1, 2, 3)) + tuple(
    (2 * h + d, h) for h in (20, 45) for d in (-1, 0, 1)) + ((5, 3), (3, 9), (129, 127), (1, 40), (40, 1))

RICH_FILTERS: tuple[dict[str, Any], ...] = (
    {"kind": "image"}, {"n": {"gte": 3, "lt": 7}}, {"group": {"in": ["a", "c"]}}, {"group": {"ne": "b"}},
    {"tags": "red"}, {"flag": True}, {"flag": 0}, {"x": {"gt": 0.5}}, {"kind": "text", "n": {"lte": 2}},
    {"name": {"gte": "item 050"}}, {"group": {"eq": "d"}, "tags": {"in": ["green", "blue"]}}, {"group": "zzz"},
    {"n": {"in": [1, 2.0, "3"]}}, {"nested": 1},
)
BAD_FILTERS: tuple[Any, ...] = ({"n": {"bad": 1}}, {"n": {"in": []}}, {"n": {}}, {"n": [1, 2]}, {"n": {"eq": None}}, {})


def _path_filters(retriever: Retriever) -> list[dict[str, Any]]:
    paths = [m.get("path") for m in (retriever.index.metadata(i) or {} for i in retriever.index.ids()[:40])]
    paths = [p for p in paths if isinstance(p, str)]
    if not paths:
        return []
    return [{"path": {"in": paths[:5]}}, {"path": {"gte": "m"}}, {"path": {"lt": "c"}}, {"path": {"ne": paths[0]}},
            {"path": paths[1]}]


def _hits(results: list) -> list[dict[str, Any]]:
    return [{"id": r.id, "score": r.score} for r in results]


def _build_index(retriever: Retriever, texts: list[str], images: list[Path]) -> None:
    """Index up to 120 of the texts (one per distinct token sequence: duplicates would tie) and the images."""
    ids = retriever.text_encoder.tokenize(texts)
    first = {tuple(row): i for i, row in reversed(list(enumerate(ids)))}
    unique = sorted(first.values())[:120]
    retriever.add_texts([f"text-{i:03d}" for i in unique], [texts[i] for i in unique],
                        [_metadata(i, "text") for i in unique])
    retriever.add_images([f"image-{i:03d}" for i in range(len(images))], images,
                         [_metadata(i, "image") for i in range(len(images))])
    retriever.save()


def _copy_bundle(src: Path, dst: Path, with_index: bool = True) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=None if with_index else shutil.ignore_patterns("index"))
    return dst


def _large_index(bundle: Path, out: Path, n: int, queries: int, seed: int) -> dict[str, Any]:
    """A copy of the bundle with ``n`` synthetic vectors (some deleted): the HNSW graph walk, checked."""
    target = _copy_bundle(bundle, out / "bundle-large", with_index=False)
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    manifest["index"]["count"] = 0
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    retriever = Retriever.open(target)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(32, retriever.dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 32, n)] + 0.6 * rng.normal(size=(n, retriever.dim)).astype(np.float32)
    ids = [f"v{i:05d}" for i in range(n)]
    retriever.add_embeddings(ids, vectors, [{"g": i % 5, "odd": i % 2 == 1} for i in range(n)])
    retriever.delete(ids[::97])
    retriever.save()
    retriever = Retriever.open(target)
    qs = (centres[rng.integers(0, 32, queries)] + 0.6 * rng.normal(size=(queries, retriever.dim))).astype(np.float32)
    cases = []
    for i, q in enumerate(qs):
        for exact, flt in ((None, None), (False, None), (False, {"g": 2}), (False, {"odd": True, "g": {"lt": 3}})):
            cases.append({"vector": i, "exact": exact, "filter": flt, "k": 10,
                          "hits": _hits(retriever.search(vector=q, k=10, filter=flt, exact=exact))})
    return {"bundle": "bundle-large", "count": len(retriever), "vectors": _write(out, "large_queries.f32", qs),
            "dim": retriever.dim, "cases": cases}


def _matryoshka(bundle: Path, out: Path, texts: list[str]) -> dict[str, Any] | None:
    """A copy of the bundle indexed at its smallest Matryoshka prefix (vectors truncated and renormalised)."""
    dims = [d for d in Retriever.open(bundle).manifest.allowed_dims if d < Retriever.open(bundle).manifest.dim]
    if not dims or not texts:
        return None
    target = _copy_bundle(bundle, out / "bundle-matryoshka", with_index=False)
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    manifest["index"]["count"] = 0
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    retriever = Retriever.open(target, dim=dims[0])
    retriever.add_texts([f"t{i:03d}" for i in range(len(texts[:80]))], texts[:80])
    retriever.save()
    retriever = Retriever.open(target)
    cases = [{"text": t, "hits": _hits(retriever.search(text=t, k=10))} for t in texts[80:100]]
    cases += [{"vector_of": "text", "index": i, "hits": _hits(retriever.search(vector=v, k=10))}
              for i, v in enumerate(retriever.embed_texts(texts[80:90]))]
    full = Retriever.open(bundle).embed_texts(texts[90:100])  # full-dim vectors: truncated by search
    cases += [{"full_vector": i, "hits": _hits(retriever.search(vector=v, k=10))} for i, v in enumerate(full)]
    return {"bundle": "bundle-matryoshka", "dim": dims[0], "full_dim": int(full.shape[1]), "cases": cases,
            "query_vectors": _write(out, "matryoshka_queries.f32", retriever.embed_texts(texts[80:90])),
            "full_vectors": _write(out, "matryoshka_full.f32", full)}


def _tampered(bundle: Path, out: Path) -> list[dict[str, str]]:
    """Altered copies of a (small) bundle, each with the message fragment its rejection must carry."""
    root = out / "tampered"
    shutil.rmtree(root, ignore_errors=True)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    gen = json.loads((bundle / "index" / "CURRENT").read_text(encoding="utf-8"))["generation"]
    tokenizer = manifest["text_encoder"]["tokenizer"]

    def edit_manifest(fn):
        def apply(d: Path) -> None:
            data = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
            fn(data)
            (d / "manifest.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        return apply

    def flip(rel: str, append: bool = False):
        def apply(d: Path) -> None:
            data = bytearray((d / rel).read_bytes())
            if append:
                data += b" "
            else:
                data[len(data) // 2] ^= 0x01
            (d / rel).write_bytes(bytes(data))
        return apply

    def bad_link(d: Path) -> None:
        """A level-0 link of element 0 beyond the element count, with index.json's checksum updated to match."""
        folder = d / "index" / gen
        data = bytearray((folder / "hnsw.bin").read_bytes())
        data[96 + 4 : 96 + 8] = (0x00FFFFFF).to_bytes(4, "little")
        data[96 : 96 + 2] = max(1, int.from_bytes(data[96:98], "little")).to_bytes(2, "little")
        (folder / "hnsw.bin").write_bytes(bytes(data))
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        meta["files"]["hnsw.bin"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        (folder / "index.json").write_text(json.dumps(meta), encoding="utf-8")

    def edit_index_json(**fields):
        def apply(d: Path) -> None:
            path = d / "index" / gen / "index.json"
            data = json.loads(path.read_text(encoding="utf-8"))
            data.update(fields)
            path.write_text(json.dumps(data), encoding="utf-8")
        return apply

    cases = {
        "newer-major": (edit_manifest(lambda m: m.update(version="2.0")), "newer than this runtime supports"),
        "older-major": (edit_manifest(lambda m: m.update(version="0.9")), "too old"),
        "not-a-bundle": (edit_manifest(lambda m: m.update(format="something-else")), "not an edgeret bundle"),
        "bad-version": (edit_manifest(lambda m: m.update(version="one")), "is not MAJOR.MINOR"),
        "index-dim": (edit_manifest(lambda m: m["index"].update(dim=7)), "does not match the encoders"),
        "size": (flip(tokenizer, append=True), "were recorded"),
        "sha256": (flip(tokenizer), "sha256"),
        "index-sha256": (flip(f"index/{gen}/hnsw.bin"), "sha256"),
        "missing": (lambda d: (d / manifest["image_encoder"]["preprocessor"]).unlink(), "missing"),
        "no-manifest": (lambda d: (d / "manifest.json").unlink(), "manifest.json"),
        "index-version": (edit_index_json(version="2.0"), "not supported"),
        "index-format": (edit_index_json(index_format="annoy-f16"), "is not supported by this runtime"),
        "hnsw-link": (bad_link, "links to element"),
        "index-missing": (lambda d: shutil.rmtree(d / "index"), "is missing"),
    }
    out_cases = []
    for name, (apply, fragment) in cases.items():
        target = _copy_bundle(bundle, root / name)
        apply(target)
        try:  # the case must be one the Python runtime refuses too
            Retriever.open(target, verify=True)
            raise SystemExit(f"tampered case {name}: the Python runtime accepts it")
        except BundleError as exc:
            out_cases.append({"name": name, "path": f"tampered/{name}", "expect": fragment, "python": str(exc)})
    return out_cases


def _latency(bundle: Path, texts: list[str], images: list[Path], threads: int | None) -> dict[str, Any]:
    """Per-query ms of the Python runtime on the same queries the browser bench times (p50/p95), for ratios
    measured in the same minute on a shared machine."""
    retriever = Retriever.open(bundle, threads=threads)
    out: dict[str, Any] = {"threads": threads}
    for kind, items, reps in (("text", texts[:100], 3), ("image", images, 1)):
        if (kind == "text" and retriever.text_encoder is None) or (kind == "image" and not retriever.has_image_encoder):
            continue
        retriever.search(**{kind: items[0]}, k=10)  # first query: sessions warm
        times = []
        for _ in range(reps):
            for item in items:
                started = time.perf_counter()
                retriever.search(**{kind: item}, k=10)
                times.append((time.perf_counter() - started) * 1000)
        out[f"{kind}_query_ms"] = {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95)),
                                   "n": len(times)}
    return out


def _tokenize_or_error(encoder: Any, text: str) -> dict[str, Any]:
    try:
        return {"text": text, "ids": encoder.tokenize([text])[0]}
    except ValueError as exc:
        return {"text": text, "error": str(exc)}


def _rgba(path: Path) -> np.ndarray:
    """The image as Pillow decodes it (exif-transposed), as straight RGBA."""
    image = load_image(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = ImagePreprocessor().to_rgb(image)
    return np.asarray(image.convert("RGBA"), dtype=np.uint8)


def build(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("images", "raw"):
        shutil.rmtree(out / stale, ignore_errors=True)
        (out / stale).mkdir()
    bundle = _copy_bundle(args.bundle, out / "bundle")
    retriever = Retriever.open(bundle)
    manifest = retriever.manifest

    # inputs
    if args.images:
        image_files = []
        for i, src in enumerate(_pick(args.images, args.n_images)):
            dst = out / "images" / f"img-{i:03d}{src.suffix.lower()}"
            shutil.copyfile(src, dst)
            image_files.append(dst)
    else:
        image_files = []
        for item in inputs.synthetic_images(args.n_images, seed=args.seed):
            (out / "images" / item.name).write_bytes(item.data)
            image_files.append(out / "images" / item.name)
    edge_files = []
    for item in inputs.synthetic_images(args.edge_images, seed=args.seed + 1):
        (out / "images" / f"edge-{item.name}").write_bytes(item.data)
        edge_files.append(out / "images" / f"edge-{item.name}")
    texts = inputs.texts(args.texts, names=_names(retriever), seed=args.seed)

    built = False
    if len(retriever) == 0:
        _build_index(retriever, texts, image_files)
        built = True
    retriever = Retriever.open(bundle)  # from disk, as the browser opens it
    logger.info("bundle copy %s: %d items in its index", bundle, len(retriever))

    refs: dict[str, Any] = {
        "command": args.command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source_bundle": str(args.bundle),
        "python_versions": package_versions(("edgeret", "onnxruntime", "tokenizers", "numpy", "pillow", "hnswlib"),
                                            python=True),
        "bundle": "bundle",
        "quantization": {"text": (manifest.text or {}).get("quantization"),
                         "image": (manifest.image or {}).get("quantization")},
        "models": {"text": retriever.text_encoder.model_file if retriever.text_encoder else None},
        "dim": retriever.dim,
        "count": len(retriever),
        "index_built_here": built,
    }
    refs["min_cosine"] = {tower: MIN_COSINE.get(q, MIN_COSINE_QUANTISED)
                          for tower, q in refs["quantization"].items() if q}

    # text: ids (bundle tokenizer; edge cases and fuzz too) and embeddings
    if retriever.text_encoder is not None:
        encoder = retriever.text_encoder
        refs["texts"] = texts
        refs["text_ids"] = encoder.tokenize(texts)
        cases = [*inputs.EDGE_TEXTS, *inputs.fuzz_texts(args.fuzz, seed=args.seed)]
        # the tokenizer alone (tokenizer.json as the runtime loads it) ...
        tokenizer, _ = load_tokenizer(bundle / manifest.text["tokenizer"], encoder.max_length)
        refs["tokenizer_cases"] = [{"text": t, "ids": e.ids} for t, e in zip(cases, tokenizer.encode_batch(cases),
                                                                               strict=True)]
        # ... and the runtime's rules on top of it (character cap, lone surrogates, nothing readable)
        policy = [*inputs.EDGE_TEXTS[:12], "\u200b\u200b", "\x00\x01\x02", "[CLS]", "[SEP] [MASK]", "\ud800 lone",
                  "x" * (150 * encoder.max_length)]
        refs["runtime_tokenize"] = [_tokenize_or_error(encoder, t) for t in policy]
        refs["text_embeddings"] = _write(out, "text_embeddings.f32", retriever.embed_texts(texts))
        refs["rich_tokenizer"] = _rich_tokenizer(out, cases + texts, encoder.max_length)

    # images: files, Pillow-decoded RGBA, resize/crop bytes, tensors, embeddings
    if retriever.has_image_encoder:
        all_files = image_files + edge_files
        refs["images"] = [p.name for p in image_files]
        refs["edge_images"] = [p.name for p in edge_files]
        raw, sweep = [], []
        for p in all_files:
            rgba = _rgba(p)
            (out / "raw" / f"{p.name}.rgba").write_bytes(rgba.tobytes())
            raw.append({"file": p.name, "width": int(rgba.shape[1]), "height": int(rgba.shape[0])})
        for i, (width, height) in enumerate(_SWEEP_SIZES):  # raw noise only: both Pillow 13 pass orders
            rgba = np.random.default_rng(args.seed + i).integers(0, 256, (height, width, 4), dtype=np.uint8)
            rgba[..., 3] = np.where(rgba[..., 3] < 64, 255, rgba[..., 3])
            name = f"sweep-{i:03d}-{width}x{height}"
            (out / "raw" / f"{name}.rgba").write_bytes(rgba.tobytes())
            raw.append({"file": name, "width": width, "height": height, "encoded": False})
            sweep.append((name, Image.fromarray(rgba, "RGBA")))
        refs["raw"] = raw
        own = retriever.image_encoder.preprocessor
        configs = [own.to_dict()] + [ImagePreprocessor.from_dict(c).to_dict() for c in EXTRA_PREPROCESSORS]
        crops, offset, entries = [], 0, []
        for ci, config in enumerate(configs):  # the bundle's own setting on every image, the others on the edge set
            pre = ImagePreprocessor.from_dict(config)
            named = [(p.name, load_image(p)) for p in (all_files if ci == 0 else edge_files)] + sweep
            for name, image in named:
                crop = np.asarray(pre.resize_crop(image), dtype=np.uint8)
                crops.append(crop.reshape(-1))
                entries.append({"config": ci, "file": name, "offset": offset, "bytes": int(crop.size)})
                offset += crop.size
        refs["preprocess"] = {"configs": configs, "crops": _write(out, "crops.u8", np.concatenate(crops)),
                              "cases": entries}
        tensors = own([load_image(p) for p in all_files[:8]])
        refs["tensors"] = {"files": [p.name for p in all_files[:8]], "data": _write(out, "tensors.f32", tensors)}
        refs["image_embeddings"] = _write(out, "image_embeddings.f32", retriever.embed_images(image_files))
        refs["edge_image_embeddings"] = _write(out, "edge_image_embeddings.f32", retriever.embed_images(edge_files))

    # queries against the saved index: end to end (text / image), then the same as vectors, exact and HNSW
    text_vectors = retriever.embed_texts(texts) if retriever.text_encoder else np.empty((0, retriever.dim))
    image_vectors = retriever.embed_images(image_files) if retriever.has_image_encoder else np.empty((0, retriever.dim))
    queries = []
    for q in range(args.queries):
        use_image = (q % 2 == 1 and len(image_files)) or not len(texts)
        i = (q // 2) % len(image_files) if use_image else (q * 3) % len(texts)
        query = {"image": image_files[i].name} if use_image else {"text": texts[i]}
        hits = retriever.search(image=image_files[i], k=15) if use_image else retriever.search(text=texts[i], k=15)
        queries.append({**query, "k": 10, "hits": _hits(hits[:10]), "next": _hits(hits[10:])})  # next: ranks 11-15
        vector = (image_vectors if use_image else text_vectors)[i]
        for exact in (None, True, False):
            queries.append({"vector_of": "image" if use_image else "text", "index": i, "k": 10, "exact": exact,
                            "hits": _hits(retriever.search(vector=vector, k=10, exact=exact))})
    filters = list(RICH_FILTERS) if built else _path_filters(retriever)
    for f_i, flt in enumerate(filters):
        for j in range(3):
            i = (f_i * 5 + j) % len(texts) if len(texts) else 0
            vector = text_vectors[i] if len(texts) else image_vectors[i % len(image_vectors)]
            for exact in (None, False):
                hits = retriever.search(vector=vector, k=10, filter=flt, exact=exact)
                queries.append({"vector_of": "text" if len(texts) else "image", "index": i, "k": 10, "exact": exact,
                                "filter": flt, "hits": _hits(hits)})
    refs["queries"] = queries
    bad = []
    for flt in BAD_FILTERS:
        try:
            retriever.search(vector=text_vectors[0] if len(texts) else image_vectors[0], k=3, filter=flt)
            bad.append({"filter": flt, "python": None})
        except (ValueError, TypeError) as exc:
            bad.append({"filter": flt, "python": str(exc)})
    refs["bad_filters"] = bad

    small = sum(e["bytes"] for e in manifest.data["files"].values()) < 2_000_000
    if args.large and small:
        refs["large"] = _large_index(args.bundle, out, args.large, 50, args.seed)
    if args.tamper and small:
        refs["tampered"] = _tampered(bundle, out)
    if small and retriever.text_encoder is not None:
        refs["matryoshka"] = _matryoshka(args.bundle, out, texts)
    if args.time:
        refs["python_latency"] = {str(t): _latency(bundle, texts, image_files, t) for t in (1, None)}
    (out / "refs.json").write_text(json.dumps(refs, indent=1) + "\n", encoding="utf-8")
    return refs


def _rich_tokenizer(out: Path, texts: list[str], max_length: int) -> dict[str, Any]:
    """A WordPiece tokenizer.json with a vocabulary rich enough that every rule fires (added tokens, ##pieces,
    CJK, accents), and the Python ids of ``texts`` under it: a stronger tokenizer check than a tiny fixture's."""
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    words = sorted({w for t in texts for w in t.lower().split() if w.isalpha() and len(w) < 12})[:3000]
    pieces = sorted({w[i:j] for w in words[:400] for i in range(len(w)) for j in range(i + 2, min(len(w), i + 5) + 1)})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab_list = specials + chars + [f"##{c}" for c in chars] + words + [f"##{p}" for p in pieces]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}

    def special(token: str, type_id: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": token, "type_id": type_id}}

    def sequence(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for s in specials],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)],
                           "pair": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0), sequence("B", 1),
                                    special("[SEP]", 1)],
                           "special_tokens": {s: {"id": s, "ids": [vocab[s]], "tokens": [s]}
                                              for s in ("[CLS]", "[SEP]")}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }
    path = out / "rich_tokenizer.json"
    path.write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    cases = []
    for length in (max_length, 24):
        tok, _ = load_tokenizer(path, length)
        cases.append({"max_length": length, "ids": [e.ids for e in tok.encode_batch(texts)]})
    return {"file": path.name, "texts": texts, "cases": cases, "vocab_size": len(vocab)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.web", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, help="the bundle to check (not modified; it is copied)")
    p.add_argument("--out", type=Path, required=True, help="folder for the copy, inputs and refs.json")
    p.add_argument("--images", type=Path, help="take the parity images from this folder (default: synthetic ones)")
    p.add_argument("--texts", type=int, default=200)
    p.add_argument("--n-images", type=int, default=50)
    p.add_argument("--edge-images", type=int, default=24, help="synthetic images of every mode/size (preprocessing)")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--fuzz", type=int, default=1000, help="random Unicode strings for the tokenizer check")
    p.add_argument("--large", type=int, default=5000, help="synthetic vectors of the HNSW check (small bundles only)")
    p.add_argument("--no-tamper", dest="tamper", action="store_false", help="skip the altered-bundle cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time", action="store_true",
                   help="also time the Python runtime on the same queries (1 and all threads)")
    p.add_argument("--time-only", type=int, metavar="THREADS", default=None,
                   help="only time the Python runtime on OUT's bundle copy and queries (0: all threads); prints JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    logging.getLogger("edgeret.runtime.text").setLevel(logging.ERROR)  # long parity texts are truncated on purpose
    if args.time_only is not None:  # paired with a browser run by web/test/run.js --python
        refs = json.loads((args.out / "refs.json").read_text(encoding="utf-8"))
        images = [args.out / "images" / name for name in refs.get("images", [])]
        result = _latency(args.out / refs["bundle"], refs.get("texts", []), images, args.time_only or None)
        print(json.dumps(result))
        return 0
    if args.bundle is None:
        parser().error("--bundle is required (except with --time-only)")
    args.command = " ".join(["python -m tools.web", *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    refs = build(args)
    logger.info("wrote %s (%d queries, %d items) in %.1f s", args.out / "refs.json", len(refs["queries"]),
                refs["count"], time.perf_counter() - started)
    return 0
