"""``python -m tools.compress_sweep``: one student checkpoint through ``edgeret compress`` under several settings.

Each setting is ``LABEL=ARGS``: the label names a row, ``ARGS`` are ``edgeret compress`` arguments (everything but
the checkpoint and ``--out``), e.g. ``cold0.9=--quant int8 --ort --embedding-cold-share 0.9``. Every bundle is
written to ``--work/<label>``; a bundle whose ``sweep_report.json`` records the same arguments is reused, so an
interrupted sweep resumes where it stopped. Writes ``<name>.json`` and ``<name>.md`` under ``--out``: per setting
the bundle's bytes (as ``edgeret compress`` counts them, and with the ``.ort`` twins), the embedding
split, recovery steps, and per agreement set the Recall@10 and top-10 overlap with the float model (``--sets``,
e.g. the style-shift sets ``openmoji-style-test-t2i``). With ``--baseline LABEL`` each row's Recall@10 is also
given as a share of that row's.

Examples (the committed results)::

    python -m tools.compress_sweep artifacts/student --name embedding_split \\
        --setting "0.4/32=--quant int8 --ort --embedding-cold-share 0.4 --embedding-cold-block 32" ...
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
from pathlib import Path
from typing import Any

from edgeret.cli.compress import run as compress
from edgeret.data.results import invocation, machine_info, markdown_table, now_iso, package_versions, write_json

logger = logging.getLogger(__name__)

def parse_setting(text: str) -> tuple[str, list[str]]:
    """``LABEL=ARGS`` -> (label, argument list)."""
    label, sep, args = text.partition("=")
    if not sep or not label.strip():
        raise argparse.ArgumentTypeError(f"a setting is LABEL=ARGS, got {text!r}")
    return label.strip(), shlex.split(args)


def run_setting(checkpoint: str, label: str, args: list[str], work: Path, sets: str) -> dict[str, Any]:
    """Compress (or reuse) one setting's bundle; returns its compress report (with the bundle's byte counts)."""
    out = work / label.replace("/", "_")
    argv = [checkpoint, *args, "--agreement-sets", sets]
    recorded = out / "sweep_report.json"
    if recorded.is_file() and (kept := json.loads(recorded.read_text()))["argv"] == argv:
        logger.info("%s: reusing %s", label, out)
        return kept["report"]
    logger.info("%s: edgeret compress %s", label, shlex.join(argv))
    report = compress([*argv, "--out", str(out)])
    recorded.write_text(json.dumps({"argv": argv, "report": report}, default=str))
    return report


def row(label: str, report: dict[str, Any]) -> dict[str, Any]:
    """One table row from a compress report."""
    split = report.get("embedding_split") or {}
    recovered = ((report.get("prune") or {}).get("recovered") or {})
    out: dict[str, Any] = {
        "setting": label, "bundle bytes": report["bundle_bytes"],
        "mobile bytes": report.get("mobile_bundle_bytes", "–"), "text bytes": report["bytes"].get("text"),
        "hot/cold rows": f"{split['hot_rows']}/{split['cold_rows']}" if split else "–",
        "recovery steps": recovered.get("steps", "–"),
    }
    sets = report.get("agreement", [])
    out.update({f"{short_name(a['set'])} R@10": round(a["recall@10"], 4) for a in sets})
    out.update({f"{short_name(a['set'])} overlap": round(a["top10_overlap"], 4) for a in sets})
    return out


def short_name(evalset: str) -> str:
    """A set's name without its corpus (``openmoji-style-test-i2t`` -> ``style-test-i2t``)."""
    return evalset.split("-", 1)[-1]


def add_retention(rows: list[dict[str, Any]], baseline: str) -> None:
    """Each row's Recall@10 as a share of the baseline row's, per set."""
    base = next((r for r in rows if r["setting"] == baseline), None)
    if base is None:
        raise SystemExit(f"--baseline {baseline!r} is not a setting")
    for r in rows:
        for key in [k for k in r if k.endswith(" R@10")]:
            r[key.replace(" R@10", " kept")] = round(r[key] / base[key], 3) if base.get(key) else None


def markdown(summary: dict[str, Any]) -> str:
    """The results as markdown."""
    rows = summary["rows"]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    note = f": {summary['note']}" if summary.get("note") else ""
    return (f"`{summary['command']}`\n\n{summary['created']} · {summary['machine']['cpu']}\n\n"
            f"Checkpoint `{summary['checkpoint']}`{note}. R@10 and overlap (top-10 overlap with the same model in "
            "fp32) per agreement set; bundle bytes as `edgeret compress` counts them (the .onnx models with the "
            "tokenizer, preprocessor and manifest; mobile: the .ort twins instead).\n\n"
            + markdown_table(rows, columns) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the settings, write the results."""
    parser = argparse.ArgumentParser(prog="python -m tools.compress_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="student checkpoint folder (distill's output)")
    parser.add_argument("--setting", type=parse_setting, action="append", required=True, metavar="LABEL=ARGS")
    parser.add_argument("--sets", default="openmoji-test-t2i,openmoji-test-i2t,wordnet-test-t2t",
                        help="comma-separated agreement sets")
    parser.add_argument("--baseline", help="the label whose Recall@10 the others are compared with")
    parser.add_argument("--work", type=Path, default=Path("artifacts/sweep"), help="where the bundles go")
    parser.add_argument("--name", default="compress_sweep", help="results file name (without suffix)")
    parser.add_argument("--note", default="", help="a line on where the checkpoint comes from (in the results)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    labels = [label for label, _ in args.setting]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"setting labels must differ: {labels}")
    rows = []
    for label, extra in args.setting:
        report = run_setting(args.checkpoint, label, extra, args.work, args.sets)
        rows.append(row(label, report))
    if args.baseline:
        add_retention(rows, args.baseline)
    summary = {"command": invocation("python -m tools.compress_sweep", argv), "created": now_iso(),
               "machine": machine_info([1]), "versions": package_versions(), "checkpoint": args.checkpoint,
               "note": args.note, "rows": rows}
    write_json(args.out / f"{args.name}.json", summary)
    (args.out / f"{args.name}.md").write_text(markdown(summary), encoding="utf-8")
    logger.info("wrote %s", args.out / f"{args.name}.md")
    return summary


if __name__ == "__main__":
    main()
