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

from ._fs import atomic_write_json, confined, file_entry, is_regular_file, read_json, remove_entry, sha256_file
from .errors import BundleError, shorten
from .manifest_check import (
    BUNDLE_FORMAT,
    FORMAT_VERSION,
    IMAGE_ROLES,
    MANIFEST_NAME,
    SPACES,
    TEXT_ROLES,
    check_manifest,
    index_dir,
)
from .persist import SavedIndex, read_saved_index, verify_files
from .schema import require_int
from .versions import package_versions

logger = logging.getLogger(__name__)

MODEL_FORMATS = ("auto", "onnx", "ort")
#: operator list for onnxruntime minimal builds, written beside .ort twins (build-time only)
OPERATOR_CONFIG = "required_operators.config"
INDEX_DEFAULTS = {"path": "index", "space": "cosine", "M": 16, "ef_construction": 200, "ef_search": 64, "count": 0}
_PRODUCER_PACKAGES = ("onnxruntime", "onnx", "torch", "tokenizers", "optimum-onnx", "numpy")

__all__ = [
    "BUNDLE_FORMAT", "FORMAT_VERSION", "IMAGE_ROLES", "MANIFEST_NAME", "SPACES", "TEXT_ROLES", "BundleError",
    "Manifest", "load_manifest", "sha256_file", "write_manifest",
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
        """The Matryoshka prefix dims the encoders were trained for (the full dim excluded)."""
        return [int(d) for d in self.data["embedding"].get("matryoshka_dims", [])]

    @property
    def allowed_dims(self) -> list[int]:
        """Dims an index may use: the Matryoshka prefixes and the full dim."""
        return sorted({*self.matryoshka_dims, self.dim})

    @property
    def text(self) -> dict[str, Any] | None:
        """The ``text_encoder`` section (None for an image-only bundle)."""
        return self.data.get("text_encoder")

    @property
    def image(self) -> dict[str, Any] | None:
        """The ``image_encoder`` section (None for a text-only bundle)."""
        return self.data.get("image_encoder")

    @property
    def index(self) -> dict[str, Any]:
        """The ``index`` section: the configuration new indexes use, mirrored from the saved one."""
        return self.data["index"]

    @property
    def index_dir(self) -> Path:
        """The index folder, resolved and confined to the bundle."""
        return index_dir(self.root, self.data)

    def path(self, relative: str) -> Path:
        """Absolute path of a file named in the manifest, confined to the bundle (BundleError otherwise)."""
        return confined(self.root, relative, MANIFEST_NAME)


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


def _check_preprocessor(root: Path, image: Mapping[str, Any]) -> None:
    path = confined(root, image["preprocessor"], f"{MANIFEST_NAME} image_encoder preprocessor")
    try:
        config = read_json(path, limit=1 << 20)
    except ValueError as exc:
        raise BundleError(f"{shorten(image['preprocessor'])}: unreadable preprocessor config ({exc})") from exc
    size = require_int(config, "size", str(image["preprocessor"]))
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
    Structure, version, dims and field bounds are always checked, and every path the manifest names must
    stay inside ``bundle_dir`` after resolving symlinks. Raises :class:`BundleError`.

    The returned manifest's ``saved_index`` holds a reader's shared lock on its generation (so that a
    concurrent save does not delete it) until :meth:`runtime.persist.SavedIndex.release` is called.
    """
    root = Path(bundle_dir)
    path = root / MANIFEST_NAME
    if not is_regular_file(path):
        raise BundleError(f"{shorten(str(root))}: no {MANIFEST_NAME}; not an edgeret bundle")
    try:
        data = read_json(path)
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    check_manifest(data, root)
    verify_files(root, data["files"], verify, what=f"bundle {shorten(str(root))}")
    if data.get("image_encoder") is not None:
        _check_preprocessor(root, data["image_encoder"])
    manifest = Manifest(root, data)
    saved = read_saved_index(manifest.index_dir, verify=verify)
    if saved is None and manifest.index["count"] > 0:
        raise BundleError(f"{MANIFEST_NAME} index: count {manifest.index['count']} but {manifest.index_dir} is missing")
    if saved is not None:
        try:
            _check_saved_index(manifest, saved)
        except BundleError:
            saved.release()
            raise
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
        and not _is_temporary(path.name)
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
    check_manifest(data, root)
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
        if not isinstance(data, dict) or not isinstance(data.get("index"), dict):
            raise ValueError("it has no 'index' object")
        data["index"].update(fields)
        atomic_write_json(path, data)
        manifest.data["index"].update(fields)
    except (OSError, ValueError) as exc:
        if strict:
            raise BundleError(f"cannot update {path}: {exc}") from exc
        logger.warning("could not update %s index section: %s", path, exc)


def _is_temporary(name: str) -> bool:
    return name.startswith(f".{MANIFEST_NAME}.") and name.endswith(".tmp")


def remove_manifest_temporaries(root: Path) -> None:
    """Delete ``.manifest.json.*.tmp`` leftovers of killed saves in the bundle folder (symlinks unlinked, never
    followed). Call only under the index's writers' lock."""
    for child in Path(root).iterdir():
        if _is_temporary(child.name):
            remove_entry(child)
