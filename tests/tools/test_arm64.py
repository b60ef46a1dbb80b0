"""Host-side logic of ``python -m tools.arm64`` (no QEMU needed): cpuinfo, commands, comparisons, verdicts."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tools.arm64 import cli, compare, formats, guest, hnsw, host_tools, results, rootfs, wheels, workload
from tools.arm64.guest_worker import OWN_INPUT_MODES, SHARED_INPUT_MODES, run_job
from tools.arm64.shell import Arm64Error, Stamps, Timer, cached_step, fingerprint

FIXTURE_BUNDLE = Path(__file__).resolve().parents[1] / "runtime" / "fixtures" / "tiny_bundle"


# ---- the ARM /proc/cpuinfo --------------------------------------------------------------------
def test_cpuinfo_describes_four_cortex_a72_cores(tmp_path):
    path = rootfs.write_cpuinfo(tmp_path / "root")
    assert path == tmp_path / "root" / "proc" / "cpuinfo"
    text = path.read_text()
    blocks = [b for b in text.split("\n\n") if b.startswith("processor")]
    assert [b.splitlines()[0].split(":")[1].strip() for b in blocks] == ["0", "1", "2", "3"]
    for block in blocks:
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.splitlines())}
        assert fields["CPU implementer"] == "0x41" and fields["CPU part"] == "0xd08"  # Arm Ltd, Cortex-A72
        assert fields["CPU architecture"] == "8" and "asimd" in fields["Features"].split()
    assert "model name" not in text and "GenuineIntel" not in text and "AuthenticAMD" not in text
    assert rootfs.cortex_a72_cpuinfo(2).count("processor\t:") == 2


# ---- apt: host tools and the private arm64 state ----------------------------------------------
def test_missing_host_packages_are_named_by_their_debian_package():
    found = {"qemu-aarch64-static": "/usr/bin/qemu-aarch64-static"}
    assert host_tools.missing_packages(found.get) == ["g++-aarch64-linux-gnu"]
    assert host_tools.missing_packages(lambda tool: "/bin/" + tool) == []
    assert host_tools.missing_packages(lambda tool: None) == ["g++-aarch64-linux-gnu", "qemu-user-static"]


def test_apt_install_commands_use_sudo_only_when_not_root():
    as_root = host_tools.apt_install_commands(["qemu-user-static"], is_root=True, has_sudo=False)
    assert as_root[0] == ["apt-get", "update", "-q"]
    assert as_root[1][:2] == ["apt-get", "install"] and as_root[1][-1] == "qemu-user-static" and "-y" in as_root[1]
    with_sudo = host_tools.apt_install_commands(["qemu-user-static"], is_root=False, has_sudo=True)
    assert all(cmd[:2] == ["sudo", "-n"] for cmd in with_sudo)
    assert host_tools.apt_install_commands([], is_root=False, has_sudo=False) == []
    with pytest.raises(Arm64Error, match="sudo apt-get install qemu-user-static"):
        host_tools.apt_install_commands(["qemu-user-static"], is_root=False, has_sudo=False)


def test_ensure_host_tools_installs_what_is_missing_even_if_apt_update_fails(tmp_path, monkeypatch):
    present, calls = set(host_tools.BASE_TOOLS), []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        if "install" in cmd:
            present.update(host_tools.HOST_TOOLS)
        return SimpleNamespace(returncode=100 if "update" in cmd else 0)

    monkeypatch.setattr(host_tools.shutil, "which", lambda tool: f"/usr/bin/{tool}" if tool in present else None)
    monkeypatch.setattr(host_tools, "run", fake_run)
    monkeypatch.setattr(host_tools.os, "geteuid", lambda: 0)
    tools = host_tools.ensure_host_tools(tmp_path)
    assert tools == host_tools.HostTools(Path("/usr/bin/qemu-aarch64-static"), Path("/usr/bin/aarch64-linux-gnu-g++"))
    assert [cmd[1] for cmd in calls] == ["update", "install"]
    assert calls[1][-2:] == ["g++-aarch64-linux-gnu", "qemu-user-static"]
    calls.clear()
    host_tools.ensure_host_tools(tmp_path)  # everything there now: apt is not called
    assert calls == []


def test_apt_options_keep_every_apt_path_private_and_arm64(tmp_path):
    apt = rootfs.AptDirs(tmp_path / "apt")
    apt.prepare()
    options = apt.options()
    pairs = dict(opt.split("=", 1) for opt in options[1::2])
    assert options[0::2] == ["-o"] * len(pairs)
    assert pairs["APT::Architecture"] == "arm64" and pairs["APT::Architectures"] == "arm64"
    private = ("Dir::State::Lists", "Dir::State::status", "Dir::Cache", "Dir::Etc::SourceList", "Dir::Etc::SourceParts")
    for key in private:
        assert pairs[key].startswith(str(tmp_path / "apt")), key
    assert Path(pairs["Dir::State::status"]).is_file() and Path(pairs["Dir::State::Lists"], "partial").is_dir()
    assert "bookworm main" in apt.sources.read_text()


def test_sources_list_names_the_keyring_only_when_asked():
    signed, unsigned = rootfs.sources_list(True), rootfs.sources_list(False)
    assert len(signed.splitlines()) == len(rootfs.DEBIAN_SUITES)
    assert all("signed-by=/usr/share/keyrings/debian-archive-keyring.gpg" in line for line in signed.splitlines())
    assert "signed-by" not in unsigned
    assert "deb http://deb.debian.org/debian-security bookworm-security main" in unsigned


def test_python_include_dirs_need_both_headers(tmp_path):
    with pytest.raises(Arm64Error, match="Python.h"):
        rootfs.python_include_dirs(tmp_path)
    (tmp_path / "usr/include/python3.11").mkdir(parents=True)
    (tmp_path / "usr/include/python3.11/Python.h").touch()
    with pytest.raises(Arm64Error, match="pyconfig.h"):
        rootfs.python_include_dirs(tmp_path)
    (tmp_path / "usr/include/aarch64-linux-gnu/python3.11").mkdir(parents=True)
    (tmp_path / "usr/include/aarch64-linux-gnu/python3.11/pyconfig.h").touch()
    assert rootfs.python_include_dirs(tmp_path) == [tmp_path / "usr/include/python3.11", tmp_path / "usr/include"]


# ---- wheels and the hnswlib cross build -------------------------------------------------------
def test_guest_packages_are_pinned_to_the_host_versions():
    def version_of(name):
        if name == "absent":
            raise metadata.PackageNotFoundError(name)
        return {"numpy": "2.4.6", "onnxruntime": "1.32.0"}[name]

    assert wheels.pinned(["numpy", "onnxruntime", "absent"], version_of) == ["numpy==2.4.6", "onnxruntime==1.32.0",
                                                                             "absent"]
    dists = [SimpleNamespace(metadata={"Name": n}, version=v) for n, v in
             [("Pillow", "13.0.0"), ("torch", "2.13.0+cpu"), ("numpy", "2.4.6"), ("numpy", "2.4.6"), (None, "1")]]
    assert wheels.host_constraints(dists) == ["numpy==2.4.6", "Pillow==13.0.0"]  # no local versions, no duplicates


def test_the_guest_gets_every_index_format_library_at_the_host_version():
    from edgeret.runtime.index_formats import FORMATS  # the formats the harness checks

    libraries = {"hnswlib"} | {fmt.requirement.split(">")[0] for fmt in FORMATS.values() if fmt.requirement}
    assert libraries - {"hnswlib"} <= set(wheels.GUEST_PACKAGES)  # hnswlib: cross-compiled (tools.arm64.hnsw)
    assert "faiss-cpu" in libraries and f"faiss-cpu=={metadata.version('faiss-cpu')}" in wheels.pinned(
        wheels.GUEST_PACKAGES)
    assert "faiss" in guest.probe_command()[1] and "faiss-cpu" in guest.probe_command()[1]


def test_pip_commands_select_aarch64_cpython311_wheels_only(tmp_path):
    args = wheels.platform_args()
    assert "--only-binary=:all:" in args
    assert args[args.index("--python-version") + 1] == "3.11" and args[args.index("--abi") + 1] == "cp311"
    platforms = {args[i + 1] for i, a in enumerate(args) if a == "--platform"}
    assert {"manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= platforms
    assert all(p.endswith("_aarch64") for p in platforms) and "manylinux_2_37_aarch64" not in platforms
    download = wheels.download_command(["numpy==2.4.6"], tmp_path / "c.txt", tmp_path / "w")
    assert download[1:4] == ["-m", "pip", "download"] and download[-1] == "numpy==2.4.6"
    install = wheels.install_command(["numpy==2.4.6"], tmp_path / "w", tmp_path / "site")
    assert "--no-index" in install and install[install.index("--target") + 1] == str(tmp_path / "site")


def test_hnswlib_compile_command_targets_generic_armv8(tmp_path):
    includes = [tmp_path / "pybind11", tmp_path / "numpy", tmp_path / "py"]
    cmd = hnsw.compile_command("/usr/bin/aarch64-linux-gnu-g++", tmp_path / "bindings.cpp", tmp_path / "out.so",
                               includes, "0.8.0")
    assert cmd[0] == "/usr/bin/aarch64-linux-gnu-g++" and {"-shared", "-fPIC", "-O3"} <= set(cmd)
    assert [a for a in cmd if a.startswith("-I")] == [f"-I{d}" for d in includes]
    assert cmd[cmd.index("-o") + 1] == str(tmp_path / "out.so") and str(tmp_path / "bindings.cpp") in cmd
    assert '-DVERSION_INFO="0.8.0"' in cmd and "-march=native" not in cmd and "-march=armv8-a" in cmd
    build = hnsw.HnswBuild(tmp_path, "0.8.0")
    assert build.module.name == "hnswlib.cpython-311-aarch64-linux-gnu.so" and build.module.parent == build.lib


# ---- the guest command ------------------------------------------------------------------------
def test_guest_command_runs_the_root_python_under_qemu_with_a_clean_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTUAL_ENV", "/host/venv")
    vm = guest.Guest(Path("/usr/bin/qemu-aarch64-static"), tmp_path / "root", (tmp_path / "site", tmp_path / "repo"),
                     tmp_path / "home" / "pycache")
    assert vm.command(["-c", "pass"]) == ["/usr/bin/qemu-aarch64-static", "-cpu", "cortex-a72", "-L",
                                          str(tmp_path / "root"), str(tmp_path / "root/usr/bin/python3.11"),
                                          "-c", "pass"]
    env = vm.environment()
    assert env["PYTHONPATH"] == f"{tmp_path / 'site'}:{tmp_path / 'repo'}"
    assert "VIRTUAL_ENV" not in env and "PYTHONHOME" not in env and env["PYTHONNOUSERSITE"] == "1"
    shown = vm.shown(["x.py"])
    assert shown.startswith("env -i ") and shown.endswith("python3.11 x.py") and "-cpu cortex-a72" in shown


def test_guest_pytest_selects_the_arm64_marker_and_writes_junit(tmp_path):
    args = guest.pytest_args(tmp_path / "j.xml")
    assert args[:2] == ["-m", "pytest"] and args[args.index("-m", 2) + 1] == "arm64"
    assert f"--junitxml={tmp_path / 'j.xml'}" in args and args[-1] == "tests/runtime"


@pytest.mark.parametrize("xml", [
    '<testsuites><testsuite tests="7" failures="1" errors="1" skipped="2"/></testsuites>',
    '<testsuite tests="7" failures="1" errors="1" skipped="2"></testsuite>',
])
def test_junit_counts(tmp_path, xml):
    (tmp_path / "j.xml").write_text(xml)
    assert guest.junit_counts(tmp_path / "j.xml") == {"passed": 3, "failed": 1, "errors": 1, "skipped": 2, "total": 7}


def test_arm64_marker_is_registered_and_not_deselected_by_default():
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["tool"]["pytest"]
    options = config["ini_options"]
    assert any(m.startswith("arm64:") for m in options["markers"]) and "arm64" not in options["addopts"]


# ---- comparisons ------------------------------------------------------------------------------
def test_rowwise_cosine():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
    assert np.allclose(compare.rowwise_cosine(a, b), [1.0, -1.0, np.sqrt(0.5)])
    with pytest.raises(ValueError, match="one shape"):
        compare.rowwise_cosine(a, b[:2])
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        compare.rowwise_cosine(a, np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))


def test_cosine_summary_finds_the_worst_item_and_counts_those_below_the_threshold():
    rng = np.random.default_rng(0)
    host = rng.standard_normal((5, 16)).astype(np.float32)
    guest_emb = host.copy()
    guest_emb[3] += 0.2 * rng.standard_normal(16).astype(np.float32)  # one item drifts
    summary = compare.cosine_summary(["a", "b", "c", "d", "e"], host, guest_emb)
    assert summary["worst_item"] == "d" and summary["below_threshold"] == 1 and not summary["ok"]
    assert summary["min_cosine"] < 0.999 and summary["min_cosine"] < summary["mean_cosine"] < 1.0
    same = compare.cosine_summary(list("abcde"), host, host + 1e-7)
    assert same["ok"] and same["min_cosine"] > 0.999999 and same["below_threshold"] == 0
    with pytest.raises(ValueError, match="4 ids for 5"):
        compare.cosine_summary(list("abcd"), host, host)


def test_topk_agreement_counts_identical_lists_and_overlap():
    host = {"ids": [["a", "b", "c"], ["d", "e", "f"]], "scores": [[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]]}
    swapped = {"ids": [["a", "b", "c"], ["d", "f", "g"]], "scores": [[0.9, 0.8, 0.7], [0.6, 0.5001, 0.3]]}
    result = compare.topk_agreement(host, swapped)
    assert result["identical"] == 1 and result["agreement"] == 0.5
    assert result["mean_overlap"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["max_score_diff"] == pytest.approx(0.1001)  # f: 0.4 on x86, 0.5001 on ARM
    assert result["max_rank_score_diff"] == pytest.approx(0.1)  # rank 3: 0.4 vs 0.3
    assert result["first_difference"] == {"query": 1, "x86": ["d", "e", "f"], "arm64": ["d", "f", "g"]}
    assert compare.topk_agreement(host, host)["agreement"] == 1.0 and compare.topk_agreement(host, host)[
        "first_difference"] is None
    with pytest.raises(ValueError, match="2 host queries but 1"):
        compare.topk_agreement(host, {"ids": host["ids"][:1], "scores": host["scores"][:1]})


# ---- verdicts and results files ---------------------------------------------------------------
def _report(**overrides) -> dict:
    tower = {"items": 3, "min_cosine": 0.99995, "mean_cosine": 0.99999, "worst_item": "x", "below_threshold": 0,
             "max_abs_diff": 1e-4, "ok": True}
    topk = {"queries": 4, "identical": 4, "agreement": 1.0, "mean_overlap": 1.0, "max_score_diff": 1e-7,
            "max_rank_score_diff": 1e-7, "first_difference": None}
    timings = {"import": 0.5, "open": 0.1, "embed_texts": 0.2, "total": 1.0}
    fmt = {"index": {"items": 6, "generation_bytes": 6000},
           "topk": {m: dict(topk) for m in (*SHARED_INPUT_MODES, *OWN_INPUT_MODES)}}
    row = {"bundle": "b", "text": dict(tower), "image": dict(tower), "index": {"items": 6},
           "topk": {k: dict(topk) for k in results.QUERY_KINDS},
           "formats": {"hnswlib-f32": fmt, "faiss-hnsw-sq8": json.loads(json.dumps(fmt))},
           "timings_s": {"x86": timings, "arm64": {k: 10 * v for k, v in timings.items()}}}
    report = {"command": "python -m tools.arm64", "created": "now", "mode": "full", "bundles": [row],
              "guest": {"emulator": "qemu 7.2", "cpu": "cortex-a72", "cpuinfo": "4 cores", "python": "3.11.2",
                        "versions": {"numpy": "2"}},
              "host": {"cpu": "x86", "python": "3.11.7", "versions": {"numpy": "2"}},
              "workload": {"source": "s", "texts": 3, "images": 3, "queries": 2},
              "tests": {"passed": 5, "failed": 0, "errors": 0, "skipped": 0, "wall_s": 3.0, "log": "l"},
              "timings_s": {"total": 9.0}}
    for path, value in overrides.items():
        *keys, last = path.split(".")
        target = report
        for key in keys:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value
    return report


def test_failures_pass_a_clean_report():
    assert results.failures(_report()) == []


@pytest.mark.parametrize("path, value, message", [
    ("bundles.0.image.ok", False, "image embedding(s) below cosine"),
    ("bundles.0.topk.vector.agreement", 0.75, "answered 75.0% of the x86-made vector queries"),
    ("bundles.0.topk.text.mean_overlap", 0.9, "text queries' top-10 overlap x86's by 90.0%"),
    ("bundles.0.topk.vector.max_rank_score_diff", 3e-5, "vector queries: scores differ by up to 3.0e-05"),
    ("bundles.0.formats.faiss-hnsw-sq8.topk.exact.agreement", 0.5, "faiss-hnsw-sq8: 50.0% of the x86-made exact"),
    ("bundles.0.formats.faiss-hnsw-sq8.topk.filtered.max_rank_score_diff", 1e-3, "filtered queries: scores differ"),
    ("bundles.0.formats.hnswlib-f32.topk.image.mean_overlap", 0.5, "hnswlib-f32: image queries' top-10 overlap"),
    ("tests.failed", 2, "2 failed"),
    ("tests.passed", 0, "0 passed"),
])
def test_failures_name_each_failed_check(path, value, message):
    found = results.failures(_report(**{path: value}))
    assert len(found) == 1 and message in found[0]


def test_end_to_end_top10_may_differ_by_near_ties_but_vector_queries_may_not():
    report = _report(**{"bundles.0.topk.text.agreement": 0.8, "bundles.0.topk.text.mean_overlap": 0.99})
    assert results.failures(report) == []
    assert results.failures(report, min_overlap=0.995)


def test_results_files_are_written(tmp_path):
    report = _report(ok=True, failures=[])
    json_path, md_path = results.write_results(report, tmp_path / "arm64")
    assert json.loads(json_path.read_text())["bundles"][0]["bundle"] == "b"
    text = md_path.read_text()
    assert text.startswith("# ARM64 (emulated cortex-a72) vs x86: PASS") and "| b | text | 3 | 0.999950" in text
    assert "| b | import | 0.500 | 5.000 | 10x |" in text and "5 passed, 0 failed" in text
    assert "| b | faiss-hnsw-sq8 | 6 | 1000 | 4/4 | 4/4 | 4/4 | 1.0e-07 | 1.000 | 1.000 |" in text
    del report["bundles"][0]["formats"]  # a report written before formats were checked
    assert "Every index format" not in results.markdown(report)
    failed = results.markdown(_report(ok=False, failures=["b: broken"]))
    assert failed.startswith("# ARM64 (emulated cortex-a72) vs x86: FAIL: b: broken")


# ---- caching ----------------------------------------------------------------------------------
def test_cached_step_runs_once_per_key_and_again_when_its_output_is_gone(tmp_path):
    stamps, timer, calls = Stamps(tmp_path / "stamps"), Timer(), []
    output = tmp_path / "out"

    def action():
        calls.append(1)
        output.touch()

    key = fingerprint("numpy==2.4.6")
    assert cached_step(stamps, timer, "site", key, action, outputs=[output])
    assert not cached_step(stamps, timer, "site", key, action, outputs=[output])
    assert cached_step(stamps, timer, "site", fingerprint("numpy==2.4.7"), action, outputs=[output])
    output.unlink()
    assert cached_step(stamps, timer, "site", fingerprint("numpy==2.4.7"), action, outputs=[output])
    assert len(calls) == 3 and "site" in timer.seconds


def test_a_failed_step_leaves_no_stamp(tmp_path):
    stamps = Stamps(tmp_path)

    def broken():
        raise Arm64Error("boom")

    with pytest.raises(Arm64Error):
        cached_step(stamps, Timer(), "hnswlib", "k", broken)
    assert not stamps.done("hnswlib", "k")


# ---- workload, x86 index and the worker (run here on x86) --------------------------------------
def test_synthetic_items_are_deterministic_and_distinct():
    texts = workload.synthetic_texts(30)
    assert texts == workload.synthetic_texts(30) and len(set(texts)) == 30
    a, b = workload.synthetic_image(3), workload.synthetic_image(3)
    assert a.size == (64, 64) and a.tobytes() == b.tobytes() and a.tobytes() != workload.synthetic_image(4).tobytes()


def test_worker_reproduces_the_x86_index_on_the_fixture_bundle(tmp_path):
    items = workload.prepare_workload("synthetic", 12, tmp_path / "items")
    assert workload.prepare_workload("synthetic", 12, tmp_path / "items") == items  # reused, not rebuilt
    shutil.copytree(FIXTURE_BUNDLE, tmp_path / "bundle")
    index = workload.index_on_host(tmp_path / "bundle", items, 4, 1, tmp_path / "q.npy")
    assert index["items"] == 24 and np.load(tmp_path / "q.npy").shape == (8, index["dim"])
    results_by_run = []
    for name in ("a", "b"):
        job = workload.make_job(cli.REPO, tmp_path / "bundle", items, 4, 1, tmp_path / "q.npy", tmp_path / name)
        results_by_run.append(run_job(job))
    first, second = results_by_run
    assert first["index_items"] == 24 and len(first["topk"]["vector"]["ids"]) == 8
    # a vector query for an indexed item finds that item first
    assert [ids[0] for ids in first["topk"]["vector"]["ids"]] == items.text_ids[:4] + items.image_ids[:4]
    texts_a, texts_b = np.load(tmp_path / "a" / "texts.npy"), np.load(tmp_path / "b" / "texts.npy")
    assert compare.cosine_summary(items.text_ids, texts_a, texts_b)["min_cosine"] > 0.999999
    assert all(compare.topk_agreement(first["topk"][k], second["topk"][k])["agreement"] == 1.0
               for k in results.QUERY_KINDS)


def test_every_index_format_is_saved_from_the_bundle_vectors_and_answered_by_the_worker(tmp_path):
    items = workload.prepare_workload("synthetic", 12, tmp_path / "items")
    shutil.copytree(FIXTURE_BUNDLE, tmp_path / "bundle")
    workload.index_on_host(tmp_path / "bundle", items, 4, 1, tmp_path / "q.npy")
    built = formats.save_formats(tmp_path / "bundle", items, tmp_path / "formats", 1)
    assert set(built) == {"hnswlib-f32", "faiss-hnsw-sq8"} and all(b["items"] == 24 for b in built.values())
    job = workload.make_job(cli.REPO, tmp_path / "bundle", items, 4, 1, tmp_path / "q.npy", tmp_path / "out")
    runs = [run_job({**job, "formats": formats.job_entries(built), "out": str(tmp_path / name)}) for name in "ab"]
    hnsw_f32, first = runs[0]["formats"]["hnswlib-f32"], runs[0]["formats"]["faiss-hnsw-sq8"]
    assert set(first) == {*SHARED_INPUT_MODES, *OWN_INPUT_MODES}
    assert [ids[0] for ids in hnsw_f32["vector"]["ids"]] == items.text_ids[:4] + items.image_ids[:4]
    assert first["vector"]["ids"] == first["exact"]["ids"]  # 24 items: the graph finds what exact search does
    assert all(i in items.image_ids for ids in first["filtered"]["ids"] for i in ids)  # the filter keeps images
    compared = formats.compare_formats(built, *runs)
    assert all(t["agreement"] == 1.0 and t["max_rank_score_diff"] <= compare.SCORE_TOLERANCE
               for fmt in compared.values() for t in fmt["topk"].values())
    assert compared["faiss-hnsw-sq8"]["index"]["generation_bytes"] > 0


def test_cli_defaults_for_full_and_reduced_modes():
    full, reduced = cli.parse_args([]), cli.parse_args(["--reduced"])
    assert [b.name for b in full.bundles] == ["student-int8", "student-int4"] and full.items == 200
    assert full.source == "openmoji" and full.out.name == "arm64" and full.queries == 50
    assert [b.name for b in reduced.bundles] == ["tiny_bundle"] and reduced.source == "synthetic"
    assert reduced.out.name == "arm64-reduced" and reduced.items < full.items and reduced.queries <= reduced.items
    assert cli.parse_args(["--items", "5", "--queries", "50"]).queries == 5
