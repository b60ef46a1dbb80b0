import numpy as np
import pytest
import torch
from transformers import BertModel

from edgeret.data.render import render_emoji
from edgeret.distill.models.efficientnet_lite import load_lite0
from edgeret.distill.models.image_tower import lite0_stages
from edgeret.distill.student import (
    ImageConfig,
    StudentConfig,
    TextConfig,
    build_student,
    load_student,
    save_student,
)
from edgeret.distill.teachers.standin import mean_pool, minilm_path

TEXTS = ["grinning face", "flag: France", "draw air into, and expel out of, the lungs", "a small round fruit"]


@pytest.fixture(scope="module")
def full_student():
    """All six MiniLM layers at full width and all Lite0 blocks: should equal the teachers before projection."""
    config = StudentConfig(
        text=TextConfig(hidden=384, layers=6, intermediate=1536, max_length=64, teacher_layers=list(range(6))),
        image=ImageConfig(image_size=64, stages=lite0_stages([1, 2, 2, 3, 3, 4, 1])),
    )
    return build_student(config, vocab_texts=TEXTS).eval()


@pytest.fixture(scope="module")
def small_student():
    config = StudentConfig(
        dim=384,
        matryoshka_dims=[64, 128],
        text=TextConfig(hidden=128, layers=1, intermediate=256, max_length=32, teacher_layers=[5]),
        image=ImageConfig(image_size=64, stages=lite0_stages([1, 1, 1]), head_channels=96, frozen_blocks=2),
    )
    return build_student(config, vocab_texts=TEXTS).eval()


def test_config_round_trip(tmp_path):
    text = TextConfig(layers=3, teacher_layers=[0, 2, 5])
    config = StudentConfig(matryoshka_dims=[128, 64], teacher_id="t", text=text)
    config.save(tmp_path / "config.json")
    loaded = StudentConfig.load(tmp_path / "config.json")
    assert loaded == config
    assert loaded.matryoshka_dims == [64, 128, 384]  # sorted, always ending at the full dim
    assert isinstance(loaded.text, TextConfig) and loaded.text.teacher_layers == [0, 2, 5]
    assert loaded.format_version == 1 and loaded.edgeret_version


def test_config_rejects_bad_versions_and_dims():
    data = StudentConfig().to_dict()
    with pytest.raises(ValueError, match="format_version"):
        StudentConfig.from_dict({**data, "format_version": 99})
    with pytest.raises(ValueError, match="Matryoshka"):
        StudentConfig(dim=64, matryoshka_dims=[128])


def test_text_inheritance_reproduces_minilm(full_student):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    bert = BertModel.from_pretrained(str(minilm_path()), add_pooling_layer=False).eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = mean_pool(bert(**batch).last_hidden_state, batch["attention_mask"])
        ids, mask = full_student.tokenize(TEXTS)
        ours = full_student.text.pooled(ids, mask)
        projected = full_student.text(ids, mask)  # identity projection at full width
    assert ids.max() < full_student.config.text.vocab_size < 30522  # the vocabulary really was pruned
    assert torch.allclose(ours, reference, atol=1e-5)
    assert torch.allclose(projected, reference, atol=1e-5)


def test_image_inheritance_reproduces_lite0(full_student):
    lite0 = load_lite0()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(full_student.image.trunk(pixels), lite0(pixels), atol=1e-5)


def test_narrow_student_inherits_selected_weights(small_student):
    from edgeret.distill.models.text_tower import HEAD_DIM, select_by_magnitude

    bert = BertModel.from_pretrained(str(minilm_path()), add_pooling_layer=False)
    sel = select_by_magnitude(bert, [5], hidden=128, intermediate=256)
    layer, ref = small_student.text.bert.encoder.layer[0], bert.encoder.layer[5]
    dims = (sel.heads[0][:, None] * HEAD_DIM + torch.arange(HEAD_DIM)).reshape(-1)
    assert torch.equal(layer.attention.self.query.weight, ref.attention.self.query.weight[dims][:, sel.hidden])
    assert torch.equal(layer.intermediate.dense.weight, ref.intermediate.dense.weight[sel.ffn[0]][:, sel.hidden])
    assert torch.equal(layer.output.dense.weight, ref.output.dense.weight[sel.hidden][:, sel.ffn[0]])
    word = small_student.text.bert.embeddings.word_embeddings.weight
    cls_id = small_student.tokenizer.token_to_id("[CLS]")
    assert torch.equal(word[cls_id], bert.embeddings.word_embeddings.weight[101, sel.hidden])
    assert small_student.image.trunk._conv_head.out_channels == 96


