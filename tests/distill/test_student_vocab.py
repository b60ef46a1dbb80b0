from tokenizers import Tokenizer

from edgeret.data.openmoji import emojis
from edgeret.data.wordnet import synsets
from edgeret.distill.teachers.standin import minilm_path
from edgeret.distill.vocab import configure_for_inference, load_tokenizer, prune_tokenizer


def _texts():
    return [c for e in emojis("train")[:300] for c in e.captions] + [s.gloss for s in synsets("train")[:500]]


def test_pruned_vocab_tokenises_corpus_text_like_the_full_tokenizer():
    full = load_tokenizer(minilm_path())
    full.no_padding()
    texts = _texts()
    pruned, keep_ids = prune_tokenizer(full, texts)
    assert pruned.get_vocab_size() == len(keep_ids) < full.get_vocab_size() // 2
    assert keep_ids == sorted(keep_ids)
    for text in texts:
        a, b = full.encode(text), pruned.encode(text)
        assert [keep_ids[i] for i in b.ids] == a.ids, text
        assert b.tokens == a.tokens


def test_pruned_vocab_keeps_specials_and_single_characters():
    full = load_tokenizer(minilm_path())
    pruned, keep_ids = prune_tokenizer(full, ["hello world"])
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        assert keep_ids[pruned.token_to_id(special)] == full.token_to_id(special)
    assert pruned.token_to_id("[PAD]") == 0
    # a word never seen still tokenises into character pieces, never [UNK]
    encoding = pruned.encode("zebrafish quokka")
    assert "[UNK]" not in encoding.tokens and encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"
    assert "".join(t.removeprefix("##") for t in encoding.tokens[1:-1]) == "zebrafishquokka"


def test_pruned_tokenizer_round_trips_through_json(tmp_path):
    pruned, _ = prune_tokenizer(load_tokenizer(minilm_path()), _texts()[:50])
    ready = configure_for_inference(pruned, max_length=8)
    ready.save(str(tmp_path / "tokenizer.json"))
    again = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    batch = again.encode_batch(["a", "draw air into, and expel out of, the lungs"])
    assert len(batch[0].ids) == len(batch[1].ids) == 8  # padded to the longest, truncated to max_length
    assert batch[0].attention_mask[:3] == [1, 1, 1] and batch[0].attention_mask[-1] == 0
