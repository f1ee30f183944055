"""Models with several named inputs and outputs, built and trained in code (seeded), for the multi-I/O tests.

- ``bert_like``: a small BERT-style Keras encoder: int32 ``input_ids`` and
  ``attention_mask`` of shape (batch, seq) with both dimensions unknown, word
  and position embeddings, two encoder layers, mean pooling over the mask, and
  two outputs, the pooled ``embedding`` and a 2-class ``logits`` head. The task
  (does the sentence hold token MARKER?) is learned to over 90%.
- ``two_in_two_out``: an 8x8 image and 4 scalar features in; class logits and
  a 4-number box out.
- ``two_signatures``: a .tflite with two signatures on two subgraphs.
- ``fp16_weights``: a float .tflite whose weights are stored as float16 behind
  DEQUANTIZE ops, as many published models are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VOCAB, SEQ, HIDDEN, MARKER = 48, 12, 32, 7


def token_data(n: int, seed: int) -> dict[str, np.ndarray]:
    """Padded token ids (0 = padding) and masks; label 1 when MARKER is among the real tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, SEQ + 1, n)
    ids = rng.integers(1, VOCAB, (n, SEQ)).astype(np.int32)
    ids[ids == MARKER] = MARKER + 1
    has = rng.random(n) < 0.5
    for i in np.nonzero(has)[0]:
        ids[i, rng.integers(0, lengths[i])] = MARKER
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "y": has.astype(np.int64)}


def bert_like(folder: Path, seed: int = 0) -> Path:
    """Train the encoder and save it as ``folder/bert_like.keras``; also writes calib.npz and test.npz."""
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(seed)
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    mask = keras.Input((None,), dtype="int32", name="attention_mask")
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1
    x = layers.Embedding(VOCAB, HIDDEN, name="word_embeddings")(ids) + \
        layers.Embedding(64, HIDDEN, name="position_embeddings")(positions)
    x = layers.LayerNormalization(name="embeddings_norm")(x)
    attention_mask = ops.expand_dims(mask, 1)
    for i in range(2):
        attended = layers.MultiHeadAttention(2, HIDDEN // 2, name=f"layer{i}_attention")(
            x, x, attention_mask=attention_mask)
        x = layers.LayerNormalization(name=f"layer{i}_norm1")(x + attended)
        ffn = layers.Dense(HIDDEN, name=f"layer{i}_out")(layers.Dense(2 * HIDDEN, activation="gelu",
                                                                     name=f"layer{i}_up")(x))
        x = layers.LayerNormalization(name=f"layer{i}_norm2")(x + ffn)
    weight = ops.expand_dims(ops.cast(mask, "float32"), -1)
    pooled = ops.sum(x * weight, axis=1) / ops.maximum(ops.sum(weight, axis=1), 1e-9)
    embedding = layers.Identity(name="embedding")(pooled)
    logits = layers.Dense(2, name="logits")(embedding)
    model = keras.Model([ids, mask], {"embedding": embedding, "logits": logits}, name="bert_like")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    train = token_data(2000, seed)
    model.fit([train["input_ids"], train["attention_mask"]], {"logits": train["y"]}, epochs=6, batch_size=64,
              verbose=0)
    path = folder / "bert_like.keras"
    model.save(path)
    calib, test = token_data(200, seed + 1), token_data(300, seed + 2)
    np.savez(folder / "bert_calib.npz", input_ids=calib["input_ids"], attention_mask=calib["attention_mask"])
    np.savez(folder / "bert_test.npz", **test)
    return path


def two_in_two_out(folder: Path, seed: int = 0) -> Path:
    """An image + scalar features -> logits and box model, trained briefly; writes mixed_calib/test.npz."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    image = keras.Input((8, 8, 1), name="image")
    features = keras.Input((4,), name="features")
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(image)
    x = layers.Flatten()(x)
    x = layers.Concatenate()([x, layers.Dense(8, activation="relu", name="feat")(features)])
    x = layers.Dense(32, activation="relu", name="hidden")(x)
    model = keras.Model([image, features], {"logits": layers.Dense(3, name="logits")(x),
                                            "box": layers.Dense(4, name="box")(x)}, name="two_in_two_out")
    rng = np.random.default_rng(seed)

    def data(n: int) -> dict[str, np.ndarray]:
        img = rng.random((n, 8, 8, 1)).astype(np.float32)
        feat = rng.normal(size=(n, 4)).astype(np.float32)
        y = (img.mean(axis=(1, 2, 3)) * 3 + feat[:, 0] > 1.5).astype(np.int64) + (feat[:, 1] > 1).astype(np.int64)
        return {"image": img, "features": feat, "y": y, "box": np.tanh(feat).astype(np.float32)}

    train = data(1000)
    model.compile(optimizer="adam", loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                          "box": "mse"})
    model.fit([train["image"], train["features"]], {"logits": train["y"], "box": train["box"]}, epochs=4,
              batch_size=32, verbose=0)
    path = folder / "two_in_two_out.keras"
    model.save(path)
    calib, test = data(100), data(120)
    np.savez(folder / "mixed_calib.npz", image=calib["image"], features=calib["features"])
    np.savez(folder / "mixed_test.npz", image=test["image"], features=test["features"], y=test["y"])
    return path


def two_signatures(folder: Path) -> Path:
    """A .tflite with signatures 'encode' (x -> 2x + 1) and 'decode' (z -> z / 2), each its own subgraph."""
    import tensorflow as tf

    class Codec(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def encode(self, x):
            return {"code": x * 2.0 + 1.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="z")])
        def decode(self, z):
            return {"value": z / 2.0}

    module = Codec()
    saved = folder / "codec_saved"
    tf.saved_model.save(module, str(saved), signatures={"encode": module.encode, "decode": module.decode})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["encode", "decode"])
    path = folder / "two_signatures.tflite"
    path.write_bytes(converter.convert())
    return path


def fp16_weights(keras_path: Path, folder: Path) -> Path:
    """``keras_path`` converted with float16 weights (DEQUANTIZE ops widen them at load)."""
    import keras
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(keras_path))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    path = folder / "fp16_weights.tflite"
    path.write_bytes(converter.convert())
    return path
