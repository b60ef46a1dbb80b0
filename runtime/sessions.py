"""The one place that creates onnxruntime sessions (threads, optimisation level, providers)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import BundleError, shorten

logger = logging.getLogger(__name__)

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def create_session(
    model_path: str | Path,
    *,
    threads: int | None = None,
    inter_op_threads: int | None = 1,
    optimization: str = "all",
    providers: Sequence[str] | None = None,
    config: Mapping[str, str] | None = None,
    disabled_optimizers: Sequence[str] = (),
) -> ort.InferenceSession:
    """Open an ``.onnx`` or ``.ort`` model.

    Args:
        threads: intra-op threads; ``None`` lets onnxruntime use all physical cores.
        inter_op_threads: threads running independent graph nodes (1 = sequential execution).
        optimization: graph optimisation level: ``disable``, ``basic``, ``extended`` or ``all``.
        providers: execution providers, default ``["CPUExecutionProvider"]``.
        config: extra ``SessionOptions`` config entries (e.g. ``{"session.intra_op.allow_spinning": "0"}``).
        disabled_optimizers: graph transformers to leave out (e.g. ``["NchwcTransformer"]``, as a portable
            ``.ort`` twin was made).

    Raises:
        BundleError: the file is missing or onnxruntime cannot load it.
    """
    path = Path(model_path)
    if optimization not in _LEVELS:
        raise ValueError(f"optimization must be one of {sorted(_LEVELS)}, got {optimization!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = _LEVELS[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
        if inter_op_threads == 1:
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if path.suffix == ".ort":
        options.add_session_config_entry("session.load_model_format", "ORT")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if not path.is_file():
        raise BundleError(f"model file {path} is missing")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers or _default()),
                                       disabled_optimizers=list(disabled_optimizers) or None)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"{path.name}: onnxruntime cannot load it ({exc})") from exc
    logger.debug("session %s: threads=%s providers=%s", path.name, threads, session.get_providers())
    return session


def create_first_session(root: Path, candidates: Sequence[str], **kwargs) -> tuple[ort.InferenceSession, str]:
    """A session for the first of ``candidates`` (files under ``root``) that onnxruntime loads; the name used.

    Used for a tower's ``.onnx`` and its ``.ort`` twin, one as the other's fallback: a failure is logged
    and the next candidate tried; if none loads, the BundleError names every failure.
    """
    failures = []
    for i, name in enumerate(candidates):
        try:
            return create_session(Path(root) / name, **kwargs), name
        except BundleError as exc:
            failures.append(exc)
            if i < len(candidates) - 1:
                logger.warning("%s; falling back to %s", exc, candidates[i + 1])
    if not failures:
        raise ValueError("no model file to load")
    if len(failures) == 1:
        raise failures[0]
    raise BundleError("; ".join(str(f) for f in failures)) from failures[-1]


def _default() -> list[str]:
    return ["CPUExecutionProvider"]


def check_io(session: ort.InferenceSession, inputs: Mapping[str, str], output: str, dim: int, name: str) -> None:
    """Check that a session has the manifest's input/output names and a ``dim``-wide output.

    Raises:
        BundleError: a name is absent from the graph, or the output's static width is not ``dim``.
    """
    graph_inputs = {node.name for node in session.get_inputs()}
    missing = [graph for graph in inputs.values() if graph not in graph_inputs]
    if missing:
        raise BundleError(f"{name}: graph has no input(s) {missing}; it has {sorted(graph_inputs)}")
    required = [node.name for node in session.get_inputs() if node.name not in set(inputs.values())]
    if required:
        raise BundleError(f"{name}: graph input(s) {required} are not mapped in the manifest 'inputs'")
    outputs = {node.name: node for node in session.get_outputs()}
    if output not in outputs:
        raise BundleError(f"{name}: graph has no output {output!r}; it has {sorted(outputs)}")
    width = outputs[output].shape[-1] if outputs[output].shape else None
    if isinstance(width, int) and width != dim:
        raise BundleError(f"{name}: output {output!r} is {width}-d but the manifest embedding dim is {dim}")


def input_dtype(session: ort.InferenceSession, name: str) -> str:
    """numpy dtype name of a graph input (``int64``, ``int32``, ``float32``, ...)."""
    for node in session.get_inputs():
        if node.name == name:
            return {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32",
                    "tensor(float16)": "float16"}.get(node.type, "float32")
    raise KeyError(name)


def run_session(session: ort.InferenceSession, output: str, feed: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """``session.run([output], feed)[0]``; an onnxruntime failure becomes a BundleError naming the tower."""
    try:
        (out,) = session.run([output], dict(feed))
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidArgument, Fail, ...)
        raise BundleError(f"{name}: onnxruntime failed to run the model ({shorten(str(exc).strip(), 300)})") from exc
    return out


def static_input_shape(session: ort.InferenceSession, name: str) -> list[int | str | None]:
    """The declared shape of a graph input (ints for static axes, names or None for dynamic ones)."""
    for node in session.get_inputs():
        if node.name == name:
            return list(node.shape or [])
    raise KeyError(name)
