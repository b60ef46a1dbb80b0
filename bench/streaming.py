"""``python -m edgeret.bench.streaming``: memory of a cache build and of a training epoch as the corpus grows.

For each size (default 10,000, 100,000 and 1,000,000 items) a synthetic text corpus is written to disk
(one sentence a line from a fixed word list) and, each in a fresh process: (1) scanned and embedded into a
teacher cache by a cheap hashing teacher (:class:`HashTeacher`: the pipeline's memory, not a teacher's, is
measured), (2) one training epoch of the ``tiny`` preset over it. A sampling thread records the peak of
anonymous memory (``RssAnon``: what the process itself holds) and of file-backed pages (``RssFile``: the
memmaps' pages, which the kernel can drop) from ``/proc/self/status``. Writes ``streaming.json`` and
``streaming.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.data.results import invocation, machine_info, markdown_table, now_iso, package_versions, write_json
from edgeret.distill.teachers.base import Teacher

logger = logging.getLogger(__name__)

WORDS = ("red green blue small large round square bright dark old new happy quiet loud fast slow cat dog bird tree "
         "house river mountain city road car boat train flower apple bread music light water stone cloud").split()
DIM = 64


class HashTeacher(Teacher):
    """A cheap deterministic teacher: a text is the sum of its words' seeded random vectors (text only)."""

    id = "hash-teacher"
    dim = DIM
    modalities = ("text",)

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.table = {w: rng.standard_normal(DIM).astype(np.float32) for w in WORDS}

    def _encode_text_batch(self, texts: list[str], instruction: str | None) -> np.ndarray:
        out = np.full((len(texts), DIM), 1e-3, dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.split():
                out[i] += self.table.get(word, 0.0)
        return out

    def _encode_image_batch(self, images: list) -> np.ndarray:
        raise ValueError("the hash teacher embeds texts only")


def write_texts(path: Path, n: int) -> Path:
    """``n`` synthetic sentences, one a line (reused when present)."""
    if path.is_file():
        return path
    rng = random.Random(n)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for _ in range(n):
            handle.write(" ".join(rng.choices(WORDS, k=rng.randint(4, 12))) + "\n")
    tmp.replace(path)
    return path


class MemorySampler:
    """Peak ``RssAnon`` and ``RssFile`` (MB) of this process, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak = interval, {"RssAnon": 0.0, "RssFile": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in self.peak:
                self.peak[key] = max(self.peak[key], int(line.split()[1]) / 1024)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def phase_cache(root: Path) -> dict[str, Any]:
    """Scan + teacher cache of ``root/texts.txt`` (in this process)."""
    from edgeret.data.sources import TextsSource, scan_sources  # noqa: PLC0415 - measured from a fresh process
    from edgeret.distill.cache import build_cache  # noqa: PLC0415 - measured from a fresh process

    corpus = scan_sources([TextsSource(root / "texts.txt")], workdir=root / "corpus", progress=False)
    cache = build_cache(HashTeacher(), corpus, root / "cache", shard_size=8192, batch_size=1024, progress=False)
    return {"items": len(cache), "cache_bytes": (root / "cache" / "embeddings.f16.npy").stat().st_size}


def phase_epoch(root: Path) -> dict[str, Any]:
    """One training epoch of the tiny preset over the cache (in this process)."""
    from edgeret.distill.cache import load_cache  # noqa: PLC0415 - measured from a fresh process
    from edgeret.distill.presets import load_preset  # noqa: PLC0415 - measured from a fresh process
    from edgeret.distill.train import train  # noqa: PLC0415 - measured from a fresh process

    preset = load_preset("tiny", ["train.epochs=1", "train.text_batch=512", "train.val_sample=200"])
    report = train([load_cache(root / "cache")], preset, root / "student", fresh=True, progress=False)
    tokens = sum(p.stat().st_size for p in (root / "student" / "train_state").glob("tokens-*.npy"))
    return {"steps": report.global_step, "token_bytes": tokens}


def run_phase(phase: str, root: Path) -> dict[str, Any]:
    """One phase in this process, with memory sampled; returns its figures."""
    start = time.perf_counter()
    with MemorySampler() as memory:
        figures = {"cache": phase_cache, "epoch": phase_epoch}[phase](root)
    return {**figures, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_anon_mb": round(memory.peak["RssAnon"], 1), "peak_rss_file_mb": round(memory.peak["RssFile"], 1)}


def measure(size: int, base: Path) -> dict[str, Any]:
    """Both phases at one corpus size, each in a fresh process."""
    root = base / f"n{size}"
    root.mkdir(parents=True, exist_ok=True)
    write_texts(root / "texts.txt", size)
    out: dict[str, Any] = {"items": size}
    for phase in ("cache", "epoch"):
        proc = subprocess.run([sys.executable, "-m", "edgeret.bench.streaming", "--phase", phase, str(root)],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"{phase} at {size}: {proc.stderr[-2000:]}")
        out[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
        logger.info("%d items, %s: %s", size, phase, out[phase])
    return out


def streaming_markdown(summary: dict[str, Any]) -> str:
    """Command, then one row per size and phase."""
    rows = [{"items": f"{r['items']:,}", "phase": phase, "seconds": r[phase]["seconds"],
             "peak RssAnon MB": r[phase]["peak_rss_anon_mb"], "peak RssFile MB": r[phase]["peak_rss_file_mb"],
             "memmap MB": round((r[phase].get("cache_bytes") or r[phase].get("token_bytes") or 0) / 2**20, 1)}
            for r in summary["sizes"] for phase in ("cache", "epoch")]
    return "\n".join([f"`{summary['command']}`", "", f"{summary['created']} · {summary['machine']['cpu']}", "",
                      markdown_table(rows, list(rows[0])), ""])


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Measure every size (or, with ``--phase``, one phase of one size for the parent process)."""
    parser = argparse.ArgumentParser(prog="python -m edgeret.bench.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=Path("artifacts/streaming"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--phase", choices=("cache", "epoch"), help=argparse.SUPPRESS)
    parser.add_argument("root", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.root)))
        return None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    summary = {"command": invocation("python -m edgeret.bench.streaming", argv), "created": now_iso(),
               "machine": machine_info([2]), "versions": package_versions(),
               "sizes": [measure(size, args.work) for size in args.sizes]}
    write_json(args.out / "streaming.json", summary)
    (args.out / "streaming.md").write_text(streaming_markdown(summary), encoding="utf-8")
    logger.info("\n%s", streaming_markdown(summary))
    return summary


if __name__ == "__main__":
    main()
