"""``python -m tools.own_corpus``: ``edgeret build`` on a user-style corpus of files, timed end to end.

The corpus: every OpenMoji emoji rendered ``--renders`` times (the clean render, then augmented ones) as PNG
files in nested folders (``renders/<split>/<emoji>/<k>.png``), and a ``captions.jsonl`` pairing each file with
one of its emoji's captions (cycling through them) — 1,914 emoji x 3 = 5,742 image-caption pairs by default.
Records carry the emoji's split, so the held-out pairs are emoji the stand-in teacher's head never saw.

With ``--extra-text N``, a ``notes-N.txt`` of unlabeled text joins the sources as train-only: the lemmas and
the gloss of N WordNet train synsets, one per line (generic English that a user would take from their own notes or
descriptions); it feeds only feature distillation, no pairs, and none of it is an emoji caption.

Then a recipe (stand-in teacher, default preset, an INT8 variant, an index, the held-out report) runs through
:func:`edgeret.pipeline.build.run_build` exactly as ``edgeret build`` would. Writes ``own_corpus.json`` and
``own_corpus.md``: the build's wall time, every stage's seconds and peak RSS, the report, and the INT8
student's share of the teacher's Recall@10 on the held-out t2i and i2t pairs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from edgeret.data.augment import augmented_render
from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.results import invocation, machine_info, markdown_table, now_iso, package_versions, write_json
from edgeret.data.wordnet import synsets
from edgeret.pipeline.build import run_build
from edgeret.pipeline.recipe import recipe_from_dict

logger = logging.getLogger(__name__)


def write_corpus(root: Path, renders: int = 3, size: int = 224) -> int:
    """The renders and ``captions.jsonl`` under ``root`` (reused when complete); returns the number of pairs."""
    captions = root / "captions.jsonl"
    if captions.is_file():
        return sum(1 for _ in captions.open(encoding="utf-8"))
    lines = []
    for e in tqdm(emojis("all"), desc="writing the corpus", unit="emoji"):
        folder = root / "renders" / e.split / e.id
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(renders):
            image = render_emoji(e.text, size) if k == 0 else augmented_render(e.text, e.id, k - 1, seed=7, size=size)
            path = folder / f"{k}.png"
            image.save(path)
            lines.append(json.dumps({"id": f"{e.id}-{k}", "image": str(path.relative_to(root)),
                                     "text": e.captions[k % len(e.captions)], "split": e.split}))
    tmp = captions.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(captions)
    return len(lines)


def write_notes(root: Path, n_synsets: int) -> Path:
    """``notes-<n_synsets>.txt`` under ``root``: lemmas and gloss of the first ``n_synsets`` WordNet train
    synsets, a line each."""
    path = root / f"notes-{n_synsets}.txt"
    if not path.is_file():
        chosen = synsets("train")[:n_synsets]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{s.lemmas}\n{s.gloss}\n" for s in chosen), encoding="utf-8")
        tmp.replace(path)
    return path


def recipe(root: Path, work: Path, head: Path, preset: str, overrides: list[str] | None = None,
           notes: Path | None = None) -> dict[str, Any]:
    """The build recipe over the corpus in ``root`` (and the unlabeled ``notes`` text file, when given)."""
    sources: list[dict[str, Any]] = [{"type": "records", "path": str(root / "captions.jsonl")}]
    if notes is not None:
        sources.append({"type": "texts", "path": str(notes), "split": "train"})  # distillation only: none held out
    return {
        "name": "emoji-files", "work_dir": str(work),
        "teacher": {"name": "standin", "head_path": str(head)},
        "sources": sources,
        "student": {"preset": preset, "set": list(overrides or [])},
        "variants": [{"name": "int8", "quant": "int8", "ort": True}],
        "index": {"variant": "int8", "out": "searchable", "queries": ["a red heart", "the flag of Japan"]},
        "report": {"split": "test", "sample": None},
    }


def retention(report: dict[str, Any], variant: str = "int8") -> dict[str, float]:
    """The variant's Recall@10 as a share of the teacher's, per labelled task."""
    rows = {(r["variant"], r["task"]): r for r in report["rows"] if "recall@10" in r}
    return {task: rows[(variant, task)]["recall@10"] / rows[("teacher", task)]["recall@10"]
            for (name, task) in rows if name == "teacher" and (variant, task) in rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write the corpus, run the build, write the results."""
    parser = argparse.ArgumentParser(prog="python -m tools.own_corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("artifacts/own-corpus"), help="corpus and build folder")
    parser.add_argument("--head-path", type=Path, default=Path("artifacts/teacher/standin_image_head.safetensors"),
                        help="the stand-in's image head (fitted there, and counted in the build, when missing)")
    parser.add_argument("--renders", type=int, default=3, help="renders per emoji")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="preset overrides, as edgeret distill --set (repeatable)")
    parser.add_argument("--extra-text", type=int, default=0, metavar="N",
                        help="add a text file of N WordNet train synsets (lemmas and gloss lines) as unlabeled text")
    parser.add_argument("--fresh", action="store_true", help="start the build from nothing (the corpus is kept)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    start = time.perf_counter()
    pairs = write_corpus(args.root / "files", args.renders)
    notes = write_notes(args.root / "files", args.extra_text) if args.extra_text else None
    corpus_s = time.perf_counter() - start
    work = args.root / "build"
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    head_existed = args.head_path.is_file()
    start = time.perf_counter()
    result = run_build(recipe_from_dict(recipe(args.root / "files", work, args.head_path, args.preset,
                                               args.overrides, notes)))
    build_s = time.perf_counter() - start
    summary = {
        "command": invocation("python -m tools.own_corpus", argv), "created": now_iso(),
        "machine": machine_info([1]), "versions": package_versions(), "pairs": pairs,
        "extra_text_lines": 2 * args.extra_text,
        "corpus_seconds": round(corpus_s, 1), "build_seconds": round(build_s, 1),
        "head_fitted_in_build": not head_existed,
        "stages": [vars(r) for r in result.stages.records], "report": result.report,
        "retention_recall@10": retention(result.report), "scan": result.scans[0].summary() if result.scans else None,
    }
    write_json(args.out / "own_corpus.json", summary)
    (args.out / "own_corpus.md").write_text(own_corpus_markdown(summary), encoding="utf-8")
    logger.info("\n%s", own_corpus_markdown(summary))
    return summary


def own_corpus_markdown(summary: dict[str, Any]) -> str:
    """Command, build time, stages, retention and the report's rows."""
    stages = [{"stage": s["name"], "status": s["status"], "seconds": s["seconds"], "peak RSS MB": s["peak_rss_mb"]}
              for s in summary["stages"]]
    keep = ("variant", "task", "queries", "corpus", "recall@1", "recall@10", "teacher_overlap@10", "mean_cosine",
            "query_vs_teacher_corpus_recall@10", "text_query_ms_p50_1t", "image_query_ms_p50_1t", "bundle_bytes")
    rows = [{k: r.get(k) for k in keep} for r in summary["report"]["rows"]]
    lines = summary.get("extra_text_lines", 0)
    extra = f" + {lines:,} lines of unlabeled text (WordNet train synsets)" if lines else ""
    retention = ", ".join(f"{task} {share:.1%}" for task, share in summary["retention_recall@10"].items())
    return "\n".join([
        f"`{summary['command']}`", "",
        f"{summary['created']} · {summary['pairs']:,} image-caption pairs as files"
        f"{extra} · corpus written in "
        f"{summary['corpus_seconds']:.0f} s · **`edgeret build` {summary['build_seconds'] / 60:.1f} min** "
        f"(the stand-in's head {'fitted in the build' if summary['head_fitted_in_build'] else 'already fitted'})", "",
        markdown_table(stages, list(stages[0])), "",
        f"INT8 student's Recall@10 as a share of the teacher's on the held-out pairs: {retention}", "",
        markdown_table(rows, list(keep)), "",
    ])


if __name__ == "__main__":
    main()
