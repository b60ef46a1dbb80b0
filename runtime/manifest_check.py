"""The structural check of ``manifest.json``: every field the runtime uses, typed, bounded and confined.

Used by :func:`runtime.bundle.load_manifest` (before any file is opened) and by
:func:`runtime.bundle.write_manifest` (before anything is written). Every path the manifest names -- each
``files`` entry, the towers' ``file``/``ort_file``, the tokenizer, the preprocessor and ``index.path`` --
must stay inside the bundle folder after resolving symlinks; a violation is a :class:`BundleError`
naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._fs import confined
from .errors import BundleError, shorten
from .index_formats import index_format
from .schema import check_file_entries, optional_mapping, require, require_int, require_str

BUNDLE_FORMAT = "edgeret-bundle"
FORMAT_VERSION = "1.1"  # 1.1: optional per-tower "ort_file"
MANIFEST_NAME = "manifest.json"
SPACES = ("cosine", "ip", "l2")
TEXT_ROLES = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_ROLES = ("pixel_values",)
_MAX_MATRYOSHKA = 64


def major_minor(version: Any, where: str) -> tuple[int, int]:
    """``(major, minor)`` of a ``"MAJOR.MINOR"`` version string."""
    parts = str(version)[:32].split(".")
    if len(parts) < 2 or not all(p.isdigit() and len(p) <= 6 for p in parts[:2]):
        raise BundleError(f"{where}: 'version' {shorten(version, 40)} is not MAJOR.MINOR")
    return int(parts[0]), int(parts[1])


def check_manifest(data: Any, root: Path) -> None:
    """Structure, version, dims and confined paths of a manifest dict; raises BundleError naming the field."""
    where = MANIFEST_NAME
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where}: 'format' is not {BUNDLE_FORMAT!r}; not an edgeret bundle")
    _check_version(data.get("version"), where)
    emb = require(data, "embedding", dict, where)
    dim = require_int(emb, "dim", f"{where} embedding")
    dims = emb.get("matryoshka_dims", [])
    if not isinstance(dims, list) or len(dims) > _MAX_MATRYOSHKA or any(
            isinstance(d, bool) or not isinstance(d, int) or not 0 < d <= dim for d in dims):
        raise BundleError(f"{where} embedding: 'matryoshka_dims' {shorten(dims, 80)} must be ints in 1..dim ({dim})")
    files = require(data, "files", dict, where)
    base = root.resolve()
    resolved = [confined(root, rel, f"{where} files", base) for rel in files]
    check_file_entries(files, where)
    text = optional_mapping(data, "text_encoder", where)
    image = optional_mapping(data, "image_encoder", where)
    if text is None and image is None:
        raise BundleError(f"{where}: needs a 'text_encoder' or an 'image_encoder'")
    if text is not None:
        _check_tower(text, "text_encoder", TEXT_ROLES, "max_length", "tokenizer", files, root)
    if image is not None:
        _check_tower(image, "image_encoder", IMAGE_ROLES, "image_size", "preprocessor", files, root)
    _check_index_section(require(data, "index", dict, where), dim, dims, dict(zip(files, resolved, strict=True)), root)


def _check_version(version: Any, where: str) -> None:
    major, minor = major_minor(version, where)
    supported = major_minor(FORMAT_VERSION, "runtime")
    if major > supported[0]:
        raise BundleError(f"{where}: bundle format {version} is newer than this runtime supports "
                          f"({supported[0]}.x); upgrade edgeret")
    if major < supported[0]:
        raise BundleError(f"{where}: bundle format {version} is too old for this runtime ({FORMAT_VERSION})")


def _check_tower(tower: Mapping[str, Any], name: str, roles: tuple[str, ...], size_key: str, file_key: str,
                 files: Mapping[str, Any], root: Path) -> None:
    where = f"{MANIFEST_NAME} {name}"
    require_str(tower, "output", where)
    require_int(tower, size_key, where)
    if tower.get("ort_file") is not None and not (isinstance(tower["ort_file"], str)
                                                  and tower["ort_file"].endswith(".ort")):
        raise BundleError(f"{where}: 'ort_file' must name an .ort file, got {shorten(tower['ort_file'], 80)}")
    if tower.get("quantization") is not None and not isinstance(tower["quantization"], str):
        raise BundleError(f"{where}: 'quantization' must be a string")
    inputs = require(tower, "inputs", dict, where)
    unknown = set(inputs) - set(roles)
    if unknown or roles[0] not in inputs or not all(isinstance(v, str) and v for v in inputs.values()):
        raise BundleError(f"{where}: 'inputs' must map roles {list(roles)} (first required) to graph input names")
    for key in ("file", file_key, "ort_file"):
        if key == "ort_file" and tower.get(key) is None:
            continue
        rel = require_str(tower, key, where)
        confined(root, rel, f"{where} {key}")
        if rel not in files:
            raise BundleError(f"{MANIFEST_NAME} files: {name} file {shorten(rel, 80)} has no sha256/size entry")


def _check_index_section(index: Mapping[str, Any], dim: int, dims: list[int], files: Mapping[str, Path],
                         root: Path) -> None:
    where = f"{MANIFEST_NAME} index"
    if index.get("space") not in SPACES:
        raise BundleError(f"{where}: 'space' must be one of {SPACES}, got {shorten(index.get('space'), 40)}")
    index_dim = require_int(index, "dim", where)
    if index_dim not in {*dims, dim}:
        raise BundleError(
            f"{where}: dim {index_dim} does not match the encoders (embedding dim {dim}, matryoshka dims {dims})"
        )
    for key in ("M", "ef_construction", "ef_search", "count"):
        require_int(index, key, where)
    if "format" in index:
        index_format(index["format"], where)
    rel = index.get("path", "index")
    target = confined(root, rel, f"{where} path")
    if target == root.resolve():
        raise BundleError(f"{where}: 'path' must name a folder inside the bundle, not the bundle itself")
    inside = [rel_file for rel_file, path in files.items() if path.is_relative_to(target)]
    if inside:
        raise BundleError(f"{where}: 'path' {shorten(rel, 80)} holds bundle file {shorten(inside[0], 80)}")
    if target.exists() and not target.is_dir():
        raise BundleError(f"{where}: 'path' {shorten(rel, 80)} is not a folder")


def index_dir(root: Path, data: Mapping[str, Any]) -> Path:
    """The confined index folder a checked manifest names."""
    return confined(root, data["index"].get("path", "index"), f"{MANIFEST_NAME} index path")
