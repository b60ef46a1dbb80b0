"""``python -m tools.arm64``: build the aarch64 guest (cached), compare x86 and ARM64 on bundles, run tests."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.results import invocation, machine_info, now_iso, package_versions

from . import compare, formats, guest, hnsw, results, rootfs, wheels, workload
from .host_tools import ensure_host_tools
from .shell import Arm64Error, Stamps, Timer, cached_step, fingerprint, run

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
FULL_BUNDLES = ("artifacts/bundles/student-int8", "artifacts/bundles/student-int4")
REDUCED_BUNDLE = "tests/runtime/fixtures/tiny_bundle"
WORKER = Path(__file__).resolve().parent / "guest_worker.py"
GUEST_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Layout:
    """Everything the check builds lives under ``cache`` (default ``build/arm64``, gitignored)."""

    cache: Path

    @property
    def root(self) -> Path:
        """The aarch64 root folder (Debian arm64 packages + the ARM /proc/cpuinfo): QEMU's ``-L``."""
        return self.cache / "root"

    @property
    def dev(self) -> Path:
        """Unpacked ``libpython3.11-dev:arm64`` (headers for the hnswlib cross build)."""
        return self.cache / "dev"

    @property
    def site(self) -> Path:
        """The guest's site folder of aarch64 wheels."""
        return self.cache / "site"

    @property
    def package(self) -> Path:
        """The guest's copy of the torch-free part of edgeret (``edgeret/`` with ``edgeret/runtime/``), refreshed
        at every run: what the base install puts on a device."""
        return self.cache / "edgeret-site"

    @property
    def logs(self) -> Path:
        """Every command's output, one file per step."""
        return self.cache / "logs"

    @property
    def work(self) -> Path:
        """Per-run files: bundle copies with their x86-built index, jobs, embeddings, JUnit XML."""
        return self.cache / "work"

    def __truediv__(self, name: str) -> Path:
        return self.cache / name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.arm64", description=__doc__)
    parser.add_argument("bundles", nargs="*", type=Path,
                        help=f"bundles to check (default: {' '.join(FULL_BUNDLES)}; with --reduced: {REDUCED_BUNDLE})")
    parser.add_argument("--reduced", action="store_true",
                        help="CI mode: the committed tiny fixture bundle, synthetic items, fewer of them")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "build" / "arm64",
                        help="where the aarch64 root, wheels and hnswlib build are kept (default: build/arm64)")
    parser.add_argument("--items", type=int, help="texts and images to embed (default 200; reduced 24)")
    parser.add_argument("--queries", type=int, help="queries of each kind (default 50; reduced 8)")
    parser.add_argument("--source", choices=("openmoji", "synthetic"),
                        help="items: OpenMoji test-split captions + renders (default) or synthetic (reduced default)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime/hnswlib threads on both machines")
    parser.add_argument("--min-agreement", type=float, default=1.0,
                        help="fraction of x86-made vector queries whose top-10 must be identical (default 1.0)")
    parser.add_argument("--min-overlap", type=float, default=results.MIN_OVERLAP,
                        help="mean top-10 overlap needed for text/image queries embedded on each machine "
                             f"(default {results.MIN_OVERLAP})")
    parser.add_argument("--no-tests", action="store_true", help="skip the arm64-marked runtime tests in the guest")
    parser.add_argument("--out", type=Path, help="results stem (default bench/results/arm64[-reduced])")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    args = parser.parse_args(argv)
    args.bundles = args.bundles or [REPO / b for b in ((REDUCED_BUNDLE,) if args.reduced else FULL_BUNDLES)]
    args.items = args.items or (24 if args.reduced else 200)
    args.queries = min(args.queries or (8 if args.reduced else 50), args.items)
    args.source = args.source or ("synthetic" if args.reduced else "openmoji")
    args.out = args.out or REPO / "bench" / "results" / ("arm64-reduced" if args.reduced else "arm64")
    return args


