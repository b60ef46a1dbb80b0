import gzip
from collections import Counter

import numpy as np
import pytest

from edgeret.data.augment import augmented_items, augmented_render
from edgeret.data.catalog import EVAL_SETS, load_eval
from edgeret.data.openmoji import emoji_id, emojis, load_emojis
from edgeret.data.render import glyph_rgba, render_emoji
from edgeret.data.splits import split_of
from edgeret.data.wordnet import build_subset, load_synsets, parse_data_line, synsets, wordnet_eval


def test_openmoji_pairs_are_base_emoji_with_glyphs():
    all_emoji = load_emojis()
    assert 1800 < len(all_emoji) < 2500
    skin = {chr(c) for c in range(0x1F3FB, 0x1F400)}
    assert not any(skin & set(e.text) for e in all_emoji)
    assert len({e.id for e in all_emoji}) == len(all_emoji)
    assert all(e.captions[0] == e.name and e.name for e in all_emoji)
    counts = Counter(e.split for e in all_emoji)
    assert counts["test"] >= 400 and counts["train"] > 2 * counts["test"] and counts["val"] > 100


def test_split_is_a_pure_function_of_the_key():
    assert split_of("1F600", (0.65, 0.1, 0.25)) == split_of("1F600", (0.65, 0.1, 0.25))
    keys = [f"k{i}" for i in range(20000)]
    counts = Counter(split_of(k, (0.7, 0.1, 0.2), seed=3) for k in keys)
    assert abs(counts["train"] / 20000 - 0.7) < 0.02 and abs(counts["test"] / 20000 - 0.2) < 0.02
    with pytest.raises(ValueError):
        split_of("x", (0.5, 0.5, 0.5))


def test_missing_glyphs_are_detected():
    assert glyph_rgba("\U0010fffd") is None  # .notdef
    assert glyph_rgba("\U0001f600\U0001f600") is None  # two glyphs, not one
    assert glyph_rgba("\U0001f468\u200d\U0001f469\u200d\U0001f467") is not None  # ZWJ family ligature
    assert emoji_id("\U0001f468\u200d\U0001f469") == "1F468-200D-1F469"


def test_render_is_deterministic_rgb():
    a, b = render_emoji("\U0001f34c", 96), render_emoji("\U0001f34c", 96)
    assert a.mode == "RGB" and a.size == (96, 96)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert (np.asarray(a) < 250).any()  # not blank


def test_augmented_stream_is_reproducible_and_varied():
    items = augmented_items("train", copies=2, seed=7, size=64)
    assert len(items) == 2 * len(emojis("train"))
    first = np.asarray(items[0].load())
    assert np.array_equal(first, np.asarray(items[0].load()))
    assert not np.array_equal(first, np.asarray(items[1].load()))
    e = emojis("train")[0]
    assert not np.array_equal(
        np.asarray(augmented_render(e.text, e.id, 0, seed=7, size=64)),
        np.asarray(augmented_render(e.text, e.id, 0, seed=8, size=64)),
    )


@pytest.mark.parametrize("name", sorted(EVAL_SETS))
def test_eval_sets_are_consistent(name):
    ev = load_eval(name, size=32)
    assert ev.queries and ev.corpus
    corpus_ids = {c.id for c in ev.corpus}
    assert all(ev.relevant[q.id] <= corpus_ids for q in ev.queries)


def test_openmoji_test_sample_of_400_is_fixed():
    a, b = load_eval("openmoji-test400-i2t"), load_eval("openmoji-test400-i2t")
    assert len(a.queries) == 400 and [q.id for q in a.queries] == [q.id for q in b.queries]
    train_ids = {e.id for e in emojis("train")}
    assert not any(q.id.split(":")[1] in train_ids for q in a.queries)


def test_wordnet_subset_shipped_and_split():
    all_synsets = load_synsets()
    assert len(all_synsets) == 30000
    assert len({s.lemmas.lower() for s in all_synsets}) == 30000  # unambiguous relevant docs
    counts = Counter(s.split for s in all_synsets)
    assert counts["test"] > 2500 and counts["val"] > 2500
    ev = wordnet_eval("test", sample=50)
    assert len(ev.queries) == 50 and ev.task == "t2t"
    assert {s.key for s in synsets("train")}.isdisjoint({s.key for s in synsets("test")})


def test_wordnet_builder_on_a_tiny_database(tmp_path):
    header = "  1 This software and database is being provided to you\n"
    noun = header + (
        "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived to exist  \n"
        '00002137 03 n 02 abstraction 0 abstract_entity 0 000 | a general concept; "an example"  \n'
        "00002200 03 n 01 bank 0 000 | sloping land  \n"
        "00002300 03 n 01 bank 0 000 | a financial institution  \n"
    )
    (tmp_path / "data.noun").write_text(noun)
    (tmp_path / "data.verb").write_text(header + "00001741 29 v 02 breathe 0 take_a_breath 0 000 | draw air  \n")
    (tmp_path / "data.adj").write_text(header + "00001742 00 a 01 able(a) 0 000 | having the means  \n")
    (tmp_path / "data.adv").write_text(header)
    out = tmp_path / "subset.tsv.gz"
    assert build_subset(tmp_path, out, size=10) == 4  # the two ambiguous 'bank' synsets are dropped
    rows = gzip.open(out, "rt").read().splitlines()
    assert "n00002137\tabstraction, abstract entity\ta general concept" in rows
    assert "a00001742\table\thaving the means" in rows
    assert load_synsets(out)[0].key == "a00001742"


def test_parse_data_line_skips_licence_header():
    assert parse_data_line("  1 This software", "n") is None
