"""The verdict (which checks failed) and the results files: ``arm64.json`` and a markdown summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeret.data.results import markdown_table, write_json

from .compare import MIN_COSINE

QUERY_KINDS = ("vector", "text", "image")
#: end-to-end queries (embedded on each machine) may swap near-tied neighbours; their top-10 sets must still overlap
MIN_OVERLAP = 0.95


def _topk_failures(row: dict[str, Any], min_agreement: float, min_overlap: float) -> list[str]:
    """Vector queries (identical inputs) must give identical lists; text/image queries overlapping ones."""
    out, vector = [], row["topk"]["vector"]
    if vector["agreement"] < min_agreement:
        out.append(f"{row['bundle']}: the saved index answered {vector['agreement']:.1%} of the x86-made vector "
                   f"queries identically (needed {min_agreement:.0%}); first difference: {vector['first_difference']}")
    for kind in QUERY_KINDS[1:]:
        overlap = row["topk"][kind]["mean_overlap"]
        if overlap < min_overlap:
            out.append(f"{row['bundle']}: {kind} queries' top-10 overlap x86's by {overlap:.1%} on average "
                       f"(needed {min_overlap:.0%}); first difference: {row['topk'][kind]['first_difference']}")
    return out


def failures(report: dict[str, Any], min_agreement: float = 1.0, min_overlap: float = MIN_OVERLAP) -> list[str]:
    """Every failed check of a finished report, as sentences (empty: all passed)."""
    out = []
    for row in report["bundles"]:
        for tower in ("text", "image"):
            summary = row[tower]
            if not summary["ok"]:
                out.append(f"{row['bundle']}: {summary['below_threshold']} {tower} embedding(s) below cosine "
                           f"{MIN_COSINE} (min {summary['min_cosine']:.6f}, item {summary['worst_item']})")
        out += _topk_failures(row, min_agreement, min_overlap)
    tests = report.get("tests")
    if tests is not None and (tests["failed"] or tests["errors"] or not tests["passed"]):
        out.append(f"arm64-marked runtime tests under emulation: {tests['passed']} passed, {tests['failed']} failed, "
                   f"{tests['errors']} errors (log: {tests['log']})")
    return out


def _tower_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"bundle": row["bundle"], "tower": tower, "items": row[tower]["items"],
         "min cosine": f"{row[tower]['min_cosine']:.6f}", "mean cosine": f"{row[tower]['mean_cosine']:.6f}",
         "max abs diff": f"{row[tower]['max_abs_diff']:.1e}", "ok": "yes" if row[tower]["ok"] else "NO"}
        for row in report["bundles"] for tower in ("text", "image")
    ]


def _topk_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in report["bundles"]:
        cells = {"bundle": row["bundle"], "index items": row["index"]["items"]}
        for kind in QUERY_KINDS:
            t = row["topk"][kind]
            cells[f"{kind} queries"] = f"{t['identical']}/{t['queries']} ({t['agreement']:.0%})"
        for kind in QUERY_KINDS:
            cells[f"{kind} overlap@10"] = f"{row['topk'][kind]['mean_overlap']:.3f}"
            cells[f"{kind} max score diff"] = f"{row['topk'][kind]['max_rank_score_diff'] or 0.0:.1e}"
        rows.append(cells)
    return rows


def _timing_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in report["bundles"]:
        x86, arm = row["timings_s"]["x86"], row["timings_s"]["arm64"]
        for phase in ("import", "open", "embed_texts", "embed_images", "search_vectors", "search_texts",
                      "search_images", "total"):
            rows.append({"bundle": row["bundle"], "phase": phase, "x86 s": x86.get(phase),
                         "arm64 (emulated) s": arm.get(phase),
                         "slowdown": f"{arm[phase] / x86[phase]:.0f}x" if x86.get(phase) else None})
    return rows


def _versions(versions: dict[str, str | None]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items() if version)


def markdown(report: dict[str, Any]) -> str:
    """The human-readable summary of a report."""
    guest, tests = report["guest"], report.get("tests")
    verdict = "PASS" if report["ok"] else "FAIL: " + "; ".join(report["failures"])
    lines = [
        f"# ARM64 (emulated {guest['cpu']}) vs x86: {verdict}", "",
        f"Command: `{report['command']}` ({report['mode']} mode, {report['created']}).", "",
        f"Guest: {guest['emulator']}, `-cpu {guest['cpu']}`, /proc/cpuinfo {guest['cpuinfo']}, Python "
        f"{guest['python']} (Debian arm64), {_versions(guest['versions'])}. Host: {report['host']['cpu']}, Python "
        f"{report['host']['python']}, {_versions(report['host']['versions'])}.", "",
        f"Workload: {report['workload']['texts']} texts and {report['workload']['images']} images from "
        f"{report['workload']['source']}; {report['workload']['queries']} queries of each kind (x86-made vectors, "
        "texts, images) against an index built and saved on x86, searched through its HNSW graph on both.", "",
        f"## Embeddings: cosine(x86, ARM64) per item (target >= {MIN_COSINE})", "",
        markdown_table(_tower_rows(report), ["bundle", "tower", "items", "min cosine", "mean cosine", "max abs diff",
                                             "ok"]), "",
        "## Index saved on x86, searched on both: identical top-10 lists (and mean top-10 overlap)", "",
        "Vector queries are x86-made embeddings, bit-identical inputs on both machines: the saved HNSW graph must "
        "answer them identically. Text and image queries are embedded on each machine, so near-tied neighbours "
        "may swap; *max score diff* is the largest difference between the scores at one rank.", "",
        markdown_table(_topk_rows(report), [
            "bundle", "index items", *(f"{k} queries" for k in QUERY_KINDS), *(f"{k} overlap@10" for k in QUERY_KINDS),
            *(f"{k} max score diff" for k in QUERY_KINDS)]), "",
    ]
    if tests is not None:
        lines += [f"## Runtime tests marked `arm64`, under emulation: {tests['passed']} passed, {tests['failed']} "
                  f"failed, {tests['errors']} errors, {tests['skipped']} skipped ({tests['wall_s']:.0f} s)", ""]
    lines += ["## Wall times", "", "Emulated timings say nothing about a real Raspberry Pi.", "",
              markdown_table(_timing_rows(report), ["bundle", "phase", "x86 s", "arm64 (emulated) s", "slowdown"]), "",
              markdown_table([{"phase": k, "s": v} for k, v in report["timings_s"].items()], ["phase", "s"]), ""]
    return "\n".join(lines)


def write_results(report: dict[str, Any], stem: Path) -> tuple[Path, Path]:
    """Write ``STEM.json`` and ``STEM.md``; returns both paths."""
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    write_json(json_path, report)
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path
