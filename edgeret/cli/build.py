"""``edgeret build RECIPE``: from files on disk (or the built-in data) to a searchable bundle, in one command.

    edgeret build examples/recipes/gme-photos.toml
    edgeret build my.toml --work-dir /data/build --force     # recompute every stage

The recipe names the teacher, the sources, the student, the compression variants and the index
(:mod:`edgeret.pipeline.recipe`). The stages — teacher cache, distil, compress, index, report — each resume and
are skipped when their output is current; the command ends with a table of every stage (seconds, peak RSS) and
the report of the held-out split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeret.bench.corpus_report import report_markdown
from edgeret.data.results import invocation
from edgeret.pipeline.build import run_build
from edgeret.pipeline.recipe import load_recipe


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="edgeret build", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="recipe file (.toml or .json)")
    parser.add_argument("--work-dir", type=Path, help="where stage outputs go (default: the recipe's work_dir)")
    parser.add_argument("--force", action="store_true", help="recompute every stage")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``edgeret build``; returns the exit status."""
    args = build_parser().parse_args(argv)
    recipe = load_recipe(args.recipe)
    if args.work_dir is not None:
        recipe.work_dir = args.work_dir.resolve()
    result = run_build(recipe, force=args.force, command=invocation("edgeret build", argv))
    print(result.stages.table())
    if result.report is not None:
        print()
        print(report_markdown(result.report))
    return 0