def prepare_guest(layout: Layout, timer: Timer) -> guest.Guest:
    """Host tools, Debian arm64 root + headers, aarch64 site folder, hnswlib: each step cached by a stamp."""
    stamps = Stamps(layout / "stamps")
    with timer.phase("host-tools"):
        tools = ensure_host_tools(layout.logs)
    apt = rootfs.AptDirs(layout / "apt")

    def debian_root() -> None:
        rootfs.apt_update(apt, layout.logs)
        rootfs.unpack_debs(rootfs.download_debs(apt, rootfs.RUNTIME_DEBS, layout / "debs", layout.logs), layout.root)
        rootfs.unpack_debs(rootfs.download_debs(apt, rootfs.DEV_DEBS, layout / "dev-debs", layout.logs),
                           layout.dev)

    cached_step(stamps, timer, "debian-root", fingerprint(rootfs.DEBIAN_SUITES, rootfs.RUNTIME_DEBS, rootfs.DEV_DEBS),
                debian_root, outputs=[layout.root / rootfs.GUEST_PYTHON, layout.dev / "usr" / "include"])
    rootfs.write_cpuinfo(layout.root)
    requirements = wheels.pinned(wheels.GUEST_PACKAGES)
    cached_step(stamps, timer, "site", fingerprint(requirements, wheels.PLATFORMS),
                lambda: wheels.build_site(requirements, layout / "wheels", layout.site, layout.logs),
                outputs=[layout.site / "onnxruntime", layout.site / "faiss"])
    build = hnsw.HnswBuild(layout / "hnswlib", hnsw.host_hnswlib_version())
    includes = rootfs.python_include_dirs(layout.dev)
    cached_step(stamps, timer, "hnswlib", fingerprint(build.version, hnsw.TARGET_FLAGS, str(tools.cxx)),
                lambda: hnsw.build_hnswlib(build, tools.cxx, includes, layout.site, layout.logs),
                outputs=[build.module])
    stage_runtime(layout.package)
    return guest.Guest(tools.qemu, layout.root, (layout.site, build.lib, layout.package, REPO),
                       layout / "home" / "pycache")


def stage_runtime(target: Path) -> Path:
    """Lay out ``edgeret`` + ``edgeret.runtime`` as installed (the repository maps ``runtime/`` to
    ``edgeret.runtime`` only at install time), so the guest imports them from ``target``."""
    shutil.rmtree(target, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "edgeret", target / "edgeret", ignore=ignore)
    shutil.copytree(REPO / "runtime", target / "edgeret" / "runtime", ignore=ignore)
    return target


def run_worker(cmd: list[str], job: dict[str, Any], job_path: Path, log: Path, what: str,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the job, run one worker (x86 or guest), return its result.json plus the wall time."""
    job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(job["out"], ignore_errors=True)
    start = time.perf_counter()
    run(cmd, cwd=REPO, env=env, log=log, what=what, timeout=GUEST_TIMEOUT_S)
    result = json.loads(Path(job["out"], "result.json").read_text(encoding="utf-8"))
    result["wall_s"] = round(time.perf_counter() - start, 2)
    return result


def run_both(work: Path, vm: guest.Guest, job: dict[str, Any], log_dir: Path) -> dict[str, dict[str, Any]]:
    """Run the worker's ``job`` on x86 (the host's Python) and in the guest; returns both results by machine."""
    runs = {}
    for name in ("x86", "arm64"):
        job_path = work / f"job-{name}.json"
        if name == "x86":
            cmd, env = [sys.executable, str(WORKER), str(job_path)], None
        else:
            cmd, env = vm.command([str(WORKER), str(job_path)]), vm.environment()
        logger.info("%s: embedding and searching on %s", work.name, name)
        runs[name] = run_worker(cmd, {**job, "out": str(work / name)}, job_path,
                                log_dir / f"worker-{work.name}-{name}.log", f"{name} worker on {work.name}", env)
    return runs


def check_bundle(bundle: Path, layout: Layout, vm: guest.Guest, items: workload.Workload,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Index on x86 (in the bundle, and in every index format), then embed + search the saved indexes on x86 and
    in the guest; compare the two."""
    work = layout.work / bundle.name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(bundle, work / "bundle")
    vectors = work / "query_vectors.npy"
    index = workload.index_on_host(work / "bundle", items, args.queries, args.threads, vectors)
    built = formats.save_formats(work / "bundle", items, work / "formats", args.threads)
    job = workload.make_job(REPO, work / "bundle", items, args.queries, args.threads, vectors, work / "x86")
    runs = run_both(work, vm, {**job, "formats": formats.job_entries(built)}, layout.logs)
    x86_dir, arm_dir = work / "x86", work / "arm64"
    row = {
        "bundle": bundle.name, "path": str(bundle),
        "text": compare.cosine_summary(items.text_ids, np.load(x86_dir / "texts.npy"), np.load(arm_dir / "texts.npy")),
        "image": compare.cosine_summary(items.image_ids, np.load(x86_dir / "images.npy"),
                                        np.load(arm_dir / "images.npy")),
        "index": index,
        "topk": {kind: compare.topk_agreement(runs["x86"]["topk"][kind], runs["arm64"]["topk"][kind])
                 for kind in results.QUERY_KINDS},
        "formats": formats.compare_formats(built, runs["x86"], runs["arm64"]),
        "timings_s": {name: {**runs[name]["timings_s"], "wall": runs[name]["wall_s"]} for name in runs},
        "guest_versions": runs["arm64"]["versions"],
        "faiss_build": {name: runs[name].get("faiss_build") for name in runs},
    }
    logger.info("%s: min cosine text %.6f image %.6f; identical top-10 vector %.0f%% text %.0f%% image %.0f%%",
                bundle.name, row["text"]["min_cosine"], row["image"]["min_cosine"],
                *(100 * row["topk"][k]["agreement"] for k in results.QUERY_KINDS))
    for name, fmt in row["formats"].items():
        logger.info("%s, %s: identical top-10 %s", bundle.name, name,
                    ", ".join(f"{mode} {100 * t['agreement']:.0f}%" for mode, t in fmt["topk"].items()))
    return row


