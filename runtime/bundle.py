"""The bundle manifest (``manifest.json``): writer for the compress stage, verifying loader for the runtime.

A bundle is one folder::

    manifest.json  text_encoder*.onnx  image_encoder*.onnx  tokenizer.json  preprocessor.json  index/

``write_manifest`` hashes every file in the folder except ``manifest.json`` and ``index/`` (whose
files change on every save and are checksummed in their own ``index.json``, see :mod:`runtime.persist`).
``load_manifest`` rejects an unknown format, a newer major version, a missing or altered file and
inconsistent dims/space, each with a :class:`BundleError` naming the file or field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._fs import atomic_write_json, file_entry, read_json
from .errors import BundleError
from .persist import SavedIndex, read_saved_index, verify_files
from .versions import package_versions

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = "edgeret-bundle"
FORMAT_VERSION = "1.1"  # 1.1: optional per-tower "ort_file"
MANIFEST_NAME = "manifest.json"
SPACES = ("cosine", "ip", "l2")
MODEL_FORMATS = ("auto", "onnx", "ort")
#: operator list for onnxruntime minimal builds, written beside .ort twins (build-time only)
OPERATOR_CONFIG = "required_operators.config"
TEXT_ROLES = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_ROLES = ("pixel_values",)
INDEX_DEFAULTS = {"path": "index", "space": "cosine", "M": 16, "ef_construction": 200, "ef_search": 64, "count": 0}
_PRODUCER_PACKAGES = ("onnxruntime", "onnx", "torch", "tokenizers", "optimum-onnx", "numpy")

__all__ = [
    "BUNDLE_FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "BundleError", "Manifest", "load_manifest", "write_manifest",
]


@dataclass(frozen=True)
class Manifest:
    """A parsed, checked manifest. ``data`` is the JSON; ``saved_index`` the index generation on disk, if any."""

    root: Path
    data: dict[str, Any]
    saved_index: SavedIndex | None = None

    @property
    def dim(self) -> int:
        """Full embedding dimension of the encoders."""
        return int(self.data["embedding"]["dim"])

    @property
    def matryoshka_dims(self) -> list[int]:
        return [int(d) for d in self.data["embedding"].get("matryoshka_dims", [])]

    @property
    def allowed_dims(self) -> list[int]:
        """Dims an index may use: the Matryoshka prefixes and the full dim."""
        return sorted({*self.matryoshka_dims, self.dim})

    @property
    def text(self) -> dict[str, Any] | None:
        return self.data.get("text_encoder")

    @property
    def image(self) -> dict[str, Any] | None:
        return self.data.get("image_encoder")

    @property
    def index(self) -> dict[str, Any]:
        return self.data["index"]

    @property
    def index_dir(self) -> Path:
        return self.root / self.index.get("path", "index")

    def path(self, relative: str) -> Path:
        """Absolute path of a file named in the manifest."""
        return self.root / relative


def _major_minor(version: Any, where: str) -> tuple[int, int]:
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError as exc:
        raise BundleError(f"{where}: 'version' {version!r} is not MAJOR.MINOR") from exc
    return major, minor


def _require(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"{where}: field {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _check_tower(tower: Any, name: str, roles: tuple[str, ...], size_key: str, file_key: str) -> None:
    where = f"{MANIFEST_NAME} {name}"
    if not isinstance(tower, Mapping):
        raise BundleError(f"{where}: must be an object")
    _require(tower, "file", str, where)
    _require(tower, "output", str, where)
    _require(tower, file_key, str, where)
    if _require(tower, size_key, int, where) < 1:
        raise BundleError(f"{where}: {size_key!r} must be positive")
    if tower.get("ort_file") is not None and not str(tower["ort_file"]).endswith(".ort"):
        raise BundleError(f"{where}: 'ort_file' must name an .ort file, got {tower['ort_file']!r}")
    inputs = _require(tower, "inputs", dict, where)
    unknown = set(inputs) - set(roles)
    if unknown or roles[0] not in inputs:
        raise BundleError(f"{where}: 'inputs' must map roles {list(roles)} (first required) to graph input names")


def _check_schema(data: Any) -> None:
    """Structure, version and dims of a manifest dict; raises BundleError naming the field."""
    where = MANIFEST_NAME
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where}: 'format' is not {BUNDLE_FORMAT!r}; not an edgeret bundle")
    major, minor = _major_minor(data.get("version"), where)
    supported = _major_minor(FORMAT_VERSION, "runtime")
    if major > supported[0]:
        raise BundleError(
            f"{where}: bundle format {data['version']} is newer than this runtime supports "
            f"({supported[0]}.x); upgrade edgeret"
        )
    if major < supported[0]:
        raise BundleError(f"{where}: bundle format {data['version']} is too old for this runtime ({FORMAT_VERSION})")
    if minor > supported[1]:
        logger.info("bundle format %s is newer than %s; unknown fields are ignored", data["version"], FORMAT_VERSION)
    emb = _require(data, "embedding", dict, where)
    dim = _require(emb, "dim", int, f"{where} embedding")
    dims = emb.get("matryoshka_dims", [])
    if dim < 1 or not isinstance(dims, list) or any(not isinstance(d, int) or not 0 < d <= dim for d in dims):
        raise BundleError(f"{where} embedding: 'matryoshka_dims' {dims} must be ints in 1..dim ({dim})")
    if data.get("text_encoder") is None and data.get("image_encoder") is None:
        raise BundleError(f"{where}: needs a 'text_encoder' or an 'image_encoder'")
    if data.get("text_encoder") is not None:
        _check_tower(data["text_encoder"], "text_encoder", TEXT_ROLES, "max_length", "tokenizer")
    if data.get("image_encoder") is not None:
        _check_tower(data["image_encoder"], "image_encoder", IMAGE_ROLES, "image_size", "preprocessor")
    _check_index_section(_require(data, "index", dict, where), dim, dims)
    files = _require(data, "files", dict, where)
    for rel in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"{where} files: {rel!r} must be a relative path inside the bundle")
    for tower_key, file_key in (("text_encoder", "tokenizer"), ("image_encoder", "preprocessor")):
        tower = data.get(tower_key)
        for rel in (tower["file"], tower[file_key], *filter(None, [tower.get("ort_file")])) if tower else ():
            if rel not in files:
                raise BundleError(f"{where} files: {tower_key} file {rel!r} has no sha256/size entry")


def model_files(spec: Mapping[str, Any], model_format: str = "auto", auto_first: str = "ort") -> list[str]:
    """The tower files to try, preferred first.

    ``"onnx"``: the manifest's ``file``; ``"ort"``: its ORT-format twin ``ort_file`` (pre-optimised, so a
    session opens about 3x faster); ``"auto"``: both when the manifest names a twin, ``auto_first`` first
    and the other as the fallback (an ``.ort`` from a newer onnxruntime may not load). A bundle whose
    ``file`` itself is an ``.ort`` (a mobile-only bundle) loads it in every mode.
    """
    if model_format not in MODEL_FORMATS:
        raise ValueError(f"model_format must be one of {MODEL_FORMATS}, got {model_format!r}")
    if auto_first not in ("ort", "onnx"):
        raise ValueError(f"auto_first must be 'ort' or 'onnx', got {auto_first!r}")
    twin = spec.get("ort_file")
    if model_format == "onnx" or spec["file"].endswith(".ort"):
        return [spec["file"]]
    if model_format == "ort" and not twin:
        raise BundleError(f"{MANIFEST_NAME}: {spec['file']} has no ORT-format model ('ort_file'); "
                          "build the bundle with `edgeret compress ... --ort`")
    if not twin:
        return [spec["file"]]
    if model_format == "ort":
        return [twin]
    return [twin, spec["file"]] if auto_first == "ort" else [spec["file"], twin]


def _check_index_section(index: Mapping[str, Any], dim: int, dims: list[int]) -> None:
    where = f"{MANIFEST_NAME} index"
    if index.get("space") not in SPACES:
        raise BundleError(f"{where}: 'space' must be one of {SPACES}, got {index.get('space')!r}")
    index_dim = _require(index, "dim", int, where)
    if index_dim not in {*dims, dim}:
        raise BundleError(
            f"{where}: dim {index_dim} does not match the encoders (embedding dim {dim}, matryoshka dims {dims})"
        )
    for key in ("M", "ef_construction", "ef_search"):
        if _require(index, key, int, where) < 1:
            raise BundleError(f"{where}: {key!r} must be positive")
    if _require(index, "count", int, where) < 0:
        raise BundleError(f"{where}: 'count' must be >= 0")


def _check_preprocessor(root: Path, image: Mapping[str, Any]) -> None:
    path = root / image["preprocessor"]
    try:
        size = read_json(path).get("size")
    except (OSError, ValueError, AttributeError) as exc:
        raise BundleError(f"{image['preprocessor']}: unreadable preprocessor config ({exc})") from exc
    if size != image["image_size"]:
        raise BundleError(
            f"{MANIFEST_NAME} image_encoder: image_size {image['image_size']} != size {size} in {image['preprocessor']}"
        )


def _check_saved_index(manifest: Manifest, saved: SavedIndex) -> None:
    index, meta = manifest.index, saved.meta
    where = f"{saved.directory / 'index.json'}"
    for key in ("space", "dim"):
        if meta[key] != index[key]:
            raise BundleError(
                f"{where}: index {key} {meta[key]!r} does not match {MANIFEST_NAME} index {key} {index[key]!r}"
            )
    if meta["dim"] not in manifest.allowed_dims:
        raise BundleError(f"{where}: index dim {meta['dim']} does not match the encoders {manifest.allowed_dims}")


def load_manifest(bundle_dir: str | Path, verify: bool | str = True) -> Manifest:
    """Read and check ``bundle_dir/manifest.json``, its files and its saved index.

    ``verify``: ``True`` checks the size and sha256 of every file (encoders, tokenizer, preprocessor,
    and the saved index's files), ``"size"`` only sizes (fast cold start), ``False`` only existence.
    Structure, version and dims are always checked. Raises :class:`BundleError`.
    """
    root = Path(bundle_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{root}: no {MANIFEST_NAME}; not an edgeret bundle")
    try:
        data = read_json(path)
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    _check_schema(data)
    verify_files(root, data["files"], verify, what=f"bundle {root}")
    if data.get("image_encoder") is not None:
        _check_preprocessor(root, data["image_encoder"])
    manifest = Manifest(root, data)
    saved = read_saved_index(manifest.index_dir, verify=verify)
    if saved is None and manifest.index["count"] > 0:
        raise BundleError(f"{MANIFEST_NAME} index: count {manifest.index['count']} but {manifest.index_dir} is missing")
    if saved is not None:
        _check_saved_index(manifest, saved)
    return Manifest(root, data, saved)


def default_producer() -> dict[str, str]:
    """Versions of edgeret, Python and the packages involved (read from metadata; nothing imported)."""
    return {k: v for k, v in package_versions(("edgeret", *_PRODUCER_PACKAGES), python=True).items() if v}


def _tower(spec: Mapping[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any] | None:
    if spec is None:
        return None
    tower = {"file": spec.get("file"), **defaults, **spec}
    tower["inputs"] = dict(tower["inputs"])
    return tower


def write_manifest(
    bundle_dir: str | Path,
    *,
    embedding: Mapping[str, Any],
    teacher: str | Mapping[str, Any],
    text_encoder: Mapping[str, Any] | None = None,
    image_encoder: Mapping[str, Any] | None = None,
    index: Mapping[str, Any] | None = None,
    producer: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``bundle_dir/manifest.json`` for the files already in ``bundle_dir``; returns the manifest.

    Args:
        embedding: ``{"dim": 384, "normalised": True, "matryoshka_dims": [64, 128, 384]}``.
        teacher: the teacher id (``str``) or ``{"id": ..., "revision": ...}``.
        text_encoder: ``{"file": "text_encoder_int8.onnx", "max_length": 128, "quantization": "int8"}``;
            defaults: ``tokenizer="tokenizer.json"``, ``inputs={"input_ids": "input_ids",
            "attention_mask": "attention_mask"}`` (role -> graph input; ``token_type_ids`` optional),
            ``output="embeddings"``, ``quantization="fp32"``.
        image_encoder: ``{"file": "image_encoder.onnx", "quantization": "fp32"}``; defaults:
            ``preprocessor="preprocessor.json"``, ``inputs={"pixel_values": "pixel_values"}``,
            ``output="embeddings"``, ``image_size`` read from the preprocessor file.
        index: overrides of ``{"path": "index", "space": "cosine", "dim": embedding dim, "M": 16,
            "ef_construction": 200, "ef_search": 64, "count": 0}`` (the config new indexes use).
        producer: extra/overriding producer versions (edgeret, python and package versions are added).

    Every file in the folder except ``manifest.json`` and the index folder gets a sha256/size entry.
    The result is checked exactly as :func:`load_manifest` checks it before it is written.
    """
    root = Path(bundle_dir)
    emb = {"dim": int(embedding["dim"]), "normalised": bool(embedding.get("normalised", True)),
           "matryoshka_dims": sorted(int(d) for d in embedding.get("matryoshka_dims", []))}
    text = _tower(text_encoder, {"tokenizer": "tokenizer.json", "output": "embeddings", "quantization": "fp32",
                                 "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"}})
    image = _tower(image_encoder, {"preprocessor": "preprocessor.json", "output": "embeddings",
                                   "quantization": "fp32", "inputs": {"pixel_values": "pixel_values"}})
    if image is not None and "image_size" not in image:
        image["image_size"] = read_json(root / image["preprocessor"]).get("size")
    index_section = {**INDEX_DEFAULTS, "dim": emb["dim"], **(index or {})}
    index_top = Path(index_section["path"]).parts[0]
    files = {
        path.relative_to(root).as_posix(): file_entry(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME and path.relative_to(root).parts[0] != index_top
    }
    data = {
        "format": BUNDLE_FORMAT,
        "version": FORMAT_VERSION,
        "producer": {**default_producer(), **(producer or {})},
        "teacher": {"id": teacher} if isinstance(teacher, str) else dict(teacher),
        "embedding": emb,
        "text_encoder": text,
        "image_encoder": image,
        "index": index_section,
        "files": files,
    }
    _check_schema(data)
    verify_files(root, files, "size", what=f"bundle {root}")
    if image is not None:
        _check_preprocessor(root, image)
    atomic_write_json(root / MANIFEST_NAME, data)
    logger.info("wrote %s (%d files)", root / MANIFEST_NAME, len(files))
    return data


def update_index_section(manifest: Manifest, strict: bool = False, **fields: Any) -> None:
    """Update fields of ``manifest.json``'s index section (atomic replace).

    Used to mirror a saved index's ``count``/``ef_search`` (best effort: ``index/<generation>/index.json``
    stays the authority, so if the process dies in between the manifest only lags behind), and, with
    ``strict=True`` (errors raise :class:`BundleError`), to record a new index's dim before it is saved.
    """
    path = manifest.root / MANIFEST_NAME
    try:
        data = read_json(path)
        data["index"].update(fields)
        atomic_write_json(path, data)
        manifest.data["index"].update(fields)
    except (OSError, ValueError, KeyError) as exc:
        if strict:
            raise BundleError(f"cannot update {path}: {exc}") from exc
        logger.warning("could not update %s index section: %s", path, exc)
