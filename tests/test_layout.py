"""The repository's layout rules hold (see tests/layout_rules.py), and the checker catches what it should."""

import textwrap
from pathlib import Path

import tomllib

from tests.layout_rules import check_tree, modules, package_dirs, top_level_imports

REPO = Path(__file__).resolve().parents[1]


def test_stages_import_in_one_direction():
    violations = check_tree(REPO)
    assert not violations, "\n".join(map(str, violations))


def test_tests_and_tools_import_only_the_edgeret_namespace():
    files = [p for top in ("tests", "tools") for p in (REPO / top).rglob("*.py") if "fixtures" not in p.parts]
    violations = top_level_imports(files)
    assert not violations, "\n".join(map(str, violations))


def test_every_package_folder_is_installed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {name for name, _, is_package in modules(REPO) if is_package}
    assert found == listed


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.setuptools.package-dir]
        "edgeret" = "edgeret"
        "edgeret.runtime" = "runtime"
        "edgeret.distill" = "distill"
    '''))
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_a_planted_back_edge_fails(tmp_path):
    repo = _tree(tmp_path, {
        "edgeret/__init__.py": "", "runtime/__init__.py": "", "distill/__init__.py": "",
        "distill/train.py": "from edgeret.runtime.vectors import truncate\n",  # allowed: downwards
        "runtime/vectors.py": """
            def truncate(x):
                from edgeret.distill.train import thing  # planted: the runtime reaching up into distill
                return x
        """,
    })
    rules = {(v.path.name, v.rule) for v in check_tree(repo)}
    assert rules == {("vectors.py", "back-edge")}


def test_lazy_imports_need_a_reason_and_private_names_stay_home(tmp_path):
    repo = _tree(tmp_path, {
        "edgeret/__init__.py": "", "runtime/__init__.py": "", "runtime/_fs.py": "", "distill/__init__.py": "",
        "distill/a.py": """
            from edgeret.runtime._fs import read
            def f():
                import json
                # torch is optional here
                import torch
        """,
        "distill/b.py": "import runtime.bundle\n",
    })
    found = sorted((v.path.name, v.rule, v.line) for v in check_tree(repo))
    assert found == [("a.py", "lazy import without a reason", 4), ("a.py", "private across stages", 2),
                     ("b.py", "top-level import", 1)]


def test_the_package_dirs_match_the_stage_folders():
    dirs = package_dirs(REPO)
    assert {k: v.name for k, v in dirs.items()} == {
        "edgeret": "edgeret", "edgeret.runtime": "runtime", "edgeret.data": "data", "edgeret.distill": "distill",
        "edgeret.compress": "compress", "edgeret.bench": "bench"}