def run_guest_tests(layout: Layout, vm: guest.Guest) -> dict[str, Any]:
    """The runtime tests marked ``arm64``, by the guest's pytest; returns the counts from its JUnit XML."""
    junit, log = layout.work / "pytest-arm64.xml", layout.logs / "pytest-arm64.log"
    junit.unlink(missing_ok=True)
    args = guest.pytest_args(junit)
    start = time.perf_counter()
    proc = vm.run(args, cwd=REPO, log=log, what="pytest -m arm64 in the guest", check=False, timeout=GUEST_TIMEOUT_S)
    if not junit.is_file():
        raise Arm64Error(f"the guest's pytest wrote no report (exit {proc.returncode}); see {log}")
    counts = guest.junit_counts(junit)
    logger.info("arm64-marked tests in the guest: %s", counts)
    return {**counts, "exit_code": proc.returncode, "wall_s": round(time.perf_counter() - start, 1),
            "log": str(log), "command": vm.shown(args)}


def _missing_bundles(bundles: list[Path]) -> list[Path]:
    return [b for b in bundles if not (b / "manifest.json").is_file()]


def _guest_info(vm: guest.Guest, layout: Layout) -> dict[str, Any]:
    """What the guest is: emulator version, CPU model and cpuinfo, Python and package versions."""
    probed = guest.probe(vm, REPO, layout.logs)
    emulator = run([str(vm.qemu), "--version"], what="qemu --version").stdout.strip().splitlines()[0]
    parts = probed["cpu_parts"]
    cpuinfo = f"{len(parts)} cores, CPU part {', '.join(sorted(set(parts)))}"
    return {"emulator": emulator, "cpu": vm.cpu, "cpuinfo": cpuinfo,
            "machine": probed["machine"], "python": probed["python"], "versions": probed["versions"],
            "command": vm.shown(["SCRIPT", "..."])}


def run_check(args: argparse.Namespace, layout: Layout, timer: Timer) -> dict[str, Any]:
    """Everything but writing the results: set-up, the per-bundle comparisons, the guest's tests."""
    missing = _missing_bundles(args.bundles)
    if missing:
        raise Arm64Error(f"no bundle at {', '.join(map(str, missing))}: run `edgeret demo` (or `make demo`) first")
    vm = prepare_guest(layout, timer)
    with timer.phase("guest-probe"):
        info = _guest_info(vm, layout)
    with timer.phase("workload"):
        items = workload.prepare_workload(args.source, args.items, layout / "items" / f"{args.source}-{args.items}")
    rows = []
    for bundle in args.bundles:
        with timer.phase(f"bundle:{bundle.name}"):
            rows.append(check_bundle(bundle, layout, vm, items, args))
    tests = None
    if not args.no_tests:
        with timer.phase("guest-tests"):
            tests = run_guest_tests(layout, vm)
    host = machine_info([args.threads])
    host["versions"] = package_versions(("edgeret", "numpy", "onnxruntime", "tokenizers", "pillow", "hnswlib",
                                         "faiss-cpu"))
    return {"mode": "reduced" if args.reduced else "full", "guest": info, "host": host,
            "workload": {"source": items.source, "texts": len(items.texts), "images": len(items.images),
                         "queries": args.queries, "threads": args.threads},
            "bundles": rows, "tests": tests,
            "setup_cached": not any(timer.seconds.get(step) for step in ("debian-root", "site", "hnswlib"))}


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when every check passed, 1 when one failed, 2 when the set-up or a run broke."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines report each SIMD module tried
    command = invocation("python -m tools.arm64", argv)
    layout, timer, start = Layout(args.cache_dir.resolve()), Timer(), time.perf_counter()
    try:
        report = run_check(args, layout, timer)
    except Arm64Error as exc:
        logger.error("%s", exc)
        return 2
    timer.seconds["total"] = round(time.perf_counter() - start, 1)
    report = {"command": command, "created": now_iso(), **report, "timings_s": timer.seconds}
    report["failures"] = results.failures(report, args.min_agreement, args.min_overlap)
    report["ok"] = not report["failures"]
    json_path, md_path = results.write_results(report, args.out)
    logger.info("wrote %s and %s (%.0f s in all, set-up %s)", json_path, md_path, timer.seconds["total"],
                "cached" if report["setup_cached"] else "built")
    for failure in report["failures"]:
        logger.error("FAILED: %s", failure)
    return 0 if report["ok"] else 1
