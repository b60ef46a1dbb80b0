"""Hardening figures of the runtime (issue 14): ``python -m edgeret.bench.hardening [--quick] [--before REV]``.

Writes ``bench/results/hardening.json`` and ``hardening.md``:

* **fuzz**: every surface of ``tests/runtime/fuzz_cases.py`` (the suite ``make test`` runs briefly) at 10,000
  cases, outcome counts and invariant violations (must be 0);
* **opens during saves**: 1,000 ``Retriever.open(verify="size")`` in one process while another adds and saves
  in a loop (failed opens must be 0);
* **two writers**: two processes each add an item and save; then two save loops (lost updates must be 0);
* **peak RSS per hostile image**: load + preprocess (128 px) in a fresh process, VmHWM (must be < 300 MB);
* **graph validation**: :func:`runtime.hnsw_file.validate` on a 100,000-item 384-d file vs hnswlib's own load;
* **cold open**: import + ``Retriever.open(verify="size")`` + one text query in a fresh process, fixture
  bundle with 0 and 100,000 items, median of 9 (with ``--before``, the two runtimes take turns).

``--before REV`` repeats the process-level measurements with the runtime of git revision ``REV`` (extracted
with ``git archive``) for comparison. Runs from a source checkout (it uses the test suite's fuzz surfaces
and hostile-file builders); imports only the runtime, the standard library, numpy, Pillow and hypothesis.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.runtime.versions import package_versions

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "runtime" / "fixtures" / "tiny_bundle"
OUT = REPO / "bench" / "results" / "hardening"

#: a writer process: waits for the file argv[5], then adds one item and saves until argv[2] exists or argv[4] saves
SAVE_LOOP = r"""
import os, sys, time, numpy as np
from edgeret.runtime.retriever import Retriever
bundle, stop, tag, limit, go = sys.argv[1:6]
r = Retriever.open(bundle, threads=1)
rng, saves = np.random.default_rng(len(tag)), 0
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
while not os.path.exists(stop) and saves < int(limit):
    r.add_embeddings([f"{tag}-{saves}"], rng.standard_normal((1, 32)))
    r.save()
    saves += 1
    print("SAVED", saves, flush=True)
"""
#: a reader process: argv[2] opens of the bundle; prints {"opens", "failed", "errors"}
OPEN_LOOP = r"""
import json, sys
from edgeret.runtime.retriever import Retriever
failed, errors = 0, []
for _ in range(int(sys.argv[2])):
    try:
        Retriever.open(sys.argv[1], threads=1, verify="size")
    except Exception as exc:
        failed += 1
        errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
