"""``edgeret index`` and ``edgeret search`` through the real dispatcher."""

import json
import re

import pytest
from PIL import Image

from edgeret.cli.main import main


def _search(capsys, *args):
    capsys.readouterr()
    main(["search", *map(str, args), "--json"])
    return json.loads(capsys.readouterr().out)


def test_index_texts_then_search_json(bundle, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("red apple\n\nblue car\na big dog\n")
    main(["index", str(bundle), "--texts", str(texts)])
    assert "indexed 3 items" in capsys.readouterr().out
    rows = _search(capsys, bundle, "blue car", "-k", "2")
    assert [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["id"] == "3" and rows[0]["metadata"] == {"text": "blue car"}
    assert rows[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_index_jsonl_with_metadata_and_filter(bundle, tmp_path, capsys):
    records = [{"id": "a", "text": "red apple", "metadata": {"lang": "en"}},
               {"id": "b", "text": "green apple", "metadata": {"lang": "de"}}]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    main(["index", str(bundle), "--texts", str(path)])
    rows = _search(capsys, bundle, "red apple", "--filter", '{"lang": "de"}')
    assert [r["id"] for r in rows] == ["b"] and rows[0]["metadata"] == {"text": "green apple", "lang": "de"}


def test_index_images_skips_unreadable_files_and_searches_by_image(bundle, tmp_path, capsys, caplog):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 40), (255, 0, 0)).save(folder / "red.png")
    Image.new("RGB", (40, 40), (0, 0, 255)).save(folder / "sub" / "blue.jpg")
    (folder / "broken.png").write_bytes(b"not really a png")
    (folder / "notes.txt").write_text("ignored")
    main(["index", str(bundle), "--images", str(folder)])
    assert "indexed 2 items" in capsys.readouterr().out and "broken.png" in caplog.text
    rows = _search(capsys, bundle, "--image", folder / "sub" / "blue.jpg", "-k", "1")
    assert rows[0]["id"] == "sub/blue.jpg" and rows[0]["metadata"] == {"path": "sub/blue.jpg"}
    main(["search", str(bundle), "anything", "-k", "2"])
    assert capsys.readouterr().out.count("\n") == 2  # plain, ranked lines


@pytest.mark.parametrize("argv, message", [
    (["search", "{bundle}"], "either a text query or --image"),
    (["index", "{bundle}"], "one of the arguments --images --texts is required"),
])
def test_usage_errors(bundle, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main([a.format(bundle=bundle) for a in argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_runtime_errors_exit_1_with_a_message(bundle, tmp_path, capsys):
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(SystemExit) as info:
        main(["search", str(bundle), "query"])
    assert info.value.code == 1 and "tokenizer.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", str(tmp_path / "nope"), "--texts", str(tmp_path / "x.txt")])
    assert "no manifest.json" in capsys.readouterr().err


def _hostile_folder(tmp_path):
    import os

    from .hostile import jpeg_with_size, png

    folder = tmp_path / "drop"
    folder.mkdir()
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        Image.new("RGB", (40, 30), colour).save(folder / f"good{i}.png")
    (folder / "strip.png").write_bytes(png(1, 300_000))  # extreme but fine: cropped before resizing
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "bitmap.png").write_bytes(png(12000, 12000, bit_depth=1))  # 144 MP: refused before decoding
    (folder / "huge.jpg").write_bytes(jpeg_with_size(65000, 65000))
    (tmp_path / "secret.png").write_bytes((folder / "good0.png").read_bytes())
    (folder / "outside.png").symlink_to(tmp_path / "secret.png")
    os.mkfifo(folder / "fifo.png")
    return folder


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_index_images_reports_bad_files_keeps_good_ones_and_saves_as_it_goes(bundle, tmp_path, capsys):
    folder = _hostile_folder(tmp_path)
    main(["index", str(bundle), "--images", str(folder), "--batch-size", "2", "--save-every", "2"])
    captured = capsys.readouterr()
    assert "indexed 4 items, skipped 5 (0 -> 4); saved 3 time(s)" in captured.out, captured.out
    for name, reason in (("broken.png", "not an image"), ("bitmap.png", "MiB limit|too many pixels"),
                         ("huge.jpg", "too many pixels"),
                         ("outside.png", "leads outside the folder"), ("fifo.png", "not a regular file")):
        assert any(line.startswith(f"skipped {name}") and re.search(reason, line) for line in captured.err.splitlines())
    rows = _search(capsys, bundle, "--image", folder / "good2.png", "-k", "4")
    assert rows[0]["id"] == "good2.png" and {r["id"] for r in rows} == {"good0.png", "good1.png", "good2.png",
                                                                         "strip.png"}


def test_a_failure_late_in_an_index_run_loses_nothing_already_embedded(bundle, tmp_path, capsys, monkeypatch):
    from edgeret.runtime.image import ImageEncoder
    from edgeret.runtime.retriever import Retriever

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(folder / f"{i}.png")
    calls, encode = [], ImageEncoder.encode_pixels

    def failing(self, pixels):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the machine ran out of something")
        return encode(self, pixels)

    monkeypatch.setattr(ImageEncoder, "encode_pixels", failing)
    with pytest.raises(SystemExit) as info:
        main(["index", str(bundle), "--images", str(folder), "--batch-size", "2"])
    assert info.value.code == 1 and "ran out of something" in capsys.readouterr().err
    assert set(Retriever.open(bundle, threads=1).index.ids()) == {"0.png", "1.png", "2.png", "3.png"}


def test_index_jsonl_skips_malformed_records(bundle, tmp_path, capsys):
    lines = ['{"id": null, "text": "red apple"}', '{"id": true, "text": "blue car"}', '{"id": 5, "text": "a big dog"}',
             '{"id": "m", "text": "green apple", "metadata": [1]}', "{not json", '{"id": "z", "text": "\\u200b"}',
             '{"id": "ok", "text": "the sun", "metadata": {"k": 1}}', '{"id": "ok", "text": "the moon"}']
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    main(["index", str(bundle), "--texts", str(path)])
    captured = capsys.readouterr()
    assert "indexed 3 items, skipped 5 (0 -> 2)" in captured.out  # "ok" twice: the later line replaced it
    for where in ("items.jsonl:1", "items.jsonl:2", "items.jsonl:4", "items.jsonl:5", "id 'z'"):
        assert f"skipped {where}" in captured.err, where
    rows = _search(capsys, bundle, "the moon", "-k", "5")
    assert {r["id"] for r in rows} == {"5", "ok"} and rows[0]["metadata"] == {"text": "the moon"}


def test_index_format_option(bundle, tmp_path, capsys):
    pytest.importorskip("faiss")
    texts = tmp_path / "texts.txt"
    texts.write_text("red apple\nblue car\na big dog\n")
    main(["index", str(bundle), "--texts", str(texts), "--index-format", "faiss-hnsw-sq8"])
    assert "indexed 3 items" in capsys.readouterr().out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["index"]["format"] == "faiss-hnsw-sq8"
    assert _search(capsys, bundle, "blue car", "-k", "1")[0]["id"] == "2"
    with pytest.raises(SystemExit) as info:  # the saved index is faiss's: naming another format is an error
        main(["index", str(bundle), "--texts", str(texts), "--index-format", "hnswlib-f32"])
    assert info.value.code == 1 and "faiss-hnsw-sq8" in capsys.readouterr().err


def test_index_format_without_its_library_names_the_extra(bundle, tmp_path, capsys, monkeypatch):
    from edgeret.runtime import index_formats  # patched: faiss looks uninstalled

    real = index_formats.importlib.util.find_spec
    monkeypatch.setattr(index_formats.importlib.util, "find_spec",
                        lambda name, *a: None if name == "faiss" else real(name, *a))
    texts = tmp_path / "texts.txt"
    texts.write_text("red apple\n")
    with pytest.raises(SystemExit) as info:
        main(["index", str(bundle), "--texts", str(texts), "--index-format", "faiss-hnsw-sq8"])
    assert info.value.code == 1 and "pip install 'edgeret[faiss]'" in capsys.readouterr().err
