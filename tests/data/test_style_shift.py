"""The style-shift evaluation: deterministic styled renders, balanced styles, and its three retrieval sets."""

from __future__ import annotations

import numpy as np
import pytest

from edgeret.data.catalog import STYLE_SETS, load_eval
from edgeret.data.openmoji import emojis
from edgeret.data.render import render_emoji
from edgeret.data.style_shift import STYLES, assign_styles, by_style, style_eval, style_of_id, styled_render


def test_every_style_is_deterministic_and_differs_from_the_clean_render():
    e = emojis("test")[0]
    clean = np.asarray(render_emoji(e.text, 64), dtype=np.int16)
    renders = {}
    for style in STYLES:
        image = styled_render(e.text, e.id, style, size=64)
        assert image.mode == "RGB" and image.size == (64, 64)
        assert np.array_equal(np.asarray(image), np.asarray(styled_render(e.text, e.id, style, size=64)))
        renders[style] = np.asarray(image, dtype=np.int16)
        assert np.abs(renders[style] - clean).mean() > 0.5, style
    gray = renders["grayscale"]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert not np.array_equal(np.asarray(styled_render(e.text, e.id, "busy", seed=1, size=64)), renders["busy"])
    with pytest.raises(ValueError, match="unknown style"):
        styled_render(e.text, e.id, "sepia")


def test_styles_are_balanced_and_stable():
    keys = [f"k{i}" for i in range(61)]
    styles = assign_styles(keys)
    counts = [sum(s == style for s in styles.values()) for style in STYLES]
    assert max(counts) - min(counts) <= 1 and sum(counts) == 61
    assert assign_styles(keys) == styles and assign_styles(keys, seed=1) != styles
    assert style_of_id("sty:jpeg:1F600") == "jpeg" and style_of_id("img:1F600") is None


def test_the_three_sets_cover_the_test_emoji():
    n = len(emojis("test"))
    t2i, i2t, i2i = (style_eval(task, "test", size=32) for task in ("t2i", "i2t", "i2i"))
    assert len(t2i.corpus) == len(i2t.queries) == len(i2i.queries) == len(i2i.corpus) == n
    assert all(style_of_id(item.id) for item in t2i.corpus) and all(q.id.startswith("cap:") for q in t2i.queries)
    for query in i2i.queries:  # a styled render's relevant item is its emoji's clean render
        assert i2i.relevant[query.id] == {"img:" + query.id.split(":")[2]}
    assert {i.split(":")[0] for q in i2t.queries for i in i2t.relevant[q.id]} == {"cap"}
    groups = by_style(t2i)
    assert list(groups) == list(STYLES) and sum(map(len, groups.values())) == len(t2i.queries)
    assert set(STYLE_SETS) >= {"openmoji-style-test-i2i", "openmoji-style-val-t2i"}
    assert load_eval("openmoji-style-val-i2t", size=32).name == "openmoji-style-val"
    with pytest.raises(ValueError):
        style_eval("t2t")