print(json.dumps({"opens": int(sys.argv[2]), "failed": failed, "errors": errors[:3]}))
"""
COLD = r"""
import sys, time
start = time.perf_counter()
from edgeret.runtime.retriever import Retriever
r = Retriever.open(sys.argv[1], verify="size")
r.search(text="red apple", k=10)
print(time.perf_counter() - start)
"""


def _python(code: str, *args: Any, env: dict[str, str], timeout: float = 900) -> str:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                         timeout=timeout, cwd=tempfile.gettempdir())
    if out.returncode:
        raise RuntimeError(f"child exited {out.returncode}: {out.stderr[-600:]}")
    return out.stdout


def _bundle(work: Path, name: str, items: int, env: dict[str, str]) -> Path:
    """A copy of the fixture bundle with ``items`` random 32-d vectors saved (by the runtime under test)."""
    target = work / name
    shutil.copytree(FIXTURE, target)
    code = ("import sys, numpy as np\nfrom edgeret.runtime.retriever import Retriever\n"
            "r = Retriever.open(sys.argv[1], threads=2)\nn = int(sys.argv[2])\n"
            "r.add_embeddings([f'base-{i}' for i in range(n)], np.random.default_rng(0).standard_normal((n, 32)))\n"
            "r.save()\n")
    if items:
        _python(code, target, items, env=env)
    return target


def _ids(bundle: Path) -> set[str]:
    from edgeret.runtime.retriever import Retriever  # lazy: the current runtime reads either version's index

    return set(Retriever.open(bundle, threads=1).index.ids())


def _writers(bundle: Path, work: Path, env: dict[str, str], tags: str, limit: int, one_by_one: bool = False
             ) -> list[subprocess.Popen]:
    """Writer processes (one per tag) that have all opened ``bundle``, then started: together, or ``one_by_one``
    (each one's saves done before the next starts)."""
    procs = [subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(bundle), str(work / "stop"), tag, str(limit),
                               str(work / f"go-{tag if one_by_one else 'all'}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir()) for tag in tags]
    for proc in procs:
        assert proc.stdout.readline().startswith("READY"), proc.stderr.read()
    if not one_by_one:
        (work / "go-all").touch()
        return procs
    for tag, proc in zip(tags, procs, strict=True):
        (work / f"go-{tag}").touch()
        proc.wait(timeout=900)
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 900) -> list[tuple[int, int, str]]:
    """``(returncode, saves completed, last stderr line)`` per writer."""
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        saves = sum(line.startswith("SAVED") for line in stdout.splitlines())
        out.append((proc.returncode, saves, (stderr.strip().splitlines() or [""])[-1][:200]))
    return out


def opens_during_saves(work: Path, env: dict[str, str], opens: int) -> dict[str, Any]:
    """``opens`` opens in one process while another saves in a loop."""
    work.mkdir(parents=True, exist_ok=True)
    bundle = _bundle(work, "opens", 1000, env)
    procs = _writers(bundle, work, env, "w", 10**9)
    try:
        result = json.loads(_python(OPEN_LOOP, bundle, opens, env=env).strip().splitlines()[-1])
    finally:
        (work / "stop").touch()
        ((code, saves, error),) = _finish(procs)
    return {**result, "saves_meanwhile": saves, "writer_exit": code, "writer_error": error or None}


def two_writers(work: Path, env: dict[str, str], loops: int) -> dict[str, Any]:
    """Two processes open the same index; each adds an item and saves, one after the other; then both add and
    save ``loops`` times at the same time. Lost updates = items of completed saves missing from the final index."""
    out: dict[str, Any] = {}
    for scenario, limit in (("one_save_each", 1), ("save_loops", loops)):
        folder = work / scenario
        folder.mkdir(parents=True)
        bundle = _bundle(folder, "writers", 200, env)
        done = _finish(_writers(bundle, folder, env, "ab", limit, one_by_one=limit == 1))
        expected = {f"{tag}-{i}" for tag, (_, saves, _) in zip("ab", done, strict=True) for i in range(saves)}
        out[scenario] = {"saves_per_writer": limit, "saves_done": [saves for _, saves, _ in done],
                         "writers_failed": sum(code != 0 for code, _, _ in done),
                         "lost_updates": len(expected - _ids(bundle)),
                         "errors": [error for code, _, error in done if code and error]}
    return out


def cold_opens(work: Path, envs: dict[str, dict[str, str]], items: int, runs: int = 9) -> dict[str, dict[str, Any]]:
    """Milliseconds of import + open(verify="size") + one text query in fresh processes, per runtime (``envs``),
    on one bundle saved by the current runtime; the runtimes take turns, so load on the machine hits all alike."""
    work.mkdir(parents=True, exist_ok=True)
    bundle = _bundle(work, f"cold-{items}", items, {**os.environ, "PYTHONPATH": str(REPO)})
    times: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(runs):
        for name, env in envs.items():
            times[name].append(1e3 * float(_python(COLD, bundle, env=env).strip().splitlines()[-1]))
    return {name: {"items": items, "median_ms": round(statistics.median(t), 1), "min_ms": round(min(t), 1),
                   "max_ms": round(max(t), 1), "runs": runs} for name, t in times.items()}


def hostile_images(work: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Peak RSS (VmHWM) of load + preprocess for each hostile or large image, each in a fresh process."""
    from PIL import Image  # only this measurement draws images

    from tests.runtime.hostile import RSS_CHILD, jpeg_with_size, png  # the test suite's builders

    work.mkdir(parents=True, exist_ok=True)
    photo = work / "photo-24mp.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (4000, 6000, 3), dtype=np.uint8)).save(photo, quality=90)
    big = work / "photo-48mp.jpg"
    Image.fromarray(np.tile(rng.integers(0, 256, (600, 8000, 3), dtype=np.uint8), (10, 1, 1))).save(big, quality=90)
    cases: list[tuple[str, Callable[[], bytes] | Path]] = [
        ("1x300000 grey PNG", lambda: png(1, 300_000)), ("1x20000000 grey PNG", lambda: png(1, 20_000_000)),
        ("12000x12000 1-bit PNG", lambda: png(12000, 12000, bit_depth=1)),
        ("9000x9000 RGBA decompression bomb (zlib of zeros)", lambda: png(9000, 9000, color_type=6)),
        ("65000x65000 JPEG header", lambda: jpeg_with_size(65000, 65000)),
        ("10000x10000 JPEG header, 16x16 data", lambda: jpeg_with_size(10000, 10000)),
        ("6400x6400 RGB PNG (largest accepted RGB class)", lambda: png(6400, 6400, color_type=2,
                                                                       row=rng.bytes(6400 * 3))),
        ("4500x4500 RGBA PNG (largest accepted RGBA class)", lambda: png(4500, 4500, color_type=6,
                                                                         row=rng.bytes(4500 * 4))),
        ("6000x4000 RGB JPEG (24 MP photo)", photo), ("8000x6000 RGB JPEG (48 MP photo, drafted)", big),
    ]
    rows = []
    for name, make in cases:
        path = make if isinstance(make, Path) else work / "hostile.img"
        if not isinstance(make, Path):
            path.write_bytes(make())
        result = json.loads(_python(RSS_CHILD, path, 128, 3072, env=env).strip().splitlines()[-1])
        rows.append({"image": name, "file_bytes": path.stat().st_size, **result})
    return rows


def graph_validation(work: Path, items: int, dim: int = 384) -> dict[str, Any]:
    """Seconds to validate an ``items``-element graph file vs hnswlib's load of it (medians of 5)."""
    import hnswlib  # the runtime's own dependency, used directly to time its load

    from edgeret.runtime import hnsw_file  # the runtime under test is imported only by what measures it
    from edgeret.runtime.index import VectorIndex  # (ditto)

    index = VectorIndex(dim, M=16, ef_construction=100, threads=os.cpu_count())
    start = time.perf_counter()
    index.add([f"v{i}" for i in range(items)], np.random.default_rng(1).standard_normal((items, dim)))
    build = time.perf_counter() - start
    saved = index.save(work / f"graph-{items}")
    del index
    validate, load = [], []
    for _ in range(5):
        start = time.perf_counter()
        hnsw_file.validate(saved.hnsw_path, dim=dim, M=16, ef_construction=100, next_label=items)
        validate.append(time.perf_counter() - start)
        graph = hnswlib.Index(space="cosine", dim=dim)
        start = time.perf_counter()
        graph.load_index(str(saved.hnsw_path), max_elements=items)
        load.append(time.perf_counter() - start)
        del graph
    return {"items": items, "dim": dim, "file_mb": round(saved.hnsw_path.stat().st_size / 2**20, 1),
            "build_s": round(build, 1), "validate_ms": round(1e3 * statistics.median(validate), 1),
            "hnswlib_load_ms": round(1e3 * statistics.median(load), 1)}


def fuzz(work: Path, cases: int) -> dict[str, Any]:
    """Every fuzz surface at ``cases`` cases (seed 14): outcome counts, violations, seconds, peak RSS."""
    from tests.runtime.fuzz_cases import SURFACES, Workspace, run_surface  # the test suite's surfaces

    logging.getLogger("edgeret").setLevel(logging.ERROR)  # truncation warnings by the thousand
    workspace, out = Workspace(work / "fuzz"), {}
    for name in SURFACES:
        start = time.perf_counter()
        try:
            counts, violation = dict(run_surface(workspace, name, cases, seed=14)), None
        except Exception as exc:  # hypothesis re-raises the shrunk failing case
            counts, violation = {}, f"{type(exc).__name__}: {str(exc)[:400]}"
        out[name] = {"cases": sum(counts.values()), "outcomes": counts, "violations": int(violation is not None),
                     "violation": violation, "seconds": round(time.perf_counter() - start, 1)}
        logger.info("fuzz %s: %s", name, out[name])
    out["peak_rss_mb"] = _hwm()
    return out


def _hwm() -> float | None:
    try:
        with open("/proc/self/status") as status:
            return next(round(int(line.split()[1]) / 1024, 1) for line in status if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return None


def before_env(work: Path, rev: str) -> dict[str, str]:
    """An environment whose ``edgeret`` is the runtime (and CLI) of git revision ``rev``."""
    archive = work / "before.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev, "runtime", "edgeret"], check=True)
    source, site = work / "before-src", work / "before-site"
    with tarfile.open(archive) as tar:
        tar.extractall(source, filter="data")
    shutil.copytree(source / "edgeret", site / "edgeret")
    shutil.copytree(source / "runtime", site / "edgeret" / "runtime")
    return {**os.environ, "PYTHONPATH": str(site)}


def _processes(work: Path, env: dict[str, str], quick: bool) -> dict[str, Any]:
    return {"opens_during_saves": opens_during_saves(work, env, 200 if quick else 1000),
            "two_writers": two_writers(work, env, 10 if quick else 100),
            "hostile_images": hostile_images(work, env)}


def measure(quick: bool, before: str | None) -> dict[str, Any]:
    """All figures (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="edgeret-hardening-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        envs = {"after": env, **({"before": before_env(work, before)} if before else {})}
        results: dict[str, Any] = {name: _processes(work / name, e, quick) for name, e in envs.items()}
        if before:
            results["before"]["revision"] = before
        for n in (0, 10_000 if quick else 100_000):
            for name, row in cold_opens(work / "cold", envs, n, runs=3 if quick else 9).items():
                results[name].setdefault("cold_open", []).append(row)
        results["graph_validation"] = graph_validation(work, 10_000 if quick else 100_000)
        results["fuzz"] = fuzz(work, 200 if quick else 10_000)
    return results


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(x, 1) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    """Measure and write ``bench/results/hardening.{json,md}``."""
    parser = argparse.ArgumentParser(prog="python -m edgeret.bench.hardening", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run, minutes)")
    parser.add_argument("--before", metavar="REV", help="also measure the runtime of this git revision")
    parser.add_argument("--out", type=Path, default=OUT, help="results stem (default bench/results/hardening)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sys.path.insert(0, str(REPO))  # tests.runtime.* (the fuzz surfaces, the hostile-file builders)
    command = "python -m edgeret.bench.hardening " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": command.strip(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": _machine(), "versions": package_versions(("edgeret", "numpy", "onnxruntime", "hnswlib",
                                                                     "pillow", "tokenizers", "hypothesis")),
               **measure(args.quick, args.before)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    logger.info("wrote %s.{json,md}", args.out)
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The results as a short markdown report."""
    after = results["after"]
    before = results.get("before")
    lines = [f"# Runtime hardening (issue 14)\n\n`{results['command']}` — {results['created']}, "
             f"{results['machine']['cpu']}, {results['machine']['cores']} cores (load average "
             f"{results['machine']['load_average']})\n", "## Fuzz (hypothesis, seed 14)\n",
             "| surface | cases | violations | outcomes | seconds |", "|---|---|---|---|---|"]
    for name, row in results["fuzz"].items():
        if isinstance(row, dict):
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items()))
            lines.append(f"| {name} | {row['cases']:,} | {row['violations']} | {outcomes} | {row['seconds']} |")
    lines.append(f"\nPeak RSS of the fuzzing process: {results['fuzz']['peak_rss_mb']} MB.\n")
    lines += ["## Processes\n", "| measure | this runtime |" + (f" {before['revision']} |" if before else ""),
              "|---|---|" + ("---|" if before else "")]
    for label, get in _process_rows():
        lines.append(f"| {label} | {get(after)} |" + (f" {get(before)} |" if before else ""))
    lines += ["\n## Peak RSS per image (load + preprocess at 128 px, fresh process)\n",
              "| image | file bytes | outcome | peak RSS MB |" + (" before |" if before else ""),
              "|---|---|---|---|" + ("---|" if before else "")]
    for i, row in enumerate(after["hostile_images"]):
        old = f" {before['hostile_images'][i]['peak_rss_mb']} ({_status(before['hostile_images'][i])}) |" \
            if before else ""
        lines.append(f"| {row['image']} | {row['file_bytes']:,} | {_status(row)} | {row['peak_rss_mb']} |{old}")
    graph = results["graph_validation"]
    lines.append(f"\n## Graph file validation\n\n{graph['items']:,} items x {graph['dim']}-d ({graph['file_mb']} MB): "
                 f"validate {graph['validate_ms']} ms, hnswlib's own load {graph['hnswlib_load_ms']} ms "
                 f"(medians of 5).\n")
    return "\n".join(lines)


def _status(row: dict[str, Any]) -> str:
    """``ok`` or the error with the file's path left out."""
    kind, _, message = row["status"].partition(": ")
    message = re.sub(r"^image \('[^']*'\): |^image \([^)]*\): ", "", message)
    return kind if not message else f"{kind}: {message[:90]}"


def _process_rows() -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    def opens(r: dict[str, Any]) -> str:
        o = r["opens_during_saves"]
        return f"{o['failed']} failed of {o['opens']} ({o['saves_meanwhile']} saves meanwhile)"

    def writers(scenario: str) -> Callable[[dict[str, Any]], str]:
        def cell(r: dict[str, Any]) -> str:
            w = r["two_writers"][scenario]
            errors = f"; {w['errors'][0]}" if w["errors"] else ""
            return f"{w['lost_updates']} lost, {w['writers_failed']} writers failed, saves {w['saves_done']}{errors}"
        return cell

    def cold(i: int) -> Callable[[dict[str, Any]], str]:
        return lambda r: f"{r['cold_open'][i]['median_ms']} ms (min {r['cold_open'][i]['min_ms']})"

    return [("opens during another process's save loop", opens),
            ("two writers: each adds an item and saves, one after the other", writers("one_save_each")),
            ("two writers: save loops at the same time", writers("save_loops")),
            ("cold open, 0 items (import + open verify=size + text query)", cold(0)),
            ("cold open, 100k items", cold(1))]


if __name__ == "__main__":
    sys.exit(main())
