"""The layout rules of the repository, checked over source text (nothing is imported).

Stages import in one direction::

    edgeret.runtime  <-  edgeret.data  <-  edgeret.distill  <-  edgeret.compress  <-  edgeret.bench  <-  edgeret.cli

(the package root ``edgeret`` is the runtime's facade: it may import only the runtime). Every import
counts, module-level or inside a function. Besides the direction:

* no module imports a top-level ``runtime``, ``data``, ``distill``, ``compress`` or ``bench`` (those
  folders are installed only as ``edgeret.*``; inside a checkout such an import would still work);
* no stage imports another stage's private names (``_name``), nor its private modules;
* an import inside a function says why it is there (a ``#`` comment on its line or the line above):
  the deliberate lazy imports are the ones that keep the base install torch-free and start-up fast.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tomllib

#: layer of each stage package, lowest first
LAYERS = {"edgeret.runtime": 0, "edgeret.data": 1, "edgeret.distill": 2, "edgeret.compress": 3, "edgeret.bench": 4,
          "edgeret.cli": 5, "edgeret.pipeline": 5}
ROOT_FACADE = "edgeret"  # the package root: only the runtime below it
STAGE_FOLDERS = ("runtime", "data", "distill", "compress", "bench")


@dataclass(frozen=True)
class Violation:
    """One broken rule: where, and what."""

    path: Path
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.detail}"


def package_dirs(repo: Path) -> dict[str, Path]:
    """``{package: folder}`` from pyproject.toml's ``[tool.setuptools.package-dir]``."""
    config = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    return {name: repo / folder for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def modules(repo: Path) -> Iterator[tuple[str, Path, bool]]:
    """``(dotted name, file, is_package)`` of every installed module."""
    mapping = package_dirs(repo)
    roots = sorted(mapping.items(), key=lambda item: len(item[0]), reverse=True)
    seen: set[Path] = set()
    for name, folder in roots:
        for path in sorted(folder.rglob("*.py")):
            if path in seen or "__pycache__" in path.parts:
                continue
            nested = [other for other_name, other in roots if other_name != name and other != folder
                      and other.is_relative_to(folder) and path.is_relative_to(other)]
            if nested:
                continue
            seen.add(path)
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            yield ".".join([name, *parts]), path, is_package


def layer_of(module: str) -> int | None:
    """The layer of an ``edgeret`` module (None outside edgeret)."""
    for package, layer in sorted(LAYERS.items(), key=lambda item: len(item[0]), reverse=True):
        if module == package or module.startswith(package + "."):
            return layer
    return None


def stage_of(module: str) -> str | None:
    for package in LAYERS:
        if module == package or module.startswith(package + "."):
            return package
    return None


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[ast.stmt, str, list[str], bool]]:
    """``(node, imported module, imported names, inside a function)`` for every import statement."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.stmt, str, list[str], bool]]:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield child, alias.name, [], in_function
            elif isinstance(child, ast.ImportFrom):
                target = _absolute(module, is_package, child)
                names = [alias.name for alias in child.names]
                if child.level and child.module is None:  # "from . import x": x are modules
                    for name in names:
                        yield child, f"{target}.{name}", [], in_function
                else:
                    yield child, target, names, in_function
            yield from walk(child, inner)

    yield from walk(tree, False)


def _has_reason(lines: list[str], lineno: int) -> bool:
    line = lines[lineno - 1]
    above = lines[lineno - 2].strip() if lineno > 1 else ""
    return "#" in line or above.startswith("#")


def check_module(module: str, path: Path, is_package: bool) -> list[Violation]:
    """Every rule of the module docstring, for one module."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    out = []
    mine = layer_of(module)
    own_stage = stage_of(module)
    for node, target, names, in_function in imports(ast.parse(source), module, is_package):
        top = target.split(".")[0]
        if top in STAGE_FOLDERS:
            out.append(Violation(path, node.lineno, "top-level import",
                                 f"imports {target!r}: the stages are installed as edgeret.{top}"))
            continue
        if in_function and not _has_reason(lines, node.lineno):
            out.append(Violation(path, node.lineno, "lazy import without a reason",
                                 f"imports {target!r} inside a function with no comment saying why"))
        if top != "edgeret":
            continue
        theirs = layer_of(target)
        if module == ROOT_FACADE or (is_package and module == ROOT_FACADE):
            if theirs not in (None, 0) and target != ROOT_FACADE:
                out.append(Violation(path, node.lineno, "facade", f"the package root imports {target!r}"))
            continue
        if theirs is None:
            if target == ROOT_FACADE and mine is not None and mine < LAYERS["edgeret.cli"]:
                out.append(Violation(path, node.lineno, "back-edge", f"{module} imports the package root"))
            continue
        if mine is not None and theirs > mine:
            out.append(Violation(path, node.lineno, "back-edge",
                                 f"{module} (layer {mine}) imports {target} (layer {theirs})"))
        other_stage = stage_of(target)
        if other_stage != own_stage:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private_module = any(part.startswith("_") and not part.startswith("__") for part in target.split("."))
            if private or private_module:
                out.append(Violation(path, node.lineno, "private across stages",
                                     f"{module} imports {', '.join(private) or target} from {other_stage}"))
    return out


def check_tree(repo: Path) -> list[Violation]:
    """All violations in the installed packages of ``repo``."""
    out = []
    for module, path, is_package in modules(repo):
        out += check_module(module, path, is_package)
    return out


def top_level_imports(paths: list[Path]) -> list[Violation]:
    """Imports of a top-level stage name in other files (tests, tools)."""
    out = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            for name in names:
                if name.split(".")[0] in STAGE_FOLDERS:
                    out.append(Violation(path, node.lineno, "top-level import", f"imports {name!r}"))
    return out
