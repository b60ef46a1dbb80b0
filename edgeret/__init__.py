"""edgeret: distil a multimodal embedding model into a tiny dual encoder and search with it on-device.

The base install is the torch-free runtime::

    from edgeret import Retriever
    retriever = Retriever.open("bundle/")
    retriever.search(text="a red heart", k=5)

The stages are subpackages with their own extras: :mod:`edgeret.distill` (teachers, caches, the
student, pruning), :mod:`edgeret.compress` (ONNX export, quantisation, bundles), :mod:`edgeret.bench`
(the studies); :mod:`edgeret.data` holds the datasets and evaluation code they share, and
:mod:`edgeret.cli` the ``edgeret`` command. Public names are imported on first use, so ``import
edgeret`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .runtime._lazy import lazy_exports

_EXPORTS = {
    "Retriever": ".runtime.retriever",
    "SearchResult": ".runtime.index",
    "VectorIndex": ".runtime.index",
    "BundleError": ".runtime.errors",
    "UnknownIdError": ".runtime.errors",
    "ImagePreprocessor": ".runtime.preprocess",
    "Manifest": ".runtime.bundle",
    "load_manifest": ".runtime.bundle",
    "__version__": None,
}
__all__ = ["BundleError", "ImagePreprocessor", "Manifest", "Retriever", "SearchResult", "UnknownIdError", "VectorIndex",
           "__version__", "load_manifest"]

if TYPE_CHECKING:  # static analysers see the real names
    from .runtime.bundle import Manifest, load_manifest
    from .runtime.errors import BundleError, UnknownIdError
    from .runtime.index import SearchResult, VectorIndex
    from .runtime.preprocess import ImagePreprocessor
    from .runtime.retriever import Retriever

_getattr, __dir__ = lazy_exports(__name__, {k: v for k, v in _EXPORTS.items() if v})


def __getattr__(name: str) -> object:
    if name == "__version__":  # from the package metadata, read once on first access
        from .runtime.versions import edgeret_version  # lazy: importlib.metadata costs tens of ms of cold start

        globals()["__version__"] = version = edgeret_version()
        return version
    return _getattr(name)
