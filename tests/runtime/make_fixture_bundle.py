"""Build the tiny but real test bundle in ``tests/runtime/fixtures/tiny_bundle`` (run once; output committed).

    python tests/runtime/make_fixture_bundle.py [OUT_DIR]

Needs ``onnx`` (a dev/compress dependency) at build time only; the tests that use the bundle need
only the base install. Both encoders follow the runtime's ONNX I/O contract:

* text: ``input_ids``, ``attention_mask`` int64 [batch, seq] -> ``embeddings`` float32 [batch, 32];
  embedding lookup -> tanh MLP -> masked mean pool -> linear -> L2 norm, all inside the graph.
* image: ``pixel_values`` float32 [batch, 3, 32, 32] -> two strided convs -> global average pool ->
  linear -> L2 norm -> ``embeddings`` [batch, 32].

Weights are random with a fixed seed, so the output is deterministic.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeret.compress.ort_format import OPERATOR_CONFIG, convert_to_ort, write_operator_config  # noqa: E402
from edgeret.runtime.bundle import write_manifest  # noqa: E402
from edgeret.runtime.preprocess import ImagePreprocessor  # noqa: E402

DIM, HIDDEN, IMAGE_SIZE, MAX_LENGTH, OPSET = 32, 48, 32, 16, 17
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a an the of and in on with red green blue yellow black white orange purple pink brown grey gold "
    "apple banana cherry grape lemon melon pear peach cat dog fish bird horse cow pig sheep lion tiger "
    "bear frog snake car bus train plane boat bike house tree flower sun moon star cloud rain snow fire "
    "water heart smile face hand book phone clock key lock music ball cup food big small happy sad hot cold"
).split()
DEFAULT_OUT = Path(__file__).resolve().parent / "fixtures" / "tiny_bundle"


def build_tokenizer() -> Tokenizer:
    """A small BERT-style WordPiece tokenizer with a hand-written vocabulary (deterministic)."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab_list = SPECIAL + chars + [f"##{c}" for c in chars] + WORDS
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _init(rng: np.random.Generator, name: str, *shape: int, scale: float = 1.0) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _const(name: str, values: list, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _l2_norm_nodes(src: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("ReduceL2", [src], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
        helper.make_node("Div", [src, "norm_safe"], ["embeddings"]),
    ]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeret-fixture")
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def text_encoder(vocab_size: int, rng: np.random.Generator) -> onnx.ModelProto:
    """Embedding -> tanh MLP -> masked mean pool -> linear -> L2 norm."""
    inits = [
        _init(rng, "tok_emb", vocab_size, DIM), _init(rng, "w1", DIM, HIDDEN, scale=DIM**-0.5),
        _init(rng, "b1", HIDDEN, scale=0.1), _init(rng, "w2", HIDDEN, DIM, scale=HIDDEN**-0.5),
        _init(rng, "b2", DIM, scale=0.1), _const("ax1", [1]), _const("ax2", [2]),
        _const("one", [1.0], np.float32), _const("eps", [1e-12], np.float32),
    ]
    nodes = [
        helper.make_node("Gather", ["tok_emb", "input_ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "ax2"], ["m3"]),
        helper.make_node("Mul", ["h", "m3"], ["hm"]),
        helper.make_node("ReduceSum", ["hm", "ax1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["m3", "ax1"], ["count0"], keepdims=0),
        helper.make_node("Max", ["count0", "one"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["out"]),
        *_l2_norm_nodes("out"),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", DIM])
    return _model(helper.make_graph(nodes, "tiny_text_encoder", inputs, [output], inits))


def image_encoder(rng: np.random.Generator) -> onnx.ModelProto:
    """Two strided 3x3 convs -> global average pool -> linear -> L2 norm."""
    inits = [
        _init(rng, "c1_w", 8, 3, 3, 3, scale=0.5), _init(rng, "c1_b", 8, scale=0.1),
        _init(rng, "c2_w", 16, 8, 3, 3, scale=0.25), _init(rng, "c2_b", 16, scale=0.1),
        _init(rng, "fc_w", 16, DIM, scale=0.25), _init(rng, "fc_b", DIM, scale=0.1),
        _const("eps", [1e-12], np.float32),
    ]
    conv = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["pixel_values", "c1_w", "c1_b"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2_w", "c2_b"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["out"]),
        *_l2_norm_nodes("out"),
    ]
    pixels = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])
    output = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", DIM])
    return _model(helper.make_graph(nodes, "tiny_image_encoder", [pixels], [output], inits))


def build(out: Path) -> dict:
    """Write the whole bundle into ``out`` (replacing it) and return the manifest."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tokenizer = build_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"))
    onnx.save(text_encoder(tokenizer.get_vocab_size(), rng), str(out / "text_encoder.onnx"))
    onnx.save(image_encoder(rng), str(out / "image_encoder.onnx"))
    ImagePreprocessor(size=IMAGE_SIZE, resample="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3).save(
        out / "preprocessor.json"
    )
    for name in ("text_encoder.onnx", "image_encoder.onnx"):  # ORT-format twins, as `compress --ort` writes
        convert_to_ort(out / name)
    write_operator_config([out / "text_encoder.ort", out / "image_encoder.ort"], out / OPERATOR_CONFIG)
    return write_manifest(
        out,
        embedding={"dim": DIM, "normalised": True, "matryoshka_dims": [8, 16, 32]},
        teacher="fixture-random-weights",
        text_encoder={"file": "text_encoder.onnx", "ort_file": "text_encoder.ort", "max_length": MAX_LENGTH,
                      "quantization": "fp32"},
        image_encoder={"file": "image_encoder.onnx", "ort_file": "image_encoder.ort", "quantization": "fp32"},
        index={"M": 16, "ef_construction": 100, "ef_search": 32},
        producer={"fixture": "tests/runtime/make_fixture_bundle.py"},
    )


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    manifest = build(target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"wrote {target} ({size} bytes, {len(manifest['files'])} files)")
