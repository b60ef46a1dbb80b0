"""Builders of hostile inputs for the hardening tests (and the hardening bench): crafted PNGs and JPEG headers,
tampered manifests and index files, and a child process that measures a preprocessor's peak memory.

Only the standard library, numpy and Pillow: the files are built byte by byte where Pillow would refuse to.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: where child processes run: outside the checkout, so that their ``import edgeret`` finds the installed package
CHILD_CWD = tempfile.gettempdir()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, *, bit_depth: int = 8, color_type: int = 0, row: bytes | None = None,
        truncate_idat: bool = False) -> bytes:
    """A PNG of ``height`` identical scanlines (``row``: default zeros) streamed through zlib (so a 1 x 20,000,000
    image is built in a fraction of a second); ``truncate_idat`` keeps only the first 64 bytes of the data."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = row if row is not None else bytes((width * channels * bit_depth + 7) // 8)
    line = b"\x00" + row
    compressor = zlib.compressobj(9)
    parts, block = [], line * max(1, (1 << 20) // len(line))
    lines_per_block = len(block) // len(line)
    full, rest = divmod(height, lines_per_block)
    for _ in range(full):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(line * rest))
    parts.append(compressor.flush())
    data = b"".join(parts)
    if truncate_idat:
        data = data[:64]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header claims ``width`` x ``height`` (the scan data is for 16 x 16)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def edit_json(path: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``edit`` to a JSON file in place."""
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def rewrite_index_checksums(generation: Path) -> None:
    """Make ``index.json`` match the (tampered) files again, as an attacker would."""

    def fix(meta: dict[str, Any]) -> None:
        for name in meta["files"]:
            blob = (generation / name).read_bytes()
            meta["files"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}

    edit_json(generation / "index.json", fix)


def hnsw_layout(path: Path) -> dict[str, int]:
    """Offsets of an hnswlib file: header fields plus where level 0 and the link lists start."""
    header = struct.unpack("=6Q i I 3Q d Q", path.read_bytes()[:96])
    count, per_element, max_m0 = header[2], header[3], header[9]
    return {"count": count, "per_element": per_element, "max_m0": max_m0, "level0": 96,
            "links_start": 96 + count * per_element, "size": path.stat().st_size}


def set_level0_link(path: Path, element: int, slot: int, value: int, count: int | None = None) -> None:
    """Overwrite neighbour ``slot`` of ``element``'s level-0 list (and optionally its link count)."""
    layout = hnsw_layout(path)
    data = bytearray(path.read_bytes())
    base = layout["level0"] + element * layout["per_element"]
    if count is not None:
        data[base : base + 2] = struct.pack("=H", count)
    data[base + 4 + 4 * slot : base + 8 + 4 * slot] = struct.pack("=I", value)
    path.write_bytes(bytes(data))


RSS_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[3]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from edgeret.runtime.image import load_image
from edgeret.runtime.preprocess import ImagePreprocessor

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

base = hwm()
prep = ImagePreprocessor(size=int(sys.argv[2]), resample="bicubic")
try:
    out = prep([load_image(sys.argv[1], "image")])
    status = "ok" if out.shape == (1, 3, prep.size, prep.size) else "bad shape"
except ValueError as exc:
    status = "ValueError: " + str(exc)[:200]
except BaseException as exc:
    status = type(exc).__name__ + ": " + str(exc)[:200]
print(json.dumps({"status": status, "peak_rss_mb": round(hwm(), 1), "baseline_mb": round(base, 1)}))
"""


def preprocess_in_child(path: Path, size: int = 128, address_limit_mb: int = 3072, timeout: float = 120
                        ) -> dict[str, Any]:
    """Load + preprocess one image file in a fresh process; its status and peak RSS (VmHWM, MB).

    The child's address space is capped (``address_limit_mb``) so that an unbounded decode fails there with a
    MemoryError instead of exhausting the machine.
    """
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(path), str(size), str(address_limit_mb)],
                         capture_output=True, text=True, timeout=timeout, env=dict(os.environ), cwd=CHILD_CWD)
    if out.returncode != 0:
        return {"status": f"exit {out.returncode}: {out.stderr[-300:]}", "peak_rss_mb": None}
    return json.loads(out.stdout.strip().splitlines()[-1])


def gradient(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test pattern (smooth gradients plus noise), ``height x width x 3`` uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=-1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def refresh_manifest_entry(bundle: Path, name: str) -> None:
    """Record a (tampered) bundle file's new sha256 and size in ``manifest.json``."""
    blob = (bundle / name).read_bytes()
    edit_json(bundle / "manifest.json",
              lambda d: d["files"].update({name: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}}))


def png_with_header(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG with arbitrary IHDR fields and IDAT payload (valid CRCs): what a fuzzer or an attacker writes."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
