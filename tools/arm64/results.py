"""The verdict (which checks failed) and the results files: ``arm64.json`` and a markdown summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeret.data.results import markdown_table, write_json

from .compare import MIN_COSINE, SCORE_TOLERANCE
from .guest_worker import OWN_INPUT_MODES, SHARED_INPUT_MODES

QUERY_KINDS = ("vector", "text", "image")
#: end-to-end queries (embedded on each machine) may swap near-tied neighbours; their top-10 sets must still overlap
MIN_OVERLAP = 0.95


def _topk_failures(row: dict[str, Any], min_agreement: float, min_overlap: float) -> list[str]:
    """Vector queries (identical inputs) must give identical lists; text/image queries overlapping ones."""
    out, vector = [], row["topk"]["vector"]
    if vector["agreement"] < min_agreement:
        out.append(f"{row['bundle']}: the saved index answered {vector['agreement']:.1%} of the x86-made vector "
                   f"queries identically (needed {min_agreement:.0%}); first difference: {vector['first_difference']}")
    out += _score_failures(f"{row['bundle']}: the saved index's vector queries", vector)
    for kind in QUERY_KINDS[1:]:
        overlap = row["topk"][kind]["mean_overlap"]
        if overlap < min_overlap:
            out.append(f"{row['bundle']}: {kind} queries' top-10 overlap x86's by {overlap:.1%} on average "
                       f"(needed {min_overlap:.0%}); first difference: {row['topk'][kind]['first_difference']}")
    return out


def _score_failures(what: str, topk: dict[str, Any]) -> list[str]:
    """Identical inputs must give scores within :data:`SCORE_TOLERANCE` at every rank."""
    diff = topk.get("max_rank_score_diff")
    if diff is None or diff <= SCORE_TOLERANCE:
        return []
    return [f"{what}: scores differ by up to {diff:.1e} at one rank (allowed {SCORE_TOLERANCE:.0e})"]


def _format_failures(row: dict[str, Any], min_agreement: float, min_overlap: float) -> list[str]:
    """Each index format: x86-made vectors give identical lists and scores, own embeddings overlapping lists."""
    out = []
    for name, fmt in row.get("formats", {}).items():
        where = f"{row['bundle']}, {name}"
        for mode in SHARED_INPUT_MODES:
            topk = fmt["topk"][mode]
            if topk["agreement"] < min_agreement:
                out.append(f"{where}: {topk['agreement']:.1%} of the x86-made {mode} queries answered identically "
                           f"(needed {min_agreement:.0%}); first difference: {topk['first_difference']}")
            out += _score_failures(f"{where}, {mode} queries", topk)
        for mode in OWN_INPUT_MODES:
            overlap = fmt["topk"][mode]["mean_overlap"]
            if overlap < min_overlap:
                out.append(f"{where}: {mode} queries' top-10 overlap x86's by {overlap:.1%} on average "
                           f"(needed {min_overlap:.0%})")
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
        out += _format_failures(row, min_agreement, min_overlap)
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
        for phase in x86:
            rows.append({"bundle": row["bundle"], "phase": phase, "x86 s": x86.get(phase),
                         "arm64 (emulated) s": arm.get(phase),
                         "slowdown": f"{arm[phase] / x86[phase]:.0f}x" if x86.get(phase) else None})
    return rows


def _format_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per bundle and index format: identical lists of x86-made queries, overlap of the machines' own."""
    rows = []
    for row in report["bundles"]:
        for name, fmt in row.get("formats", {}).items():
            cells = {"bundle": row["bundle"], "format": name, "items": fmt["index"]["items"],
                     "bytes/item": f"{fmt['index']['generation_bytes'] / max(fmt['index']['items'], 1):.0f}"}
            for mode in SHARED_INPUT_MODES:
                t = fmt["topk"][mode]
                cells[f"{mode}: identical"] = f"{t['identical']}/{t['queries']}"
            diff = max(fmt["topk"][m]["max_rank_score_diff"] or 0.0 for m in SHARED_INPUT_MODES)
            cells["max score diff"] = f"{diff:.1e}"
            for mode in OWN_INPUT_MODES:
                cells[f"{mode}: overlap@10"] = f"{fmt['topk'][mode]['mean_overlap']:.3f}"
            rows.append(cells)
    return rows


def _faiss_builds(report: dict[str, Any]) -> str:
    """``x86 OPTIMIZE DD AVX2, arm64 OPTIMIZE DD ARM_NEON`` (faiss's compile options on each machine)."""
    builds = report["bundles"][0].get("faiss_build") or {}
    return ", ".join(f"{name} `{value}`" for name, value in builds.items() if value) or "not recorded"


def _format_section(report: dict[str, Any]) -> list[str]:
    """The per-format table (empty for reports written before formats were checked)."""
    rows = _format_rows(report)
    if not rows:
        return []
    return [
        "## Every index format: the same vectors saved on x86, searched on both", "",
        "The bundle index's ids and vectors, with a `kind` field (text / image), saved in each index format on x86 "
        "and opened on both machines. x86-made vectors (bit-identical inputs) are searched through the graph "
        "(*vector*), exactly (*exact*) and through the graph keeping the images only (*filtered*): their lists "
        f"must be identical and their scores within {SCORE_TOLERANCE:.0e} at every rank (*max score diff*, "
        "the largest of the three). Text and image queries are each machine's own embeddings, through the graph. "
        f"faiss's kernels: {_faiss_builds(report)}.", "",
        markdown_table(rows, list(rows[0])), "",
    ]


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
        *_format_section(report),
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
