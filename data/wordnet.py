"""WordNet text->text retrieval: query = a synset's gloss, relevant document = its lemma string.

The repository ships a compact derived subset (``data/files/wordnet_subset.tsv.gz``, WordNet 3.0 licence
in ``data/files/WORDNET_LICENSE``), so no system package is needed. ``build_subset`` regenerates it from
Debian's ``wordnet-base`` (``/usr/share/wordnet``): ``python -m edgeret.data.wordnet --build``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .evalset import QUERY_INSTRUCTIONS, EvalSet, sample_keys
from .items import CorpusItem
from .splits import check_split, split_of

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("files")
SUBSET_PATH = DATA_DIR / "wordnet_subset.tsv.gz"
WORDNET_DIR = Path("/usr/share/wordnet")
SUBSET_SIZE = 30_000
SUBSET_SEED = 0
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
_POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")


@dataclass(frozen=True)
class Synset:
    """A WordNet synset: key '<pos><offset>', its lemma string and its definition."""

    key: str
    lemmas: str
    gloss: str

    @property
    def split(self) -> str:
        """train, val or test, by a seeded hash of the synset's key."""
        return split_of(self.key, SPLIT_FRACTIONS, SUBSET_SEED)


def parse_data_line(line: str, pos: str) -> Synset | None:
    """Parse one line of a WordNet ``data.*`` file; None for the licence header lines."""
    if line.startswith("  ") or "|" not in line:
        return None
    head, gloss = line.split("|", 1)
    fields = head.split()
    n_words = int(fields[3], 16)
    words = [_ADJ_MARKER.sub("", fields[4 + 2 * i]).replace("_", " ") for i in range(n_words)]
    definition = gloss.strip().split('; "')[0].strip().rstrip(";").strip()
    if not definition:
        return None
    lemmas = ", ".join(dict.fromkeys(words))  # de-duplicated, order kept
    return Synset(key=f"{pos}{fields[0]}", lemmas=lemmas, gloss=definition)


def read_wordnet(wordnet_dir: Path = WORDNET_DIR) -> list[Synset]:
    """Every synset of a WordNet 3.0 database folder."""
    synsets = []
    for pos, filename in _POS_FILES.items():
        path = wordnet_dir / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: install Debian's 'wordnet-base' or pass its folder")
        with path.open(encoding="utf-8", errors="replace") as handle:
            synsets.extend(s for s in (parse_data_line(line, pos) for line in handle) if s is not None)
    return synsets


def build_subset(wordnet_dir: Path = WORDNET_DIR, out: Path = SUBSET_PATH, size: int = SUBSET_SIZE) -> int:
    """Write the shipped subset: ``size`` synsets whose lemma string is unique in WordNet.

    Unique lemma strings keep every query's single relevant document unambiguous. Selection is by
    seeded hash, so the same WordNet always gives the same file. Returns the number written.
    """
    synsets = read_wordnet(wordnet_dir)
    counts: dict[str, int] = {}
    for s in synsets:
        counts[s.lemmas.lower()] = counts.get(s.lemmas.lower(), 0) + 1
    unique = [s for s in synsets if counts[s.lemmas.lower()] == 1 and "\t" not in s.gloss]
    ranked = sorted(unique, key=lambda s: hashlib.sha256(f"subset:{SUBSET_SEED}:{s.key}".encode()).digest())
    chosen = sorted(ranked[:size], key=lambda s: s.key)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes reproducible
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write("".join(f"{s.key}\t{s.lemmas}\t{s.gloss}\n" for s in chosen).encode("utf-8"))
    logger.info("wrote %d of %d synsets (%d with unique lemmas) to %s", len(chosen), len(synsets), len(unique), out)
    return len(chosen)


@functools.lru_cache(maxsize=2)
def load_synsets(path: Path = SUBSET_PATH) -> tuple[Synset, ...]:
    """The shipped subset (or another file in its format)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return tuple(Synset(*line.rstrip("\n").split("\t")) for line in handle if line.strip())


def synsets(split: str = "all") -> list[Synset]:
    """The synsets of one split ('train', 'val', 'test' or 'all')."""
    check_split(split)
    return [s for s in load_synsets() if split in ("all", s.split)]


def gloss_item(s: Synset, instruction: str | None = None) -> CorpusItem:
    """A synset's definition as a query-side text item ``gloss:<key>``."""
    return CorpusItem(id=f"gloss:{s.key}", kind="text", text=s.gloss, instruction=instruction, split=s.split,
                      group=s.key, role="query")


def lemma_item(s: Synset) -> CorpusItem:
    """A synset's lemma string as a document-side text item ``lemma:<key>``."""
    return CorpusItem(id=f"lemma:{s.key}", kind="text", text=s.lemmas, split=s.split, group=s.key)


def wordnet_eval(split: str = "test", sample: int | None = None, seed: int = 0) -> EvalSet:
    """Gloss -> lemma-string retrieval among the synsets of ``split`` (optionally a seeded sample)."""
    chosen = {s.key: s for s in synsets(split)}
    selected = [chosen[k] for k in sample_keys(list(chosen), sample, seed)]
    queries = [gloss_item(s, QUERY_INSTRUCTIONS["t2t"]) for s in selected]
    corpus = [lemma_item(s) for s in selected]
    relevant = {f"gloss:{s.key}": {f"lemma:{s.key}"} for s in selected}
    name = f"wordnet-{split}" + (f"-{sample}" if sample is not None else "")
    return EvalSet(name, "t2t", queries, corpus, relevant)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate the shipped WordNet subset.")
    parser.add_argument("--build", action="store_true", help="build the subset from --wordnet-dir")
    parser.add_argument("--wordnet-dir", type=Path, default=WORDNET_DIR)
    parser.add_argument("--out", type=Path, default=SUBSET_PATH)
    parser.add_argument("--size", type=int, default=SUBSET_SIZE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.build:
        build_subset(args.wordnet_dir, args.out, args.size)
    else:
        parser.print_help()


if __name__ == "__main__":
    _main()
