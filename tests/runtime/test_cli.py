"""``edgeret index`` and ``edgeret search`` through the real dispatcher."""

import json

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