def test_matryoshka_outputs_are_normalised_prefixes(small_student):
    ids, mask = small_student.tokenize(TEXTS)
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        raw_text, raw_image = small_student.text(ids, mask), small_student.image(pixels)
        for dim in (64, 128):
            text = small_student.encode_text(ids, mask, dim=dim)
            image = small_student.encode_image(pixels, dim=dim)
            assert text.shape == (4, dim) and image.shape == (3, dim)
            assert torch.allclose(text.norm(dim=1), torch.ones(4), atol=1e-5)
            assert torch.allclose(text, raw_text[:, :dim] / raw_text[:, :dim].norm(dim=1, keepdim=True), atol=1e-6)
            assert torch.allclose(image, raw_image[:, :dim] / raw_image[:, :dim].norm(dim=1, keepdim=True), atol=1e-6)
        prefixes = small_student.matryoshka(raw_text)
    assert sorted(prefixes) == [64, 128, 384]


def test_save_load_gives_identical_outputs(small_student, tmp_path):
    save_student(small_student, tmp_path / "ck")
    assert {p.name for p in (tmp_path / "ck").iterdir()} >= {
        "model.safetensors", "config.json", "tokenizer.json", "preprocessor.json"
    }
    loaded = load_student(tmp_path / "ck")
    images = [render_emoji("\U0001f600", 224), render_emoji("\U0001f34e", 100)]
    assert np.array_equal(loaded.embed_texts(TEXTS), small_student.embed_texts(TEXTS))
    assert np.array_equal(loaded.embed_images(images), small_student.embed_images(images))
    emb = loaded.embed_texts(TEXTS, dim=64)
    assert emb.shape == (4, 64) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(loaded.embed_texts(TEXTS[:1]), loaded.embed_texts(TEXTS[1:2]))


def test_load_rejects_incomplete_checkpoint(small_student, tmp_path):
    save_student(small_student, tmp_path / "ck")
    (tmp_path / "ck" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_student(tmp_path / "ck")


def test_frozen_prefix_gets_no_gradient_and_stays_in_eval(small_student):
    tower = small_student.image
    tower.train()
    assert not tower.trunk._bn0.training and tower.trunk._blocks[2]._bn1.training
    assert all(not p.requires_grad for p in tower.trunk._blocks[0].parameters())
    assert all(p.requires_grad for p in tower.trunk._blocks[2].parameters())
    tower.eval()


def test_channels_last_block_gives_the_same_embeddings_and_gradients_and_restores_the_layout(small_student):
    tower = small_student.image
    pixels = torch.randn(3, 3, 64, 64)

    def run():
        tower.zero_grad()
        out = tower(pixels)
        out.pow(2).sum().backward()
        return out.detach(), tower.proj.weight.grad.clone(), tower.trunk._conv_head.weight.grad.clone()

    plain = run()
    with tower.channels_last():
        assert tower.trunk._conv_head.weight.is_contiguous(memory_format=torch.channels_last)
        assert tower.prefix(pixels).is_contiguous(memory_format=torch.channels_last)
        with tower.channels_last():  # nested: the outer block keeps its layout
            pass
        assert tower.trunk._conv_head.weight.is_contiguous(memory_format=torch.channels_last)
        nhwc = run()
    assert tower.trunk._conv_head.weight.is_contiguous() and tower(pixels).is_contiguous()
    for a, b in zip(plain, nhwc, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    tower.zero_grad(set_to_none=True)


def test_cost_helpers_count_params_and_flops(small_student):
    from edgeret.distill.flops import count_flops, count_params, tower_costs

    linear = torch.nn.Linear(4, 3)
    assert count_params(linear) == 15
    assert count_flops(lambda: linear(torch.randn(2, 4))) == 2 * 2 * 4 * 3
    costs = tower_costs(small_student, repeats=2)
    assert costs["text"]["params"] == count_params(small_student.text)
    assert costs["text"]["flops"] > 0 and costs["image"]["flops"] > 0 and costs["image"]["latency_ms_1t"] > 0


def test_length_sorted_text_encoding_matches_the_padded_batch(small_student):
    from edgeret.distill.loop import encode_by_length

    texts = ["a", "grinning face with big eyes", "flag: France", "draw air into, and expel out of, the lungs",
             "red apple", "a dog", "the national flag of a country in western europe with three stripes"] * 3
    ids, mask = small_student.tokenize(texts)
    small_student.train()
    padded = small_student.text(ids, mask)
    chunked = encode_by_length(small_student.text, ids, mask, chunk=4)
    assert torch.allclose(padded, chunked, atol=1e-5)
    chunked.square().sum().backward()  # gradients flow through the chunks
    assert small_student.text.proj.weight.grad is not None
    small_student.zero_grad(set_to_none=True)
    alone = np.concatenate([small_student.embed_texts([t]) for t in texts])
    assert np.allclose(small_student.embed_texts(texts, batch_size=4), alone, atol=1e-5)
