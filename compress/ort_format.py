"""ORT-format models (``.ort``) and the operator config for onnxruntime's mobile / minimal builds.

An onnxruntime minimal build (what onnxruntime-mobile ships on Android and iOS) loads only ``.ort``
files and contains only the operators it was built with. :func:`convert_to_ort` writes an ``.ort``
next to an ``.onnx`` (graph optimised once, offline, with the layout-independent optimisations a
mobile CPU can run — no x86-only NCHWc kernels); :func:`write_operator_config` writes the
``required_operators.config`` that ``build.sh --minimal_build --include_ops_by_config`` takes;
:func:`operator_markdown` renders that config as the operator list in the README.

    python -m edgeret.compress.ort_format artifacts/bundles/student-int8 --update docs/mobile.md
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeret.data.metrics import row_cosines
from edgeret.runtime.bundle import OPERATOR_CONFIG
from edgeret.runtime.sessions import create_session

logger = logging.getLogger(__name__)

MARKERS = ("<!-- operators:start -->", "<!-- operators:end -->")
#: graph transformers that produce x86-specific layouts; left out so the .ort runs on ARM too
_NON_PORTABLE_OPTIMIZERS = ["NchwcTransformer"]


def convert_to_ort(onnx_path: str | Path, ort_path: str | Path | None = None) -> Path:
    """Optimise ``onnx_path`` (level "all", portable transformers only) and save it as an ORT-format model."""
    onnx_path = Path(onnx_path)
    ort_path = Path(ort_path) if ort_path is not None else onnx_path.with_suffix(".ort")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(ort_path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=_NON_PORTABLE_OPTIMIZERS)
    if not ort_path.is_file():
        raise RuntimeError(f"onnxruntime did not write {ort_path}")
    logger.info("ORT format: %s (%d bytes)", ort_path, ort_path.stat().st_size)
    return ort_path


def write_operator_config(ort_paths: Iterable[str | Path], config_path: str | Path) -> Path:
    """The operators (per domain and opset) the given ``.ort`` models need, in onnxruntime's config format."""
    # lazy: onnxruntime's tools reconfigure the root logger at import
    from onnxruntime.tools.ort_format_model import create_config_from_models

    config_path = Path(config_path)
    create_config_from_models([Path(p) for p in ort_paths], config_path, enable_type_reduction=False)
    # the tool names the models by absolute path in its comments: keep only file names (the bundle moves)
    lines = config_path.read_text(encoding="utf-8").splitlines()
    lines = [f"# - {Path(line[4:]).name}" if line.startswith("# - ") else line for line in lines]
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config_path


def ort_parity(onnx_path: str | Path, ort_path: str | Path, feeds: dict) -> dict[str, float]:
    """Outputs of the ``.ort`` against the ``.onnx`` on the same inputs.

    ``min_cosine`` / ``max_abs_diff``: against the ``.onnx`` optimised as the twin was made (portable transformers
    only), so the same kernels run and any difference is the conversion's. ``desktop_min_cosine``: against the
    ``.onnx`` as the desktop runtime opens it (x86 NCHWc layouts too), where a quantised graph can differ by a
    rounding step (informative, not checked).
    """
    def outputs(path: str | Path, **kwargs: Any) -> np.ndarray:
        return np.asarray(create_session(path, threads=1, **kwargs).run(None, feeds)[0], dtype=np.float64)

    twin = outputs(ort_path)
    same = outputs(onnx_path, disabled_optimizers=_NON_PORTABLE_OPTIMIZERS)
    return {"max_abs_diff": float(np.abs(same - twin).max()), "min_cosine": float(row_cosines(same, twin).min()),
            "desktop_min_cosine": float(row_cosines(outputs(onnx_path), twin).min()), "rows": len(twin)}


def read_operator_config(config_path: str | Path) -> list[tuple[str, int, list[str]]]:
    """``[(domain, opset, [op, ...]), ...]`` from a ``required_operators.config`` (comments skipped)."""
    rows = []
    for line in Path(config_path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        domain, opset, ops = line.split(";")
        rows.append((domain, int(opset), sorted(op.strip() for op in ops.split(",") if op.strip())))
    return rows


def operator_markdown(config_path: str | Path, models: Sequence[str] = ()) -> str:
    """A markdown table of the operators in ``config_path`` (generated, so the README cannot drift)."""
    lines = []
    if models:
        lines.append(f"Operators needed by {', '.join(f'`{m}`' for m in models)} "
                     f"(from `{Path(config_path).name}`, written by `edgeret compress --ort`):\n")
    lines += ["| domain | opset | operators |", "|---|---|---|"]
    for domain, opset, ops in read_operator_config(config_path):
        lines.append(f"| {domain} | {opset} | {', '.join(ops)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Print (or write) the operator table of a bundle built with ``--ort``."""
    parser = argparse.ArgumentParser(prog="python -m edgeret.compress.ort_format", description=main.__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--markdown", type=Path, help="write the table here instead of printing it")
    parser.add_argument("--update", type=Path, action="append", default=[], metavar="DOC",
                        help=f"replace the text between {MARKERS[0]} and {MARKERS[1]} in DOC (repeatable)")
    args = parser.parse_args(argv)
    config = args.bundle / OPERATOR_CONFIG
    if not config.is_file():
        raise SystemExit(f"{config} is missing: build the bundle with `edgeret compress ... --ort`")
    models = sorted(p.name for p in args.bundle.glob("*.ort"))
    text = operator_markdown(config, models)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    for doc in args.update:
        replace_between_markers(doc, text)
    if not args.markdown and not args.update:
        print(text)
    return text


def replace_between_markers(doc: Path, text: str) -> None:
    """Put ``text`` between the operator-table markers of ``doc`` (which must have both)."""
    content = doc.read_text(encoding="utf-8")
    start, end = content.find(MARKERS[0]), content.find(MARKERS[1])
    if start < 0 or end < start:
        raise SystemExit(f"{doc} has no {MARKERS[0]} ... {MARKERS[1]} block")
    head = content[: start + len(MARKERS[0])]
    doc.write_text(f"{head}\n{text}{content[end:]}", encoding="utf-8")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
