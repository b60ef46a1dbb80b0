"""``ann.md`` of ``edgeret ann-study``: per size and index format, build and memory; recall and latency per
ef_search side by side; the 1% filter."""

from __future__ import annotations

from edgeret.data.results import markdown_table


def _kb(value: float) -> int:
    return round(value)


def build_rows(summary: dict) -> list[dict]:
    """One row per size and format: build, bytes per vector (file, RSS), cold start."""
    rows = []
    for r in summary["sizes"]:
        for f in r["formats"]:
            rss = f["rss_bytes_per_vector_probe"]
            rows.append({
                "vectors": f"{r['size']:,}", "format": f["format"], "build s": f["build_s"],
                "build threads": f["build_threads"], "inserts/s": round(f["inserts_per_s"]),
                "bytes/vector (file)": _kb(f["file_bytes_per_vector"]),
                "bytes/vector (generation)": _kb(f["generation_bytes_per_vector"]),
                "bytes/vector (RSS growth over the build, SQLite included)": _kb(f["rss_bytes_per_vector"]),
                "RSS bytes/vector after open (anon / file)": f"{_kb(rss['open_anon'])} / {_kb(rss['open_file'])}",
                f"RSS bytes/vector after {f['rss_queries']:,} queries (anon / file)":
                    f"{_kb(rss['queries_rss'])} ({_kb(rss['queries_anon'])} / {_kb(rss['queries_file'])})",
                "open + 1st query ms, page cache dropped": f"{f['cold_open_ms']:.0f} + {f['cold_first_query_ms']:.1f}",
                "open + 1st query ms, warm": f"{f['warm_open_ms']:.0f} + {f['warm_first_query_ms']:.1f}",
                "exact query ms (1t, numpy fp32)": r["exact_query_ms_p50_1t"],
            })
    return rows


def sweep_rows(summary: dict) -> list[dict]:
    """One row per size and ef_search, each format's recall@10 and graph-search p50/p95 side by side."""
    rows = []
    for r in summary["sizes"]:
        by_format = {f["format"]: {s["ef_search"]: s for s in f["sweep"]} for f in r["formats"]}
        for ef in sorted({ef for sweeps in by_format.values() for ef in sweeps}):
            row: dict = {"vectors": f"{r['size']:,}", "ef_search": ef}
            for fmt, sweeps in by_format.items():
                s = sweeps.get(ef, {})
                row[f"{fmt} recall@10"] = s.get("recall@10")
                row[f"{fmt} p50 / p95 ms"] = (f"{s['query_ms_p50_1t']:.3f} / {s['query_ms_p95_1t']:.3f}"
                                             if s else None)
                row[f"{fmt} search() p50 ms"] = s.get("search_ms_p50_1t")
            rows.append(row)
    return rows


def filter_rows(summary: dict) -> list[dict]:
    """One row per size and format: the 1% filter's recall@10 against exact filtered search, and latency."""
    return [{"vectors": f"{r['size']:,}", "format": f["format"], "filter": str(r["filter"]["where"]),
             "kept": f"{r['filter']['kept']:,}", "recall@10": f["filtered"]["recall@10"],
             "p50 ms (1t)": f["filtered"]["ms_p50_1t"], "p95 ms (1t)": f["filtered"]["ms_p95_1t"],
             "first call ms (label set + gather)": f["filtered"]["first_ms"]}
            for r in summary["sizes"] for f in r["formats"]]


def ann_markdown(summary: dict) -> str:
    """Command, the build/memory table, the side-by-side recall/latency table and the filtered-search table."""
    builds, sweeps, filtered = build_rows(summary), sweep_rows(summary), filter_rows(summary)
    versions = summary["versions"]
    return "\n".join([
        f"`{summary['command']}`", "",
        f"{summary['created']} · {summary['machine']['cpu']}, {summary['machine']['cores']} cores · "
        f"vectors: {summary['vectors']}, synthetic clustered beyond · {summary['queries']} held-out "
        f"{'real' if summary['real_queries'] else 'synthetic'} queries · hnswlib {versions.get('hnswlib')}, "
        f"faiss-cpu {versions.get('faiss-cpu')} · space={summary['space']} M={summary['M']} "
        f"ef_construction={summary['ef_construction']}", "",
        "Built and saved through `VectorIndex` (build s: `VectorIndex.add` of every vector with its metadata; "
        "file: the format's graph file(s), generation: with `meta.sqlite` and `filters.npz`). RSS and timings "
        "come from fresh processes that open the saved index (libraries imported first); RSS after "
        f"{summary.get('probe_ef', 160)}-ef queries splits into anonymous memory and file-backed page cache.", "",
        markdown_table(builds, list(builds[0])), "",
        "Recall@10 against exact fp32 search; p50 / p95: the format's graph search of one query at 1 thread "
        "(what the hnswlib-only study measured); search(): `VectorIndex.search` end to end (ids and metadata "
        "from SQLite).", "",
        markdown_table(sweeps, list(sweeps[0])), "",
        "Filtered search (1% of the items): recall@10 against exact fp32 search over the kept items; "
        "`VectorIndex.search` with the filter, 1 thread, the filter's label set memoised after the first call.", "",
        markdown_table(filtered, list(filtered[0])), "",
    ])
